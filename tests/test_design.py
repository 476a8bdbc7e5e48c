"""The student design study (#26): candidates at their budgets, the replica of report A's
model, the pick on validation, and the runs built on it. Stored-results checks need no
data set (they read results/)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from fer_lib import catalogue, paths
from fer_lib.design import design_choice, design_pick, design_study, nearest_counts
from fer_lib.models import build, count_params
from fer_lib.quantize import export_npz

TINY_BUDGET = 32_768
STRONG_BUDGET = 225_000


def _model(name: str):
    cfg = catalogue.get(name).train
    return build(cfg.family, **cfg.model_args)


@pytest.mark.parametrize("budget", list(catalogue.DESIGN_BUDGETS))
def test_every_candidate_sits_at_its_budget_and_fits_the_strong_limit(budget, tmp_path):
    target, precision, designs = catalogue.DESIGN_BUDGETS[budget]
    for design in designs:
        model = _model(catalogue.design_name(budget, design, 0))
        assert abs(count_params(model) - target) / target < 0.02, design
        assert export_npz(model, tmp_path / "m.npz", precision) <= STRONG_BUDGET, design


def test_replica_is_the_nearest_count_our_layout_reaches():
    """Report A's 102,709 parameters cannot be hit exactly by one width multiplier; the
    replica takes whichever reachable count is nearer (the book quotes both)."""
    model = _model(catalogue.design_name("100k", "replica", 0))
    width = model.hparams["width"]
    below, above = nearest_counts("mobilenet_v2", catalogue.REPLICA_PARAMS, width)
    assert below <= catalogue.REPLICA_PARAMS < above
    nearer = min((below, above), key=lambda c: abs(c - catalogue.REPLICA_PARAMS))
    assert count_params(model) == nearer
    assert model.hparams.get("expansion", 4) == 4  # inverted residuals, expansion 4


def test_a_design_is_picked_only_when_every_seed_is_stored_and_on_validation():
    def study(seeds, val):
        return pd.DataFrame({"budget": "b", "design": ["x", "y"], "seeds": seeds,
                             "val_mean": val, "private_mean": [0.9, 0.1]})

    full = len(catalogue.DESIGN_SEEDS)
    assert design_pick(study([full, full - 1], [0.5, 0.6]), "b") is None
    assert design_pick(study([full, full], [0.5, 0.6]), "b") == "y"  # not private's x
    assert design_pick(study([full, full], [0.6, 0.6]), "b") == "x"  # tie: listed first
    assert design_pick(study([full, full], [0.5, 0.6]), "other") is None


def test_a_choice_names_the_runner_up_its_lead_against_one_standard_error_and_its_cost():
    full = len(catalogue.DESIGN_SEEDS)

    def study(val):
        return pd.DataFrame({"budget": "b", "design": ["x", "y", "z"], "seeds": full,
                             "val_mean": val, "epoch_seconds": [30.0, 45.0, 29.0]})

    close = design_choice(study([0.600, 0.605, 0.590]), "b")
    assert (close.pick, close.runner_up) == ("y", "x")
    assert close.lead.value == pytest.approx(0.005)
    assert not close.firm  # 0.5 points: under one standard error on ~2,900 images
    assert close.cost == pytest.approx(45.0 / 29.0)
    clear = design_choice(study([0.58, 0.62, 0.57]), "b")
    assert clear.firm and clear.runner_up == "x"
    assert design_choice(study([0.6, 0.6, 0.6]).iloc[:1], "b") is None  # nothing to beat
    missing = study([0.6, 0.7, 0.5]).assign(seeds=[full, full - 1, full])
    assert design_choice(missing, "b") is None


def test_the_catalogue_picks_are_the_studys_choice_on_validation():
    """`DESIGN_PICKS` is what the stored study chose, and holds a pick only for a budget
    whose study is complete: the long runs and the distillation arms are built on it."""
    study = design_study()
    for budget in catalogue.DESIGN_BUDGETS:
        assert catalogue.DESIGN_PICKS.get(budget) == design_pick(study, budget), budget


def test_runs_after_the_design_use_the_pick_and_fit_their_budgets(monkeypatch, tmp_path):
    """With picks (here assumed), the long runs average their weights, the tiny one fits
    32,768 bytes at int8, and the three distillation arms differ only in their teacher."""
    monkeypatch.setattr(catalogue, "DESIGN_PICKS", {"200k": "early", "100k": "replica"})
    exps = catalogue.build_catalogue()
    long = {n: e for n, e in exps.items() if e.group == "long"}
    assert set(long) == {"long-200k-early", "long-100k-replica", "long-27k-early",
                         catalogue.LONG_CONTROL, catalogue.FILL_NAME,
                         catalogue.TINY_FILL_NAME}
    assert all(e.train.ema > 0 and e.teacher is None for e in long.values())
    # The control differs from the 200k long run in its layout only.
    control, picked = long[catalogue.LONG_CONTROL], long["long-200k-early"]
    assert control.train.model_args != picked.train.model_args
    assert dataclasses.replace(control.train, model_args={}) == \
        dataclasses.replace(picked.train, model_args={})
    tiny = long["long-27k-early"]
    model = build(tiny.train.family, **tiny.train.model_args)
    assert export_npz(model, tmp_path / "m.npz", tiny.precision) <= TINY_BUDGET
    arms = [exps[catalogue.views_name(arm, 1)] for arm in catalogue.VIEWS_ARMS]
    assert [a.teacher_views for a in arms] == [0, 0, catalogue.VIEWS_PER_IMAGE]
    assert [a.teacher for a in arms] == [None, catalogue.CPU_ENSEMBLE, catalogue.CPU_ENSEMBLE]
    assert arms[0].train == arms[1].train == arms[2].train and arms[0].train.seed == 1


def test_epoch_cost_comes_from_the_one_run_benchmark_when_recorded(tmp_path):
    """The benchmark's rate, times one epoch's training rows, is the table's cost; a
    candidate without one falls back to the probe (and says so)."""
    import json
    import shutil

    from fer_lib.data import VAL_FRACTION
    from fer_lib.design import DESIGN_COSTS
    from fer_lib.plan import PROBES, TRAINING_IMAGES

    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(paths.results_dir() / PROBES, results / PROBES)
    (results / DESIGN_COSTS).write_text(json.dumps(
        {"machine": "m", "seconds_per_image": {"design-100k-v1": 0.002}}))
    study = design_study(results).set_index("run")
    row = study.loc["design-100k-v1"]
    assert row["epoch_seconds_benchmarked"]
    assert row["epoch_seconds"] == pytest.approx(0.002 * TRAINING_IMAGES * (1 - VAL_FRACTION))
    assert not study.loc["design-100k-6x6", "epoch_seconds_benchmarked"]
    assert study["seeds"].eq(0).all()  # no stored runs in this folder


def test_long_runs_are_paired_with_the_first_label_only_student_of_their_budget(monkeypatch):
    """Each stored long run meets ``student-<budget>-nokd`` at the reported precision; a
    long run whose pair is not stored is left out, and other precisions are never read."""
    from fer_lib import design

    tiny = f"long-27k-{catalogue.DESIGN_PICKS['200k']}"
    hundred = f"long-100k-{catalogue.DESIGN_PICKS['100k']}"
    rows = [(tiny, "int8", True, 0.63, 0.64, 31_000), (tiny, "fp16", False, 0.99, 0.99, 60_000),
            ("student-27k-nokd", "int8", True, 0.57, 0.58, 32_000),
            (hundred, "fp16", True, 0.65, 0.66, 200_000)]  # its pair is not stored
    table = pd.DataFrame(rows, columns=["run", "precision", "reported", "val_acc",
                                        "private_acc", "bytes"])
    monkeypatch.setattr(design, "precision_table", lambda results_dir=None: table)
    found = design.long_against_first()
    assert list(found["run"]) == [tiny] and list(found["baseline"]) == ["student-27k-nokd"]
    row = found.iloc[0]
    assert (row["precision"], row["val"], row["private"], row["bytes"]) == ("int8", 0.63, 0.64,
                                                                           31_000)
    assert (row["baseline_val"], row["baseline_private"]) == (0.57, 0.58)
    assert row["epochs"] == catalogue.get(tiny).train.epochs


def test_the_budget_filling_run_fits_the_strong_folder_at_int4_only():
    """Twice the submission's parameters, and its graded folder fits 225,000 B at int4
    (not at int8): the size QAT at int4 has to make worth it."""
    from fer_lib.hw8_folder import folder_sizes
    from fer_lib.quantize import STRONG_BUDGET

    fill, submission = catalogue.get(catalogue.FILL_NAME), catalogue.get("long-200k-early")
    model = build(fill.train.family, **fill.train.model_args)
    sizes = {p: package.total for p, package in folder_sizes(model).items()}
    assert sizes["int4"] <= STRONG_BUDGET < sizes["int8"]
    assert count_params(model) > 1.8 * count_params(build(submission.train.family,
                                                          **submission.train.model_args))
    assert catalogue.get(catalogue.qat_name("int4", source=catalogue.FILL_SIZE)).slim_from \
        == fill.name


def test_the_tiny_filling_run_fits_32_kib_at_int4_only(tmp_path):
    """At int4 the tiny budget holds the 200k pick at about 48k parameters, nearly twice
    the 27k int8 run; the same network at int8 would not fit."""
    from fer_lib.quantize import TINY_BUDGET, export_npz

    tiny, fill = catalogue.get("long-27k-early"), catalogue.get(catalogue.TINY_FILL_NAME)
    model = build(fill.train.family, **fill.train.model_args)
    assert export_npz(model, tmp_path / "int4.npz", "int4") <= TINY_BUDGET
    assert export_npz(model, tmp_path / "int8.npz", "int8") > TINY_BUDGET
    assert count_params(model) > 1.7 * count_params(build(tiny.train.family,
                                                         **tiny.train.model_args))
    qat = catalogue.get(catalogue.qat_name("int4", source=catalogue.TINY_FILL_SIZE))
    assert qat.slim_from == fill.name and qat.precision == "int4"
