"""The experiment catalogue: every run the book shows, as frozen descriptions.

An `Experiment` is a `TrainConfig` plus what happens around the trainer (distil from a
teacher's cached logits, start from a slimmed model, combine teachers, or cut a stored
model without training), described in :mod:`fer_lib.experiment_spec`. Its content hash
keys its stored result, ``results/<name>-<hash>/`` (see :mod:`fer_lib.store`). The
catalogue is built on first use (`experiments()`), not at import: it sizes every sweep
model, which takes seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

from . import prune_runs
from .config import TrainConfig
from .experiment_spec import LATER_EXPERIMENT_FIELDS, Experiment, config_hash  # noqa: F401
from .models import width_for_params

# ----------------------------------------------------------------------------- the catalogue
SWEEP_TARGETS = (1_000, 2_000, 4_000, 8_000, 16_000, 64_000, 256_000, 1_000_000)
SWEEP_SEEDS = (0, 1, 2)
SWEEP_FAMILIES = {"mobilenet_v1": "sweep-mobilenet", "cnn": "sweep-cnn"}
# One recipe for every sweep point, so the two families differ only in architecture.
# Small models are bound by kernel-launch overhead on a GPU, where bf16 autocast only adds
# cast kernels: they train in fp32 (TF32 convolutions); the big teachers use bf16.
SWEEP_RECIPE = dict(epochs=30, batch_size=256, lr=0.1, weight_decay=5e-4, amp=False)
HW3_RECIPE = dict(epochs=50, batch_size=256, lr=0.1, weight_decay=5e-4, erase=0.5)
TEACHER_RECIPE = dict(HW3_RECIPE, epochs=36)
STUDENT_RECIPE = dict(epochs=50, batch_size=256, lr=0.1, weight_decay=4e-5, amp=False,
                      kd_temperature=4.0, kd_alpha=0.9)
# 27k parameters is the widest student whose int8 file fits the 32,768-byte tiny budget.
STUDENT_WIDTHS = {"100k": 100_000, "200k": 200_000, "27k": 27_000}
TEACHERS = ("teacher-vgg-s0", "teacher-vgg-s1", "teacher-vgg-s2")
ENSEMBLE = "teacher-ensemble"
# The shares of hidden channels network slimming removes (fine-tuned and not).
CUT_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7)
# Distillation's temperature x weight ablation, at the 27k student: one 50-epoch run costs
# about 10 minutes on 2 CPU cores against about 25 for the 200k one, so the whole grid
# fits in an afternoon. (4.0, 0.9) is the students' own recipe, `student-27k-kd`.
KD_GRID_SIZE = "27k"
KD_TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
KD_ALPHAS = (0.5, 0.9)
# The grid is one seed per cell, so its pick on validation (T = 1, alpha = 0.5, read off
# the stored grid in December 2026) and the students' own recipe each get two more seeds:
# the pick's gain is then measured against the spread of seeds, not assumed from one run.
KD_PICK = (1.0, 0.5)
KD_EXTRA_SEEDS = (1, 2)
# Slimming's L1 weight on BatchNorm gammas (gates start at 1). Alone it moves a gamma by
# bn_l1 x (sum of the learning rate) / (1 - momentum), about 250 / 0.1 here
# (`prune.l1_pull`): 5e-4 can take an unneeded gate to 0 while the loss holds the used ones
# (2e-3 cost 9 points of validation accuracy by epoch 3 in a try, so it was stopped).
SLIM_BN_L1 = 5e-4
SLIM_FINETUNE = dict(epochs=20, lr=0.01, bn_l1=0.0)
# The longer fine-tune of the stored 200k student: 20 more epochs of cosine from 0.01.
FINETUNE_RECIPE = dict(epochs=20, lr=0.01)
# Q4's ablation: each sweep family with the other family's downsampling, at the size
# where the two differ most, so the effect of downsampling is measured, not assumed.
Q4_ABLATION_SIZE = 4_000
Q4_ABLATIONS = {"mobilenet_v1": "pool", "cnn": "stride"}
# The student design study (#26): MobileNets at the two budgets that differ in where
# their parameters sit, all label-only, on one short schedule, two seeds each, so the
# design is chosen on validation before long runs are spent on it. Widths are fitted to
# each budget; "replica" is report A's model as far as its report describes it
# (inverted residuals, expansion 4, 102,709 parameters): our V2 layout sized to that count.
DESIGN_RECIPE = dict(STUDENT_RECIPE, epochs=20)
DESIGN_SEEDS = (0, 1)
V2_LAST_6X6 = ((1, 16, 1, 1), (None, 24, 2, 2), (None, 32, 3, 2), (None, 64, 3, 2),
               (None, 96, 2, 1), (None, 160, 2, 1))
V2_EARLY = ((1, 16, 1, 1), (None, 32, 2, 2), (None, 48, 3, 2), (None, 96, 3, 2),
            (None, 128, 3, 1))
V2_EARLY_AFTER_STRIDED_STEM = ((1, 16, 1, 1), (None, 32, 2, 1), (None, 48, 3, 2),
                               (None, 96, 3, 2), (None, 128, 3, 1))
# design -> (family, model arguments besides width): the parameters' placement.
STUDENT_DESIGNS = {
    "base": ("mobilenet_v2", {}),                       # today's student: 3 x 3 last
    "6x6": ("mobilenet_v2", {"stages": V2_LAST_6X6}),   # same weights, last stage at 6 x 6
    "early": ("mobilenet_v2", {"stages": V2_EARLY}),    # channels moved to 24 x 24 and 12 x 12
    "stem2": ("mobilenet_v2", {"stem_stride": 2, "stages": V2_EARLY_AFTER_STRIDED_STEM}),
    "v1": ("mobilenet_v1", {}),                         # the Q2 sweep's family
}
# budget -> (target parameters, precision of its file, designs tried there).
DESIGN_BUDGETS = {"200k": (200_000, "int8", ("base", "6x6", "early", "stem2", "v1")),
                  "100k": (102_709, "fp16", ("replica", "6x6", "v1"))}
REPLICA_PARAMS = 102_709  # report A's count (hw8_reports.md)
# The design each budget's study chose on validation (`fer_lib.design.design_pick`; a
# test checks these against the stored runs). The runs below are built on them.
DESIGN_PICKS: dict[str, str] = {"200k": "early", "100k": "v1"}
# The long schedule (#26 item 2), label-only: 150 epochs, with an exponential average of
# the weights kept (a horizon of ~1,000 steps, some 10 epochs); the same run measures the
# plain iterate too (`TrainResult.plain_model`): averaging is a variant at no extra cost.
LONG_RECIPE = dict(STUDENT_RECIPE, epochs=150, ema=0.999)
LONG_CONTROL = "long-200k-base"
# Quantisation-aware fine-tuning (`fer_lib.qat`): some epochs on the BN-folded network
# with its weights rounded as the file stores them, from a stored run, gently (cosine from
# a tenth of the students' rate); the "fp32" arm is the same without rounding, the control
# that post-training rounding is measured after. At the 100k distillation study's size,
# whose label-only students have three seeds.
QAT_SIZE, QAT_ARMS, QAT_EPOCHS = "100k", ("fp32", "int4"), 10
QAT_RECIPE = dict(epochs=QAT_EPOCHS, lr=0.01, warmup_epochs=0.5)
# The largest size of the 200k pick whose hw8 folder fits 225,000 B at int4 (a test
# checks it with `hw8_folder.folder_sizes`): about 384k parameters, 222 kB.
FILL_SIZE, FILL_TARGET = "384k", 384_000
FILL_NAME = f"long-{FILL_SIZE}-{DESIGN_PICKS['200k']}"
# The tiny budget (32,768 B int8): the 200k pick sized to 27k (an untested transfer).
TINY_TARGET = 27_000
# Or filled at int4 (#40's 32,768 B target): the largest 200k pick whose int4 file fits,
# about 48k parameters (a test checks it), on the long schedule, then QAT at int4.
TINY_FILL_SIZE, TINY_FILL_TARGET = "48k", 48_000
TINY_FILL_NAME = f"long-{TINY_FILL_SIZE}-{DESIGN_PICKS['200k']}"
# Pruning on the submission's design (#40 item 5), from 3 seeds of the 200k pick's design
# run (20 epochs, labels only): `prune_runs`' arms, half the weights or hidden channels
# removed, 10-epoch fine-tunes. The penalty pulls a gate as far in 20 epochs as
# `SLIM_BN_L1` did in the students' 50 (`prune.l1_pull` is proportional to it).
PRUNE_STUDY_SEEDS, PRUNE_STUDY_SHARE = (0, 1, 2), 0.5
PRUNE_STUDY_FINETUNE = dict(epochs=10, lr=0.01)
PRUNE_STUDY_BN_L1 = SLIM_BN_L1 * STUDENT_RECIPE["epochs"] / DESIGN_RECIPE["epochs"]
# Distillation on the student's views (#26 item 4), three seeds an arm, with the CPU
# teachers: labels only, their logits on clean images, their probabilities on K stored
# views per image (`teacher_views`). 100k: about 15 minutes a 50-epoch run (200k: 25).
# T, alpha: the grid's pick (`KD_PICK`). K = 8: a 12 MB store, labelled in ~25 minutes.
VIEWS_BUDGET = "100k"
VIEWS_PER_IMAGE = 8
VIEWS_SEEDS = (0, 1, 2)
VIEWS_ARMS = ("labels", "logits", "views")
# Teachers we keep (#26): trained on this CPU without label smoothing (smoothed teachers
# distil worse: Mueller, Kornblith & Hinton 2019), fp16 weights committed so that soft
# labels on any view can be rebuilt (`fer_lib.softlabels`). A half-width VGG: 1.2M
# parameters, 235 MFLOPs a face, 50 epochs (~45 minutes on 2 cores). Seeds of one recipe
# err alike, so a ResNet-18 layout at the VGG's FLOPs (244 MFLOPs, 1.09M parameters) joined
# the candidates: another architecture errs differently (Pramerdorfer & Kampel).
CPU_TEACHER_RECIPE = dict(TEACHER_RECIPE, epochs=50, label_smoothing=0.0)
CPU_TEACHER_ARCHS = {"vgg": {"width": 0.5}, "resnet": {"width": 0.3125}}
CPU_VGG_TEACHERS = ("teacher-cpu-vgg-s0", "teacher-cpu-vgg-s1", "teacher-cpu-vgg-s2")
CPU_TEACHERS = (*CPU_VGG_TEACHERS, "teacher-cpu-resnet-s0")
# Candidates: the ensemble keeps those that greedy forward selection on validation keeps
# (`distill.choose_members`). Students are keyed by its name, not its members.
CPU_ENSEMBLE = "teacher-cpu-ensemble"
# All the VGG candidates averaged, chosen by nobody: what seeds of one recipe give.
CPU_VGG_ENSEMBLE = "teacher-cpu-vgg-ensemble"
# The ensemble's last lever inside the ~6 CPU-hours: one VGG on twice the schedule (every
# VGG above peaked at epochs 44-50 of 50), a candidate beside the four in a new ensemble,
# so that the students distilled from `CPU_ENSEMBLE` keep the teacher they had.
CPU_LONG_TEACHER, CPU_LONG_TEACHER_EPOCHS = "teacher-cpu-vgg-long-s3", 100
CPU_FINAL_ENSEMBLE = "teacher-cpu-ensemble-final"
# The same candidates scored on each face and its four 2-pixel shifts, each with its mirror
# (`evaluate.predict_shifted`): the book quotes the one of the two validation prefers.
CPU_SHIFTED_ENSEMBLE, CPU_TEACHER_SHIFT = "teacher-cpu-ensemble-final-shift2", 2
# Runs whose weights are committed whatever their size (`experiments.keeps_weights`).
KEEP_WEIGHTS = frozenset((*CPU_TEACHERS, CPU_LONG_TEACHER))


def design_name(budget: str, design: str, seed: int | None = None) -> str:
    """``design-200k-6x6-s1``: the design study's run of `design` at `budget`, `seed`;
    without a seed, the name its seeds share (``design-200k-6x6``)."""
    return f"design-{budget}-{design}" + ("" if seed is None else f"-s{seed}")


def _design_config(design: str, target: int, **recipe) -> TrainConfig:
    """`design` (`STUDENT_DESIGNS`; "replica" is the base layout) sized by its width
    multiplier to `target` parameters, trained on `recipe`."""
    family, args = STUDENT_DESIGNS["base" if design == "replica" else design]
    args = json.loads(json.dumps(args))  # tuples -> lists, as a stored config reads back
    width = round(width_for_params(family, target, **args), 4)
    return TrainConfig(family=family, model_args={"width": width, **args}, **recipe)


def _design(budget: str, design: str, seed: int) -> Experiment:
    target, precision, _ = DESIGN_BUDGETS[budget]
    cfg = _design_config(design, target, seed=seed, **DESIGN_RECIPE)
    return Experiment(design_name(budget, design, seed), "design", cfg, precision=precision,
                      keep_logits=True)


def _picked(name: str, budget: str, group: str, target: int | None = None,
            precision: str | None = None, teacher: str | None = None, views: int = 0,
            design: str | None = None, **recipe) -> Experiment:
    """A run of the design `DESIGN_PICKS` holds for `budget` (or of `design`), sized to
    `target` parameters (default: the budget's), on `recipe`."""
    goal, budget_precision, _ = DESIGN_BUDGETS[budget]
    cfg = _design_config(design or DESIGN_PICKS[budget], target or goal, **recipe)
    return Experiment(name, group, cfg, teacher=teacher, teacher_views=views,
                      precision=precision or budget_precision, keep_logits=True)


def _after_design() -> list[Experiment]:
    """The runs that build on the design study's picks: the long schedule at each picked
    budget (and at the tiny budget with the 200k pick, and distilled at the study's
    budget), and distillation's three arms."""
    exps = [_picked(long_name(budget), budget, "long", **LONG_RECIPE) for budget in DESIGN_PICKS]
    if "200k" in DESIGN_PICKS:
        exps.append(_picked(f"long-27k-{DESIGN_PICKS['200k']}", "200k", "long",
                            target=TINY_TARGET, **LONG_RECIPE))
        # The control: the base layout on the long schedule, so that the gain of the long
        # run over the 50-epoch student splits into schedule and layout (#40 item 4).
        exps.append(_picked(LONG_CONTROL, "200k", "long", design="base", **LONG_RECIPE))
    if VIEWS_BUDGET in DESIGN_PICKS:
        t, alpha = KD_PICK
        # Distillation needs long schedules (Beyer et al. 2022): one seed, clean-image logits.
        exps.append(_picked(long_name(VIEWS_BUDGET, kd=True), VIEWS_BUDGET, "long-kd",
                            teacher=CPU_ENSEMBLE, **dict(LONG_RECIPE, kd_temperature=t,
                                                         kd_alpha=alpha)))
        if "200k" in DESIGN_PICKS:
            # The same at the submission's size, taught on its own views (K stored views
            # an image) by the kept ensemble (#40 item 4).
            exps.append(_picked(long_name("200k", kd=True), "200k", "long-kd",
                                teacher=CPU_FINAL_ENSEMBLE, views=VIEWS_PER_IMAGE,
                                **dict(LONG_RECIPE, kd_temperature=t, kd_alpha=alpha)))
        for seed in VIEWS_SEEDS:
            for arm in VIEWS_ARMS:
                teacher = None if arm == "labels" else CPU_ENSEMBLE
                exps.append(_picked(
                    views_name(arm, seed), VIEWS_BUDGET, "views", teacher=teacher,
                    views=VIEWS_PER_IMAGE if arm == "views" else 0,
                    **dict(STUDENT_RECIPE, kd_temperature=t, kd_alpha=alpha, seed=seed)))
    return exps


def long_name(budget: str, kd: bool = False) -> str:
    """``long-100k-v1``: the long schedule of `budget`'s picked design; ``-kd``: distilled."""
    return f"long-{budget}-{DESIGN_PICKS[budget]}" + ("-kd" if kd else "")


def views_name(arm: str, seed: int) -> str:
    """``views-100k-logits-s2``: distillation study arm `arm` (`VIEWS_ARMS`), `seed`."""
    return f"views-{VIEWS_BUDGET}-{arm}-s{seed}"


VIEWS_ARM_LABELS = {"labels": "labels only", "logits": "clean-image logits",
                    "views": f"{VIEWS_PER_IMAGE} stored views"}  # how the book names each arm


def views_groups() -> dict[str, list[str]]:
    """The distillation study's runs, {arm label: one run per seed} (`report.compare_seeds`)."""
    return {VIEWS_ARM_LABELS[arm]: [views_name(arm, s) for s in VIEWS_SEEDS] for arm in VIEWS_ARMS}


def _student(size: str, *, kd: bool = True, precision: str = "int8", group: str = "student",
             suffix: str = "", **recipe) -> Experiment:
    width = round(width_for_params("mobilenet_v2", STUDENT_WIDTHS[size]), 4)
    cfg = TrainConfig(family="mobilenet_v2", model_args={"width": width},
                      **dict(STUDENT_RECIPE, **recipe))
    name = f"student-{size}{'-kd' if kd else '-nokd'}{suffix}"
    return Experiment(name, group, cfg, teacher=ENSEMBLE if kd else None,
                      precision=precision, keep_logits=group == "student")


def build_catalogue() -> dict[str, Experiment]:
    """Every experiment the book shows, by name."""
    exps = [Experiment("hw3-cnn", "hw3", TrainConfig(family="hw3_cnn", **HW3_RECIPE),
                       keep_logits=True, precision="fp32")]
    for name in TEACHERS:
        family, seed = name.split("-")[1], int(name[-1])
        exps.append(Experiment(name, "teacher", TrainConfig(family=family, seed=seed,
                                                            **TEACHER_RECIPE),
                               keep_logits=True, precision="fp32"))
    exps.append(Experiment(ENSEMBLE, "ensemble", kind="ensemble", members=TEACHERS,
                           keep_logits=True, precision="fp32"))
    for family, group in SWEEP_FAMILIES.items():
        for target in SWEEP_TARGETS:
            width = round(width_for_params(family, target), 4)
            for seed in SWEEP_SEEDS:
                cfg = TrainConfig(family=family, model_args={"width": width}, seed=seed,
                                  **SWEEP_RECIPE)
                exps.append(Experiment(f"{group}-{target // 1000}k-s{seed}", group, cfg))
    for family, downsample in Q4_ABLATIONS.items():
        width = round(width_for_params(family, Q4_ABLATION_SIZE, downsample=downsample), 4)
        for seed in SWEEP_SEEDS:
            cfg = TrainConfig(family=family, model_args={"width": width,
                                                         "downsample": downsample},
                              seed=seed, **SWEEP_RECIPE)
            exps.append(Experiment(f"q4-{SWEEP_FAMILIES[family][6:]}-{downsample}-"
                                   f"{Q4_ABLATION_SIZE // 1000}k-s{seed}", "ablation-q4", cfg))
    exps += [_student(size) for size in ("100k", "200k", "27k")]
    exps += [_student(size, kd=False, group="ablation-kd") for size in ("100k", "200k", "27k")]
    exps += [_student(KD_GRID_SIZE, group="ablation-temperature", suffix=kd_suffix(t, a),
                      kd_temperature=t, kd_alpha=a)
             for a in KD_ALPHAS for t in KD_TEMPERATURES
             if (t, a) != kd_recipe()]
    exps += [_student(KD_GRID_SIZE, group="seeds-kd", suffix=kd_grid_suffix(t, a) + f"-s{seed}",
                      kd_temperature=t, kd_alpha=a, seed=seed)
             for t, a in (kd_recipe(), KD_PICK) for seed in KD_EXTRA_SEEDS]
    student = next(e for e in exps if e.name == "student-200k-kd")
    exps += _slimming(student)
    # Cheap recipe tries (chosen on validation): a gentler 20-epoch fine-tune of the 200k
    # student, and distillation without label smoothing (KD targets are soft already).
    exps.append(Experiment(f"{student.name}-ft", "recipe",
                           dataclasses.replace(student.train, **FINETUNE_RECIPE),
                           teacher=ENSEMBLE, slim_from=student.name, slim_fraction=0.0,
                           precision="int8"))
    exps.append(_student(KD_GRID_SIZE, group="recipe", suffix="-ls0", label_smoothing=0.0))
    exps += _cpu_teachers()
    # The design study, seed by seed: every design's first seed comes first.
    exps += [_design(budget, design, seed) for seed in DESIGN_SEEDS
             for budget, (_, _, designs) in DESIGN_BUDGETS.items() for design in designs]
    exps += _after_design()
    exps += _quantisation_aware({e.name: e for e in exps})
    exps += _pruning_study({e.name: e for e in exps})
    return {e.name: e for e in exps}


def qat_name(arm: str, seed: int | None = None, source: str = QAT_SIZE) -> str:
    """``qat-100k-int4-s2``: a quantisation-aware fine-tune at `arm` ("fp32": the
    control, folded and unrounded) from `source`'s stored run of `seed`."""
    return f"qat-{source}-{arm}" + ("" if seed is None else f"-s{seed}")


QAT_ARM_LABELS = {"fp32": "fine-tune, round after", "int4": "QAT fine-tune"}


def qat_groups() -> dict[str, list[str]]:
    """The QAT study's runs, {arm label: one run per seed} (`seeds.compare_values`)."""
    return {QAT_ARM_LABELS[arm]: [qat_name(arm, s) for s in VIEWS_SEEDS] for arm in QAT_ARMS}


def _qat(name: str, source: Experiment, arm: str, precision: str) -> Experiment:
    cfg = dataclasses.replace(source.train, qat=arm, ema=0.0, **QAT_RECIPE)
    return Experiment(name, "qat", cfg, slim_from=source.name, precision=precision,
                      keep_logits=True)


def _quantisation_aware(built: dict[str, Experiment]) -> list[Experiment]:
    """QAT against post-training rounding at equal epochs (#40 item 2): from each seed of
    the label-only 100k students (50 epochs), `QAT_EPOCHS` more BN-folded epochs with the
    weights rounded to int4 or not (then rounded after); and the submission's QAT."""
    exps = [_qat(qat_name(arm, seed), built[views_name("labels", seed)], arm, "int4")
            for seed in VIEWS_SEEDS for arm in QAT_ARMS]
    submission = built[long_name("200k")] if "200k" in DESIGN_PICKS else None
    if submission is not None:
        exps += [_qat(qat_name(arm, source="200k"), submission, arm, arm if arm != "fp32"
                      else "int4") for arm in ("int4", "int8")]
        # Fill the budget (#40 item 3): at int4 about twice the submission's parameters fit
        # the strong folder; the chosen layout at that size, long schedule, then QAT.
        fill = _picked(FILL_NAME, "200k", "long", target=FILL_TARGET, precision="int4",
                       **LONG_RECIPE)
        exps += [fill, _qat(qat_name("int4", source=FILL_SIZE), fill, "int4", "int4")]
        tiny = _picked(TINY_FILL_NAME, "200k", "long", target=TINY_FILL_TARGET,
                       precision="int4", **LONG_RECIPE)
        exps += [tiny, _qat(qat_name("int4", source=TINY_FILL_SIZE), tiny, "int4", "int4")]
    return exps


def _pruning_study(built: dict[str, Experiment]) -> list[Experiment]:
    """`prune_runs.pruning_arms` from each seed of the 200k pick's design-study run."""
    exps = []
    for seed in PRUNE_STUDY_SEEDS:
        dense = built.get(design_name("200k", DESIGN_PICKS["200k"], seed))
        if dense is None:  # the third seed: a new run, in the pruning study's group
            dense = dataclasses.replace(_design("200k", DESIGN_PICKS["200k"], seed),
                                        group=prune_runs.GROUP)
            exps.append(dense)
        exps += prune_runs.pruning_arms(dense, "200k", PRUNE_STUDY_SHARE, PRUNE_STUDY_BN_L1,
                                        PRUNE_STUDY_FINETUNE)
    return exps


def _cpu_teachers() -> list[Experiment]:
    """The kept CPU teachers (family and seed from the name: ``teacher-cpu-vgg-s0``, on
    `CPU_TEACHER_RECIPE`; the long one on its own epochs) and their ensembles."""
    def teacher(name: str, **recipe) -> Experiment:
        family, seed = name.split("-")[2], int(name.rsplit("-s", 1)[1])
        cfg = TrainConfig(family=family, model_args=CPU_TEACHER_ARCHS[family], seed=seed,
                          **dict(CPU_TEACHER_RECIPE, **recipe))
        return Experiment(name, "teacher", cfg, keep_logits=True, precision="fp16")

    ensemble = functools.partial(Experiment, group="ensemble", kind="ensemble",
                                 keep_logits=True, precision="fp16")
    final = (*CPU_TEACHERS, CPU_LONG_TEACHER)
    return [*map(teacher, CPU_TEACHERS), ensemble(CPU_VGG_ENSEMBLE, members=CPU_VGG_TEACHERS),
            ensemble(CPU_ENSEMBLE, members=CPU_TEACHERS, choose_members=True),
            teacher(CPU_LONG_TEACHER, epochs=CPU_LONG_TEACHER_EPOCHS),
            ensemble(CPU_FINAL_ENSEMBLE, members=final, choose_members=True),
            ensemble(CPU_SHIFTED_ENSEMBLE, members=final, choose_members=True,
                     view_shift=CPU_TEACHER_SHIFT)]


def _slimming(student: Experiment) -> list[Experiment]:
    """Network slimming of the 200k `student` and its cut-only contrasts
    (`prune_runs.slimming_runs`), its penalised twin trained at `SLIM_BN_L1`."""
    sparse = _student("200k", group="ablation-prune", suffix="-sparse", bn_l1=SLIM_BN_L1)
    return prune_runs.slimming_runs(student, sparse, CUT_FRACTIONS, SLIM_FINETUNE)


def kd_suffix(temperature: float, alpha: float) -> str:
    """The name suffix of a temperature-ablation run: ``-T2-a50`` is T = 2, alpha = 0.5."""
    return f"-T{temperature:g}-a{round(alpha * 100)}"


def kd_recipe() -> tuple[float, float]:
    """The students' own (temperature, alpha)."""
    return STUDENT_RECIPE["kd_temperature"], STUDENT_RECIPE["kd_alpha"]


def kd_grid_suffix(temperature: float, alpha: float) -> str:
    """`kd_suffix`, or "" for the students' own recipe (its grid cell is the student)."""
    return "" if (temperature, alpha) == kd_recipe() else kd_suffix(temperature, alpha)


def kd_grid_runs(seed: int = 0) -> dict[tuple[float, float], str]:
    """The run name of every (T, alpha) cell of the distillation grid, for `seed`: seed 0
    is the grid itself; the extra seeds exist for `kd_recipe` and `KD_PICK` only."""
    tail = f"-s{seed}" if seed else ""
    return {(t, a): f"student-{KD_GRID_SIZE}-kd{kd_grid_suffix(t, a)}{tail}"
            for a in KD_ALPHAS for t in KD_TEMPERATURES}


@functools.cache
def experiments() -> dict[str, Experiment]:
    """The catalogue, by name (built once per process, on first use).

    ``$FER_CATALOGUE`` (``/path/to/file.py:function``) replaces the book's catalogue with
    the experiments that function returns (a list or a dict of `Experiment`): a lab's own
    runs, or a test's tiny ones, scheduled by `fer reproduce` like the book's.
    """
    spec = os.environ.get("FER_CATALOGUE", "").strip()
    if not spec:
        return build_catalogue()
    found = _load_custom(spec)
    return {e.name: e for e in (found.values() if isinstance(found, dict) else found)}


def _load_custom(spec: str):
    import importlib.util

    path, _, function = spec.rpartition(":")
    if not path or not Path(path).is_file():
        raise ValueError(f"FER_CATALOGUE={spec}: expected /path/to/file.py:function")
    module_spec = importlib.util.spec_from_file_location(f"fer_catalogue_{Path(path).stem}",
                                                         path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, function):
        raise ValueError(f"FER_CATALOGUE={spec}: {path} defines no {function!r}")
    return getattr(module, function)()


def get(name: str) -> Experiment:
    """The catalogue entry `name`; a KeyError naming the closest names if there is none."""
    found = experiments()
    if name not in found:
        import difflib

        close = difflib.get_close_matches(name, found, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"no experiment named {name!r} in the catalogue{hint}")
    return found[name]
