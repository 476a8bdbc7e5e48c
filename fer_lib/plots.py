"""Figures the book shows, and the published numbers it compares against.

Every chapter draws through these helpers so figures share one look: `new_axes()`
gives a labelled figure, `FAMILY_COLORS` / `FAMILY_LABELS` fix one colour and one
name per model family, and `budget_lines()` marks the homework's byte budgets.
Nothing here saves files: the book's notebooks display the figures inline.

Every series is told apart by marker and line style as well as colour
(`FAMILY_MARKERS`, `FAMILY_LINES`), so the figures read in greyscale too. The homework
reports' numbers live in `fer_lib.report.REPORTS`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .quantize import SIMPLE_BUDGET, STRONG_BUDGET, TINY_BUDGET

# One colour per family, colour-blind safe (Okabe-Ito), the same in every chapter.
FAMILY_COLORS = {
    "mobilenet_v1": "#0072B2",
    "cnn": "#D55E00",
    "mobilenet_v2": "#009E73",
    "hw3_cnn": "#CC79A7",
    "vgg": "#E69F00",
    "ensemble": "#56B4E9",
    "resnet": "#F0E442",
    "published": "#555555",
}
FAMILY_LABELS = {
    "mobilenet_v1": "MobileNetV1 (depthwise separable)",
    "cnn": "plain CNN",
    "mobilenet_v2": "MobileNetV2 student",
    "hw3_cnn": "HW3 CNN",
    "vgg": "VGG teacher",
    "ensemble": "teacher ensemble",
    "resnet": "ResNet",
    "published": "published",
}
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

def new_axes(xlabel: str, ylabel: str, *, title: str | None = None, logx: bool = False,
             figsize: tuple[float, float] = (6.4, 4.0)):
    """A fresh (fig, ax) with labelled axes, a light grid and optional log x-axis."""
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    ax.grid(True, which="major", alpha=0.3)
    return fig, ax


def budget_lines(ax, budgets: dict[str, int] = BYTE_BUDGETS) -> None:
    """Dashed vertical lines at the byte budgets, labelled at the top of the axes."""
    for name, nbytes in budgets.items():
        ax.axvline(nbytes, color="0.4", ls="--", lw=0.8)
        # Rotated along the line: neighbouring budgets' labels never overlap.
        ax.text(nbytes, 0.99, f"{name}: {nbytes:,} B ", transform=ax.get_xaxis_transform(),
                fontsize=7, va="top", ha="right", rotation=90, color="0.3")


def errorbar_family(ax, runs: pd.DataFrame, family: str, value: str = "private_acc",
                    label: str | None = None, full_seeds: int = 3, **kwargs) -> pd.DataFrame:
    """Mean +/- one standard deviation over seeds of `value` (a fraction, drawn in %)
    against mean parameters, for one family of `fer_lib.report.sweep_runs()`.

    Points with fewer than `full_seeds` seeds get a hollow marker and an "n=k" note, so a
    reader sees which means rest on fewer runs. Returns `fer_lib.report.seed_table`'s rows.
    """
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
        ax.annotate(f"n={row['seeds']}", (row["params"], 100 * row["mean"]), fontsize=7,
                    textcoords="offset points", xytext=(6, -12 if below else 6), color=color)
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


def plot_frontier(table: pd.DataFrame, highlight: dict | None = None,
                  reports: dict | None = None):
    """Private accuracy (%) against model-file bytes for every run at every precision.

    table: `fer_lib.report.precision_table()`. Each run's precisions are joined by a thin
    line (left to right: int4, int8, fp16, fp32). highlight: ``{label: Submission}``,
    ringed and labelled (the only labels, so none collide). reports:
    `fer_lib.report.REPORTS`, drawn as stars where their bytes are known, else as a
    dotted horizontal line. Budget lines at `BYTE_BUDGETS`.
    """
    fig, ax = new_axes("model file size (bytes, log scale)", "private accuracy (%)",
                       logx=True, figsize=(8.0, 5.0))
    table = table.assign(category=table.apply(run_category, axis=1))
    for category, style in CATEGORY_STYLES.items():
        rows = table[table["category"] == category]
        for _, run in rows.groupby("run"):
            run = run.sort_values("bytes")
            ax.plot(run["bytes"], 100 * run["private_acc"], color=style["color"], lw=0.6,
                    alpha=0.5)
        ax.scatter(rows["bytes"], 100 * rows["private_acc"], s=22, zorder=3, label=category,
                   **style)
    for i, (label, sub) in enumerate((highlight or {}).items()):
        ax.scatter([sub.bytes], [100 * sub.private_acc], s=160, facecolors="none",
                   edgecolors="black", linewidths=1.4, zorder=4)
        # Labels stacked in the empty band below the cloud, arrows to their points.
        ax.annotate(label, (sub.bytes, 100 * sub.private_acc), textcoords="axes fraction",
                    xytext=(0.30 + 0.12 * i, 0.42 - 0.07 * i), ha="left", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8),
                    arrowprops=dict(arrowstyle="-", lw=0.6), zorder=5)
    for report in (reports or {}).values():
        if report.get("bytes"):
            ax.scatter([report["bytes"]], [100 * report["private_acc"]], marker="*", s=150,
                       color="#555555", zorder=4, label=report["label"])
        else:
            ax.axhline(100 * report["private_acc"], color="#555555", ls=":", lw=1,
                       label=f"{report['label']} (bytes not stated)")
    budget_lines(ax)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.legend(fontsize=7, loc="lower right", ncols=2)
    return fig


# --- Compression chapters: distillation, quantisation, pruning ----------------------------
def plot_soft_targets(logits: np.ndarray, class_names, temperatures=(1, 2, 4, 8),
                      titles=None):
    """Softmax(logits / T) of a few images, one panel per image, one bar group per class.

    `logits` is float (n, 7): a teacher's logits of n images. Shows how a higher
    temperature spreads the probability over the classes the teacher finds similar.
    """
    logits = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    fig, axes = plt.subplots(1, len(logits), figsize=(3.2 * len(logits), 3.2), sharey=True,
                             squeeze=False, layout="constrained")
    width = 0.8 / len(temperatures)
    x = np.arange(logits.shape[1])
    for i, (ax, row) in enumerate(zip(axes[0], logits, strict=True)):
        for j, t in enumerate(temperatures):
            z = row / t
            p = np.exp(z - z.max())
            ax.bar(x + (j - (len(temperatures) - 1) / 2) * width, p / p.sum(), width,
                   label=f"T = {t:g}", hatch=HATCHES[j % len(HATCHES)], edgecolor="black",
                   lw=0.4)
        ax.set_xticks(x, class_names, rotation=60, ha="right")
        ax.set_xlabel("class")
        if titles is not None:
            ax.set_title(titles[i], fontsize="medium")
    axes[0, 0].set_ylabel("teacher probability")
    axes[0, 0].set_ylim(0, 1)
    axes[0, -1].legend(fontsize="small")
    return fig


def plot_learning_curves(histories: dict[str, list[dict]]):
    """Validation accuracy and training loss per epoch of several runs.

    `histories` maps a run's label to its ``Result.history`` (rows with ``epoch``,
    ``loss``, ``val_acc``). Losses of different objectives (KD vs cross-entropy) are
    not on one scale: compare their shapes, not their heights.
    """
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for i, (label, rows) in enumerate(histories.items()):
        epoch = [r["epoch"] for r in rows]
        style = dict(label=label, ls=LINESTYLES[i % len(LINESTYLES)])
        ax_acc.plot(epoch, [100 * r["val_acc"] for r in rows], **style)
        ax_loss.plot(epoch, [r["loss"] for r in rows], **style)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)")
    ax_loss.set(xlabel="epoch", ylabel="training loss (nats)")
    ax_acc.legend()
    return fig


def plot_quantization_grid(weights: np.ndarray, scale: float, qmax: int, bins: int = 60):
    """Histogram of one output channel's weights with its symmetric integer grid.

    `weights` is float (k,); the grid points are ``q * scale`` for integer
    ``|q| <= qmax``, drawn as vertical lines.
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
    ax.hist(np.asarray(weights).ravel(), bins=bins, color="0.6")
    for q in range(-qmax, qmax + 1):
        ax.axvline(q * scale, color="C3", lw=0.6, alpha=0.7)
    ax.set(xlabel="weight value (dimensionless)", ylabel="number of weights",
           title=f"{2 * qmax + 1} levels, step {scale:.2g}")
    return fig


def plot_accuracy_vs_bytes(table: pd.DataFrame, budgets: dict[str, int] | None = None):
    """Accuracy against bytes on disk, one line per model across its precisions.

    `table` has columns ``model``, ``precision``, ``bytes`` and ``accuracy`` (a
    fraction); `budgets` maps a label to a byte limit, drawn by `budget_lines`.
    """
    fig, ax = new_axes("model file size (bytes, log scale)", "private-test accuracy (%)",
                       logx=True, figsize=(7.0, 4.2))
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
    ax.legend(fontsize="small", loc="lower right", ncols=2)
    return fig


def plot_gamma_distribution(models: dict[str, dict[int, np.ndarray]]):
    """Box plots of |gamma| of each expanded block's gate BatchNorm, one colour a model.

    `models` maps a label to `prune.gamma_summary(model)` (block index -> (hidden,)
    float32); models of one architecture share the block axis, side by side.
    """
    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
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
    if len(models) > 1:
        ax.legend(loc="upper left", fontsize=8)
    return fig


def plot_slimming(curves: dict[str, pd.DataFrame], reference: float | None = None,
                  floor: float | None = None):
    """Validation accuracy against parameters (left) and int8 bytes (right), per recipe.

    Each DataFrame of `curves` has columns ``fraction`` (share of hidden channels cut,
    0..1), ``params``, ``int8 bytes`` and ``val_acc`` (a fraction), one row per cut; the
    points are labelled with the cut in percent. `reference` (a fraction) draws the
    uncut model's accuracy and the band one point below it. Points below `floor` (a
    fraction; default 10 points under `reference`) would squeeze the informative range
    into a sliver, so they sit on the axis's lower edge as downward triangles labelled
    with their real accuracy.
    """
    if floor is None and reference is not None:
        floor = reference - 0.10
    bottom = 100 * floor if floor is not None else -np.inf  # in percent, like the y axis
    fig, axes = plt.subplots(1, 2, figsize=(8.8, 3.6), layout="constrained", sharey=True)
    for ax, column, scale, label in ((axes[0], "params", 1e3, "parameters (thousands)"),
                                     (axes[1], "int8 bytes", 1e3, "int8 file (kB)")):
        for j, (name, table) in enumerate(curves.items()):
            x, acc = table[column] / scale, 100 * table["val_acc"]
            low = acc < bottom
            y = acc.where(~low, bottom)
            ax.plot(x, y, marker="os^"[j % 3], ls=("-", "--", ":")[j % 3], color=f"C{j}",
                    label=name)
            ax.scatter(x[low], y[low], marker="v", s=80, color=f"C{j}", zorder=3)
            for xi, yi, f, a, is_low in zip(x, y, table["fraction"], acc, low, strict=True):
                text = f"{100 * f:.0f}%" + (f" ({a:.0f}%)" if is_low else "")
                # Collapsed cuts crowd the floor: their longer labels stand upright.
                ax.annotate(text, (xi, yi), textcoords="offset points",
                            xytext=(-2, 7) if is_low else (3, 4), fontsize=7, color=f"C{j}",
                            rotation=90 if is_low else 0)
        if reference is not None:
            ax.axhline(100 * reference, color="black", lw=0.8, ls="--")
            ax.axhspan(100 * reference - 1, 100 * reference, color="grey", alpha=0.2, lw=0)
        ax.set(xlabel=label)
    if floor is not None:
        axes[0].set_ylim(bottom=bottom - 1)
    axes[0].set(ylabel="validation accuracy (%)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
               ncols=len(curves), fontsize=8)
    return fig


# --- Architecture diagrams (Q1) ------------------------------------------------------------
LAYER_COLORS = {"conv": "#56B4E9", "inverted residual": "#009E73", "max-pool": "#E69F00",
                "global average pool": "#E69F00", "dense (linear)": "#CC79A7",
                "BN + ReLU": "#F0E442"}
LAYER_HATCHES = {"conv": "", "inverted residual": "//", "max-pool": "..",
                 "global average pool": "..", "dense (linear)": "xx", "BN + ReLU": "--"}


def _layer_kind(layer: str) -> str:
    return next((k for k in LAYER_COLORS if layer.startswith(k)), "conv")


def draw_network(table: pd.DataFrame, title: str | None = None):
    """A network drawn left to right from `fer_lib.models.layer_table(model)`.

    Each layer is a box whose height follows its output resolution (48 px tall at the
    input size) and whose width grows with the square root of its channels; colour and
    hatching tell the layer kinds apart (readable in greyscale). Below each box: its
    output shape; above: kind, stride and expansion.
    """
    fig, ax = plt.subplots(figsize=(min(1.0 + 0.42 * len(table), 8.5), 3.4),
                           layout="constrained")
    x = 0.0
    for _, row in table.iterrows():
        dims = [int(d) for d in str(row["output"]).split(" × ")]
        channels, size = dims[0], (dims[1] if len(dims) > 1 else 1)
        width, height = 0.25 + 0.06 * np.sqrt(channels), 0.3 + 2.7 * size / 48
        kind = _layer_kind(row["layer"])
        ax.add_patch(plt.Rectangle((x, -height / 2), width, height, facecolor=LAYER_COLORS[kind],
                                   edgecolor="black", hatch=LAYER_HATCHES[kind], lw=0.8))
        short = {"inverted residual": "IR", "max-pool": "pool", "global average pool": "GAP",
                 "dense (linear)": "dense", "BN + ReLU": "BN"}.get(kind, row["kernel"] or "conv")
        if row["layer"].endswith("skip"):
            short += "+"
        extra = "".join(f"\n{k[0]}{row[k]}" for k in ("stride", "expansion")
                        if str(row[k]) not in ("", "1"))
        ax.text(x + width / 2, 1.75, short + extra, ha="center", va="bottom", fontsize=7)
        ax.text(x + width / 2, -1.75, row["output"], ha="center", va="top", fontsize=7,
                rotation=90)
        x += width + 0.18
    ax.set_xlim(-0.2, x)
    ax.set_ylim(-4.2, 2.9)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=LAYER_COLORS[k], hatch=LAYER_HATCHES[k],
                             edgecolor="black", label=k)
               for k in dict.fromkeys(_layer_kind(v) for v in table["layer"])]
    ax.legend(handles=handles, fontsize=7, loc="lower right", ncols=len(handles),
              frameon=False, bbox_to_anchor=(1, -0.02))
    return fig


def draw_inverted_residual(cin: str = "C", expansion: str = "t", cout: str = "C'"):
    """One MobileNetV2 inverted-residual block, top to bottom, with its skip connection."""
    steps = [("input", f"{cin} × H × W"),
             ("1×1 conv, BN, ReLU6", f"expand to {expansion}·{cin} channels"),
             ("3×3 depthwise conv (stride s), BN, ReLU6", "one filter per channel"),
             ("1×1 conv, BN (no activation)", f"project to {cout} channels: linear bottleneck"),
             ("add the input", f"only when s = 1 and {cin} = {cout}"),
             ("output", f"{cout} × H/s × W/s")]
    fig, ax = plt.subplots(figsize=(5.2, 4.4), layout="constrained")
    ys = np.linspace(5, 0, len(steps))
    for (name, note), y in zip(steps, ys, strict=True):
        dashed = name == "add the input"
        ax.add_patch(plt.Rectangle((0, y - 0.3), 3.2, 0.6, facecolor="white" if dashed
                                   else "#E8F4EC", edgecolor="black", lw=0.8,
                                   ls="--" if dashed else "-"))
        ax.text(1.6, y + 0.07, name, ha="center", va="center", fontsize=8, weight="bold")
        ax.text(1.6, y - 0.17, note, ha="center", va="center", fontsize=7)
    for upper, lower in zip(ys[:-1], ys[1:], strict=True):
        ax.annotate("", (1.6, lower + 0.3), (1.6, upper - 0.3),
                    arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.annotate("", (3.2, ys[4]), (3.2, ys[0]), arrowprops=dict(
        arrowstyle="->", lw=0.8, ls="--", connectionstyle="arc3,rad=-0.5"))
    ax.text(4.05, (ys[0] + ys[4]) / 2, "skip", fontsize=8, rotation=90, va="center")
    ax.set_xlim(-0.2, 4.4)
    ax.set_ylim(-0.5, 5.5)
    ax.axis("off")
    return fig
