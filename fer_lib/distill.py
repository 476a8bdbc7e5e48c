"""Knowledge distillation (Hinton et al., 2015): a student learns a teacher's soft targets.

A *teacher* here is anything the trainer can ask for logits of the batch it is training
on: ``teacher(x, index, flipped) -> (B, 7) logits``, where `x` is the augmented,
normalised batch (B, 1, 48, 48), `index` the rows of the Training split it came from and
`flipped` whether each was mirrored. Two kinds:

- `EnsembleTeacher` (online): runs one or more networks on the same augmented batch.
- `CachedTeacher` (offline): looks up logits computed once for every Training image and
  its mirror image, so that a CPU student needs no teacher forward passes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float = 4.0, alpha: float = 0.9,
            label_smoothing: float = 0.0) -> torch.Tensor:
    """Hinton's distillation loss, averaged over the batch.

    ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``.
    The T^2 keeps the soft term's gradients on the same scale as the hard term's when T
    changes. Logits are (B, 7); targets are (B,) class indices.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    if student_logits.shape != teacher_logits.shape:  # kl_div would broadcast silently
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    # detach: the teacher is a fixed target, even when its logits come with a graph
    soft = F.kl_div(F.log_softmax(student_logits.float() / temperature, dim=1),
                    F.log_softmax(teacher_logits.detach().float() / temperature, dim=1),
                    reduction="batchmean", log_target=True) * temperature**2
    hard = F.cross_entropy(student_logits.float(), targets, label_smoothing=label_smoothing)
    return alpha * soft + (1.0 - alpha) * hard


def average_logits(logits: torch.Tensor | np.ndarray, mode: str = "probs"):
    """Combine teachers' logits of shape (teachers, ..., 7) into one set (..., 7).

    ``mode="probs"`` averages the softmax probabilities and returns their log (a valid
    logit vector); ``mode="logits"`` averages the raw logits.
    """
    is_numpy = isinstance(logits, np.ndarray)
    x = torch.as_tensor(logits).float()
    if mode == "probs":
        out = torch.log(torch.softmax(x, dim=-1).mean(dim=0).clamp_min(1e-12))
    elif mode == "logits":
        out = x.mean(dim=0)
    else:
        raise ValueError(f"mode must be 'probs' or 'logits', got {mode!r}")
    return out.numpy() if is_numpy else out


def choose_members(val_logits: dict[str, np.ndarray], labels: np.ndarray
                   ) -> list[tuple[str, float]]:
    """Ensemble members chosen on validation by greedy forward selection (Caruana et al.,
    2004, without replacement).

    `val_logits` maps each candidate to its (N, 7) validation logits, `labels` is (N,).
    Start from no member; each round adds the candidate whose addition gives the highest
    validation accuracy of the averaged probabilities (`average_logits`); stop when no
    addition raises it. Returns the path ``[(member, accuracy once it joined), ...]``
    (accuracy as a fraction), whose names are the members. Ties go to the candidate that
    comes first in `val_logits`, so the choice does not depend on chance.
    """
    if not val_logits:
        raise ValueError("choose_members needs at least one candidate")
    labels = np.asarray(labels)
    for name, logits in val_logits.items():
        if logits.shape != (len(labels), 7):
            raise ValueError(f"candidate {name!r}: validation logits of shape {logits.shape}, "
                             f"expected ({len(labels)}, 7) for {len(labels)} labels")
    path: list[tuple[str, float]] = []
    while len(path) < len(val_logits):
        chosen = [n for n, _ in path]
        # Scored exactly as the ensemble is: the arg-max of `average_logits`.
        scores = {n: float((average_logits(np.stack([val_logits[m] for m in (*chosen, n)]))
                            .argmax(1) == labels).mean())
                  for n in val_logits if n not in chosen}
        best = max(scores, key=scores.get)  # first of the ties, in candidate order
        if path and scores[best] <= path[-1][1]:
            break
        path.append((best, scores[best]))
    return path


class EnsembleTeacher(nn.Module):
    """Online teacher: the averaged output of several frozen networks on the same batch."""

    def __init__(self, models: list[nn.Module], mode: str = "probs"):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one teacher model")
        if mode not in ("probs", "logits"):
            raise ValueError(f"mode must be 'probs' or 'logits', got {mode!r}")
        self.members = nn.ModuleList(models).eval().requires_grad_(False)
        self.mode = mode

    def train(self, mode: bool = True):  # teachers stay in eval mode (frozen BatchNorm)
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, index=None, flipped=None) -> torch.Tensor:
        return average_logits(torch.stack([m(x).float() for m in self.members]), self.mode)


class CachedTeacher:
    """Offline teacher: logits of shape (N, 2, 7), [:, 0] for each image, [:, 1] mirrored.

    Because the cache holds only the plain and the mirrored view, the student's other
    augmentations (shift, rotation, erasing) see the teacher's view of the clean image:
    cheap, and close enough for small shifts.
    """

    def __init__(self, logits: np.ndarray | torch.Tensor):
        logits = torch.as_tensor(np.asarray(logits, dtype=np.float32))
        if logits.ndim != 3 or logits.shape[1:] != (2, 7):
            raise ValueError(f"cached teacher logits must be (N, 2, 7), got {tuple(logits.shape)}")
        self.logits = logits

    def to(self, device) -> CachedTeacher:
        self.logits = self.logits.to(device)
        return self

    def __call__(self, x: torch.Tensor, index: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        rows = self.logits[index.to(self.logits.device), flipped.long().to(self.logits.device)]
        return rows.to(x.device)  # next to the student's logits, wherever the cache lives


@torch.no_grad()
def teacher_logits_with_flip(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                             device: str | torch.device = "cpu") -> np.ndarray:
    """Logits (N, 2, 7) float32 of `model` on normalised `images` (N, 1, 48, 48) and mirrors.

    The cache that `CachedTeacher` reads; compute it once per teacher, average with
    `average_logits` over teachers for an ensemble.
    """
    model = model.eval().to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device).float()
        out.append(torch.stack([model(x), model(torch.flip(x, dims=[3]))], dim=1).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 2, 7), np.float32)
