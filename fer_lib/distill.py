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

from dataclasses import dataclass

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


def describe_teacher(name: str) -> str:
    """Catalogue teacher `name` in words: "the ensemble of three VGG teachers" (one
    family), "the ensemble of four teachers (three VGG, one ResNet)" (mixed), "the VGG
    teacher teacher-vgg-s0" (a single network); one scored on shifted views says so ("...,
    each scoring a face and its four 2-pixel shifts"). An ensemble that chooses its members on
    validation is described by the members its stored result kept (its candidates
    while it has none)."""
    from collections import Counter

    from . import catalogue
    from .evaluate import shift_offsets
    from .experiments import ensemble_members
    from .formatting import number_word
    from .models import FAMILIES
    from .store import MissingResultError

    exp = catalogue.get(name)
    if exp.kind != "ensemble":
        return f"the {FAMILIES[exp.train.family].title} teacher {name}"
    try:
        members = ensemble_members(exp)
    except MissingResultError:
        members = exp.members
    counts = Counter(FAMILIES[catalogue.get(m).train.family].title for m in members)
    size = number_word(len(members))
    shifts = len(shift_offsets(exp.view_shift)) - 1  # the positions besides the face
    shifted = (f", each scoring a face and its {number_word(shifts)} {exp.view_shift}-pixel "
               "shifts" if exp.view_shift else "")
    if len(counts) == 1:
        return f"the ensemble of {size} {next(iter(counts))} teachers{shifted}"
    kinds = ", ".join(f"{number_word(n)} {title}" for title, n in counts.most_common())
    return f"the ensemble of {size} teachers ({kinds}){shifted}"


def quoted_teacher(results_dir=None) -> str:
    """The teacher ensemble the book quotes as ours: of the stored final ensembles (the
    kept teachers plus the long VGG, chosen on validation: `catalogue.CPU_FINAL_ENSEMBLE`,
    and `catalogue.CPU_SHIFTED_ENSEMBLE`, the same candidates scored on shifted views), the
    one with the higher validation accuracy (the first on a tie); else the newest stored of
    `catalogue.CPU_ENSEMBLE` (the kept teachers) and the first, smoothed `ENSEMBLE`."""
    from . import catalogue
    from .store import find_result

    names = (catalogue.CPU_FINAL_ENSEMBLE, catalogue.CPU_SHIFTED_ENSEMBLE, catalogue.CPU_ENSEMBLE)
    stored = {n: r for n in names if (r := find_result(catalogue.get(n), results_dir))}
    finals = [n for n in names[:2] if n in stored]
    if finals:  # validation decides; `max` keeps the first of equal ones
        return max(finals, key=lambda n: stored[n].metrics["val_acc"])
    return catalogue.CPU_ENSEMBLE if catalogue.CPU_ENSEMBLE in stored else catalogue.ENSEMBLE


def describe_teaching(name: str) -> str:
    """How catalogue run `name` learned, in words: "trained on the labels only",
    "distilled from <describe_teacher>" (clean-image logits), or "distilled from
    <describe_teacher> on the views it trains on" (a soft-label store)."""
    from . import catalogue

    exp = catalogue.get(name)
    if not exp.teacher:
        return "trained on the labels only"
    views = " on the views it trains on" if exp.teacher_views else ""
    return f"distilled from {describe_teacher(exp.teacher)}{views}"


IMITATION_DESCRIPTION = "kd_imitation.json"  # scripts/describe_imitation.py writes it


def imitation(student_logits: np.ndarray, teacher_logits: np.ndarray,
              labels: np.ndarray) -> dict[str, float]:
    """How closely a student follows its teacher on the same images, and where that helps.

    A teacher is right on some images and wrong on the others; a student that imitates it
    more gains on the first and copies its mistakes on the second. The student's accuracy
    is exactly ``teacher_right * right_where_teacher_right + (1 - teacher_right) *
    right_where_teacher_wrong``, so a change in accuracy splits into those two parts.

    Args:
        student_logits, teacher_logits: (N, 7) logits of the two models on the same images.
        labels: (N,) class indices.

    Returns:
        Fractions: ``accuracy`` (the student's), ``teacher_accuracy`` (= ``teacher_right``,
        the share of images the teacher gets right), ``agreement`` (equal arg-max),
        ``right_where_teacher_right``, ``right_where_teacher_wrong`` and
        ``agrees_where_teacher_wrong`` (copies the teacher's wrong class); ``kl``: the mean
        KL divergence from the teacher's softmax to the student's, in nats (0 when they
        are equal); ``images``: N.
    """
    s = torch.as_tensor(np.asarray(student_logits), dtype=torch.float32)
    t = torch.as_tensor(np.asarray(teacher_logits), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if s.ndim != 2 or s.shape != t.shape or y.shape != s.shape[:1]:
        raise ValueError(f"need student and teacher logits (N, C) and labels (N,), got "
                         f"{tuple(s.shape)}, {tuple(t.shape)} and {tuple(y.shape)}")
    if not (torch.isfinite(s).all() and torch.isfinite(t).all()):
        raise ValueError("the logits hold inf or NaN")
    if len(y) == 0:
        raise ValueError("no images to compare")
    s_pred, t_pred = s.argmax(1), t.argmax(1)
    s_right, t_right = s_pred == y, t_pred == y
    if t_right.all() or not t_right.any():  # one of the two parts would be empty
        raise ValueError("the teacher is right on all images or on none: nothing to split")
    kl = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), reduction="batchmean",
                  log_target=True)
    return {"images": len(y), "accuracy": float(s_right.float().mean()),
            "teacher_accuracy": float(t_right.float().mean()),
            "agreement": float((s_pred == t_pred).float().mean()),
            "right_where_teacher_right": float(s_right[t_right].float().mean()),
            "right_where_teacher_wrong": float(s_right[~t_right].float().mean()),
            "agrees_where_teacher_wrong": float((s_pred == t_pred)[~t_right].float().mean()),
            "kl": float(kl)}


# Accuracy = teacher_right * right there + (1 - teacher_right) * right there: the two parts,
# in accuracy points, keyed as `ImitationStudy.comparison` holds them.
IMITATION_PARTS = {"part right": "where the ensemble is right",
                   "part wrong": "where it is wrong"}


@dataclass
class ImitationStudy:
    """The distillation study's students against their teacher (`imitation_study`).

    comparison: a `seeds.SeedComparison` of each arm against labels only over the seeds,
        on the keys "train accuracy" (the Training images the student learned from),
        "accuracy", "agreement", "copies" (agrees where the teacher is wrong) and the two
        `IMITATION_PARTS`, all on validation, all fractions; and "kl" (nats; its effects
        are differences of nats, not points, so quote its means and test only);
    teacher_val, teacher_train: the teacher's accuracy on those images;
    adjusted: Holm-adjusted Welch p per (distilled arm, part), one family;
    others: the record's runs outside the study (e.g. the long schedule's run of the same
        design), {run: {"train": `imitation`, "val": `imitation`}}.
    """

    comparison: object
    teacher_val: float
    teacher_train: float
    adjusted: dict[tuple[str, str], float]
    others: dict[str, dict]

    @property
    def kl(self) -> dict[str, float]:
        """Each arm's mean KL divergence from the teacher on validation, in nats."""
        return {arm: self.comparison.mean(arm, "kl") for arm in self.comparison.groups}

    @property
    def distilled(self) -> list[str]:
        return [g for g in self.comparison.groups if g != self.comparison.baseline]


def imitation_study(results_dir=None) -> ImitationStudy | None:
    """`results/kd_imitation.json` (scripts/describe_imitation.py) compared over seeds,
    arm by arm against labels only; None until it is written for every run of the study."""
    from . import catalogue
    from .plan import read_benchmark
    from .seeds import compare_values
    from .stats import holm

    record = read_benchmark(IMITATION_DESCRIPTION, results_dir)
    groups = catalogue.views_groups()
    if record is None or not all(n in record["runs"] for ns in groups.values() for n in ns):
        return None
    runs = record["runs"]
    studied = {n for names in groups.values() for n in names}
    first = runs[next(iter(groups.values()))[0]]
    teacher_val = first["val"]["teacher_accuracy"]
    values = {run: {"train accuracy": m["train"]["accuracy"], "accuracy": m["val"]["accuracy"],
                    "agreement": m["val"]["agreement"],
                    "copies": m["val"]["agrees_where_teacher_wrong"],
                    "part right": teacher_val * m["val"]["right_where_teacher_right"],
                    "part wrong": (1 - teacher_val) * m["val"]["right_where_teacher_wrong"],
                    "kl": m["val"]["kl"]}
              for run, m in runs.items() if run in studied}
    baseline = catalogue.VIEWS_ARM_LABELS["labels"]
    comparison = compare_values(groups, baseline, values, tuple(next(iter(values.values()))))
    family = [(arm, part) for arm in groups if arm != baseline for part in IMITATION_PARTS]
    adjusted = holm([comparison.tests[k]["p"] for k in family])
    return ImitationStudy(comparison, teacher_val, first["train"]["teacher_accuracy"],
                          {k: float(p) for k, p in zip(family, adjusted, strict=True)},
                          {run: m for run, m in runs.items() if run not in studied})
