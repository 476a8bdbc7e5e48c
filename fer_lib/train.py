"""The one trainer every experiment uses, fast on CPU and CUDA.

Speed comes from keeping the training rows on the device as one uint8 tensor and
augmenting whole batches there (`fer_lib.augment`), instead of a DataLoader that
decodes, transforms and collates one PIL image at a time.

Model selection uses the validation rows only (carved from Training by
`data.train_val_split`). The trainer never sees PublicTest or PrivateTest: every
reported accuracy comes from `fer_lib.evaluate.score`, after training.

On CPU, `fer_lib.fastpath` runs BatchNorm and its activation as fused C++ kernels and
keeps freed memory for the next step's activations: the same math, 2.5-3.7x the epoch
speed of eager PyTorch on 2 cores (`benchmarks/bench_train_cpu.py`; ``FER_FAST=0`` or
``train(..., fast=False)`` turns it off).

Checkpoints (`fer_lib.checkpoint`) describe themselves, and `resume` continues one
exactly.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm  # plain bars: tqdm.auto warns in Jupyter without ipywidgets

from . import fastpath
from .augment import AUGMENT_DRAWS, affine_grid, augment, random_erase  # noqa: F401
from .averaging import WeightAverage
from .checkpoint import (  # noqa: F401  (re-exported: the trainer's public face)
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    restore,
    save_checkpoint,
    training_state,
)
from .config import PRESETS, ConfigError, TrainConfig, load_config, make_config  # noqa: F401
from .data import FER2013, stratified_subset, train_val_split
from .distill import kd_loss
from .evaluate import accuracy, predict_logits, to_input
from .models import build, count_params
from .optim import make_optimizer, make_scheduler  # noqa: F401  (re-exported)
from .prune import bn_l1_penalty
from .sparsity import apply_masks, stored_magnitude_masks


# ----------------------------------------------------------------------------- data on device
@dataclass
class TrainingData:
    """The rows a run learns from and selects on, as uint8 tensors on the device.

    ``train_rows`` are the rows' indices in the Training split, which a cached teacher's
    logits are indexed by.
    """

    train_x: torch.Tensor       # (N, 1, 48, 48) uint8
    train_y: torch.Tensor       # (N,) int64
    train_rows: torch.Tensor    # (N,) int64
    val_x: torch.Tensor         # (M, 1, 48, 48) uint8
    val_y: torch.Tensor         # (M,) int64


def prepare_data(data: FER2013, cfg: TrainConfig, device: torch.device) -> TrainingData:
    """Carve val out of Training (stratified, seeded) and move both parts to the device."""
    images, labels = data.split("Training")
    train_rows, val_rows = train_val_split(labels, cfg.val_fraction, cfg.split_seed)
    if cfg.subset is not None:
        train_rows = train_rows[stratified_subset(labels[train_rows], cfg.subset, cfg.seed)]

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a).to(device)

    return TrainingData(train_x=put(images[train_rows][:, None]), train_y=put(labels[train_rows]),
                        train_rows=put(train_rows.astype(np.int64)),
                        val_x=put(images[val_rows][:, None]), val_y=put(labels[val_rows]))


# ----------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """What a run produces: the model of its best validation epoch, and how it got there.

    metrics: ``params``, ``epochs``, ``best_epoch`` (1-based), ``best_val_acc`` (plain
    float32 val accuracy at that epoch, the selection criterion), ``device`` and
    ``train_seconds``; with weight averaging (``cfg.ema``) also ``plain_best_epoch`` and
    ``plain_best_val_acc``.
    plain_model: with weight averaging, the plain SGD iterate of its own best validation
    epoch (the same run without the average: the variant it is measured against); None
    otherwise.
    """

    model: nn.Module
    config: TrainConfig
    history: list[dict]
    best_epoch: int
    metrics: dict
    plain_model: nn.Module | None = None


def train(cfg: TrainConfig, data: FER2013, *, device: str | torch.device | None = None,
          out_dir: str | os.PathLike | None = None, resume: bool = False, teacher=None,
          model: nn.Module | None = None, quiet: bool = False,
          fast: bool | None = None) -> TrainResult:
    """Train `cfg` on `data`'s Training rows; keep the epoch with the best val accuracy.

    teacher: optional callable ``teacher(x, rows, flipped) -> logits`` (see `distill`);
        with it the loss is `kd_loss` at ``cfg.kd_temperature`` / ``cfg.kd_alpha``. One with
        a ``draws`` method (`softlabels.StoredViewTeacher`) also picks each row's view.
    model: optional starting model (e.g. a pruned one to fine-tune); its `.family` and
        `.hparams` describe it in checkpoints. Default: ``build(cfg.family, **cfg.model_args)``.
    out_dir: where ``checkpoint.pt`` is written after every epoch; with ``resume=True``
        an existing checkpoint there is continued exactly.
    fast: the CPU fast path for channels_last runs (`fer_lib.fastpath`: the same math,
        fewer passes over memory; not in the config, as results change only by float
        rounding). None (default): on CPU unless the environment says ``FER_FAST=0``.
    """
    device, gen = _seeded(cfg, device)
    model = (model if model is not None else build(cfg.family, **cfg.model_args)).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    rows = prepare_data(data, cfg, device)
    masks = _pruned_at_start(model, cfg)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, math.ceil(len(rows.train_y) / cfg.batch_size))
    if teacher is not None and hasattr(teacher, "to"):
        teacher = teacher.to(device)
    # With weight averaging, the average is what is validated, selected and kept. The
    # plain iterate follows the very same trajectory (the average never feeds back into
    # training), so it is validated and selected too, as the measured variant without
    # averaging (`TrainResult.plain_model`), at no extra training cost.
    average = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    judged = average.model if average is not None else model
    ckpt_path = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    history, best, start_epoch, best_plain = _starting_point(
        model, cfg, opt, sched, gen, device, average, ckpt_path if resume else None)
    bar = _batch_bar(cfg, len(rows.train_y), start_epoch, quiet)
    with bar, fastpath.training(model, fastpath.wanted(device, fast) and cfg.channels_last):
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
            loss = train_one_epoch(model, rows, cfg, opt, sched, gen, teacher, memory_format,
                                   average, on_batch=bar.update, masks=masks)
            val_acc = _val_accuracy(judged, rows, cfg, device)
            best = _better(best, val_acc, epoch + 1, judged)
            row = {"epoch": epoch + 1, "loss": loss, "val_acc": val_acc,
                   "lr": opt.param_groups[0]["lr"]}
            if average is not None:
                row["plain_val_acc"] = _val_accuracy(model, rows, cfg, device)
                best_plain = _better(best_plain, row["plain_val_acc"], epoch + 1, model)
            history.append(row | {"seconds": time.perf_counter() - t0})
            bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{val_acc:.1%}")
            if ckpt_path is not None:
                ckpt_path.parent.mkdir(parents=True, exist_ok=True)
                save_checkpoint(ckpt_path, training_state(model, cfg.to_dict(), epoch + 1, best,
                                                          opt, sched, gen, device, history,
                                                          average, best_plain))
    return _result(model, cfg, history, best, device, best_plain)


def _pruned_at_start(model: nn.Module, cfg: TrainConfig) -> dict | None:
    """The masks of a run with ``cfg.prune_sparsity`` (None without), its pruned weights
    zeroed in `model`. Taken from the starting model, not from a checkpoint, so that a
    resumed run rebuilds the very same masks; the trainer zeroes those weights again after
    every step, so they stay zero."""
    if not cfg.prune_sparsity:
        return None
    masks = stored_magnitude_masks(model, cfg.prune_sparsity)
    apply_masks(model, masks)
    return masks


def _batch_bar(cfg: TrainConfig, rows: int, start_epoch: int, quiet: bool) -> tqdm:
    """The progress bar of a run over `rows` training images. It counts batches, not
    epochs: a student waiting on a 40-second epoch sees it move, and its time estimate
    settles after a few batches instead of a whole epoch."""
    steps = _steps_per_epoch(rows, cfg.batch_size)
    return tqdm(total=cfg.epochs * steps, initial=start_epoch * steps, disable=quiet,
                unit="batch", desc=f"epoch {start_epoch + 1}/{cfg.epochs}")


def _starting_point(model, cfg, opt, sched, gen, device, average, ckpt_path):
    """(history, best, epochs done, best plain iterate or None): a fresh run's, or those
    of the checkpoint at `ckpt_path` when it exists (restored into the run's objects)."""
    if ckpt_path is not None and ckpt_path.exists():
        return restore(ckpt_path, cfg.to_dict(), model, opt, sched, gen, device, average)
    best = {"val_acc": -1.0, "epoch": 0, "state": copy.deepcopy(model.state_dict())}
    return [], best, 0, (dict(best) if average is not None else None)


def _val_accuracy(model: nn.Module, rows: TrainingData, cfg: TrainConfig, device) -> float:
    """Plain float32 accuracy of `model` on the run's validation rows."""
    return accuracy(predict_logits(model, rows.val_x, device=device,
                                   channels_last=cfg.channels_last), rows.val_y.cpu().numpy())


def _seeded(cfg: TrainConfig, device) -> tuple[torch.device, torch.Generator]:
    """The run's device, with torch's global stream and the augmentation stream seeded."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # Fixed input shapes: let cuDNN time its algorithms once and keep the fastest.
    torch.backends.cudnn.benchmark = device.type == "cuda"
    torch.manual_seed(cfg.seed)
    return device, torch.Generator().manual_seed(cfg.seed)


def _better(best: dict, val_acc: float, epoch: int, judged: nn.Module) -> dict:
    """`best` (``{"val_acc", "epoch", "state"}``), or this epoch's if `val_acc` beats it."""
    if val_acc <= best["val_acc"]:
        return best
    return {"val_acc": val_acc, "epoch": epoch,
            "state": {k: v.detach().clone() for k, v in judged.state_dict().items()}}


def _result(model: nn.Module, cfg: TrainConfig, history: list[dict], best: dict,
            device: torch.device, best_plain: dict | None = None) -> TrainResult:
    """`model` with the best epoch's weights loaded (and, for an averaged run, a copy
    with the best plain iterate's), and the run's metrics."""
    plain = None
    if best_plain is not None:
        plain = copy.deepcopy(model)
        plain.load_state_dict(best_plain["state"])
    model.load_state_dict(best["state"])
    metrics = {"params": count_params(model), "epochs": cfg.epochs,
               "best_epoch": best["epoch"], "best_val_acc": best["val_acc"],
               "device": str(device),
               "train_seconds": float(sum(h["seconds"] for h in history))}
    if best_plain is not None:
        metrics |= {"plain_best_epoch": best_plain["epoch"],
                    "plain_best_val_acc": best_plain["val_acc"]}
    return TrainResult(model=model.cpu().eval(), config=cfg, history=history,
                       best_epoch=best["epoch"], metrics=metrics,
                       plain_model=None if plain is None else plain.cpu().eval())


def _steps_per_epoch(rows: int, batch_size: int) -> int:
    """Batches `train_one_epoch` makes of `rows` (a last batch of one image is skipped)."""
    return rows // batch_size + (rows % batch_size >= 2)


def train_one_epoch(model, splits: TrainingData, cfg: TrainConfig, opt, sched, gen,
                    teacher, memory_format, average: WeightAverage | None = None,
                    on_batch=None, masks: dict | None = None) -> float:
    """One pass over the shuffled training tensor; returns the mean loss. `average`, if
    given, is updated after every optimizer step; `on_batch()`, if given, is called after
    every batch (the progress bar); `masks` (`fer_lib.sparsity`), if given, zero the
    pruned weights again after every step (momentum and weight decay would move them)."""
    model.train()
    device = splits.train_x.device
    order = torch.randperm(len(splits.train_y), generator=gen).to(device)
    views = None  # a soft-label store's teacher: which stored view each row replays
    if hasattr(teacher, "draws"):
        draws, views = (t.to(device) for t in teacher.draws(splits.train_rows[order], gen, cfg))
    else:  # the stream every other run has always drawn
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
                extra = () if views is None else (views[start:start + len(idx)],)
                loss = kd_loss(logits, teacher(x, splits.train_rows[idx], flipped, *extra), y,
                               cfg.kd_temperature, cfg.kd_alpha, cfg.label_smoothing)
            if cfg.bn_l1 > 0:
                loss = loss + cfg.bn_l1 * bn_l1_penalty(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if masks is not None:
            apply_masks(model, masks)
        if average is not None:
            average.update(model)
        total += loss.detach() * len(idx)
        seen += len(idx)
        if on_batch is not None:
            on_batch()
    return float(total) / max(1, seen)
