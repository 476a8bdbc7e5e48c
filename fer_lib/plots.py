"""Figures the book shows, and the published numbers it compares against.

Every chapter draws through these helpers so figures share one look: `new_axes()`
gives a labelled figure, `FAMILY_COLORS` / `FAMILY_LABELS` fix one colour and one
name per model family, and `budget_lines()` marks the homework's byte budgets.
Nothing here saves files: the book's notebooks display the figures inline.

`PUBLISHED_ANCHORS` holds numbers from outside this repository (the course's
homework reports, the literature), each with the caveat a reader needs.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

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

# The homework's model-file budgets in bytes (strong and simple baselines) and a
# tighter 32 KiB line for reference.
BYTE_BUDGETS = {"32 KiB": 32_768, "strong baseline": 225_000, "simple baseline": 650_000}

# Numbers from elsewhere. `protocol` is the caveat: the homework reports scored on
# Kaggle's public/private splits and may have selected models on public accuracy.
PUBLISHED_ANCHORS = {
    "report-a": dict(
        label="HW8 report A (KD from 8 teachers)", params=102_709, bytes=102_709 * 2,
        precision="fp16", public_acc=0.7055, private_acc=0.6960,
        protocol="homework report; fp16 npz; may have selected on public"),
    "report-b": dict(
        label="HW8 report B", params=73_511, bytes=73_511 * 2, precision="fp16",
        public_acc=0.6478, private_acc=0.6397,
        protocol="homework report; may have selected on public"),
    "report-a-hw3": dict(
        label="report A's HW3 model", params=4_200_000, bytes=None, precision="fp32",
        public_acc=None, private_acc=None,
        protocol="parameter count only, as stated in the report"),
    "report-b-hw3": dict(
        label="report B's HW3 model", params=22_600_000, bytes=None, precision="fp32",
        public_acc=None, private_acc=None,
        protocol="parameter count only, as stated in the report"),
    "mini-xception": dict(
        label="mini-Xception (Arriaga et al. 2017)", params=60_000, bytes=240_000,
        precision="fp32", public_acc=None, private_acc=0.66,
        protocol="paper's test accuracy, approximately; its own protocol"),
    "vgg-single": dict(
        label="VGG-style single models (literature)", params=None, bytes=None,
        precision="fp32", public_acc=None, private_acc=0.73,
        protocol="large models, long training; approximate"),
    "human": dict(
        label="human (Goodfellow et al. 2013)", params=None, bytes=None, precision=None,
        public_acc=None, private_acc=0.65, private_std=0.05,
        protocol="human accuracy estimate, 0.65 +/- 0.05"),
}


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
        ax.text(nbytes, 1.0, f" {name}\n {nbytes:,} B", transform=ax.get_xaxis_transform(),
                fontsize=7, va="top", ha="left", color="0.3")


def seed_stats(df: pd.DataFrame, by: str = "params",
               value: str = "private_acc") -> pd.DataFrame:
    """Mean, std (NaN for one seed) and seed count of `value` per `by` group, sorted."""
    g = df.groupby(by)[value]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "seeds": g.count()}
                        ).sort_index()


def errorbar_family(ax, df: pd.DataFrame, family: str, value: str = "private_acc",
                    label: str | None = None, **kwargs) -> pd.DataFrame:
    """Plot mean +/- std over seeds of `value` against params for one family.

    Points with a single seed get a hollow marker and no bar. Returns the stats table.
    """
    stats = seed_stats(df[df["family"] == family], "params", value)
    color = kwargs.pop("color", FAMILY_COLORS.get(family))
    label = label or FAMILY_LABELS.get(family, family)
    ax.errorbar(stats.index, stats["mean"], yerr=np.nan_to_num(stats["std"].to_numpy()),
                color=color, marker="o", capsize=3, label=label, **kwargs)
    single = stats[stats["seeds"] < 2]
    ax.scatter(single.index, single["mean"], s=70, facecolors="white", edgecolors=color,
               zorder=3, linewidths=1.5)
    return stats


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
                   label=f"T = {t:g}")
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
    for label, rows in histories.items():
        epoch = [r["epoch"] for r in rows]
        ax_acc.plot(epoch, [100 * r["val_acc"] for r in rows], label=label)
        ax_loss.plot(epoch, [r["loss"] for r in rows], label=label)
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
        ax.plot(rows["bytes"], 100 * rows["accuracy"], color=f"C{i}", label=model)
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


def plot_gamma_distribution(gammas: dict[int, np.ndarray]):
    """Box plot of |gamma| of each expanded block's gate BatchNorm (`prune.gamma_summary`)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.4), layout="constrained")
    keys = list(gammas)
    ax.boxplot([gammas[k] for k in keys], flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(keys) + 1), [f"{k}\n({len(gammas[k])})" for k in keys])
    ax.set(xlabel="block index in the model (hidden channels)",
           ylabel="|gamma| (dimensionless)")
    return fig


def plot_slimming(table):
    """Params and accuracy after slimming without fine-tuning, against the cut fraction.

    `table` is a DataFrame with columns ``fraction`` (0..1), ``params`` and, optionally,
    ``val_acc`` (a fraction; NaN or absent when the data set is unavailable).
    """
    has_acc = "val_acc" in table and table["val_acc"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(8.5 if has_acc else 4.5, 3.3),
                             squeeze=False, layout="constrained")
    pct = 100 * table["fraction"]
    axes[0, 0].plot(pct, table["params"] / 1000, marker="o")
    axes[0, 0].set(xlabel="hidden channels cut (%)", ylabel="parameters (thousands)")
    if has_acc:
        axes[0, 1].plot(pct, 100 * table["val_acc"], marker="o", color="C1")
        axes[0, 1].set(xlabel="hidden channels cut (%)", ylabel="validation accuracy (%)")
    return fig
