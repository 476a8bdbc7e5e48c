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
