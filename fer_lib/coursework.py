"""Your own run, from `fer train` to the folder you hand in: what it trains, what it will
cost and weigh before it starts, and whether what came out learned anything.

`fer train TARGET` takes a preset (``quick``, ``smoke``, ...), a .json/.yaml config file,
a catalogue run name (``long-200k-early``: exactly the book's run, with its teacher when
it distils) or a stored run's ``results/<run>-<hash>/config.json``. `--width` or
`--params` resize the model. Before any data is read it prints what the run will cost on
this CPU (from the recorded probes of `fer_lib.plan`) and what the graded folder will
weigh at each precision against the 225,000-byte budget (`homework.folder_sizes`); after
scoring, it warns when the accuracy is near what always answering the commonest class
would score.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import catalogue
from .catalogue import Experiment
from .checkpoint import load_checkpoint
from .config import ConfigError, TrainConfig, load_config, make_config
from .data import FER2013, evaluation_sets
from .evaluate import accuracy, score
from .experiments import trainer_inputs
from .homework import folder_sizes, read_submission, write_test_csv
from .models import build, count_params, width_for_params
from .plan import TRAINING_ROWS, architecture_key, format_duration, load_probes
from .quantize import PRECISIONS, STRONG_BUDGET
from .train import train

# An accuracy within this many points of the majority-class rate has learned little.
NEAR_MAJORITY = 0.05


def stored_experiment(target: str | os.PathLike) -> Experiment | None:
    """The book's run `target` names: a catalogue run name, or a stored result's
    ``config.json`` (the run exactly as it was trained); None for anything else (a preset
    or a config file of your own)."""
    text = str(target)
    if text in catalogue.experiments():
        return catalogue.get(text)
    path = Path(text)
    if path.name != "config.json" or not path.is_file():
        return None
    stored = json.loads(path.read_text())
    if not isinstance(stored, dict) or "experiment" not in stored:
        return None
    values = stored["experiment"]
    known = {f.name for f in dataclasses.fields(Experiment)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown experiment key {unknown[0]!r}")
    return Experiment(**{**values, "members": tuple(values.get("members", ())),
                         "train": make_config(values.get("train", {}), str(path))})


def resized(cfg: TrainConfig, width: float | None = None, params: int | None = None
            ) -> TrainConfig:
    """`cfg` with its model's width multiplier set to `width`, or fitted so the model has
    about `params` parameters (a sweep point); `cfg` itself when neither is given."""
    if width is not None and params is not None:
        raise ConfigError("--width and --params both size the model: give one of them")
    if params is not None:
        others = {k: v for k, v in cfg.model_args.items() if k != "width"}
        width = round(width_for_params(cfg.family, params, **others), 4)
    if width is None:
        return cfg
    if width <= 0:
        raise ConfigError(f"--width must be positive, got {width}")
    return make_config(dict(dataclasses.asdict(cfg), model_args={**cfg.model_args,
                                                                  "width": width}))


def training_target(target: str, *, width: float | None = None, params: int | None = None,
                    **overrides) -> tuple[TrainConfig, Experiment | None]:
    """(config, the book's run or None) of what `fer train TARGET` trains, with the
    command line's `overrides` (epochs, subset, seed: None leaves the value) and size."""
    exp = stored_experiment(target)
    if exp is None:
        cfg = load_config(target, **overrides)
    else:
        if exp.kind != "train":
            raise ConfigError(f"{exp.name} is an {exp.kind} of stored runs, not a training "
                              f"run: `fer reproduce --only {exp.name}` builds it")
        cfg = make_config(dict(dataclasses.asdict(exp.train),
                               **{k: v for k, v in overrides.items() if v is not None}))
    return resized(cfg, width, params), exp


def expected_seconds(cfg: TrainConfig, results_dir=None) -> tuple[float, str]:
    """(training seconds, how they were estimated) of `cfg` on this CPU: epochs x the
    images an epoch trains on x the recorded probe's seconds per image for its
    architecture (`fer_lib.plan`); NaN when no probe of that architecture is recorded."""
    rate = load_probes(results_dir)["rates"].get(architecture_key(Experiment("run", "", cfg)))
    if rate is None:
        return float("nan"), "no recorded CPU probe for this architecture"
    rows = cfg.subset or TRAINING_ROWS
    return cfg.epochs * rows * rate, f"a recorded probe: {rate * 1000:.2f} ms an image"


def start_report(name: str, cfg: TrainConfig, budget: int = STRONG_BUDGET) -> str:
    """What `fer train` says before it reads any data: the model, the expected training
    time on a CPU, and the graded folder's bytes at each precision against `budget`."""
    model = build(cfg.family, **cfg.model_args)
    rows = cfg.subset or round(TRAINING_ROWS)
    lines = [f"{name}: {cfg.family} {cfg.model_args or ''}, {count_params(model):,} "
             f"parameters; {cfg.epochs} epochs of {rows:,} images"]
    seconds, how = expected_seconds(cfg)
    if seconds == seconds:
        lines.append(f"expected on a CPU like the book's (2 cores): about "
                     f"{format_duration(seconds)} of training ({how}), then a minute or "
                     "more of scoring")
    else:
        lines.append(f"expected time: unknown ({how}); the bar estimates it after a few "
                     "batches")
    lines.append(f"the hw8 folder at each precision (budget {budget:,} B):")
    for precision, size in folder_sizes(model, name).items():
        verdict = "fits" if size.size <= budget else f"over by {size.size - budget:,} B"
        lines.append(f"  {precision:5s} {size.size:9,d} B  {verdict}")
    return "\n".join(lines)


def majority_rate(labels: np.ndarray, classes: int = 7) -> float:
    """The accuracy of always answering the commonest class of `labels` (int (N,))."""
    return float(np.bincount(np.asarray(labels), minlength=classes).max() / len(labels))


def learned_little(accuracy: float, labels: np.ndarray) -> str | None:
    """A warning when `accuracy` on `labels` is within `NEAR_MAJORITY` of the majority-class
    rate (a model that mostly answers one class), else None."""
    floor = majority_rate(labels)
    if accuracy > floor + NEAR_MAJORITY:
        return None
    return (f"warning: {accuracy:.1%} is close to the {floor:.1%} that always answering the "
            "commonest class scores: this model has learned little (too few epochs or "
            "images? `fer train quick` reaches about 60 %)")


def train_and_score(cfg: TrainConfig, data: FER2013, out: str | os.PathLike, *,
                    exp: Experiment | None = None, device: str | None = None,
                    resume: bool = False, quiet: bool = False) -> dict:
    """Train `cfg` into the folder `out` (``checkpoint.pt`` after every epoch; `exp`: the
    book's run it is, whose teacher or starting model it then uses), score its best
    epoch at every precision (progress on stderr) and write ``out/metrics.json``: the
    trainer's metrics, ``<set>_acc`` in float32 and ``acc_by_precision``. Returns them."""
    out = Path(out)
    teacher, start = trainer_inputs(exp, data, device or "cpu") if exp else (None, None)
    result = train(cfg, data, device=device, out_dir=out, resume=resume, teacher=teacher,
                   model=start, quiet=quiet)
    print(f"scoring the best epoch ({result.best_epoch}) at {', '.join(PRECISIONS)}",
          file=sys.stderr, flush=True)
    scores = score(result.model, evaluation_sets(data, cfg.val_fraction, cfg.split_seed),
                   PRECISIONS, device=device or "cpu",
                   log=None if quiet else lambda line: print(f"  {line}", file=sys.stderr,
                                                             flush=True))
    metrics = result.metrics | scores.headline() | {"acc_by_precision": scores.accuracy}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def own_runs(folder: str | os.PathLike) -> pd.DataFrame:
    """Your finished runs under `folder` (each a `fer train` folder with ``metrics.json``
    and ``checkpoint.pt``), one row each: ``run`` (folder name), ``family``, ``params``,
    ``epochs`` and the float32 ``val_acc``, ``public_acc``, ``private_acc``."""
    rows = []
    for metrics_file in sorted(Path(folder).glob("*/metrics.json")):
        state = load_checkpoint(metrics_file.with_name("checkpoint.pt"))
        metrics = json.loads(metrics_file.read_text())
        rows.append({"run": metrics_file.parent.name, "family": state["family"],
                     "params": metrics["params"], "epochs": metrics["epochs"],
                     **{f"{s}_acc": metrics[f"{s}_acc"] for s in ("val", "public", "private")}})
    columns = ["run", "family", "params", "epochs", "val_acc", "public_acc", "private_acc"]
    return pd.DataFrame(rows, columns=columns)


def end_report(metrics: dict, val_labels: np.ndarray, out: str | os.PathLike) -> str:
    """What `fer train` says at the end: the accuracies at each precision, a warning when
    the model learned little (`learned_little`), and how to hand it in."""
    lines = [f"\n{'precision':10s} {'val':>7s} {'public':>7s} {'private':>7s}"]
    lines += [f"{p:10s} {a['val']:7.1%} {a['public']:7.1%} {a['private']:7.1%}"
              for p, a in metrics["acc_by_precision"].items()]
    warning = learned_little(metrics["val_acc"], val_labels)
    lines += [warning] if warning else []
    return "\n".join(lines + [f"checkpoint and metrics in {out}; hand it in with: "
                               f"fer package {out} -o hw8"])


def run_hw8_folder(folder: str | os.PathLike, data: FER2013, per_half: int | None = None,
                   work: str | os.PathLike | None = None) -> dict:
    """Grade the hw8 `folder` as the course did: write a course-format ``test.csv``, run
    ``bash folder/hw8_test.sh test.csv out.csv`` (the folder's own numpy predictor) and
    score ``out.csv`` against `data`'s labels. `per_half`: only the first that many images
    of PublicTest and of PrivateTest (a quick check; None: all 7,178, minutes). Returns
    ``{"images", "seconds", "public", "private"}`` (accuracies as fractions)."""
    sets = evaluation_sets(data)
    halves = {name: sets[name] for name in ("public", "private")}
    if per_half is not None:
        halves = {n: (x[:per_half], y[:per_half]) for n, (x, y) in halves.items()}
    images = np.concatenate([x for x, _ in halves.values()])
    with tempfile.TemporaryDirectory(prefix="fer-grade-", dir=work) as tmp:
        test_csv, out_csv = Path(tmp) / "test.csv", Path(tmp) / "out.csv"
        write_test_csv(test_csv, images)
        start = time.perf_counter()
        subprocess.run(["bash", str(Path(folder) / "hw8_test.sh"), str(test_csv),
                        str(out_csv)], check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        predicted = read_submission(out_csv)
    n_public = len(halves["public"][1])
    return {"images": len(images), "seconds": seconds,
            "public": accuracy(predicted[:n_public], halves["public"][1]),
            "private": accuracy(predicted[n_public:], halves["private"][1])}
