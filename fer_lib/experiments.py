"""The experiment catalogue, and content-keyed results the book reads without training.

An `Experiment` is a frozen description of one run: a `TrainConfig` plus what happens
around the trainer (distil from a teacher's cached logits, start from a slimmed model,
combine teachers into an ensemble). Its hash keys its folder,
``results/<name>-<hash>/``, which holds:

- ``config.json``: the experiment and its hash;
- ``metrics.json``: accuracies (val, public, private; with and without flip TTA),
  per-class accuracy, confusion matrices, params, FLOPs, bytes and accuracy at each
  precision, train seconds, device;
- ``history.csv``: one row per epoch;
- ``logits.npz`` (float16, for teachers, the HW3 CNN and students) or
  ``predictions.npz`` (uint8, for sweeps and ablations) on val, public and private;
- ``weights-bn.npz``: fp16 weights (BatchNorm unfolded, trainable) of the students and
  ablations whose fp16 export is under `KEEP_WEIGHTS_BELOW` bytes: the models the book
  and network slimming reload (sweep runs keep only their predictions, so that results/
  stays near 4 MB: the device tool carries the working tree beside the 62 MB data zip);
- ``train_logits.npz``: (ensembles) the teachers' averaged logits on every Training
  image and its mirror, which students distil from offline.

Beside the run folders, ``results/data_summary.json`` holds the data set's numbers
(class counts, pixel statistics, the validation split's class counts; never pixels), so
the book shows them on a clone without FER2013.

`load_or_train` returns the stored result when the hash matches, trains when it is
missing, and refuses a result whose config no longer matches its folder key.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import CLASS_NAMES, FER2013, data_summary
from .distill import CachedTeacher, average_logits, teacher_logits_with_flip
from .evaluate import accuracy, confusion_matrix, per_class_accuracy, predict_logits, to_input
from .models import build, count_flops, count_params, width_for_params
from .train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "results"
RUNS_DIR = REPO / "runs"            # checkpoints and big weights: ignored by git
DATA_SUMMARY = "data_summary.json"  # in RESULTS_DIR: see `write_data_summary`
KEEP_WEIGHTS_BELOW = 450_000        # fp16 bytes of a student/ablation whose weights are kept
EVAL_SETS = ("val", "public", "private")
SUMMARY_COLUMNS = ("run", "group", "family", "params", "bytes", "precision", "val_acc",
                   "public_acc", "private_acc", "flops", "seed", "width", "teacher")


class StaleResultError(RuntimeError):
    """A stored result whose config no longer hashes to its folder key."""


class MissingResultError(FileNotFoundError):
    """No stored result, and training was not allowed."""


@dataclass(frozen=True)
class Experiment:
    """One run of the catalogue.

    kind: "train" (the trainer), "ensemble" (combine `members`' logits; no training), or
        "cut" (slim `slim_from` by `slim_fraction` and score it as it is: no training).
    teacher: name of an experiment whose ``train_logits.npz`` the student distils from.
    slim_from / slim_fraction: start from that experiment's weights with this share of
        its expanded channels removed by network slimming, then fine-tune ("train") or
        not ("cut"); `train` then only fixes the validation split it is scored on.
    precision: the export precision the result is reported at (bytes, summary row).
    keep_logits: store float16 logits (True) or uint8 predictions (False).
    """

    name: str
    group: str
    train: TrainConfig = field(default_factory=TrainConfig)
    kind: str = "train"
    members: tuple[str, ...] = ()
    teacher: str | None = None
    slim_from: str | None = None
    slim_fraction: float = 0.0
    precision: str = "fp16"
    keep_logits: bool = False

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists: the JSON form

    @property
    def key(self) -> str:
        """Short content hash of the whole description (name included)."""
        return config_hash(self.to_dict())

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.key}"

    @property
    def needs(self) -> tuple[str, ...]:
        """Experiments that must finish first."""
        return tuple(self.members) + tuple(n for n in (self.teacher, self.slim_from) if n)


def config_hash(config: dict) -> str:
    """First 10 hex digits of the sha256 of the canonical JSON of `config`."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- the catalogue
SWEEP_TARGETS = (1_000, 4_000, 16_000, 64_000, 256_000, 1_000_000)
SWEEP_SEEDS = (0, 1, 2)
SWEEP_FAMILIES = {"mobilenet_v1": "sweep-mobilenet", "cnn": "sweep-cnn"}
# One recipe for every sweep point, so the two families differ only in architecture.
# Small models are bound by kernel-launch overhead on a GPU, where bf16 autocast only adds
# cast kernels: they train in fp32 (TF32 convolutions); the big teachers use bf16.
SWEEP_RECIPE = dict(epochs=30, batch_size=256, lr=0.1, weight_decay=5e-4, amp=False)
HW3_RECIPE = dict(epochs=50, batch_size=256, lr=0.1, weight_decay=5e-4, erase=0.5)
TEACHER_RECIPE = dict(HW3_RECIPE, epochs=36)
STUDENT_RECIPE = dict(epochs=50, batch_size=256, lr=0.1, weight_decay=4e-5, amp=False,
                      kd_temperature=4.0, kd_alpha=0.9)
# 27k parameters is the widest student whose int8 file fits the 32,768-byte tiny budget.
STUDENT_WIDTHS = {"100k": 100_000, "200k": 200_000, "27k": 27_000}
TEACHERS = ("teacher-vgg-s0", "teacher-vgg-s1", "teacher-vgg-s2")
ENSEMBLE = "teacher-ensemble"
CUT_FRACTIONS = (0.3, 0.5, 0.7)


def _student(size: str, *, kd: bool = True, precision: str = "int8", group: str = "student",
             suffix: str = "", **recipe) -> Experiment:
    width = round(width_for_params("mobilenet_v2", STUDENT_WIDTHS[size]), 4)
    cfg = TrainConfig(family="mobilenet_v2", model_args={"width": width},
                      **dict(STUDENT_RECIPE, **recipe))
    name = f"student-{size}{'-kd' if kd else '-nokd'}{suffix}"
    return Experiment(name, group, cfg, teacher=ENSEMBLE if kd else None,
                      precision=precision, keep_logits=group == "student")


def build_catalogue() -> dict[str, Experiment]:
    """Every experiment the book shows, by name."""
    exps = [Experiment("hw3-cnn", "hw3", TrainConfig(family="hw3_cnn", **HW3_RECIPE),
                       keep_logits=True, precision="fp32")]
    for name in TEACHERS:
        family, seed = name.split("-")[1], int(name[-1])
        exps.append(Experiment(name, "teacher", TrainConfig(family=family, seed=seed,
                                                            **TEACHER_RECIPE),
                               keep_logits=True, precision="fp32"))
    exps.append(Experiment(ENSEMBLE, "ensemble", kind="ensemble", members=TEACHERS,
                           keep_logits=True, precision="fp32"))
    for family, group in SWEEP_FAMILIES.items():
        for target in SWEEP_TARGETS:
            width = round(width_for_params(family, target), 4)
            for seed in SWEEP_SEEDS:
                cfg = TrainConfig(family=family, model_args={"width": width}, seed=seed,
                                  **SWEEP_RECIPE)
                exps.append(Experiment(f"{group}-{target // 1000}k-s{seed}", group, cfg))
    exps += [_student("100k"), _student("200k"), _student("27k"),
             _student("100k", kd=False, group="ablation-kd"),
             _student("200k", kd=False, group="ablation-kd"),
             _student("27k", kd=False, group="ablation-kd")]
    exps += [_student("100k", group="ablation-temperature", suffix=f"-T{t}", kd_temperature=t)
             for t in (1, 2, 8)]
    # Network slimming: sparsify a wider student's BatchNorm gammas, then cut and fine-tune.
    sparse = _student("200k", group="ablation-prune", suffix="-sparse", bn_l1=1e-4)
    exps.append(sparse)
    exps += [dataclasses.replace(sparse, name=f"student-200k-kd-slim{round(f * 100)}",
                                 slim_from=sparse.name, slim_fraction=f,
                                 train=dataclasses.replace(sparse.train, epochs=30, lr=0.01,
                                                           bn_l1=0.0))
             for f in (0.3, 0.5, 0.7)]
    # The contrast: the stored student (no L1 penalty) cut without any fine-tuning.
    student = next(e for e in exps if e.name == "student-200k-kd")
    exps += [Experiment(f"{student.name}-cut{round(f * 100)}", "ablation-cut", student.train,
                        kind="cut", slim_from=student.name, slim_fraction=f, precision="int8")
             for f in CUT_FRACTIONS]
    return {e.name: e for e in exps}


CATALOGUE = build_catalogue()


# ----------------------------------------------------------------------------- stored results
@dataclass
class Result:
    """A stored result: the experiment, its metrics and history, and where it lives."""

    experiment: Experiment
    metrics: dict
    history: list[dict]
    path: Path

    def logits(self) -> dict[str, np.ndarray]:
        """Stored float16 logits (float32 copies) or uint8 predictions, per eval set."""
        for fname in ("logits.npz", "predictions.npz"):
            if (self.path / fname).exists():
                with np.load(self.path / fname) as z:
                    return {k: z[k].astype(np.float32) if z[k].ndim == 2 else z[k] for k in z}
        raise MissingResultError(f"{self.path}: no logits.npz or predictions.npz")

    def model(self):
        """The stored model with its fp16 weights (only models small enough to commit)."""
        if not (self.path / "weights-bn.npz").exists():
            raise MissingResultError(f"{self.path}: weights of large models are not committed")
        return _load_unfolded(self)


def find_result(exp: Experiment, results_dir: Path = RESULTS_DIR) -> Result | None:
    """The stored result of `exp`, None if absent; StaleResultError if tampered or old."""
    results_dir = Path(results_dir)
    path = results_dir / exp.folder
    if not path.is_dir():
        stale = sorted(p.name for p in results_dir.glob(f"{exp.name}-*") if p.is_dir()
                       and p.name[len(exp.name) + 1:].isalnum() and len(p.name) == len(exp.folder))
        if stale:
            warnings.warn(f"stale result(s) for {exp.name!r} ignored (config changed): "
                          f"{', '.join(stale)}", stacklevel=2)
        return None
    stored = json.loads((path / "config.json").read_text())
    key = config_hash(stored["experiment"])
    if key != exp.key or stored.get("hash") != key:
        raise StaleResultError(f"{path}: its config.json hashes to {key}, not to the folder "
                               f"key {exp.key}; delete the folder and re-run")
    metrics = json.loads((path / "metrics.json").read_text())
    with open(path / "history.csv", newline="") as f:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return Result(exp, metrics, history, path)


def load_result(name: str, results_dir: Path = RESULTS_DIR) -> Result:
    """The stored result of catalogue entry `name`; never trains (what the book calls)."""
    if name not in CATALOGUE:
        raise KeyError(f"no experiment named {name!r} in the catalogue")
    result = find_result(CATALOGUE[name], results_dir)
    if result is None:
        raise MissingResultError(f"no stored result for {name!r} in {results_dir}; run "
                                 f"`fer reproduce --only {name}`")
    return result


def load_or_train(exp: Experiment, data: FER2013 | None = None, *,
                  results_dir: Path = RESULTS_DIR, runs_dir: Path = RUNS_DIR,
                  device: str | None = None, quiet: bool = False,
                  allow_train: bool = True) -> Result:
    """The stored result of `exp` if its hash matches, else train, store and return it.

    Training resumes from ``runs_dir/<folder>/checkpoint.pt`` after an interruption.
    """
    found = find_result(exp, results_dir)
    if found is not None:
        return found
    if not allow_train:
        raise MissingResultError(f"no stored result for {exp.name!r} and training is off")
    if data is None:
        from .data import load_fer2013
        data = load_fer2013()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(runs_dir) / exp.folder
    work.mkdir(parents=True, exist_ok=True)
    if exp.kind == "ensemble":
        files = _run_ensemble(exp, data, results_dir, runs_dir)
    elif exp.kind == "cut":
        files = _run_cut(exp, data, results_dir, work, device)
    else:
        files = _run_training(exp, data, results_dir, runs_dir, work, device, quiet)
    _store(exp, files, Path(results_dir))
    return find_result(exp, results_dir)


# ----------------------------------------------------------------------------- running
def _teacher_for(exp: Experiment, results_dir: Path) -> CachedTeacher | None:
    if exp.teacher is None:
        return None
    source = find_result(CATALOGUE[exp.teacher], results_dir) if exp.teacher in CATALOGUE else None
    if source is None or not (source.path / "train_logits.npz").exists():
        raise MissingResultError(f"{exp.name}: teacher {exp.teacher!r} has no stored "
                                 f"train_logits.npz; run it first")
    with np.load(source.path / "train_logits.npz") as z:
        return CachedTeacher(z["logits"].astype(np.float32))


def _start_model(exp: Experiment, results_dir: Path):
    if exp.slim_from is None:
        return None
    from .prune import slim

    source = find_result(CATALOGUE[exp.slim_from], results_dir)
    if source is None:
        raise MissingResultError(f"{exp.name}: {exp.slim_from!r} must be trained first")
    return slim(_load_unfolded(source), exp.slim_fraction)


def _load_unfolded(result: Result):
    """The fp16 weights of a stored result, in an unfolded (trainable) model."""
    with np.load(result.path / "weights-bn.npz") as z:
        state = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z}
    meta = json.loads((result.path / "config.json").read_text())["model"]
    model = build(meta["family"], **{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in meta["hparams"].items()})
    model.load_state_dict(state)
    return model.eval()


def _run_training(exp, data, results_dir, runs_dir, work, device, quiet) -> dict:
    teacher = _teacher_for(exp, results_dir)
    start = _start_model(exp, results_dir)
    res = train(exp.train, data, device=device, out_dir=work, resume=True, teacher=teacher,
                model=start, quiet=quiet)
    model = res.model
    metrics = dict(res.metrics)
    metrics.update(_class_metrics(res.logits, res.labels))
    metrics["flops"] = count_flops(model)
    metrics.update(_precision_metrics(model, data, res.config, work, device))
    files = {"history": res.history, "metrics": metrics, "logits": res.logits,
             "model": {"family": model.family, "hparams": model.hparams}}
    if exp.group == "teacher":
        # Teachers' logits on every Training image and its mirror, for the ensemble.
        images, _ = data.split("Training")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(device).startswith("cuda")):
            cache = teacher_logits_with_flip(model, to_input(torch.as_tensor(images)),
                                             device=device)
        np.save(work / "train_logits.npy", cache.astype(np.float16))
        model.cpu()
    if not exp.group.startswith("sweep") and metrics["bytes"]["fp16"] < KEEP_WEIGHTS_BELOW:
        files["weights"] = _fp16_weights(model)
    return files


def _fp16_weights(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float16)
            for k, v in model.state_dict().items() if v.dtype.is_floating_point}


def _run_cut(exp: Experiment, data: FER2013, results_dir: Path, work: Path, device) -> dict:
    """Slim a stored model and score it as it is (flip TTA), at every precision."""
    model = _start_model(exp, results_dir).to(device)
    sets = {"val": _val_of(data, exp.train), "public": data.split("PublicTest"),
            "private": data.split("PrivateTest")}
    logits = {name: predict_logits(model, x, tta=True, device=device)
              for name, (x, _) in sets.items()}
    labels = {name: np.asarray(y) for name, (_, y) in sets.items()}
    metrics: dict = {"params": count_params(model), "epochs": 0, "device": str(device),
                     "train_seconds": 0.0, "flops": count_flops(model)}
    metrics.update({f"{name}_acc": accuracy(logits[name], labels[name]) for name in sets})
    metrics.update(_class_metrics(logits, labels))
    metrics.update(_precision_metrics(model, data, exp.train, work, device))
    model.cpu()
    return {"history": [], "metrics": metrics, "logits": logits, "weights": _fp16_weights(model),
            "model": {"family": model.family, "hparams": model.hparams}}


def _precision_metrics(model, data: FER2013, cfg: TrainConfig, work: Path, device) -> dict:
    """Bytes of the exported file and accuracy of the quantised model at each precision."""
    from .quantize import PRECISIONS, export_npz, quantized_copy

    eval_sets = {"val": _val_of(data, cfg), "public": data.split("PublicTest"),
                 "private": data.split("PrivateTest")}
    out: dict = {"bytes": {}, "acc_by_precision": {}}
    for precision in PRECISIONS:
        out["bytes"][precision] = export_npz(model, work / f"model-{precision}.npz", precision)
        q = quantized_copy(model, precision).to(device)
        out["acc_by_precision"][precision] = {
            name: accuracy(predict_logits(q, images, tta=True, device=device), labels)
            for name, (images, labels) in eval_sets.items()}
    return out


def _val_of(data: FER2013, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The validation images and labels a run with config `cfg` selected its model on."""
    from .data import train_val_split

    images, labels = data.split("Training")
    _, val_rows = train_val_split(labels, cfg.val_fraction, cfg.split_seed)
    return images[val_rows], labels[val_rows]


def _class_metrics(logits: dict, labels: dict) -> dict:
    out = {}
    for name in ("public", "private"):
        pred = logits[name].argmax(axis=1)
        out[f"{name}_per_class"] = dict(zip(CLASS_NAMES, per_class_accuracy(pred, labels[name])
                                            .round(4).tolist(), strict=True))
        out[f"{name}_confusion"] = confusion_matrix(pred, labels[name]).tolist()
    return out


def _run_ensemble(exp: Experiment, data: FER2013, results_dir: Path, runs_dir: Path) -> dict:
    members = [find_result(CATALOGUE[m], results_dir) for m in exp.members]
    missing = [m for m, r in zip(exp.members, members, strict=True) if r is None]
    if missing:
        raise MissingResultError(f"{exp.name}: members not trained yet: {', '.join(missing)}")
    member_logits = [r.logits() for r in members]
    labels = {"val": _val_of(data, members[0].experiment.train)[1],
              "public": data.split("PublicTest")[1],
              "private": data.split("PrivateTest")[1]}
    logits = {s: average_logits(np.stack([m[s] for m in member_logits])) for s in EVAL_SETS}
    metrics = {f"{s}_acc": accuracy(logits[s], labels[s]) for s in EVAL_SETS}
    metrics.update(_class_metrics(logits, labels))
    metrics["params"] = int(sum(r.metrics["params"] for r in members))
    metrics["flops"] = int(sum(r.metrics["flops"] for r in members))
    metrics["bytes"] = {p: int(sum(r.metrics["bytes"][p] for r in members))
                        for p in members[0].metrics["bytes"]}
    caches = []
    for m in exp.members:
        path = Path(runs_dir) / CATALOGUE[m].folder / "train_logits.npy"
        if not path.exists():
            raise MissingResultError(f"{exp.name}: {path} is missing (teacher {m} was trained "
                                     f"elsewhere); re-run that teacher here")
        caches.append(np.load(path).astype(np.float32))
    train_logits = average_logits(np.stack(caches))
    return {"history": [], "metrics": metrics, "logits": logits, "train_logits": train_logits}


def _store(exp: Experiment, files: dict, results_dir: Path) -> None:
    """Write the result folder atomically: a temporary folder renamed into place."""
    results_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{exp.name}-", dir=results_dir))
    config = {"experiment": exp.to_dict(), "hash": exp.key}
    if "model" in files:
        config["model"] = json.loads(json.dumps(files["model"]))
    (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    (tmp / "metrics.json").write_text(json.dumps(files["metrics"], indent=1, sort_keys=True)
                                      + "\n")
    with open(tmp / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "loss", "val_acc", "lr", "seconds"])
        writer.writeheader()
        writer.writerows(files["history"])
    if exp.keep_logits:
        np.savez(tmp / "logits.npz",
                 **{k: v.astype(np.float16) for k, v in files["logits"].items()})
    else:
        np.savez(tmp / "predictions.npz",
                 **{k: v.argmax(axis=1).astype(np.uint8) for k, v in files["logits"].items()})
    if "weights" in files:
        np.savez(tmp / "weights-bn.npz", **files["weights"])
    if "train_logits" in files:
        np.savez(tmp / "train_logits.npz", logits=files["train_logits"].astype(np.float16))
    final = results_dir / exp.folder
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


# ----------------------------------------------------------------------------- summary
def summary_rows(results_dir: Path = RESULTS_DIR) -> list[dict]:
    """One row per stored catalogue result, at the precision it is reported at."""
    rows = []
    for exp in CATALOGUE.values():
        result = find_result(exp, results_dir)
        if result is None:
            continue
        m = result.metrics
        by_precision = m.get("acc_by_precision", {}).get(exp.precision)
        acc = by_precision or {s: m[f"{s}_acc"] for s in EVAL_SETS}
        trained = exp.kind != "ensemble"
        rows.append({"run": exp.name, "group": exp.group,
                     "family": exp.train.family if trained else "ensemble",
                     "params": m["params"], "bytes": m["bytes"][exp.precision],
                     "precision": exp.precision, "val_acc": round(acc["val"], 6),
                     "public_acc": round(acc["public"], 6),
                     "private_acc": round(acc["private"], 6), "flops": m["flops"],
                     "seed": exp.train.seed if trained else "",
                     "width": exp.train.model_args.get("width", 1.0) if trained else "",
                     "teacher": exp.teacher or ""})
    return rows


def write_summary(results_dir: Path = RESULTS_DIR) -> Path:
    """(Re)write ``results/summary.csv`` from the per-run folders."""
    path = Path(results_dir) / "summary.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(summary_rows(results_dir))
    return path


# ----------------------------------------------------------------------------- data summary
def write_data_summary(data: FER2013, results_dir: Path = RESULTS_DIR) -> Path:
    """(Re)write ``results/data_summary.json`` from the data set (`fer data-summary`)."""
    path = Path(results_dir) / DATA_SUMMARY
    path.write_text(json.dumps(data_summary(data), indent=1) + "\n")
    return path


def load_data_summary(results_dir: Path = RESULTS_DIR) -> dict:
    """The committed data summary (see :func:`fer_lib.data.data_summary`): no pixels needed."""
    path = Path(results_dir) / DATA_SUMMARY
    if not path.exists():
        raise MissingResultError(f"{path} is missing; with FER2013 at hand, run "
                                 "`fer data-summary --write`")
    return json.loads(path.read_text())
