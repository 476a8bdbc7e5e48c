"""The distillation study, described: its teachers, its students and how they imitate.

`fer_lib.distill` holds what the trainer needs (the loss, the teachers it asks for
logits); this module sits above the experiments and the store and reads them, for the
chapters: which teacher a run learned from, in words (`describe_teacher`,
`describe_teaching`), which ensemble the book quotes as ours (`quoted_teacher`), and
how closely the study's students follow their teacher (`imitation`, `imitation_study`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import catalogue
from .evaluate import shift_offsets
from .experiments import ensemble_members
from .formatting import number_word
from .models import FAMILIES
from .records import read_benchmark
from .seeds import compare_values
from .stats import holm
from .store import MissingResultError, find_result


def describe_teacher(name: str) -> str:
    """Catalogue teacher `name` in words: "the ensemble of three VGG teachers" (one
    family), "the ensemble of four teachers (three VGG, one ResNet)" (mixed), "the VGG
    teacher teacher-vgg-s0" (a single network); one scored on shifted views says so ("...,
    each scoring a face and its four 2-pixel shifts"). An ensemble that chooses its members on
    validation is described by the members its stored result kept (its candidates
    while it has none)."""
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
