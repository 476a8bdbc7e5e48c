"""Checkpoints that describe themselves, written atomically, and exact resumption.

A checkpoint holds the model's family and hyperparameters, the config, the weights of the
last and the best epoch, the optimizer, scheduler and every random stream, the history
and the library versions: a model rebuilds from the file alone, and a killed run
continues as if it had never stopped.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .models import build

CHECKPOINT_FORMAT = "fer_lib.checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt or not one of ours."""


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



def rng_states(gen: torch.Generator, device: torch.device) -> dict:
    """Every random stream a resumed run must continue: augmentation, dropout (CPU/CUDA)."""
    return {"generator": gen.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def training_state(model: nn.Module, config: dict, epoch: int, best: dict, opt, sched,
                   gen: torch.Generator, device: torch.device, history: list[dict],
                   average=None, best_plain: dict | None = None) -> dict:
    """Everything `restore` needs to continue a run after `epoch` epochs (with its weight
    average, `fer_lib.averaging.WeightAverage`, and the best plain iterate, when the run
    keeps one)."""
    extra = {} if average is None else {
        "average": average.state_dict(), "best_plain_model": best_plain["state"],
        "best_plain_val_acc": best_plain["val_acc"], "best_plain_epoch": best_plain["epoch"]}
    return extra | {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "family": model.family, "hparams": model.hparams, "config": config,
            "epoch": epoch, "model": model.state_dict(), "best_model": best["state"],
            "best_val_acc": best["val_acc"], "best_epoch": best["epoch"],
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": rng_states(gen, device), "history": history,
            "versions": library_versions()}


def restore(path: Path, config: dict, model: nn.Module, opt, sched, gen: torch.Generator,
            device: torch.device, average=None) -> tuple[list[dict], dict, int, dict | None]:
    """Load a checkpoint into a freshly built run; returns (history, best, epochs done,
    best plain iterate or None).

    `best` (and the best plain iterate of an averaged run) is ``{"val_acc", "epoch",
    "state"}``. Refuses a checkpoint written by another config: resuming it would
    silently train something else.
    """
    state = load_checkpoint(path)
    if state["config"] != config:
        raise CheckpointError(f"{path}: written by a different config; refusing to resume "
                              "(use a fresh output folder)")
    model.load_state_dict(state["model"])
    if average is not None:
        average.load_state_dict(state["average"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["rng"]["generator"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and state["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    best = {"val_acc": state["best_val_acc"], "epoch": state["best_epoch"],
            "state": state["best_model"]}
    best_plain = None
    if average is not None:
        best_plain = {"val_acc": state["best_plain_val_acc"],
                      "epoch": state["best_plain_epoch"], "state": state["best_plain_model"]}
    return state["history"], best, state["epoch"], best_plain
