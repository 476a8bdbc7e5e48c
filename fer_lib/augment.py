"""Batched augmentation on the device: shift, flip, rotation, zoom and random erasing.

One `grid_sample` call transforms a whole batch where it lives (CPU or GPU), instead of a
DataLoader that transforms one PIL image at a time. Random draws come in as a tensor,
so a seed gives the same augmentations on every device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import TrainConfig

AUGMENT_DRAWS = 10  # uniform random numbers each image's augmentation consumes


def mirrored(u: torch.Tensor, flip: bool) -> torch.Tensor:
    """Which draws (..., AUGMENT_DRAWS) mirror their image: bool (...), all False when
    `flip` is off. The one reading of the draw `augment` mirrors by."""
    return (u[..., 2] < 0.5) & flip


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
    flipped = mirrored(u, cfg.flip)
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
