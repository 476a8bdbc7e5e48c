"""Running the catalogue: `load_or_train` from a catalogue name to its stored result.

The walk, down the modules once: `catalogue` describes a run -> `data.evaluation_sets`
carves the sets it is measured on -> `train` fits it on Training's other rows (or a cut
or an ensemble needs no training) -> `evaluate.score` measures every accuracy it
reports, at every precision, in float32 -> `store` writes ``results/<name>-<hash>/`` ->
``summary.csv`` has its row.

`load_or_train` returns the stored result when the hash matches, trains when it is
missing, and refuses a result whose config no longer matches its folder key. The public
names of the store and the catalogue are re-exported here; ``CATALOGUE`` is built on
first access.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import catalogue, paths, qat
from .catalogue import (  # noqa: F401  (re-exported)
    CUT_FRACTIONS,
    ENSEMBLE,
    TEACHERS,
    Experiment,
    build_catalogue,
    config_hash,
)
from .config import ConfigError, TrainConfig
from .data import CLASS_NAMES, EVAL_SETS, FER2013, evaluation_sets
from .distill import CachedTeacher, average_logits, choose_members, teacher_logits_with_flip
from .evaluate import (
    accuracy,
    confusion_matrix,
    per_class_accuracy,
    predict_shifted,
    score,
    shift_offsets,
    to_input,
)
from .models import build, count_flops, count_params
from .softlabels import StoredViewTeacher, load_or_build
from .sparsity import pruned_summary
from .store import (  # noqa: F401  (re-exported)
    DATA_SUMMARY,
    SUMMARY_COLUMNS,
    MissingResultError,
    Result,
    StaleResultError,
    find_result,
    load_data_summary,
    load_result,
    result_at,
    store_result,
    summary_rows,
    write_data_summary,
    write_metrics,
    write_outputs,
    write_summary,
)
from .train import train

KEEP_WEIGHTS_BELOW = 450_000        # fp16 bytes of a student/ablation whose weights are kept
# The seed of every stored-view soft-label store's draws: one store serves all students
# (each student's own seed picks which of the K views it sees in an epoch).
SOFT_LABEL_SEED = 0


def __getattr__(name: str):
    # CATALOGUE, built on first use: sizing every sweep model takes seconds, and most
    # imports (the CLI's --help, a chapter that reads one result) never need it.
    if name == "CATALOGUE":
        return catalogue.experiments()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_or_train(exp: Experiment, data: FER2013 | None = None, *,
                  results_dir: str | os.PathLike | None = None,
                  runs_dir: str | os.PathLike | None = None, device: str | None = None,
                  quiet: bool = False, allow_train: bool = True, rerun: bool = False) -> Result:
    """The stored result of `exp` if its hash matches, else train, store and return it.

    Training resumes from ``runs_dir/<folder>/checkpoint.pt`` after an interruption.
    `rerun` trains even when a result is stored, and replaces it once the run finished.
    """
    results_dir = Path(results_dir) if results_dir is not None else paths.results_dir()
    runs_dir = Path(runs_dir) if runs_dir is not None else paths.runs_dir()
    found = None if rerun else find_result(exp, results_dir)
    if found is not None:
        return found
    if not allow_train:
        raise MissingResultError(f"no stored result for {exp.name!r} and training is off")
    if data is None:
        from .data import load_fer2013
        data = load_fer2013()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    work = runs_dir / exp.folder
    work.mkdir(parents=True, exist_ok=True)
    if exp.kind == "ensemble":
        files = _run_ensemble(exp, data, results_dir, runs_dir)
    elif exp.kind == "cut":
        files = _run_cut(exp, data, results_dir, work, device)
    else:
        files = _run_training(exp, data, results_dir, runs_dir, work, device, quiet)
    store_result(exp, files, results_dir)
    return find_result(exp, results_dir)


# ----------------------------------------------------------------------------- measuring
def measure(model, data: FER2013, cfg: TrainConfig, work: Path, device) -> tuple[dict, dict]:
    """Every number a run reports about its model, and its float32 TTA logits per set.

    Accuracies come from `evaluate.score` on `data.evaluation_sets` (the run's own
    validation rows, PublicTest, PrivateTest) at every precision of `quantize.PRECISIONS`;
    bytes and sha256 from the exported files, written to `work`. A run whose weights are
    stored is measured on those weights (`as_stored`), so every number describes the
    files that `fer package`, the demo and `fer evaluate` later export from them.
    """
    from .quantize import PRECISIONS, export_npz, file_sha256

    sets = evaluation_sets(data, cfg.val_fraction, cfg.split_seed)
    scores = score(model, sets, PRECISIONS, device=device)
    files = {p: work / f"model-{p}.npz" for p in PRECISIONS}
    metrics: dict = {"scoring": "fp32", "params": count_params(model),
                     "flops": count_flops(model), "acc_by_precision": scores.accuracy,
                     "bytes": {p: export_npz(model, f, p) for p, f in files.items()}}
    metrics["sha256"] = {p: file_sha256(f) for p, f in files.items()}
    metrics.update(scores.headline())
    metrics.update(class_metrics(scores.logits, scores.labels))
    return metrics, scores.logits


def class_metrics(logits: dict, labels: dict) -> dict:
    """Per-class accuracy and confusion matrix on public and private."""
    out = {}
    for name in ("public", "private"):
        pred = logits[name].argmax(axis=1)
        out[f"{name}_per_class"] = dict(zip(CLASS_NAMES, per_class_accuracy(pred, labels[name])
                                            .round(4).tolist(), strict=True))
        out[f"{name}_confusion"] = confusion_matrix(pred, labels[name]).tolist()
    return out


def fp16_weights(model) -> dict[str, np.ndarray]:
    """The floating-point state of `model` in float16: what ``weights-bn.npz`` stores."""
    return {k: v.detach().cpu().numpy().astype(np.float16)
            for k, v in model.state_dict().items() if v.dtype.is_floating_point}


def as_stored(model):
    """`model` with its weights rounded as ``weights-bn.npz`` stores them (float16, read
    back as float32), in eval mode: the model `Result.model()` rebuilds, so a run is scored
    on exactly the weights every later export starts from (in place; returns `model`)."""
    state = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)).to(state[k].device)
                           for k, v in fp16_weights(model).items()}, strict=False)
    return model.eval()


def keeps_weights(exp: Experiment, model, work: Path) -> bool:
    """Whether a trained run commits its weights: one the catalogue says to keep
    (`catalogue.KEEP_WEIGHTS`, the CPU teachers), or a fp16 file under
    `KEEP_WEIGHTS_BELOW` bytes that is not a sweep point (larger models keep their logits
    or predictions only)."""
    from .quantize import export_npz

    if exp.name in catalogue.KEEP_WEIGHTS:
        return True
    small = export_npz(model, work / "model-fp16.npz", "fp16") < KEEP_WEIGHTS_BELOW
    return small and not exp.group.startswith("sweep")


# ----------------------------------------------------------------------------- running
def _teacher_for(exp: Experiment, data: FER2013, results_dir: Path, runs_dir: Path,
                 device) -> CachedTeacher | StoredViewTeacher | None:
    """The teacher a student distils from, after checking it cannot leak val rows: its
    cached logits on the clean images, or (``exp.teacher_views``) its stored views."""
    if exp.teacher is None:
        return None
    teacher = catalogue.get(exp.teacher)
    check_same_split(exp, teacher)
    if exp.teacher_views:
        return view_teacher(exp, data, results_dir, runs_dir, device)
    source = find_result(teacher, results_dir)
    if source is None or not (source.path / "train_logits.npz").exists():
        raise MissingResultError(f"{exp.name}: teacher {exp.teacher!r} has no stored "
                                 f"train_logits.npz; run `fer reproduce --only {exp.teacher}`")
    with np.load(source.path / "train_logits.npz") as z:
        logits = z["logits"].astype(np.float32)
    rows = len(data.split("Training")[1])
    if len(logits) != rows:
        raise ConfigError(f"{exp.name}: teacher {exp.teacher!r} cached {len(logits)} Training "
                          f"rows, this data set has {rows}: not the data it was trained on")
    return CachedTeacher(logits)


def soft_label_path(exp: Experiment, results_dir: Path, runs_dir: Path) -> Path:
    """Where the store of `exp`'s teacher views is cached: under ``runs/softlabels/``,
    named after the teacher's stored result folder (its config hash) and K."""
    teacher = find_result(catalogue.get(exp.teacher), results_dir)
    folder = teacher.path.name if teacher is not None else catalogue.get(exp.teacher).folder
    return runs_dir / "softlabels" / (f"{folder}-views{exp.teacher_views}"
                                      f"-seed{SOFT_LABEL_SEED}.npz")


def view_teacher(exp: Experiment, data: FER2013, results_dir: Path, runs_dir: Path,
                 device="cpu") -> StoredViewTeacher:
    """`exp`'s teacher on the views the student sees: the ensemble's probabilities on
    ``exp.teacher_views`` seeded augmentations of every Training image, built once from
    the members' stored weights (`softlabels.load_or_build`) and cached in runs/."""
    teacher = catalogue.get(exp.teacher)
    names = ensemble_members(teacher, results_dir)
    models = []
    for name in names:
        found = find_result(catalogue.get(name), results_dir)
        if found is None or not found.has_weights():
            raise MissingResultError(
                f"{exp.name}: distilling on stored views needs the weights of teacher "
                f"{name!r}, which are not stored; run `fer reproduce --only {name}`")
        models.append(found.model())
    images, _ = data.split("Training")
    store = load_or_build(soft_label_path(exp, results_dir, runs_dir), models, images,
                          exp.train, exp.teacher_views, SOFT_LABEL_SEED, device=device)
    return StoredViewTeacher(store, exp.train)


def ensemble_members(exp: Experiment, results_dir: Path | None = None) -> tuple[str, ...]:
    """The runs whose outputs `exp` averages: the members its stored result chose on
    validation (``choose_members``), else its `members`, else `exp` itself."""
    if exp.choose_members:
        found = find_result(exp, results_dir)
        if found is None:
            raise MissingResultError(f"{exp.name}: its members are chosen when it runs; "
                                     f"run `fer reproduce --only {exp.name}` first")
        return tuple(found.metrics["members"])
    return tuple(exp.members) or (exp.name,)


def check_same_split(student: Experiment, teacher: Experiment) -> None:
    """A teacher (or each member of an ensemble) must have held out the student's val rows.

    A teacher trained with another ``split_seed`` or ``val_fraction`` learned from rows
    the student is selected on, and its soft targets would leak them.
    """
    members = [catalogue.get(m) for m in teacher.members] or [teacher]
    want = (student.train.val_fraction, student.train.split_seed)
    for member in members:
        got = (member.train.val_fraction, member.train.split_seed)
        if got != want:
            raise ConfigError(
                f"{student.name}: teacher {member.name!r} was trained with val_fraction, "
                f"split_seed = {got}, the student with {want}: the teacher saw the student's "
                "validation rows. Distil only from teachers trained on the same split.")


def trainer_inputs(exp: Experiment, data: FER2013, device, results_dir=None, runs_dir=None):
    """(teacher, starting model) `exp`'s trainer needs, as `load_or_train` gives them:
    its teacher's stored logits or views (None without one) and, for a slimmed run, the
    cut model it fine-tunes (None: a fresh model). Only a training run has them."""
    if exp.kind != "train":
        raise ConfigError(f"{exp.name} is an {exp.kind} of stored runs, not a training run: "
                          f"`fer reproduce --only {exp.name}` builds it")
    results_dir = Path(results_dir) if results_dir is not None else paths.results_dir()
    runs_dir = Path(runs_dir) if runs_dir is not None else paths.runs_dir()
    return (_teacher_for(exp, data, results_dir, runs_dir, device),
            _start_model(exp, results_dir))


def _start_model(exp: Experiment, results_dir: Path):
    if exp.slim_from is None:
        return None
    from .prune import slim

    source = find_result(catalogue.get(exp.slim_from), results_dir)
    if source is None:
        raise MissingResultError(f"{exp.name}: {exp.slim_from!r} must be trained first")
    if exp.train.qat:  # quantisation-aware fine-tuning: the network as it is stored
        return qat.prepare(source.model(), exp.train.qat)
    if exp.train.prune_sparsity:  # uncut: the trainer zeroes its smallest weights
        return source.model()
    cut = slim(source.model(), exp.slim_fraction)
    if exp.from_scratch:  # only the shape carries over, initialised as a fresh run is
        with torch.random.fork_rng():
            torch.manual_seed(exp.train.seed)
            return build(cut.family, **cut.hparams)
    return cut


def _run_training(exp, data, results_dir, runs_dir, work, device, quiet) -> dict:
    teacher = _teacher_for(exp, data, results_dir, runs_dir, device)
    start = _start_model(exp, results_dir)
    res = train(exp.train, data, device=device, out_dir=work, resume=True, teacher=teacher,
                model=start, quiet=quiet)
    if exp.train.qat:  # the latent weights, which export to the values it trained with
        res.model = qat.strip(res.model)
        res.plain_model = res.plain_model and qat.strip(res.plain_model)
    model = res.model
    keep = keeps_weights(exp, model, work)
    if keep:
        as_stored(model)
    metrics, logits = measure(model, data, exp.train, work, device)
    if exp.train.prune_sparsity:  # its file could leave the zeros out: what that saves
        metrics["pruned"] = pruned_summary(model, exp.train.prune_sparsity)
    metrics.update({k: res.metrics[k] for k in ("best_epoch", "epochs", "device",
                                                "train_seconds")})
    if res.plain_model is not None:
        metrics["without_average"] = plain_variant(res, data, exp, device, keep)
    if isinstance(teacher, StoredViewTeacher):  # what its soft labels cost, once
        header = teacher.store.header
        metrics["soft_labels"] = {"views": teacher.views, "bytes": teacher.store.nbytes(),
                                  "build_seconds": header.get("build_seconds"),
                                  "built_on": header.get("built_on")}
    files = {"history": res.history, "metrics": metrics, "logits": logits,
             "model": {"family": model.family, "hparams": model.hparams}
             | ({"folded": True} if exp.train.qat else {})}
    if exp.group == "teacher":
        # Its logits on every Training image and its mirror, stored with the result, so
        # the ensemble can be rebuilt from results/ alone.
        images, _ = data.split("Training")
        files["train_logits"] = teacher_logits_with_flip(
            model, to_input(torch.as_tensor(images)), device=device)
        model.cpu()
    if keep:
        files["weights"] = fp16_weights(model)
    return files


def plain_variant(res, data: FER2013, exp: Experiment, device, stored: bool) -> dict:
    """The same run without weight averaging, scored like the run: the plain iterate of
    its own best validation epoch (`TrainResult.plain_model`), at every precision, as
    ``{"best_epoch", "acc_by_precision"}``. `stored`: round its weights as the run's
    are stored (`as_stored`), so the two are compared on equal terms."""
    from .quantize import PRECISIONS

    model = as_stored(res.plain_model) if stored else res.plain_model.eval()
    sets = evaluation_sets(data, exp.train.val_fraction, exp.train.split_seed)
    return {"best_epoch": res.metrics["plain_best_epoch"],
            "acc_by_precision": score(model, sets, PRECISIONS, device=device).accuracy}


def _run_cut(exp: Experiment, data: FER2013, results_dir: Path, work: Path, device) -> dict:
    """Slim a stored model and score it as it is, at every precision: no training."""
    model = as_stored(_start_model(exp, results_dir))
    metrics, logits = measure(model, data, exp.train, work, device)
    metrics.update({"epochs": 0, "device": str(device), "train_seconds": 0.0})
    return {"history": [], "metrics": metrics, "logits": logits, "weights": fp16_weights(model),
            "model": {"family": model.family, "hparams": model.hparams}}


def _member_cache(name: str, results_dir: Path, runs_dir: Path) -> np.ndarray:
    """A teacher's Training logits: stored with its result, or left in runs/ by older runs."""
    exp = catalogue.get(name)
    stored = results_dir / exp.folder / "train_logits.npz"
    if stored.exists():
        with np.load(stored) as z:
            return z["logits"].astype(np.float32)
    legacy = runs_dir / exp.folder / "train_logits.npy"
    if legacy.exists():
        return np.load(legacy).astype(np.float32)
    raise MissingResultError(
        f"teacher {name!r}: its logits on the Training images are not stored (it was trained "
        f"before results kept them, on another machine). Re-train it, which stores them: "
        f"`fer reproduce --only {name} --rerun` (a GPU is advised), then re-run the ensemble.")


def _run_ensemble(exp: Experiment, data: FER2013, results_dir: Path, runs_dir: Path) -> dict:
    members = [find_result(catalogue.get(m), results_dir) for m in exp.members]
    missing = [m for m, r in zip(exp.members, members, strict=True) if r is None]
    if missing:
        raise MissingResultError(f"{exp.name}: members not trained yet: {', '.join(missing)}")
    for member in members[1:]:
        check_same_split(members[0].experiment, member.experiment)
    cfg = members[0].experiment.train
    sets = evaluation_sets(data, cfg.val_fraction, cfg.split_seed)
    labels = {s: y for s, (_, y) in sets.items()}
    candidates = dict(zip(exp.members, members, strict=True))
    val = {m: _member_logits(exp, r, sets, ("val",)) for m, r in candidates.items()}
    selection = None
    if exp.choose_members:  # on validation only; the test splits are read afterwards
        path = choose_members({m: v["val"] for m, v in val.items()}, labels["val"])
        selection = [{"member": m, "val_acc": acc} for m, acc in path]
        members = [candidates[m] for m, _ in path]
    names = [r.experiment.name for r in members]
    caches = [_member_cache(m, results_dir, runs_dir) for m in names]
    tests = tuple(s for s in EVAL_SETS if s != "val")
    outputs = [val[r.experiment.name] | _member_logits(exp, r, sets, tests) for r in members]
    logits = {s: average_logits(np.stack([m[s] for m in outputs])) for s in EVAL_SETS}
    metrics = {f"{s}_acc": accuracy(logits[s], labels[s]) for s in EVAL_SETS}
    metrics.update(class_metrics(logits, labels))
    metrics["scoring"] = ("members' stored logits" if not exp.view_shift else
                          "members' stored weights: flip TTA on each face and its "
                          f"{len(shift_offsets(exp.view_shift)) - 1} shifts by {exp.view_shift} px")
    metrics["member_val_acc"] = {m: accuracy(v["val"], labels["val"]) for m, v in val.items()}
    if selection is not None:
        metrics["members"], metrics["selection"] = names, selection
    metrics["params"] = int(sum(r.metrics["params"] for r in members))
    metrics["flops"] = int(sum(r.metrics["flops"] for r in members))
    metrics["bytes"] = {p: int(sum(r.metrics["bytes"][p] for r in members))
                        for p in members[0].metrics["bytes"]}
    return {"history": [], "metrics": metrics, "logits": logits,
            "train_logits": average_logits(np.stack(caches))}


def _member_logits(exp: Experiment, result: Result, sets: dict, names) -> dict[str, np.ndarray]:
    """A member's (N, 7) logits on the evaluation sets `names` of `sets`: its stored
    flip-TTA logits, or, for an ensemble with `view_shift`, scored from its stored weights
    on the shifted views (`evaluate.predict_shifted`)."""
    if not exp.view_shift:
        stored = result.logits()
        return {s: stored[s] for s in names}
    if not result.has_weights():
        raise MissingResultError(f"{exp.name}: member {result.experiment.name!r} stores no "
                                 "weights to score on shifted views")
    model = result.model()
    return {s: predict_shifted(model, sets[s][0], exp.view_shift) for s in names}
