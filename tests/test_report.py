"""fer_lib.report: the submission chosen one way, one number formatter, tables for HTML
and PDF, seed statistics and the tests the book quotes (fer_lib.stats)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_lib import formatting, report
from fer_lib.stats import mcnemar, welch

RESULTS = Path(__file__).resolve().parents[1] / "results"
COLUMNS = "run,family,precision,bytes,val_acc,public_acc,private_acc,params,flops\n"


def write_table(tmp_path, rows: str) -> Path:
    path = tmp_path / "precisions.csv"
    path.write_text(COLUMNS + rows)
    return path


# ----------------------------------------------------------------------------- submission
def test_submission_picks_best_validation_mobilenet_under_the_budget(tmp_path):
    table = write_table(tmp_path, "\n".join([
        # The best validation accuracy of all is a plain CNN: the homework forbids it.
        "decoy-cnn,cnn,int8,1000,0.90,0.90,0.90,1,1",
        # Best MobileNet overall, but over the budget.
        "big-mobilenet,mobilenet_v2,fp16,5000,0.80,0.80,0.80,1,1",
        # Best public and private accuracy, worse validation: never chosen on test splits.
        "test-favourite,mobilenet_v1,int8,900,0.60,0.99,0.99,1,1",
        # Two MobileNets tied on validation: fewer bytes wins.
        "tied-larger,mobilenet_v1,fp16,2000,0.70,0.50,0.50,1,1",
        "tied-smaller,mobilenet_v2,int8,1500,0.70,0.40,0.40,1,1",
    ]) + "\n")
    chosen = report.submission(3000, table)
    assert (chosen.run, chosen.precision, chosen.bytes) == ("tied-smaller", "int8", 1500)
    assert chosen.family in report.MOBILENET_FAMILIES
    assert report.submission(10_000, table).run == "big-mobilenet"


def test_submission_breaks_a_full_tie_by_name(tmp_path):
    table = write_table(tmp_path, "b-run,mobilenet_v2,int8,100,0.5,0.1,0.1,1,1\n"
                                  "a-run,mobilenet_v1,int8,100,0.5,0.9,0.9,1,1\n")
    assert report.submission(100, table).run == "a-run"


def test_submission_counts_a_file_exactly_at_the_budget_as_fitting(tmp_path):
    table = write_table(tmp_path, "exact,mobilenet_v2,int8,225000,0.5,0.5,0.5,1,1\n")
    assert report.submission(225_000, table).run == "exact"


@pytest.mark.parametrize("budget", [0, -5, 1.5, "225000", True])
def test_submission_rejects_a_bad_budget(tmp_path, budget):
    with pytest.raises(ValueError, match="budget_bytes"):
        report.submission(budget, write_table(tmp_path, ""))


def test_submission_says_when_nothing_fits(tmp_path):
    table = write_table(tmp_path, "cnn-only,cnn,int8,10,0.9,0.9,0.9,1,1\n")
    with pytest.raises(LookupError, match="1,000 bytes"):
        report.submission(1000, table)


def test_submission_names_missing_columns():
    with pytest.raises(ValueError, match="val_acc"):
        report.submission(1000, pd.DataFrame({"run": [], "family": [], "precision": [],
                                              "bytes": []}))


def test_the_stored_submission_is_a_mobilenet_that_fits_and_is_best_on_validation():
    table = report.precision_table(RESULTS)
    chosen = report.submission(report.STRONG_BUDGET, table)
    fits = table[table["family"].isin(report.MOBILENET_FAMILIES)
                 & (table["bytes"] <= report.STRONG_BUDGET)]
    assert chosen.bytes <= report.STRONG_BUDGET
    assert chosen.val_acc == pytest.approx(fits["val_acc"].max())
    row = table[(table["run"] == chosen.run) & (table["precision"] == chosen.precision)]
    assert len(row) == 1 and int(row["bytes"].iloc[0]) == chosen.bytes


def test_precision_table_has_every_stored_precision_of_every_run():
    table = report.precision_table(RESULTS)
    assert list(table.columns) == list(report.PRECISION_COLUMNS)
    assert not table.duplicated(["run", "precision"]).any()
    per_run = table.groupby("run")["reported"].sum()
    assert (per_run == 1).all(), "each run is reported at exactly one precision"
    students = table[table["group"] == "student"]
    assert set(students["precision"]) == {"fp32", "fp16", "int8", "int4"}


# ----------------------------------------------------------------------------- formatting
@pytest.mark.parametrize("value, kind, text", [
    (0.63715, "acc", "63.7\u00a0%"), (-0.0123, "pp", "-1.2\u00a0points"),
    (0.004, "pp", "+0.4\u00a0points"), (209715, "bytes", "209,715\u00a0B"),
    (199715, "params", "199.7k"), (999521, "params", "1.00M"),
    (950, "params", "950"), (28709, "int", "28,709"), (3.961, "ms", "3.96\u00a0ms"),
    (12.34, "x", "12.3×"), (0.0004, "p", "< 0.001"), (0.0312, "p", "0.031"),
    (4e-5, "num", "4 × 10⁻⁵"), (0.1, "num", "0.1"), (0.19, "nats", "0.190\u00a0nats"),
    (float("nan"), "acc", "–"),
    (None, "bytes", "–"),
])
def test_fmt(value, kind, text):
    assert report.fmt(value, kind) == text


def test_fmt_joins_a_number_and_its_unit_so_no_line_breaks_between_them():
    for value, kind in ((0.637, "acc"), (0.01, "pp"), (209715, "bytes"), (3.9, "ms")):
        text = report.fmt(value, kind)
        assert " " not in text and report.NBSP in text
    table = report.Table(pd.DataFrame({"acc": [report.fmt(0.637, "acc")]}))
    assert "63.7~\\%" in table._repr_latex_()


def test_mean_sd_prints_the_mean_with_its_spread_over_seeds():
    nb = report.NBSP
    assert report.mean_sd(0.6321, 0.0043, 2) == f"63.2{nb}%{nb}±{nb}0.4{nb}points"
    assert report.mean_sd(0.6321, 0.0043, 3, unit=False) == f"63.2{nb}%{nb}±{nb}0.4"
    assert report.mean_sd(0.6321, math.nan, 1) == f"63.2{nb}%"
    assert report.mean_sd(math.nan, math.nan, 0) == "missing"


def test_kd_tests_adjust_the_sizes_stored_as_one_family():
    stored = report.paired_tests()
    kd = stored[(stored["kind"] == "kd") & (stored["set"] == "private")]
    if kd.empty:
        pytest.skip("no KD McNemar test is stored")
    sizes = ["missing-size", *reversed(kd["size"].tolist())]
    tests = report.kd_tests(sizes)
    assert list(tests.index) == sizes[1:]  # the stored ones, in the order asked
    np.testing.assert_allclose(tests["p_holm"], report.holm(tests["p"].to_numpy()))
    assert (tests["p_holm"] >= tests["p"]).all()


def test_fmt_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'percent'"):
        report.fmt(0.5, "percent")


def test_table_renders_html_and_escaped_latex():
    table = report.Table(pd.DataFrame({"model_name": ["a & b"], "acc": ["63.7 %"],
                                       "ratio": ["2.0×"]}))
    html = table._repr_html_()
    assert "<table" in html and "a &amp; b" in html
    latex = table._repr_latex_()
    assert "\\begin{tabular}" in latex
    assert r"a \& b" in latex and r"63.7 \%" in latex and r"model\_name" in latex
    assert "×" not in latex


# ----------------------------------------------------------------------------- statistics
def test_welch_matches_scipy_and_brackets_the_difference():
    from scipy import stats

    a, b = [0.51, 0.50, 0.52], [0.48, 0.47, 0.50]
    result = welch(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False)
    assert result["p"] == pytest.approx(expected.pvalue)
    assert result["t"] == pytest.approx(expected.statistic)
    assert result["low"] < result["diff"] < result["high"]
    assert result["diff"] == pytest.approx(np.mean(a) - np.mean(b))


def test_welch_cannot_test_a_single_seed():
    result = welch([0.5], [0.4, 0.45])
    assert result["diff"] == pytest.approx(0.075)
    assert math.isnan(result["p"]) and math.isnan(result["low"])
    with pytest.raises(ValueError, match="both samples"):
        welch([], [0.4])


def test_mcnemar_counts_and_exact_p():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], dtype=bool)
    b = np.array([1, 0, 0, 0, 0, 0, 0, 1, 1, 0], dtype=bool)
    result = mcnemar(a, b)
    assert (result["both"], result["only_a"], result["only_b"], result["neither"]) == (2, 5, 1, 2)
    assert result["diff"] == pytest.approx(0.4)
    assert result["p"] == pytest.approx(0.21875)  # 2 * P(X <= 1), X ~ Bin(6, 1/2)
    assert mcnemar(a, a)["p"] == 1.0
    with pytest.raises(ValueError, match="equal length"):
        mcnemar(a, b[:5])


def _sweep_frame() -> pd.DataFrame:
    rows = []
    for family, base in (("mobilenet_v1", 0.50), ("cnn", 0.45)):
        for size, params in (("1k", 1000), ("4k", 4000)):
            for seed in range(3 if size == "4k" else 1):
                rows.append({"family": family, "size": size, "params": params + seed,
                             "seed": seed, "private_acc": base + 0.01 * seed})
    return pd.DataFrame(rows)


def test_seed_table_and_family_comparison():
    runs = _sweep_frame()
    table = report.seed_table(runs)
    assert list(table["seeds"]) == [1, 3, 1, 3]
    assert math.isnan(table.loc[0, "std"])
    tests = report.family_comparison(runs)
    assert list(tests["size"]) == ["1k", "4k"]
    assert tests.loc[1, "diff"] == pytest.approx(0.05)
    assert math.isnan(tests.loc[0, "p"]) and tests.loc[1, "p"] < 0.05


def test_size_label():
    assert report.size_label("sweep-cnn-16k-s2") == "16k"


def test_reports_quote_the_reference_numbers():
    reference = (Path(__file__).resolve().parents[2] / "shared" / "reference"
                 / "hw8_reports.md")
    if not reference.exists():
        pytest.skip("the reports' reference file is not beside this checkout")
    text = reference.read_text().replace(",", "")
    for r in report.REPORTS.values():
        for key in ("params", "hw3_params"):
            assert str(r[key]) in text, (r["label"], key)
        for key in ("public_acc", "private_acc", "hw3_public_acc", "hw3_private_acc"):
            assert f"{r[key]:.5f}" in text, (r["label"], key)


def test_submission_needs_committed_weights_but_best_run_does_not(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("run,family,precision,bytes,val_acc,weights\n"
                    "no-weights,mobilenet_v1,int4,100,0.9,False\n"
                    "with-weights,mobilenet_v2,int8,200,0.5,True\n")
    assert report.submission(1000, path).run == "with-weights"
    assert report.best_run(1000, path).run == "no-weights"


def test_latex_escape_turns_superscripts_into_latex():
    expected = r"4 $\times$ 10\textsuperscript{-}\textsuperscript{5}"
    assert formatting._latex_escape("4 × 10⁻⁵") == expected


def test_cli_package_budget_default_is_the_strong_budget():
    from fer_lib.cli import make_parser

    args = make_parser().parse_args(["package"])
    assert args.budget == report.STRONG_BUDGET


def test_reported_rows_equal_summary_csv():
    """Every chapter's numbers (report) and summary.csv (the public interface) agree."""
    summary = pd.read_csv(RESULTS / "summary.csv").set_index("run")
    reported = report.reported_table(RESULTS).set_index("run")
    assert set(summary.index) == set(reported.index)
    for column in ("params", "bytes", "val_acc", "public_acc", "private_acc"):
        assert np.allclose(reported.loc[summary.index, column].astype(float),
                           summary[column].astype(float), atol=1e-6), column
    assert (reported.loc[summary.index, "precision"] == summary["precision"]).all()


def test_compare_seeds_tests_each_group_against_the_baseline_over_stored_seeds():
    """Means, spreads and Welch's test come from the stored rows; a missing seed is
    counted, not invented."""
    from fer_lib.report import compare_seeds, reported_table
    from fer_lib.stats import welch as welch_test

    rows = reported_table().set_index("run")
    a = ["student-27k-kd-T1-a50", "student-27k-kd-T1-a50-s1", "student-27k-kd-T1-a50-s2"]
    b = ["student-27k-kd", "student-27k-kd-s1", "student-27k-kd-s2", "not-a-run"]
    if not set(a + b[:3]) <= set(rows.index):
        pytest.skip("the KD seeds are not all stored")
    cmp = compare_seeds({"pick": a, "own": b}, baseline="own", splits=("val", "private"))
    assert not cmp.complete and cmp.stored["own"] == b[:3]
    want = welch_test(rows.loc[a, "val_acc"], rows.loc[b[:3], "val_acc"])
    assert cmp.tests[("pick", "val")]["p"] == pytest.approx(want["p"])
    assert cmp.effects[("pick", "val")].value == pytest.approx(want["diff"])
    table = cmp.table()
    assert list(table["split"]) == ["val", "private"]
    assert "own (3 of 4 seeds)" in table.columns and "pick − own (Welch)" in table.columns
    assert table.iloc[0]["pick − own (Welch)"].startswith(cmp.effects[("pick", "val")].text)
    with pytest.raises(KeyError, match="baseline"):
        compare_seeds({"pick": a}, baseline="own")


def test_holm_tests_correct_over_the_groups_and_wait_for_every_seed():
    """Each group against the baseline, one family of tests with Holm's adjusted p."""
    from fer_lib.formatting import Effect
    from fer_lib.seeds import SeedComparison
    from fer_lib.stats import holm

    groups = {"base": ["b0", "b1"], "up": ["u0", "u1"], "flat": ["f0", "f1"]}
    tests = {("up", "val"): {"p": 0.03}, ("flat", "val"): {"p": 0.04}}
    effects = {("up", "val"): Effect(0.66, 0.64), ("flat", "val"): Effect(0.645, 0.64)}
    cmp = SeedComparison(groups, "base", ("val",), dict(groups), effects, tests, {})
    verdicts = cmp.holm_tests("val")
    # Holm over two: 0.03 -> 0.06, 0.04 -> max(0.06, 0.04) = 0.06: neither survives.
    assert [p for _, p in verdicts.values()] == pytest.approx(list(holm([0.03, 0.04])))
    assert all(p > 0.05 for _, p in verdicts.values())
    incomplete = SeedComparison(groups, "base", ("val",), {**groups, "up": ["u0"]}, effects,
                                tests, {})
    assert incomplete.holm_tests("val") is None


def test_compare_values_tests_any_per_run_number_and_counts_a_missing_run():
    """The same comparison on numbers that are not stored accuracies: means, Welch's test
    and the missing run, all from the values given."""
    from fer_lib.seeds import compare_values
    from fer_lib.stats import welch as welch_test

    values = {"a0": {"x": 0.50, "y": 0.1}, "a1": {"x": 0.54, "y": 0.3},
              "b0": {"x": 0.40, "y": 0.2}, "b1": {"x": 0.42, "y": 0.2}, "b2": {"x": 0.47, "y": 0.2}}
    cmp = compare_values({"a": ["a0", "a1", "a9"], "b": ["b0", "b1", "b2"]}, "b", values,
                         ("x", "y"))
    assert not cmp.complete and cmp.stored["a"] == ["a0", "a1"]
    assert cmp.mean("a", "x") == pytest.approx(0.52) and cmp.mean("b", "y") == pytest.approx(0.2)
    want = welch_test([0.50, 0.54], [0.40, 0.42, 0.47])
    assert cmp.tests[("a", "x")]["p"] == pytest.approx(want["p"])
    assert cmp.effects[("a", "x")].value == pytest.approx(want["diff"])
    assert cmp.splits == ("x", "y")
    with pytest.raises(KeyError, match="baseline"):
        compare_values({"a": ["a0"]}, "b", values, ("x",))


def test_missing_runs_name_only_prerequisites_that_are_missing_too(tmp_path):
    """"needs first" is what stands in a run's way: a stored teacher is not named."""
    from fer_lib import catalogue

    missing = report.missing_runs(RESULTS)
    for row in missing.itertuples():
        assert {n for n in row.needs.split(", ") if n} <= set(missing["run"]), row.run
    nothing_stored = report.missing_runs(tmp_path).set_index("run")
    assert len(nothing_stored) == len(catalogue.experiments())
    for name, exp in catalogue.experiments().items():
        assert nothing_stored.loc[name, "needs"] == ", ".join(exp.needs)
