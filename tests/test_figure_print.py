"""Every figure of fer_lib.plots reads in print: no text under 7 pt on the page, no legend
over the data, no point label cut off at the edge of its axes or on top of another.

The PDF scales a figure wider than the text (`plots.TEXT_WIDTH_IN`) down to it, and its
text with it; `plots.min_printed_fontsize` is the smallest text after that. Each figure
function is drawn on small synthetic inputs shaped like the book's (a slimmed student's
odd expansion ratios, a cut that collapses, a sweep point with one seed).
"""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.cbook import STEP_LOOKUP_MAP  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.path import Path  # noqa: E402
from matplotlib.text import Annotation, Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from fer_lib import diagrams, plots  # noqa: E402

CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]


# --- Synthetic inputs ---------------------------------------------------------------------
def sweep_runs() -> pd.DataFrame:
    """Two families, eleven sizes, three seeds each but one seed at the largest size."""
    rows = []
    for family, shift in (("mobilenet_v1", 0.0), ("cnn", -0.01)):
        for k in (1, 2, 4, 8, 16, 64, 256, 1000):
            for seed in range(1 if k == 1000 else 3):
                acc = 0.40 + 0.045 * np.log2(k) * (1 - np.log2(k) / 25) + shift + 0.005 * seed
                rows.append({"family": family, "size": f"{k}k", "seed": seed,
                             "params": 1000 * k, "private_acc": acc, "public_acc": acc})
    return pd.DataFrame(rows)


def sweep_figure():
    """Q2's figure as the chapter draws it: one family, its legend at the lower right."""
    fig, ax = plots.new_axes("parameters (log scale)", "private accuracy (%)",
                             title="Q2: MobileNetV1 sweep", logx=True)
    plots.errorbar_family(ax, sweep_runs(), "mobilenet_v1")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def precision_rows() -> pd.DataFrame:
    """Runs of every category at four precisions, accuracy rising with bytes."""
    rng = np.random.default_rng(0)
    kinds = [("sweep-mobilenet-{}k", "sweep", "mobilenet_v1", False),
             ("sweep-cnn-{}k", "sweep", "cnn", False),
             ("student-{}k-kd", "student", "mobilenet_v2", True),
             ("student-{}k-nokd", "ablation-kd", "mobilenet_v2", False),
             ("student-200k-kd-slim{}", "ablation-prune", "mobilenet_v2", True),
             ("student-200k-kd-cut{}", "ablation-cut", "mobilenet_v2", True)]
    rows = []
    for name, group, family, kd in kinds:
        for k in (2, 8, 30, 100, 400):
            for precision, per_param in (("int4", 0.6), ("int8", 1.05), ("fp16", 2), ("fp32", 4)):
                acc = 0.25 if group == "ablation-cut" else 0.35 + 0.05 * np.log2(k)
                rows.append({"run": name.format(k), "group": group, "family": family, "kd": kd,
                             "precision": precision, "bytes": per_param * 1000 * k,
                             "private_acc": min(acc, 0.66) + rng.normal(0, 0.01)})
    for run, family, params in (("hw3-cnn", "hw3_cnn", 4e6), ("teacher-ensemble", "vgg", 5e7)):
        for precision, per_param in (("fp16", 2), ("fp32", 4)):
            rows.append({"run": run, "group": "baseline", "family": family, "kd": False,
                         "precision": precision, "bytes": per_param * params,
                         "private_acc": 0.69})
    return pd.DataFrame(rows)


def frontier_figure():
    table = precision_rows()
    highlight = {f"submission under {b:,} B": SimpleNamespace(bytes=b * 0.9, private_acc=0.6)
                 for b in (32_768, 225_000, 650_000)}
    reports = {"a": dict(label="report A", bytes=205_418, private_acc=0.696),
               "b": dict(label="report B", bytes=None, private_acc=0.64)}
    fig = plots.plot_frontier(table, highlight, reports)
    fig.axes[0].set_ylim(bottom=20)
    return fig


def slimming_curve(accuracies) -> pd.DataFrame:
    fractions = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.7])
    return pd.DataFrame({"fraction": fractions, "params": 200_000 * (1 - 0.8 * fractions),
                         "int8 bytes": 210_000 * (1 - 0.8 * fractions),
                         "val_acc": accuracies})


def slimming_figure():
    """The pruning chapter's three recipes: the cut-only one collapses at the first cut."""
    curves = {"cut only (no penalty, no fine-tuning)":
              slimming_curve([0.637, 0.32, 0.17, 0.25, 0.25, 0.25]),
              "penalty and cut (no fine-tuning)":
              slimming_curve([0.632, 0.633, 0.633, 0.633, 0.626, 0.376]),
              "slimmed: penalty, cut, fine-tuned":
              slimming_curve([0.632, 0.634, 0.632, 0.628, 0.640, 0.624])}
    return plots.plot_slimming(curves, reference=0.637)


def layer_rows(spec) -> pd.DataFrame:
    """`fer_lib.models.layer_table`'s columns from (layer, kernel, stride, expansion,
    output) tuples; the expansions are strings with three significant digits, like its."""
    return pd.DataFrame([dict(zip(("layer", "kernel", "stride", "expansion", "output"), row,
                                  strict=True), params=1000) for row in spec])


def slimmed_student() -> pd.DataFrame:
    blocks = [(1, "1", 9, 48), (2, "3.67", 13, 24), (1, "3.46", 13, 24), (2, "3.38", 18, 12),
              (1, "3.39", 18, 12), (1, "3.39", 18, 12), (2, "3.22", 35, 6), (1, "2.11", 35, 6),
              (1, "1.97", 35, 6), (1, "3.11", 53, 6), (1, "1.32", 53, 6), (2, "1.62", 89, 3),
              (1, "0.764", 89, 3)]
    spec = [("conv + BN + ReLU6", "3×3", 1, "", "18 × 48 × 48")]
    spec += [("inverted residual" + (" + skip" if s == 1 and i % 2 else ""), "3×3 dw", s, e,
              f"{c} × {h} × {h}") for i, (s, e, c, h) in enumerate(blocks)]
    spec += [("conv + BN + ReLU6", "1×1", 1, "", "177 × 3 × 3"),
             ("global average pool", "", "", "", "177 × 1 × 1"),
             ("dense (linear)", "", "", "", "7")]
    return layer_rows(spec)


def submission_network() -> tuple[pd.DataFrame, str]:
    """The layers and title of today's strong-baseline submission, as the Q1 chapter draws
    them (its stored result's architecture, freshly initialised: no weights or pixels)."""
    from fer_lib import submission
    from fer_lib.models import layer_table

    chosen = submission(225_000)
    return layer_table(chosen.result().architecture()), f"submission: {chosen.run}"


def mobilenet_v1() -> pd.DataFrame:
    """The 100k MobileNetV1 layout: a stem, then depthwise and pointwise rows in turn (a
    depthwise row keeps its input's channels)."""
    spec, before = [("conv + BN + ReLU", "3×3", 1, "", "11 × 48 × 48")], 11
    for channels, stride, size in ((22, 1, 48), (44, 2, 24), (44, 1, 24), (88, 2, 12),
                                   (88, 1, 12), (176, 2, 6), (176, 1, 6), (176, 1, 6)):
        spec += [("depthwise conv + BN + ReLU", "3×3", stride, "", f"{before} × {size} × {size}"),
                 ("conv + BN + ReLU", "1×1", 1, "", f"{channels} × {size} × {size}")]
        before = channels
    spec += [("global average pool", "", "", "", "176 × 1 × 1"),
             ("dense (linear)", "", "", "", "7")]
    return layer_rows(spec)


def hw3_cnn() -> pd.DataFrame:
    spec = []
    for channels, size in ((64, 48), (128, 24), (256, 12), (256, 6)):
        spec += [("conv + BN + ReLU", "3×3", 1, "", f"{channels} × {size} × {size}")] * 2
        spec += [("max-pool", "2×2", 2, "", f"{channels} × {size // 2} × {size // 2}")]
    spec += [("dense (linear)", "", "", "", "768"), ("BN + ReLU", "", "", "", "768"),
             ("dense (linear)", "", "", "", "7")]
    return layer_rows(spec)


def gammas(seed: int, scale: float) -> dict[int, np.ndarray]:
    """|gamma| per block: the first block spread widest, as in the stored student."""
    rng = np.random.default_rng(seed)
    return {block: np.abs(1 + rng.normal(0, 0.1 if block == 2 else 0.04, channels)) * scale
            for block, channels in zip(range(2, 14), (36, 52, 52, 72, 72, 72, 140, 140, 140,
                                                      212, 212, 356), strict=True)}


def accuracy_table() -> pd.DataFrame:
    rows = [{"model": f"student-{k}k-kd", "precision": p, "bytes": per * 1000 * k,
             "accuracy": 0.55 + 0.03 * np.log2(k / 27) - (0.03 if p == "int4" else 0)}
            for k in (27, 100, 200) for p, per in (("int4", 0.6), ("int8", 1.05),
                                                  ("fp16", 2), ("fp32", 4))]
    return pd.DataFrame(rows)


def history(rate: float) -> list[dict]:
    return [{"epoch": e, "loss": 2 * np.exp(-rate * e), "val_acc": 0.65 * (1 - np.exp(-e / 5))}
            for e in range(1, 31)]


FIGURES = {
    "sweep (new_axes, errorbar_family)": sweep_figure,
    "plot_frontier": frontier_figure,
    "plot_soft_targets": lambda: plots.plot_soft_targets(
        np.random.default_rng(1).normal(0, 3, (3, 7)), CLASSES,
        titles=[f"Training image {i}" for i in (3, 14, 15)]),
    "plot_learning_curves": lambda: plots.plot_learning_curves(
        {"with KD": history(0.1), "without KD": history(0.05)}),
    "plot_quantization_grid": lambda: plots.plot_quantization_grid(
        np.random.default_rng(2).normal(0, 0.05, 300), 0.02, 7),
    "plot_accuracy_vs_bytes": lambda: plots.plot_accuracy_vs_bytes(
        accuracy_table(), budgets={"32 KiB": 32_768, "strong baseline": 225_000}),
    "plot_gamma_distribution": lambda: plots.plot_gamma_distribution(
        {"without the penalty": gammas(0, 1.0), "with the L1 penalty": gammas(1, 0.1)}),
    "plot_slimming": slimming_figure,
    "draw_network (HW3 CNN)": lambda: diagrams.draw_network(hw3_cnn(), "HW3 CNN"),
    "draw_network (slimmed student)": lambda: diagrams.draw_network(
        slimmed_student(), "submission: student-200k-kd-slim50"),
    "draw_network (MobileNetV1 student)": lambda: diagrams.draw_network(
        mobilenet_v1(), "MobileNetV1 student"),
    "draw_network (today's submission)": lambda: diagrams.draw_network(*submission_network()),
    "draw_mobilenet_blocks": diagrams.draw_mobilenet_blocks,
}


# Drawn once for the four checks below (module scope: pytest runs a figure's checks
# together). Every check only draws the figure and reads its layout, which a further
# draw does not change (no figure of fer_lib has a draw callback).
@pytest.fixture(scope="module", params=list(FIGURES), ids=list(FIGURES))
def figure(request):
    fig = FIGURES[request.param]()
    yield fig
    plt.close(fig)


# --- Checks ------------------------------------------------------------------------------
def _drawn_inside(artist, box: Bbox, renderer) -> bool:
    """Whether data artist `artist` draws inside `box` (display coordinates)."""
    if isinstance(artist, Line2D):
        xy = artist.get_xydata()
        if artist.get_drawstyle().startswith("steps") and len(xy):
            xy = np.column_stack(STEP_LOOKUP_MAP[artist.get_drawstyle()](*xy.T))
        points = artist.get_transform().transform(xy)
        points = points[np.isfinite(points).all(axis=1)]
        if not len(points):
            return False
        radius = artist.get_markersize() * renderer.points_to_pixels(1.0) / 2
        if artist.get_marker() not in ("None", "", " ", None) and _any_inside(points, box, radius):
            return True
        return (artist.get_linestyle() not in ("None", "", " ")
                and Path(points).intersects_bbox(box, filled=False))
    if isinstance(artist, PathCollection):  # scatter: markers at offsets
        points = artist.get_offset_transform().transform(artist.get_offsets())
        radius = np.sqrt(np.max(artist.get_sizes(), initial=0)) * renderer.points_to_pixels(1.0) / 2
        return _any_inside(points, box, radius)
    if isinstance(artist, LineCollection):  # error bars
        return any(artist.get_transform().transform_path(p).intersects_bbox(box, filled=False)
                   for p in artist.get_paths())
    return artist.get_window_extent(renderer).overlaps(box)  # bars, boxes, bands


def _any_inside(points: np.ndarray, box: Bbox, radius: float) -> bool:
    return bool(((points[:, 0] > box.x0 - radius) & (points[:, 0] < box.x1 + radius)
                 & (points[:, 1] > box.y0 - radius) & (points[:, 1] < box.y1 + radius)).any())


def legend_overlaps(fig) -> list[str]:
    """Data artists (lines, bars, collections, patches) that a legend of `fig` covers:
    its window extent clipped to each axes it overlaps. A legend outside every axes
    covers nothing."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    found = []
    for legend in legends:
        extent = legend.get_window_extent(renderer)
        for ax in fig.axes:
            box = Bbox.intersection(extent, ax.bbox)
            if box is None or box.width <= 0 or box.height <= 0:
                continue
            for artist in [*ax.lines, *ax.patches, *ax.collections]:
                if artist.get_visible() and _drawn_inside(artist, box, renderer):
                    found.append(f"{artist} (label {artist.get_label()!r})")
    return found


def labels_outside_axes(fig) -> list[str]:
    """Point labels (annotations at a data point, no arrow) that reach past their axes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        inside = ax.bbox.padded(1)
        for text in ax.texts:
            if not isinstance(text, Annotation) or text.xycoords != "data" or text.arrow_patch:
                continue
            box = text.get_window_extent(renderer)
            if not (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)):
                found.append(text.get_text())
    return found


def overlapping_labels(fig) -> list[tuple[str, str]]:
    """Pairs of point labels (annotations at a data point) of one axes that overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        texts = [t for t in ax.texts if isinstance(t, Annotation) and t.xycoords == "data"]
        boxes = [Text.get_window_extent(t, renderer) for t in texts]  # without arrows
        found += [(texts[i].get_text(), texts[j].get_text()) for i in range(len(texts))
                  for j in range(i + 1, len(texts)) if boxes[i].overlaps(boxes[j])]
    return found


# --- Tests -------------------------------------------------------------------------------
def test_printed_text_is_at_least_7_points(figure):
    printed = plots.min_printed_fontsize(figure)
    assert printed >= plots.MIN_PRINTED_PT, (
        f"smallest text {printed:.1f} pt when printed {plots.TEXT_WIDTH_IN} in wide "
        f"(figure {figure.get_figwidth():.2f} in)")


def test_no_legend_covers_data(figure):
    assert not legend_overlaps(figure)


def test_point_labels_stay_inside_their_axes(figure):
    assert not labels_outside_axes(figure)


def test_point_labels_do_not_pile_up(figure):
    assert not overlapping_labels(figure)


def test_min_printed_fontsize_scales_wide_figures_to_the_text_width():
    fig = plt.figure(figsize=(2 * plots.TEXT_WIDTH_IN, 2))
    fig.text(0.1, 0.5, "small", fontsize=8)
    fig.text(0.5, 0.5, "large", fontsize=20)
    fig.text(0.5, 0.2, "", fontsize=2)  # empty and invisible texts print nothing
    fig.text(0.5, 0.8, "hidden", fontsize=2, visible=False)
    assert plots.min_printed_fontsize(fig) == pytest.approx(4.0)
    assert plots.min_printed_fontsize(fig, text_width_in=4 * plots.TEXT_WIDTH_IN) == 8.0
    plt.close(fig)


def test_legend_check_sees_a_legend_on_the_data_and_not_one_outside():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="diagonal")
    ax.bar([0.5], [0.9], width=0.2, label="bar")
    ax.legend(loc="center")
    assert legend_overlaps(fig)
    ax.get_legend().remove()
    fig.legend(loc="outside upper center")
    assert not legend_overlaps(fig)
    plt.close(fig)
