"""Training configurations: a frozen `TrainConfig`, presets, and config files.

A run is a pure function of its `TrainConfig` (and the data): the experiment catalogue
hashes it to key stored results. Configs come from presets by name or from .json/.yaml
files; unknown keys and invalid values are refused by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .data import SPLIT_SEED, VAL_FRACTION
from .models import build


class ConfigError(ValueError):
    """A config names an unknown key, preset, family or an invalid value."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Frozen: a run is a pure function of it."""

    family: str = "mobilenet_v2"
    model_args: dict = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"          # "sgd" (Nesterov momentum) or "adamw"
    lr: float = 0.05                # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"        # "cosine" (with linear warm-up) or "onecycle"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    # augmentation, applied on the device
    shift: float = 4.0              # max translation, pixels
    flip: bool = True               # random horizontal flip
    rotate: float = 10.0            # max rotation, degrees
    scale: float = 0.1              # max relative zoom in or out
    erase: float = 0.25             # probability of random erasing per image
    # data
    val_fraction: float = VAL_FRACTION
    split_seed: int = SPLIT_SEED
    subset: int | None = None       # use a stratified subset of this many training images
    seed: int = 0
    # distillation (a teacher is passed to `train`) and network slimming
    kd_temperature: float = 4.0
    kd_alpha: float = 0.9
    bn_l1: float = 0.0              # L1 weight on BatchNorm gammas (slimming), 0 = off
    channels_last: bool = True
    amp: bool = True                # bf16 autocast on CUDA (ignored on CPU)
    # weight averaging: an exponential moving average of the weights with this decay per
    # step (0 = off) is what is validated, selected and kept (`fer_lib.averaging`)
    ema: float = 0.0
    # quantisation-aware fine-tuning (`fer_lib.qat`): the run starts from a stored network
    # (`Experiment.slim_from`), folds its BatchNorm and trains with its weights rounded as
    # the file at this precision stores them; "fp32": folded, unrounded (the control)
    qat: str = ""
    # unstructured magnitude pruning (`fer_lib.sparsity`): the run starts from a stored
    # network (`Experiment.slim_from`), zeroes this share of its smallest weights, ranked
    # as the file stores them (BatchNorm folded), and keeps them zero while it fine-tunes
    prune_sparsity: float = 0.0

    def __post_init__(self):
        _validate(self)

    def to_dict(self) -> dict:
        """The config as a plain dict: what checkpoints and result keys are made of.

        Fields added after results were stored (`LATER_FIELDS`) are left out while they
        hold their default, so adding an option changes no stored run's hash and no
        checkpoint's config: those runs did use the default.
        """
        return without_later_defaults(dataclasses.asdict(self), LATER_FIELDS)


def without_later_defaults(values: dict, later: dict) -> dict:
    """`values` without the fields of `later` (added after results were stored) that
    hold their default there: a stored description's hash stays what it was."""
    return {k: v for k, v in values.items() if k not in later or v != later[k]}


# Options added after the first results were stored, with their defaults (see to_dict).
LATER_FIELDS = {"ema": 0.0, "qat": "", "prune_sparsity": 0.0}


def _validate(cfg: TrainConfig) -> None:
    checks = {
        "epochs": cfg.epochs >= 1, "batch_size": cfg.batch_size >= 1, "lr": cfg.lr > 0,
        "optimizer": cfg.optimizer in ("sgd", "adamw"),
        "schedule": cfg.schedule in ("cosine", "onecycle"),
        "val_fraction": 0 < cfg.val_fraction < 1, "weight_decay": cfg.weight_decay >= 0,
        "label_smoothing": 0 <= cfg.label_smoothing < 1, "erase": 0 <= cfg.erase <= 1,
        "kd_temperature": cfg.kd_temperature > 0, "kd_alpha": 0 <= cfg.kd_alpha <= 1,
        "bn_l1": cfg.bn_l1 >= 0, "subset": cfg.subset is None or cfg.subset >= 7,
        "ema": 0 <= cfg.ema < 1, "qat": cfg.qat in ("", "fp32", "fp16", "int8", "int4"),
        "prune_sparsity": 0 <= cfg.prune_sparsity < 1,
        "model_args": isinstance(cfg.model_args, dict),
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise ConfigError(f"invalid config value for {bad[0]!r}: {getattr(cfg, bad[0])!r}")
    try:
        build(cfg.family, **cfg.model_args)
    except ValueError as err:
        raise ConfigError(str(err)) from None


# A student's first real model: the 100k MobileNetV1 of the design study on its short
# schedule (`catalogue.DESIGN_RECIPE`; a test keeps the two equal), so the book's stored
# runs of that recipe say what to expect: about 60 % private after 20 epochs, some 8
# minutes of training on 2 CPU cores. Its fp16 file fits the 225,000-byte budget.
QUICK = dict(family="mobilenet_v1", model_args={"width": 0.3446}, epochs=20, batch_size=256,
             lr=0.1, weight_decay=4e-5, amp=False)

PRESETS: dict[str, dict] = {
    # a seconds-long run on CPU, for checking the plumbing
    "smoke": dict(family="mobilenet_v2", model_args={"width": 0.25}, epochs=2, batch_size=64,
                  lr=0.05, warmup_epochs=0.2),
    "quick": QUICK,
    "student": dict(family="mobilenet_v2", epochs=60),
    "hw3_cnn": dict(family="hw3_cnn", epochs=60, lr=0.02),
    "teacher_vgg": dict(family="vgg", epochs=60, lr=0.02),
    "teacher_resnet": dict(family="resnet", epochs=60, lr=0.02),
    "mobilenet_v1": dict(family="mobilenet_v1", model_args={"width": 0.3}, epochs=40),
    "cnn": dict(family="cnn", model_args={"width": 0.1}, epochs=40),
}


def make_config(values: dict, source: str = "config") -> TrainConfig:
    """A TrainConfig from a dict, rejecting unknown keys by name."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown config key {unknown[0]!r}; known keys: "
                          f"{', '.join(sorted(known))}")
    return TrainConfig(**values)


def _read_config_file(path: Path):
    """The parsed content of a .json or .yaml file; a syntax error names the file."""
    raw = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            return json.loads(raw)
        import yaml

        return yaml.safe_load(raw)
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: not valid JSON: {err}") from None
    except Exception as err:  # yaml.YAMLError and its subclasses
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None


def load_config(name_or_path: str | os.PathLike, **overrides) -> TrainConfig:
    """A preset by name (see `PRESETS`) or a .json / .yaml file, with keyword overrides."""
    text = str(name_or_path)
    if text in PRESETS:
        values = dict(PRESETS[text])
    elif Path(text).suffix.lower() in (".json", ".yaml", ".yml") and Path(text).is_file():
        values = _read_config_file(Path(text))
        if not isinstance(values, dict):
            raise ConfigError(f"{text}: a config file must hold a mapping of keys to values")
        if "preset" in values:
            preset = values.pop("preset")
            if preset not in PRESETS:
                raise ConfigError(f"{text}: unknown preset {preset!r}; presets: "
                                  f"{', '.join(PRESETS)}")
            values = dict(PRESETS[preset], **values)
    else:
        raise ConfigError(f"unknown preset or config file {text!r}; presets: "
                          f"{', '.join(PRESETS)} (or a path to a .json/.yaml file)")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(values, source=text)
