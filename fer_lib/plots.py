"""Figures the book shows, and the published numbers it compares against.

Every chapter draws through these helpers so figures share one look: `new_axes()`
gives a labelled figure, `FAMILY_COLORS` / `FAMILY_LABELS` fix one colour and one
name per model family, and `budget_lines()` marks the homework's byte budgets.
Nothing here saves files: the book's notebooks display the figures inline. Every series
is told apart by marker and line style as well as colour (`FAMILY_MARKERS`,
`FAMILY_LINES`), so the figures read in greyscale too. The homework reports' numbers
live in `fer_lib.report.REPORTS`. Printed, no text is under `MIN_PRINTED_PT`
(`min_printed_fontsize`): figures are at most `FULL_WIDTH_IN` wide, as the PDF shrinks
wider ones. In a Jupyter kernel, importing this module gives every figure shown a vector
PDF for the PDF book (`_inline_vector_figures`).
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .quantize import SIMPLE_BUDGET, STRONG_BUDGET, TINY_BUDGET

# One colour per family, colour-blind safe (Okabe-Ito), the same in every chapter.
FAMILY_COLORS = {"mobilenet_v1": "#0072B2", "cnn": "#D55E00", "mobilenet_v2": "#009E73",
                 "hw3_cnn": "#CC79A7", "vgg": "#E69F00", "ensemble": "#56B4E9",
                 "resnet": "#F0E442", "published": "#555555"}
FAMILY_LABELS = {"mobilenet_v1": "MobileNetV1 (depthwise separable)", "cnn": "plain CNN",
                 "mobilenet_v2": "MobileNetV2 student", "hw3_cnn": "HW3 CNN",
                 "vgg": "VGG teacher", "ensemble": "teacher ensemble", "resnet": "ResNet",
                 "published": "published"}
PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "D", "int4": "v"}
# Series without a family (temperatures, runs): told apart by hatch or line style too.
HATCHES = ("", "//", "..", "xx", "\\\\", "--")
LINESTYLES = ("-", "--", ":", "-.")
# Marker and line style per family: series stay distinguishable without colour.
FAMILY_MARKERS = {"mobilenet_v1": "o", "cnn": "^", "mobilenet_v2": "D", "hw3_cnn": "P",
                  "vgg": "X", "ensemble": "*", "resnet": "h", "published": "*"}
FAMILY_LINES = {"mobilenet_v1": "-", "cnn": "--", "mobilenet_v2": ":", "hw3_cnn": "-.",
                "vgg": "-.", "ensemble": "-", "resnet": "-", "published": "-"}

# The homework's budgets in bytes (strong and simple baselines) and the book's tighter
# 32 KiB one, from fer_lib.quantize (one place for each fact).
BYTE_BUDGETS = {"32 KiB": TINY_BUDGET, "strong baseline": STRONG_BUDGET,
                "simple baseline": SIMPLE_BUDGET}

# The PDF's text width: Sphinx's LaTeX "manual" class on US letter paper (no papersize
# set) less sphinx.sty's 1 in margins; wider images shrink to it. The inline backend adds
# savefig.pad_inches (0.1 in) each side, so a FULL_WIDTH_IN figure prints at full size.
TEXT_WIDTH_IN = 6.5
FULL_WIDTH_IN = 6.3
MIN_PRINTED_PT = 7.0


def min_printed_fontsize(fig, text_width_in: float = TEXT_WIDTH_IN) -> float:
    """The smallest text of `fig` in points as printed: every visible, non-empty Text
    (titles, axis and tick labels, legend texts, annotations) times min(1, text width /
    image width). The image is the figure saved tight, so text poking out widens it."""
    fig.canvas.draw()
    tight = fig.get_tightbbox(fig.canvas.get_renderer()).width
    width = max(fig.get_figwidth(), tight + 2 * plt.rcParams["savefig.pad_inches"])
    sizes = [t.get_fontsize() for t in fig.findobj(plt.Text)
             if t.get_visible() and t.get_text().strip()]
    return min(1.0, text_width_in / width) * min(sizes, default=np.inf)


def _inline_vector_figures() -> None:
    """In a Jupyter kernel, figures shown inline (end of a cell, plt.show(), myst_nb.glue)
    carry application/pdf besides image/png: myst-nb's LaTeX builder prefers the PDF, the
    HTML the PNG. No creation date, so re-executed notebooks reproduce their outputs byte
    for byte (nbval compares application/pdf, not image/png)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is None:
        return
    from matplotlib_inline.config import InlineBackend  # IPython depends on it

    config = InlineBackend.instance(parent=shell)  # applied when the backend starts, or now
    config.print_figure_kwargs = {**config.print_figure_kwargs,
                                  "metadata": {"CreationDate": None}}
    config.figure_formats = {*config.figure_formats, "pdf"}


_inline_vector_figures()


def new_axes(xlabel: str, ylabel: str, *, title: str | None = None, logx: bool = False,
             figsize: tuple[float, float] = (FULL_WIDTH_IN, 4.0)):
    """A fresh (fig, ax) with labelled axes, a light grid and optional log x-axis."""
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "", xscale="log" if logx else "linear")
    ax.grid(True, which="major", alpha=0.3)
    return fig, ax


def budget_lines(ax, budgets: dict[str, int] = BYTE_BUDGETS) -> None:
    """Dashed vertical lines at the byte budgets, labelled above the axes, away from the
    data (no point hides a label), one row per budget so neighbours never collide."""
    for row, (name, nbytes) in enumerate(sorted(budgets.items(), key=lambda kv: kv[1])):
        ax.axvline(nbytes, color="0.4", ls="--", lw=0.8)
        ax.annotate(f"{name}: {nbytes:,} B", (nbytes, 1), xycoords=ax.get_xaxis_transform(),
                    xytext=(0, 2 + 9 * row), textcoords="offset points", ha="center",
                    va="bottom", fontsize=7, color="0.3", annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", color="0.6", lw=0.6, ls=":",
                                    shrinkA=0, shrinkB=0))


def errorbar_family(ax, runs: pd.DataFrame, family: str, value: str = "private_acc",
                    label: str | None = None, full_seeds: int = 3, **kwargs) -> pd.DataFrame:
    """Mean +/- one standard deviation over seeds of `value` (a fraction, drawn in %)
    against mean parameters, for one family of `fer_lib.report.sweep_runs()`. Points with
    fewer than `full_seeds` seeds get a hollow marker and an "n=k" note, so a reader sees
    which means rest on fewer runs. Returns `fer_lib.report.seed_table`'s rows."""
    from .report import seed_table

    stats = seed_table(runs[runs["family"] == family], value)
    color = kwargs.pop("color", FAMILY_COLORS.get(family))
    marker = kwargs.pop("marker", FAMILY_MARKERS.get(family, "o"))
    ax.errorbar(stats["params"], 100 * stats["mean"],
                yerr=100 * np.nan_to_num(stats["std"].to_numpy()), color=color,
                marker=marker, ls=FAMILY_LINES.get(family, "-"), capsize=3,
                label=label or FAMILY_LABELS.get(family, family), **kwargs)
    few = stats[stats["seeds"] < full_seeds]
    ax.scatter(few["params"], 100 * few["mean"], s=60, facecolors="white", edgecolors=color,
               marker=marker, zorder=3, linewidths=1.5)
    below = family != "cnn"  # one family's notes below its points, the other's above
    for _, row in few.iterrows():
        left = row["params"] == stats["params"].max()  # the last note stays in the axes
        ax.annotate(f"n={row['seeds']}", (row["params"], 100 * row["mean"]), fontsize=7,
                    textcoords="offset points", xytext=(-6 if left else 6, -12 if below else 6),
                    ha="right" if left else "left", color=color)
    return stats


# Categories of runs on the frontier: colour (Okabe-Ito) and marker differ for each.
CATEGORY_STYLES = {
    "student, distilled (KD)": dict(color="#009E73", marker="D"),
    "student, labels only": dict(color="#CC79A7", marker="s"),
    "MobileNetV1 sweep": dict(color=FAMILY_COLORS["mobilenet_v1"], marker="o"),
    "plain-CNN sweep": dict(color=FAMILY_COLORS["cnn"], marker="^"),
    "student, slimmed and fine-tuned": dict(color="#56B4E9", marker="v"),
    "student, cut (no fine-tuning)": dict(color="#999999", marker="x"),
    "HW3 CNN": dict(color="#000000", marker="P"),
    "VGG teacher / ensemble": dict(color="#E69F00", marker="X"),
}


def run_category(row) -> str:
    """The `CATEGORY_STYLES` key of a row of `fer_lib.report.precision_table()`."""
    if row["group"] == "ablation-cut":
        return "student, cut (no fine-tuning)"
    if row["group"] == "ablation-prune" and "-slim" in row["run"]:
        return "student, slimmed and fine-tuned"
    if row["family"] == "mobilenet_v2":
        return "student, distilled (KD)" if row["kd"] else "student, labels only"
    return {"mobilenet_v1": "MobileNetV1 sweep", "cnn": "plain-CNN sweep",
            "hw3_cnn": "HW3 CNN"}.get(row["family"], "VGG teacher / ensemble")


def frontier_points(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of `table` that move the frontier up: each is more accurate (private)
    than every row with as many bytes or fewer; sorted by bytes."""
    ordered = table.sort_values(["bytes", "private_acc"], ascending=[True, False])
    best_before = ordered["private_acc"].cummax().shift(fill_value=-np.inf)
    return ordered[ordered["private_acc"] > best_before]


def plot_frontier(table: pd.DataFrame, highlight: dict | None = None,
                  reports: dict | None = None):
    """Private accuracy (%) against model-file bytes for every run at every precision.

    table: `fer_lib.report.precision_table()`. Every point is drawn small and grey (the
    whole cloud: hundreds of points, readable in print only as a cloud); the points on
    the frontier (`frontier_points`) in their category's colour and marker, joined by the
    black step line. highlight: ``{label: Submission}``, ringed and labelled. reports:
    ``{key: {"label", "bytes", "private_acc"}}``, a star where the bytes are known, else a
    dotted line. Budget lines at `BYTE_BUDGETS`."""
    fig, ax = new_axes("model file size (bytes, log scale)", "private accuracy (%)",
                       logx=True, figsize=(FULL_WIDTH_IN, 5.0))
    table = table.assign(category=table.apply(run_category, axis=1))
    ax.scatter(table["bytes"], 100 * table["private_acc"], s=6, color="0.75", zorder=2,
               label="any run at any precision", linewidths=0)
    front = frontier_points(table)
    ax.step(front["bytes"], 100 * front["private_acc"], where="post", color="black",
            lw=1.2, zorder=2.5, label="frontier: best at or below the bytes")
    for category, style in CATEGORY_STYLES.items():
        rows = front[front["category"] == category]
        if len(rows):
            ax.scatter(rows["bytes"], 100 * rows["private_acc"], s=30, zorder=3,
                       label=f"on the frontier: {category}", edgecolors="black",
                       linewidths=0.4, **style)
    for i, (label, sub) in enumerate((highlight or {}).items()):
        ax.scatter([sub.bytes], [100 * sub.private_acc], s=140, facecolors="none",
                   edgecolors="black", linewidths=1.4, zorder=5)
        # Labels stacked in the empty lower right, lines to their points.
        ax.annotate(label, (sub.bytes, 100 * sub.private_acc), textcoords="axes fraction",
                    xytext=(0.98, 0.36 - 0.08 * i), ha="right", va="center", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.9),
                    arrowprops=dict(arrowstyle="-", lw=0.6), zorder=6)
    for report in (reports or {}).values():
        if report.get("bytes"):
            ax.scatter([report["bytes"]], [100 * report["private_acc"]], marker="*", s=150,
                       color="#555555", zorder=5, label=report["label"])
        else:
            ax.axhline(100 * report["private_acc"], color="#555555", ls=":", lw=1,
                       label=report["label"])
    budget_lines(ax)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2,
               fontsize=7)
    return fig


# --- Compression chapters: distillation, quantization, pruning ----------------------------
def plot_soft_targets(logits: np.ndarray, class_names, temperatures=(1, 2, 4, 8),
                      titles=None):
    """Softmax(logits / T) of a few images, one panel per image, one bar group per class:
    `logits` is float (n, 7): a teacher's logits of n images. Shows how a higher
    temperature spreads the probability over the classes the teacher finds similar."""
    logits = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    fig, axes = plt.subplots(1, len(logits), figsize=(min(FULL_WIDTH_IN, 2.5 * len(logits)), 3.2),
                             sharey=True, squeeze=False, layout="constrained")
    width = 0.8 / len(temperatures)
    x = np.arange(logits.shape[1])
    for i, (ax, row) in enumerate(zip(axes[0], logits, strict=True)):
        for j, t in enumerate(temperatures):
            p = np.exp((row - row.max()) / t)
            ax.bar(x + (j - (len(temperatures) - 1) / 2) * width, p / p.sum(), width,
                   label=f"T = {t:g}", hatch=HATCHES[j % len(HATCHES)], edgecolor="black",
                   lw=0.4)
        ax.set_xticks(x, class_names, rotation=60, ha="right")
        ax.set_xlabel("class")
        if titles is not None:
            ax.set_title(titles[i], fontsize="medium")
    axes[0, 0].set_ylabel("teacher probability")
    axes[0, 0].set_ylim(0, 1)
    # Above the panels: inside one, the legend would cover a tall bar.
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center",
               ncols=len(temperatures), fontsize="small")
    return fig


def plot_learning_curves(histories: dict[str, list[dict]]):
    """Validation accuracy and training loss per epoch of several runs: `histories` maps
    a run's label to its ``Result.history`` (rows with ``epoch``, ``loss``, ``val_acc``).
    Losses of different objectives (KD, cross-entropy) are not on one scale."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(FULL_WIDTH_IN, 3.0),
                                          layout="constrained")
    for i, (label, rows) in enumerate(histories.items()):
        epoch = [r["epoch"] for r in rows]
        style = dict(label=label, ls=LINESTYLES[i % len(LINESTYLES)])
        ax_acc.plot(epoch, [100 * r["val_acc"] for r in rows], **style)
        ax_loss.plot(epoch, [r["loss"] for r in rows], **style)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)")
    ax_loss.set(xlabel="epoch", ylabel="training loss (nats)")
    fig.legend(*ax_acc.get_legend_handles_labels(), loc="outside upper center",
               ncols=len(histories), fontsize="small")
    return fig


def plot_quantization_grid(weights: np.ndarray, scale: float, qmax: int, bins: int = 60):
    """Histogram of one output channel's weights, float (k,), with its symmetric integer
    grid: vertical lines at ``q * scale`` for integer ``|q| <= qmax``."""
    fig, ax = plt.subplots(figsize=(FULL_WIDTH_IN, 3.2), layout="constrained")
    ax.hist(np.asarray(weights).ravel(), bins=bins, color="0.6")
    for q in range(-qmax, qmax + 1):
        ax.axvline(q * scale, color="C3", lw=0.6, alpha=0.7)
    ax.set(xlabel="weight value (dimensionless)", ylabel="number of weights",
           title=f"{2 * qmax + 1} levels, step {scale:.2g}")
    return fig


def plot_accuracy_vs_bytes(table: pd.DataFrame, budgets: dict[str, int] | None = None):
    """Accuracy against bytes on disk, one line per model across its precisions: `table`
    has columns ``model``, ``precision``, ``bytes`` and ``accuracy`` (a fraction);
    `budgets` maps a label to a byte limit, drawn by `budget_lines`."""
    fig, ax = new_axes("model file size (bytes, log scale)", "private-test accuracy (%)",
                       logx=True, figsize=(FULL_WIDTH_IN, 4.2))
    for i, (model, rows) in enumerate(table.groupby("model", sort=False)):
        rows = rows.sort_values("bytes")
        ax.plot(rows["bytes"], 100 * rows["accuracy"], color=f"C{i}", label=model,
                ls=LINESTYLES[i % len(LINESTYLES)])
        for precision, r in rows.groupby("precision"):
            ax.scatter(r["bytes"], 100 * r["accuracy"], color=f"C{i}", zorder=3,
                       marker=PRECISION_MARKERS.get(precision, "o"))
    for precision, marker in PRECISION_MARKERS.items():
        ax.scatter([], [], color="0.4", marker=marker, label=precision)
    ax.xaxis.set_major_locator(plt.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    budget_lines(ax, budgets if budgets is not None else BYTE_BUDGETS)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=4,
               fontsize="small")
    return fig


def plot_gamma_distribution(models: dict[str, dict[int, np.ndarray]]):
    """Box plots of |gamma| of each expanded block's gate BatchNorm, one colour a model:
    `models` maps a label to `prune.gamma_summary(model)` (block index -> (hidden,)
    float32); models of one architecture share the block axis, side by side."""
    fig, ax = plt.subplots(figsize=(FULL_WIDTH_IN, 3.6), layout="constrained")
    width = 0.8 / len(models)
    for j, (label, gammas) in enumerate(models.items()):
        keys = list(gammas)
        where = np.arange(1, len(keys) + 1) - 0.4 + width * (j + 0.5)
        box = ax.boxplot([gammas[k] for k in keys], positions=where, widths=0.9 * width,
                         patch_artist=True, flierprops={"markersize": 2},
                         medianprops={"color": "black"})
        for patch in box["boxes"]:
            patch.set(facecolor=f"C{j}", alpha=0.6, hatch=("", "//", "..")[j % 3])
        ax.plot([], [], "s", color=f"C{j}", alpha=0.6, label=label)
    ax.set_xticks(range(1, len(keys) + 1), [f"{k}\n({len(gammas[k])})" for k in keys])
    ax.set(xlabel="block index in the model (hidden channels)",
           ylabel="|gamma| (dimensionless)")
    if len(models) > 1:  # above the axes: inside, it would cover a box
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(models),
                  fontsize=8, frameon=False)
    return fig


def plot_slimming(curves: dict[str, pd.DataFrame], reference: float | None = None,
                  floor: float | None = None):
    """Validation accuracy against the int8 file's bytes, per recipe, with the parameters
    on the top axis (at int8 a file's bytes grow in step with its parameters, so one
    panel shows both).

    Each DataFrame of `curves` has columns ``fraction`` (share of hidden channels cut,
    0..1), ``params``, ``int8 bytes`` and ``val_acc`` (a fraction), one row per cut,
    labelled with the cut in percent (`_label_cuts`). `reference` (a fraction) draws the
    uncut model's accuracy and the band one point below it. Points below `floor` (a
    fraction; default 10 points under `reference`) sit in a lower row below a break in
    the accuracy axis, at their real accuracy, not squeezing the informative range."""
    if floor is None and reference is not None:
        floor = reference - 0.10
    bottom = 100 * floor if floor is not None else -np.inf  # in percent, like the y axis
    acc = pd.concat([100 * t["val_acc"] for t in curves.values()])
    rows = 1 + bool((acc < bottom).any())
    fig, axes = plt.subplots(rows, 1, figsize=(FULL_WIDTH_IN * 0.8, 2.7 + rows), sharex="col",
                             squeeze=False, layout="constrained", height_ratios=[2.2, 1][:rows])
    axes = axes[:, 0]
    for j, (name, table) in enumerate(curves.items()):
        for ax in axes:
            ax.plot(table["int8 bytes"] / 1e3, 100 * table["val_acc"], marker="os^"[j % 3],
                    ls=("-", "--", ":")[j % 3], color=f"C{j}", label=name)
    _label_cuts(axes, pd.concat([t.assign(x=t["int8 bytes"] / 1e3, y=100 * t["val_acc"])
                                 for t in curves.values()]), bottom)
    if reference is not None:
        axes[0].axhline(100 * reference, color="black", lw=0.8, ls="--")
        axes[0].axhspan(100 * reference - 1, 100 * reference, color="0.5", alpha=0.2)
    axes[-1].set_xlabel("int8 file (thousands of bytes)")
    # Parameters on top: the straight line through every (bytes, parameters) point.
    both = pd.concat(curves.values())
    slope, offset = np.polyfit(both["int8 bytes"], both["params"], 1)
    top = axes[0].secondary_xaxis("top", functions=(lambda b: slope * b + offset / 1e3,
                                                    lambda p: (p - offset / 1e3) / slope))
    top.set_xlabel("parameters (thousands)")
    band = [] if reference is None else [100 * reference - 1, 100 * reference]
    for row, part in enumerate(([*acc[acc >= bottom], *band], acc[acc < bottom])[:rows]):
        low, high = min(part), max(part)
        pad = max(high - low, 2.0)
        axes[row].set_ylim(low - 0.15 * pad, high + 0.3 * pad)  # room for the labels
    if rows == 2:  # the break: slanted marks, no spine
        upper, lower = axes
        upper.spines.bottom.set_visible(False), lower.spines.top.set_visible(False)
        upper.tick_params(bottom=False)
        for ax, y in ((upper, 0), (lower, 1)):
            ax.plot([0, 1], [y, y], transform=ax.transAxes, marker=[(-1, -0.5), (1, 0.5)],
                    markersize=8, ls="none", color="black", clip_on=False)
    fig.supylabel("validation accuracy (%)", fontsize="medium")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
               ncols=2, fontsize=8)
    return fig


def _label_cuts(axes, points: pd.DataFrame, bottom: float) -> None:
    """Label points (x, y, fraction) with the cut in percent; points of one cut in one row
    (split at `bottom`) within 2 % of the x range share one label, above the highest."""
    points = points.assign(row=(points["y"] < bottom).astype(int))
    points = points.sort_values(["row", "fraction", "x"])
    gap = points.groupby(["row", "fraction"])["x"].diff()
    points["place"] = (gap > 0.02 * np.ptp(points["x"])).cumsum()
    for (row, fraction, _), group in points.groupby(["row", "fraction", "place"]):
        top = group.iloc[group["y"].to_numpy().argmax()]
        axes[row].annotate(f"{100 * fraction:.0f}%", (top["x"], top["y"]), fontsize=7,
                           textcoords="offset points", xytext=(0, 5), ha="center")
