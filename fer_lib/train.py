"""The one trainer every experiment uses, fast on CPU and CUDA.

Speed comes from keeping each split on the device as one uint8 tensor and augmenting
whole batches there (one `grid_sample` does shift, flip, rotation and scale), instead of
a DataLoader that decodes, transforms and collates one PIL image at a time.

Model selection uses the validation split only (carved from Training by
`data.train_val_split`); PublicTest and PrivateTest are evaluated once, at the end.

Checkpoints describe themselves (family, hyperparameters, config, optimizer, scheduler,
RNG states, history, library versions) and `resume` continues one exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm  # plain bars: tqdm.auto warns in Jupyter without ipywidgets

from . import __version__
from .data import FER2013, SPLIT_SEED, VAL_FRACTION, stratified_subset, train_val_split
from .distill import kd_loss
from .evaluate import accuracy, predict_logits, to_input
from .models import build, count_params
from .prune import bn_l1_penalty

CHECKPOINT_FORMAT = "fer_lib.checkpoint"
CHECKPOINT_VERSION = 1
EVAL_SPLITS = {"public": "PublicTest", "private": "PrivateTest"}


class ConfigError(ValueError):
    """A config names an unknown key, preset, family or an invalid value."""


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt or not one of ours."""


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

    def __post_init__(self):
        _validate(self)


def _validate(cfg: TrainConfig) -> None:
    checks = {
        "epochs": cfg.epochs >= 1, "batch_size": cfg.batch_size >= 1, "lr": cfg.lr > 0,
        "optimizer": cfg.optimizer in ("sgd", "adamw"),
        "schedule": cfg.schedule in ("cosine", "onecycle"),
        "val_fraction": 0 < cfg.val_fraction < 1, "weight_decay": cfg.weight_decay >= 0,
        "label_smoothing": 0 <= cfg.label_smoothing < 1, "erase": 0 <= cfg.erase <= 1,
        "kd_temperature": cfg.kd_temperature > 0, "kd_alpha": 0 <= cfg.kd_alpha <= 1,
        "bn_l1": cfg.bn_l1 >= 0, "subset": cfg.subset is None or cfg.subset >= 7,
        "model_args": isinstance(cfg.model_args, dict),
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise ConfigError(f"invalid config value for {bad[0]!r}: {getattr(cfg, bad[0])!r}")
    try:
        build(cfg.family, **cfg.model_args)
    except ValueError as err:
        raise ConfigError(str(err)) from None


PRESETS: dict[str, dict] = {
    # a seconds-long run on CPU, for checking the plumbing
    "smoke": dict(family="mobilenet_v2", model_args={"width": 0.25}, epochs=2, batch_size=64,
                  lr=0.05, warmup_epochs=0.2),
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


def load_config(name_or_path: str | os.PathLike, **overrides) -> TrainConfig:
    """A preset by name (see `PRESETS`) or a .json / .yaml file, with keyword overrides."""
    text = str(name_or_path)
    if text in PRESETS:
        values = dict(PRESETS[text])
    elif Path(text).suffix.lower() in (".json", ".yaml", ".yml") and Path(text).is_file():
        raw = Path(text).read_text()
        if text.endswith(".json"):
            values = json.loads(raw)
        else:
            import yaml
            values = yaml.safe_load(raw)
        if not isinstance(values, dict):
            raise ConfigError(f"{text}: a config file must hold a mapping of keys to values")
        values = dict(PRESETS[values.pop("preset")], **values) if "preset" in values else values
    else:
        raise ConfigError(f"unknown preset or config file {text!r}; presets: "
                          f"{', '.join(PRESETS)} (or a path to a .json/.yaml file)")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(values, source=text)


# ----------------------------------------------------------------------------- augmentation
AUGMENT_DRAWS = 10  # uniform random numbers each image's augmentation consumes


def augment(x: torch.Tensor, cfg: TrainConfig,
            u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Random shift, flip, rotation, zoom and erasing of a normalised batch (B, 1, 48, 48).

    `u` (B, AUGMENT_DRAWS) holds uniform [0, 1) draws on the batch's device; the trainer
    draws a whole epoch's worth at once from a seeded CPU generator, so a seed gives the
    same augmentations on CPU and GPU and no step waits for a host-to-device copy.
    Returns the batch and a bool tensor (B,) telling which images were mirrored.
    """
    b, _, h, w = x.shape
    angle = (u[:, 0] * 2 - 1) * math.radians(cfg.rotate)
    zoom = 1 + (u[:, 1] * 2 - 1) * cfg.scale
    flipped = (u[:, 2] < 0.5) & cfg.flip
    mirror = 1 - 2 * flipped.to(x.dtype)
    # affine_grid works in [-1, 1] coordinates: a shift of s pixels is 2 s / size
    tx = (u[:, 3] * 2 - 1) * cfg.shift * 2 / w
    ty = (u[:, 4] * 2 - 1) * cfg.shift * 2 / h
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * mirror, -sin, tx], 1),
                         torch.stack([sin * mirror, cos, ty], 1)], 1).to(x.dtype)
    grid = affine_grid(theta, h, w)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.erase > 0:
        x = random_erase(x, cfg.erase, u[:, 5:10])
    return x, flipped


def affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sampling grid (B, h, w, 2) of the affine maps `theta` (B, 2, 3).

    The same as ``F.affine_grid(theta, (B, 1, h, w), align_corners=False)``, written as
    broadcast multiply-adds over the pixel-centre coordinates: on a CPU, torch's own
    version (a batched matmul of tiny matrices) costs more than the resampling it feeds.
    """
    ys = ((torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1).view(1, h, 1)
    xs = ((torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1).view(1, 1, w)
    t = theta.view(-1, 6, 1, 1)
    gx = t[:, 0] * xs + t[:, 1] * ys + t[:, 2]
    gy = t[:, 3] * xs + t[:, 4] * ys + t[:, 5]
    return torch.stack([gx, gy], dim=-1)


def random_erase(x: torch.Tensor, p: float, u: torch.Tensor) -> torch.Tensor:
    """Zero (the data mean) one random rectangle of 2-20% of the area in a `p` share of images.

    `u` (B, 5): coin, area, aspect, top, left draws in [0, 1).
    """
    b, _, h, w = x.shape
    area = (0.02 + 0.18 * u[:, 1]) * h * w
    aspect = torch.exp((u[:, 2] * 2 - 1) * math.log(3.0))
    eh = torch.sqrt(area * aspect).clamp(1, h)
    ew = torch.sqrt(area / aspect).clamp(1, w)
    top = (u[:, 3] * (h - eh)).view(b, 1, 1)
    left = (u[:, 4] * (w - ew)).view(b, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    box = ((rows >= top) & (rows < top + eh.view(b, 1, 1))
           & (cols >= left) & (cols < left + ew.view(b, 1, 1)) & (u[:, 0] < p).view(b, 1, 1))
    return x.masked_fill(box.unsqueeze(1), 0.0)


# ----------------------------------------------------------------------------- optimisation
def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; no weight decay on biases and BatchNorm parameters."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step learning-rate schedule over the whole run."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ----------------------------------------------------------------------------- data on device
@dataclass
class DeviceSplits:
    """Each split as uint8 tensors on the device, plus Training-row indices for KD caches."""

    train_x: torch.Tensor       # (N, 1, 48, 48) uint8
    train_y: torch.Tensor       # (N,) int64
    train_rows: torch.Tensor    # (N,) int64 rows of the Training split (for cached teachers)
    val_x: torch.Tensor
    val_y: torch.Tensor
    test: dict                  # {"public": (images uint8 np, labels np), "private": ...}


def prepare_splits(data: FER2013, cfg: TrainConfig, device: torch.device) -> DeviceSplits:
    """Carve val out of Training (stratified, seeded) and move the train/val tensors."""
    images, labels = data.split("Training")
    train_rows, val_rows = train_val_split(labels, cfg.val_fraction, cfg.split_seed)
    if cfg.subset is not None:
        train_rows = train_rows[stratified_subset(labels[train_rows], cfg.subset, cfg.seed)]

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a).to(device)

    return DeviceSplits(
        train_x=put(images[train_rows][:, None]), train_y=put(labels[train_rows]),
        train_rows=put(train_rows.astype(np.int64)),
        val_x=put(images[val_rows][:, None]), val_y=put(labels[val_rows]),
        test={name: data.split(usage) for name, usage in EVAL_SPLITS.items()})


# ----------------------------------------------------------------------------- checkpoints
def library_versions() -> dict:
    return {"fer_lib": __version__, "torch": str(torch.__version__), "numpy": np.__version__,
            "python": platform.python_version()}


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically, so a run killed mid-write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate a checkpoint written by `train`; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, ...: all mean "not readable"
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a fer_lib checkpoint (no format tag "
                              f"{CHECKPOINT_FORMAT!r})")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r}, "
                              f"this fer_lib reads version {CHECKPOINT_VERSION}")
    return state


def model_from_checkpoint(state: dict, which: str = "best") -> nn.Module:
    """Rebuild the model a checkpoint describes, with its best (or last) weights."""
    model = build(state["family"], **state["hparams"])
    model.load_state_dict(state["best_model" if which == "best" else "model"])
    return model.eval()


# ----------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """What a run produces: the selected model, its history and its final evaluation."""

    model: nn.Module
    config: TrainConfig
    history: list[dict]
    metrics: dict              # accuracies, params, best epoch, seconds, device
    logits: dict               # {"val"|"public"|"private": (N, 7) float32, TTA applied}
    labels: dict               # the matching int64 labels


def train(cfg: TrainConfig, data: FER2013, *, device: str | torch.device | None = None,
          out_dir: str | os.PathLike | None = None, resume: bool = False, teacher=None,
          model: nn.Module | None = None, quiet: bool = False) -> TrainResult:
    """Train `cfg` on `data`; keep the epoch with the best val accuracy.

    teacher: optional callable ``teacher(x, rows, flipped) -> logits`` (see `distill`);
        with it the loss is `kd_loss` at ``cfg.kd_temperature`` / ``cfg.kd_alpha``.
    model: optional starting model (e.g. a pruned one to fine-tune); its `.family` and
        `.hparams` describe it in checkpoints. Default: ``build(cfg.family, **cfg.model_args)``.
    out_dir: where ``checkpoint.pt`` is written after every epoch; with ``resume=True``
        an existing checkpoint there is continued exactly.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # Fixed input shapes: let cuDNN time its algorithms once and keep the fastest.
    torch.backends.cudnn.benchmark = device.type == "cuda"
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = (model if model is not None else build(cfg.family, **cfg.model_args)).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    splits = prepare_splits(data, cfg, device)
    steps = math.ceil(len(splits.train_y) / cfg.batch_size)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps)
    if teacher is not None and hasattr(teacher, "to"):
        teacher = teacher.to(device)
    history: list[dict] = []
    best = {"val_acc": -1.0, "epoch": 0, "state": copy.deepcopy(model.state_dict())}
    ckpt_path = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    start_epoch = 0
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        if state["config"] != asdict(cfg):
            raise CheckpointError(f"{ckpt_path}: written by a different config; refusing to "
                                  f"resume (use a fresh out_dir)")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        history = state["history"]
        best = {"val_acc": state["best_val_acc"], "epoch": state["best_epoch"],
                "state": state["best_model"]}
        start_epoch = state["epoch"]

    bar = tqdm(range(start_epoch, cfg.epochs), disable=quiet, unit="epoch",
               desc=f"{cfg.family} {count_params(model):,} params", initial=start_epoch,
               total=cfg.epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        loss = train_one_epoch(model, splits, cfg, opt, sched, gen, teacher, memory_format)
        val_logits = predict_logits(model, splits.val_x, device=device,
                                    channels_last=cfg.channels_last)
        val_acc = accuracy(val_logits, splits.val_y.cpu().numpy())
        if val_acc > best["val_acc"]:
            best = {"val_acc": val_acc, "epoch": epoch + 1,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        history.append({"epoch": epoch + 1, "loss": loss, "val_acc": val_acc,
                        "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
        bar.set_postfix(loss=f"{loss:.3f}", val=f"{val_acc:.3f}")
        if ckpt_path is not None:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(ckpt_path, {
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                "family": model.family, "hparams": model.hparams, "config": asdict(cfg),
                "epoch": epoch + 1, "model": model.state_dict(), "best_model": best["state"],
                "best_val_acc": best["val_acc"], "best_epoch": best["epoch"],
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": rng_states(gen, device),
                "history": history, "versions": library_versions()})
    model.load_state_dict(best["state"])
    return finish(model, cfg, splits, history, best, device)


def rng_states(gen: torch.Generator, device: torch.device) -> dict:
    """Every random stream a resumed run must continue: augmentation, dropout (CPU/CUDA)."""
    return {"generator": gen.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def train_one_epoch(model, splits: DeviceSplits, cfg: TrainConfig, opt, sched, gen,
                    teacher, memory_format) -> float:
    """One pass over the shuffled training tensor; returns the mean loss."""
    model.train()
    device = splits.train_x.device
    order = torch.randperm(len(splits.train_y), generator=gen).to(device)
    draws = torch.rand(len(order), AUGMENT_DRAWS, generator=gen).to(device)
    total, seen = torch.zeros((), device=device), 0
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        if len(idx) < 2:  # BatchNorm cannot train on a single image
            continue
        x, flipped = augment(to_input(splits.train_x[idx]), cfg, draws[start:start + len(idx)])
        x = x.contiguous(memory_format=memory_format)
        y = splits.train_y[idx]
        amp = cfg.amp and device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
            if teacher is None:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            else:
                loss = kd_loss(logits, teacher(x, splits.train_rows[idx], flipped), y,
                               cfg.kd_temperature, cfg.kd_alpha, cfg.label_smoothing)
            if cfg.bn_l1 > 0:
                loss = loss + cfg.bn_l1 * bn_l1_penalty(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.detach() * len(idx)
        seen += len(idx)
    return float(total) / max(1, seen)


def finish(model, cfg: TrainConfig, splits: DeviceSplits, history, best, device) -> TrainResult:
    """Evaluate the selected model on val, public and private, with and without flip TTA."""
    sets = {"val": (splits.val_x, splits.val_y.cpu().numpy()), **splits.test}
    metrics: dict = {"params": count_params(model), "best_epoch": best["epoch"],
                     "epochs": cfg.epochs, "device": str(device),
                     "train_seconds": float(sum(h["seconds"] for h in history))}
    logits, labels = {}, {}
    for name, (images, y) in sets.items():
        plain = predict_logits(model, images, device=device, channels_last=cfg.channels_last)
        flip = predict_logits(model, images, tta=True, device=device,
                              channels_last=cfg.channels_last)
        metrics[f"{name}_acc_notta"] = accuracy(plain, y)
        metrics[f"{name}_acc"] = accuracy(flip, y)
        logits[name], labels[name] = flip, np.asarray(y)
    return TrainResult(model=model.cpu().eval(), config=cfg, history=history, metrics=metrics,
                       logits=logits, labels=labels)
