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
from pathlib import Path

import numpy as np

from . import catalogue
from .catalogue import Experiment
from .config import ConfigError, TrainConfig, load_config, make_config
from .homework import folder_sizes
from .models import build, count_params, width_for_params
from .plan import TRAINING_ROWS, architecture_key, format_duration, load_probes
from .quantize import STRONG_BUDGET

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
