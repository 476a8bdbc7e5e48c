"""Network slimming (Liu et al., 2017): sparsify BatchNorm scales, then cut channels.

Step 1 trains with an L1 penalty on BatchNorm gammas (`bn_l1_penalty`, added by the
trainer when ``TrainConfig.bn_l1 > 0``). Step 2 (`slim`) removes the hidden channels
of MobileNetV2's inverted-residual blocks whose gammas ended up smallest, giving a
smaller dense model. Step 3 fine-tunes it with the same trainer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fer_lib import models
from fer_lib.models import InvertedResidual  # the unit slimming cuts inside
from fer_lib.optim import make_scheduler


def bn_l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |gamma| over every BatchNorm2d in `model` (a scalar tensor)."""
    gammas = [m.weight.abs().sum() for m in model.modules()
              if isinstance(m, nn.BatchNorm2d) and m.weight is not None]
    return torch.stack(gammas).sum() if gammas else torch.zeros(())


def l1_pull(cfg, training_images: int) -> float:
    """How far the L1 penalty alone moves one BatchNorm gamma over a run of `cfg`.

    The penalty's gradient is ``cfg.bn_l1 * sign(gamma)``, a constant while gamma keeps
    its sign; SGD with momentum mu (Nesterov or not) turns a constant gradient g into
    steps of lr * g / (1 - mu), so the pull is ``bn_l1 * sum(lr over all steps) /
    (1 - momentum)`` (dimensionless, like gamma). `training_images` per epoch sets the
    steps (``ceil(images / batch_size)``); the schedule is the trainer's own. A pull
    above a gate's size (about 1 after training without the penalty) lets the penalty
    take an unneeded channel to zero; the loss's own gradient holds the others.
    """
    if cfg.optimizer != "sgd":
        raise ValueError(f"l1_pull models SGD with momentum, not {cfg.optimizer!r}")
    steps = math.ceil(training_images / cfg.batch_size)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    schedule = make_scheduler(opt, cfg, steps)
    total = 0.0
    for _ in range(cfg.epochs * steps):
        total += opt.param_groups[0]["lr"]
        opt.step()
        schedule.step()
    return cfg.bn_l1 * total / (1.0 - cfg.momentum)


# --- Step 2: cut the channels whose gates are near zero -----------------------------------
def _expanded_blocks(model: nn.Module) -> list[tuple[int, InvertedResidual]]:
    """(index in the model, block) of every InvertedResidual that has an expansion conv."""
    family = getattr(model, "family", None)
    if family != "mobilenet_v2":
        raise ValueError(f"network slimming supports the mobilenet_v2 family only, got {family!r}")
    return [(i, m) for i, m in enumerate(model) if isinstance(m, InvertedResidual)
            and len(m.block) == 3]


def _gate(block: InvertedResidual) -> nn.BatchNorm2d:
    """The BatchNorm that gates each hidden channel on its way into the projection.

    The depthwise conv's BN, not the expansion's: with gamma = 0 its output is the
    constant ReLU6(beta), which `slim` folds exactly into the projection. A zero gamma
    on the expansion BN still leaves the depthwise BN's bias (and zero padding) behind.
    """
    return block.block[1][1]


def gamma_summary(model: nn.Module) -> dict[int, np.ndarray]:
    """|gamma| float32 (hidden,) of each expanded block's gate, keyed by block index.

    What `slim` ranks; plot them to see how far the L1 penalty pushed them to zero.
    """
    return {i: _gate(b).weight.detach().abs().cpu().float().numpy()
            for i, b in _expanded_blocks(model)}


def _keep_masks(gammas: dict[int, np.ndarray], fraction: float,
                min_channels: int) -> dict[int, np.ndarray]:
    """Boolean keep-mask per block: drop the globally smallest `fraction` of all gammas,
    but never take a block below `min_channels` (or below its own width)."""
    keys = list(gammas)
    flat = np.concatenate([gammas[k] for k in keys])
    owner = np.concatenate([np.full(len(gammas[k]), j) for j, k in enumerate(keys)])
    left = np.array([len(gammas[k]) for k in keys])
    floor = np.minimum(left, min_channels)
    drop = np.zeros(len(flat), dtype=bool)
    target = int(round(fraction * len(flat)))
    for idx in np.argsort(flat, kind="stable"):
        if drop.sum() == target:
            break
        if left[owner[idx]] > floor[owner[idx]]:
            drop[idx], left[owner[idx]] = True, left[owner[idx]] - 1
    bounds = np.cumsum([0] + [len(gammas[k]) for k in keys])
    return {k: ~drop[bounds[j]:bounds[j + 1]] for j, k in enumerate(keys)}


def _slim_block(state: dict[str, torch.Tensor], prefix: str, keep: torch.Tensor) -> None:
    """Cut a block's hidden channels to `keep` in `state` (its state dict), in place.

    Dropped channels are treated as if their gate gamma were exactly zero: each then
    feeds the constant ReLU6(beta) into the 1x1 projection, which the projection's BN
    absorbs by shifting its running mean, so eval outputs change only by the dropped
    channels' gamma-weighted part.
    """
    expand, dw, proj = (f"{prefix}.block.{j}" for j in range(3))
    dropped = ~keep
    constant = torch.clamp(state[f"{dw}.1.bias"][dropped], 0.0, 6.0)  # ReLU6(beta)
    state[f"{proj}.1.running_mean"] -= (state[f"{proj}.0.weight"][:, dropped, 0, 0]
                                        @ constant)
    state[f"{proj}.0.weight"] = state[f"{proj}.0.weight"][:, keep]
    for key in [k for k in state if k.startswith((f"{expand}.", f"{dw}."))]:
        if state[key].ndim > 0:  # every per-channel tensor; not num_batches_tracked
            state[key] = state[key][keep]


def slim(model: nn.Module, fraction: float, min_channels: int = 2) -> nn.Module:
    """Network slimming: a smaller dense mobilenet_v2 without the weakest hidden channels.

    Ranks |gamma| of every expanded block's gate BN (`gamma_summary`) globally, removes
    the lowest `fraction` (in [0, 1)) of those channels, keeping at least
    `min_channels` per block, and returns ``models.build("mobilenet_v2", **hparams,
    hidden=...)`` with the surviving weights copied in. Blocks without an expansion
    conv keep ``hidden == cin``. The result carries ``.family``/``.hparams`` and
    should be fine-tuned with the trainer before use.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction!r}")
    if min_channels < 1:
        raise ValueError(f"min_channels must be at least 1, got {min_channels!r}")
    masks = _keep_masks(gamma_summary(model), fraction, min_channels)
    hidden = [int(masks[i].sum()) if i in masks else m.block[0][0].in_channels
              for i, m in enumerate(model) if isinstance(m, InvertedResidual)]
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for i, keep in masks.items():
        _slim_block(state, str(i), torch.from_numpy(keep).to(state[f"{i}.block.0.0.weight"].device))
    slimmed = models.build("mobilenet_v2", **{**model.hparams, "hidden": tuple(hidden)})
    slimmed.load_state_dict(state)
    return slimmed.to(next(model.parameters()).device).train(model.training)
