"""Weight averaging: an exponential moving average (EMA) of a model's weights.

SGD's last iterate jitters around a minimum by about the learning rate's step; an
average of the recent iterates sits nearer its centre, which often generalises better
(Polyak averaging; SWA reports +0.3 to +2 points on CIFAR at the same epoch budget,
``shared/reference/fer_recipes.md``). With ``TrainConfig.ema = d`` the trainer keeps

    average <- d * average + (1 - d) * weights        after every optimizer step,

validates the *average* after each epoch, selects the best epoch on it and keeps it. The
decay is warmed up as ``min(d, (1 + step) / (10 + step))`` so that the average is not
dominated by the random initial weights early in a run. BatchNorm's running statistics
are buffers, not weights: the average copies the model's, which track the recent
weights (re-estimating them for the averaged weights is the textbook refinement).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """An EMA of `model`'s floating-point parameters, as a model of its own (`.model`)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must lie in (0, 1), got {decay!r}")
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used for the update after `step` earlier updates (warmed up)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current weights; copy its buffers."""
        d = self.decay_at(self.steps)
        ours = [p for p in self.model.parameters()]
        theirs = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ours, theirs, 1 - d)
        for mine, buffer in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(buffer)
        self.steps += 1

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue the average exactly."""
        return {"model": self.model.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.steps = int(state["steps"])
