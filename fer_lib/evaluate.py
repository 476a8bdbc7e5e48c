"""Turning pixels into model inputs, and model outputs into the numbers the book reports."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# FER2013's pixel statistics (0-255 scale), the same in every split of a clean copy.
PIXEL_MEAN = 129.5
PIXEL_STD = 65.0


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 48, 48) or (N, 1, 48, 48) -> normalised float32 (N, 1, 48, 48)."""
    x = images if images.ndim == 4 else images.unsqueeze(1)
    return (x.float() - PIXEL_MEAN) / PIXEL_STD


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray | torch.Tensor, *, tta: bool = False,
                   batch_size: int = 1024, device: str | torch.device = "cpu",
                   channels_last: bool = False) -> np.ndarray:
    """Logits (N, 7) float32 for uint8 `images` (N, 48, 48).

    With ``tta=True`` the logits of each image and its mirror image are averaged
    (horizontal-flip test-time augmentation: faces are roughly symmetric).
    """
    model.eval()
    images = torch.as_tensor(images)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size].to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.is_cuda):
            logits = model(x).float()
            if tta:
                logits = (logits + model(torch.flip(x, dims=[3])).float()) / 2
        out.append(logits.cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 7), np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label."""
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray,
                     num_classes: int = 7) -> np.ndarray:
    """Counts (num_classes, num_classes) int64: row = true class, column = predicted class."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def per_class_accuracy(predictions: np.ndarray, labels: np.ndarray,
                       num_classes: int = 7) -> np.ndarray:
    """Recall of each class (num_classes,) float64; NaN for a class absent from `labels`."""
    counts = confusion_matrix(predictions, labels, num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(counts) / counts.sum(axis=1)
