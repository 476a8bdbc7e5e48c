"""The pruning chapter's figures draw what they are given: one series per recipe or model."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fer_lib import plots  # noqa: E402


def curve(shift: float) -> pd.DataFrame:
    fractions = np.array([0.0, 0.3, 0.5])
    return pd.DataFrame({"fraction": fractions, "params": 200_000 * (1 - fractions),
                         "int8 bytes": 210_000 * (1 - fractions),
                         "val_acc": 0.6 - shift * fractions})


def test_plot_slimming_draws_each_recipe_against_bytes_with_parameters_on_top():
    curves = {"cut only": curve(0.15), "slimmed": curve(0.05), "penalty": curve(0.1)}
    fig = plots.plot_slimming(curves, reference=0.6)
    main = [ax for ax in fig.axes if ax.get_lines()]
    assert len(main) == 1  # one panel; nothing fell 10 points below the reference: no break
    ax = main[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == len(curves)
    np.testing.assert_allclose(lines[1].get_ydata(), 100 * curves["slimmed"]["val_acc"])
    # the uncut model's line (two points spanning the axis) at the reference, in percent
    flat = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
    assert [line.get_ydata()[0] for line in flat] == pytest.approx([60.0])
    # The recipes' cuts sit at the same place: one label each, above the highest point.
    assert [(t.get_text(), t.xy[1]) for t in ax.texts] == [
        ("0%", pytest.approx(60.0)), ("30%", pytest.approx(58.5)),
        ("50%", pytest.approx(57.5))]
    assert ax.get_lines()[0].get_xdata()[0] == pytest.approx(210.0)  # kB of the int8 file
    # The top axis reads parameters: the uncut file's 210 kB is its 200 thousand.
    (top,) = ax.child_axes
    assert top.get_xlabel() == "parameters (thousands)"
    fig.canvas.draw()
    low, high = ax.get_xlim()
    assert top.get_xlim() == pytest.approx((low * 200 / 210, high * 200 / 210))


def test_plot_slimming_draws_collapsed_cuts_at_their_accuracy_below_a_break():
    # 60 % uncut; the cut-only recipe falls to 45 % and 35 %, more than 10 points below.
    fig = plots.plot_slimming({"cut only": curve(0.5), "slimmed": curve(0.05)}, reference=0.6)
    upper, lower = [ax for ax in fig.axes if ax.get_lines()]
    for ax in (upper, lower):  # every point at its real accuracy, in both rows
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [60.0, 45.0, 35.0])
    assert upper.get_ylim()[0] > 50.0 > lower.get_ylim()[1]  # the break at the floor
    assert lower.get_ylim()[0] < 35.0
    assert not upper.spines.bottom.get_visible() and not lower.spines.top.get_visible()
    assert [t.get_text() for t in upper.texts] == ["0%", "30%", "50%"]
    assert [t.get_text() for t in lower.texts] == ["30%", "50%"]
    # Without a reference nothing is split off.
    fig = plots.plot_slimming({"cut only": curve(0.5)})
    (ax,) = [ax for ax in fig.axes if ax.get_lines()]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [60.0, 45.0, 35.0])
    assert ax.get_ylim()[0] < 35.0


def test_plot_gamma_distribution_puts_models_side_by_side():
    rng = np.random.default_rng(0)
    one = {2: rng.random(8).astype(np.float32), 4: rng.random(12).astype(np.float32)}
    two = {k: v * 0.1 for k, v in one.items()}
    fig = plots.plot_gamma_distribution({"plain": one, "sparse": two})
    ax = fig.axes[0]
    assert len(ax.patches) == 4  # two blocks x two models
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2\n(8)", "4\n(12)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain", "sparse"]
    single = plots.plot_gamma_distribution({"plain": one})
    assert single.axes[0].get_legend() is None


@pytest.mark.parametrize("run, group, family, kd, expected", [
    ("student-200k-kd-slim50", "ablation-prune", "mobilenet_v2", True,
     "student, slimmed and fine-tuned"),
    ("student-200k-kd-sparse", "ablation-prune", "mobilenet_v2", True,
     "student, distilled (KD)"),
    ("student-200k-kd-sparse-cut30", "ablation-cut", "mobilenet_v2", True,
     "student, cut (no fine-tuning)"),
    ("student-27k-nokd", "ablation-kd", "mobilenet_v2", False, "student, labels only"),
])
def test_run_category_tells_slimmed_students_apart(run, group, family, kd, expected):
    row = {"run": run, "group": group, "family": family, "kd": kd}
    assert plots.run_category(row) == expected
    assert expected in plots.CATEGORY_STYLES


def test_frontier_points_are_those_better_than_every_smaller_or_equal_file():
    import pandas as pd

    from fer_lib.plots import frontier_points

    table = pd.DataFrame({"bytes": [10, 20, 20, 30, 40, 50],
                          "private_acc": [0.5, 0.4, 0.6, 0.6, 0.7, 0.65]})
    front = frontier_points(table)
    assert list(zip(front["bytes"], front["private_acc"], strict=True)) == [
        (10, 0.5), (20, 0.6), (40, 0.7)]
