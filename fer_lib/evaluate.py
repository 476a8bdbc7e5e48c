"""Turning pixels into model inputs, and model outputs into the numbers the book reports.

Every accuracy a run reports comes from :func:`score`, in float32 on every device: the
precision named in a result (fp32, fp16, int8, int4) is the precision of the *weights*
(see :mod:`fer_lib.quantize`), never of the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# Images per forward pass when scoring: small enough that a 48 x 48 batch's activations
# stay in a CPU's caches (256 was faster than 512 on 2 cores).
SCORE_BATCH = 256
# FER2013's pixel statistics (0-255 scale), the same in every split of a clean copy.
PIXEL_MEAN = 129.5
PIXEL_STD = 65.0


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 48, 48) or (N, 1, 48, 48) -> normalised float32 (N, 1, 48, 48)."""
    x = images if images.ndim == 4 else images.unsqueeze(1)
    return (x.float() - PIXEL_MEAN) / PIXEL_STD


def predict_views(model: nn.Module, images: np.ndarray | torch.Tensor, *,
                  batch_size: int = 512, device: str | torch.device = "cpu",
                  channels_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Float32 logits (N, 7) of each uint8 image (N, 48, 48) and of its mirror image.

    One forward pass per batch scores both views (the batch and its mirror stacked), and
    the model is moved to `device` with its inputs. No autocast: float32 on every device.
    """
    both = _logits(model, images, mirror=True, batch_size=batch_size, device=device,
                   channels_last=channels_last)
    return both[:, 0], both[:, 1]


def predict_logits(model: nn.Module, images: np.ndarray | torch.Tensor, *, tta: bool = False,
                   batch_size: int = 512, device: str | torch.device = "cpu",
                   channels_last: bool = False) -> np.ndarray:
    """Float32 logits (N, 7) for uint8 `images` (N, 48, 48).

    With ``tta=True`` the logits of each image and its mirror image are averaged
    (horizontal-flip test-time augmentation: faces are roughly symmetric).
    """
    if not tta:
        return _logits(model, images, mirror=False, batch_size=batch_size, device=device,
                       channels_last=channels_last)
    plain, mirrored = predict_views(model, images, batch_size=batch_size, device=device,
                                    channels_last=channels_last)
    return (plain + mirrored) / 2


def shifted_images(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """uint8 images (N, 48, 48) moved `dx` pixels right and `dy` down (negative: left,
    up); the edge pixels are repeated into the gap, as the trainer's shifts do (border
    padding in `fer_lib.augment`). Integer shifts move pixels exactly: no resampling."""
    images = np.asarray(images)
    s = max(abs(dx), abs(dy))
    padded = np.pad(images, ((0, 0), (s, s), (s, s)), mode="edge")
    h, w = images.shape[1:]
    return padded[:, s - dy:s - dy + h, s - dx:s - dx + w]


def shift_offsets(shift: int) -> tuple[tuple[int, int], ...]:
    """The (dx, dy) positions of `predict_shifted`: the image itself, then `shift` pixels
    right, left, down and up."""
    return ((0, 0), (shift, 0), (-shift, 0), (0, shift), (0, -shift))


def predict_shifted(model: nn.Module, images: np.ndarray, shift: int, *,
                    batch_size: int = SCORE_BATCH, device: str | torch.device = "cpu",
                    channels_last: bool = True) -> np.ndarray:
    """Float32 logits (N, 7) of uint8 `images` (N, 48, 48) averaged over ten views: the
    flip-TTA logits (`predict_logits` with ``tta=True``) at each of the five positions of
    `shift_offsets`. ``shift=0`` is plain flip TTA. Costs five times flip TTA."""
    if shift < 0:
        raise ValueError(f"shift must be a number of pixels >= 0, got {shift!r}")
    offsets = shift_offsets(shift) if shift else ((0, 0),)
    return np.mean([predict_logits(model, shifted_images(images, dx, dy), tta=True,
                                   batch_size=batch_size, device=device,
                                   channels_last=channels_last)
                    for dx, dy in offsets], axis=0)


@torch.no_grad()
def _logits(model, images, *, mirror: bool, batch_size, device, channels_last) -> np.ndarray:
    """(N, 7) float32 logits, or (N, 2, 7) with each mirror image's beside (`mirror`)."""
    model = model.to(device).eval()
    if channels_last:  # the layout oneDNN's depthwise kernels want: ~5x faster on a CPU
        model = model.to(memory_format=torch.channels_last)
    images = torch.as_tensor(images)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size].to(device))
        if mirror:
            x = torch.cat([x, torch.flip(x, dims=[3])])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x).float().cpu()
        out.append(torch.stack(logits.chunk(2), dim=1) if mirror else logits)
    if not out:
        return np.zeros((0, 2, 7) if mirror else (0, 7), np.float32)
    return torch.cat(out).numpy()


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose prediction equals the label.

    `outputs`: logits (N, 7), predicted by their arg-max, or class predictions (N,) (what
    runs without kept logits store).
    """
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    outputs = np.asarray(outputs)
    predictions = outputs.argmax(axis=1) if outputs.ndim == 2 else outputs
    return float((predictions == np.asarray(labels)).mean())


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


@dataclass
class Scores:
    """What :func:`score` measures of one model.

    accuracy: ``{precision: {set: accuracy}}`` with flip TTA, weights at that precision.
    plain: ``{set: accuracy}`` of the float32 model without TTA.
    logits: ``{set: (N, 7) float32}``, the float32 model's TTA logits.
    labels: ``{set: (N,) int64}``.
    """

    accuracy: dict[str, dict[str, float]]
    plain: dict[str, float]
    logits: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    def headline(self) -> dict[str, float]:
        """The float32 numbers a run's metrics lead with: ``<set>_acc`` (flip TTA) and
        ``<set>_acc_notta`` for each set."""
        return ({f"{s}_acc": acc for s, acc in self.accuracy["fp32"].items()}
                | {f"{s}_acc_notta": acc for s, acc in self.plain.items()})


def score(model: nn.Module, sets: dict[str, tuple[np.ndarray, np.ndarray]],
          precisions: tuple[str, ...] = ("fp32",), *,
          device: str | torch.device = "cpu", log=None) -> Scores:
    """Accuracy of `model` on each evaluation set, with its weights at each precision.

    `sets` maps a name to ``(images uint8 (N, 48, 48), labels int (N,))``, e.g.
    :func:`fer_lib.data.evaluation_sets`. "fp32" is the model as it is; the others are
    :func:`fer_lib.quantize.quantized_copy` (BatchNorm folded, weights rounded). The
    arithmetic is float32 everywhere, channels-last (on a CPU about five times faster
    than NCHW for depthwise layers; the logits agree to about 1e-6). `log`, if given, is
    called with a line after each set is scored (scoring takes minutes on a CPU).
    """
    from .quantize import quantized_copy

    if "fp32" not in precisions:
        raise ValueError(f"score needs 'fp32' among the precisions, got {precisions}")
    logits, plain, by_precision = {}, {}, {}
    labels = {name: np.asarray(y) for name, (_, y) in sets.items()}
    for precision in precisions:
        q = model if precision == "fp32" else quantized_copy(model.cpu(), precision)
        by_precision[precision] = {}
        for name, (images, y) in sets.items():
            views = predict_views(q, images, device=device, batch_size=SCORE_BATCH,
                                  channels_last=True)
            tta = (views[0] + views[1]) / 2
            by_precision[precision][name] = accuracy(tta, y)
            if log is not None:
                log(f"scored {precision} weights on {name} ({len(y):,} images, each with "
                    f"its mirror): {by_precision[precision][name]:.1%}")
            if precision == "fp32":
                logits[name], plain[name] = tta, accuracy(views[0], y)
    model.cpu()
    return Scores(by_precision, plain, logits, labels)
