"""What a command's TARGET names: a checkpoint, an exported model, a stored run folder or
a catalogue run, resolved to the model (or the stored run) and the split it was trained on.

`fer evaluate` and `fer int8` take the same targets, so they read them here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from . import catalogue
from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import SPLIT_SEED, VAL_FRACTION
from .evaluate import accuracy
from .quantize import PRECISIONS, load_model
from .store import Result, load_result, result_at


@dataclass
class Target:
    """A resolved TARGET. `model`: the network (eval mode), or the stored `Result` of a run
    whose weights are not committed; `split`: (val_fraction, split_seed) it was trained
    with; `precisions`: those to score; `description`: one line naming what it is."""

    model: nn.Module | Result
    split: tuple[float, int]
    precisions: tuple[str, ...]
    description: str


def resolve_target(target: str, precision: str | None = None) -> Target:
    """The `Target` that the string `target` names; FileNotFoundError if none."""
    path = Path(target)
    wanted = (precision,) if precision else PRECISIONS
    if path.suffix == ".pt":
        state = load_checkpoint(path)
        split = (state["config"]["val_fraction"], state["config"]["split_seed"])
        return Target(model_from_checkpoint(state), split, wanted,
                      f"{path}: {state['family']} {state['hparams']}, epoch {state['epoch']}, "
                      f"best val epoch {state['best_epoch']}")
    if path.suffix == ".npz" and path.is_file():
        return Target(load_model(path), (VAL_FRACTION, SPLIT_SEED), ("fp32",),
                      f"{path}: exported model, weights as stored in the file")
    if path.is_dir():
        result = result_at(path)
    elif target in catalogue.experiments():
        result = load_result(target)
    else:
        raise FileNotFoundError(f"{target}: not a checkpoint (.pt), an exported model (.npz), "
                                "a result folder or a catalogue run name")
    exp = result.experiment
    return Target(result.model() if result.has_weights() else result,
                  (exp.train.val_fraction, exp.train.split_seed), wanted,
                  f"{exp.name} ({result.path}), reported at {exp.precision}")


def stored_output_lines(result: Result, sets: dict) -> list[str]:
    """A run without committed weights: its stored outputs scored against the labels of
    `sets` (`data.evaluation_sets`), as lines of a table."""
    outputs = result.logits()
    accs = {name: accuracy(outputs[name], labels) for name, (_, labels) in sets.items()}
    exp = result.experiment
    # The stored outputs are the float32 model's (flip TTA): its other precisions' scores
    # are in metrics.json, and cannot be recomputed without the weights.
    return [f"{exp.name} ({result.path}): no weights committed; its stored "
            f"{'logits' if exp.keep_logits else 'predictions'} scored against the labels "
            f"(measured as: {result.metrics.get('scoring', 'unknown')})",
            f"{'precision':14s} {'val':>7s} {'public':>7s} {'private':>7s}",
            f"{'fp32':14s} {accs['val']:7.4f} {accs['public']:7.4f} {accs['private']:7.4f}"]
