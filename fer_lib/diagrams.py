"""Architecture diagrams for Q1: a network drawn layer by layer, and the MobileNet units.

`draw_network` draws any model from `fer_lib.models.layer_table`; `draw_mobilenet_blocks`
opens up the block each MobileNet repeats. Both follow `fer_lib.plots`' print rules
(at most `FULL_WIDTH_IN` wide, no text under 7 points once printed, readable in greyscale).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .plots import FULL_WIDTH_IN

LAYER_COLORS = {"conv": "#56B4E9", "depthwise conv": "#D7EEF9", "inverted residual": "#009E73",
                "max-pool": "#E69F00", "global average pool": "#E69F00",
                "dense (linear)": "#CC79A7", "BN + ReLU": "#F0E442"}
LAYER_HATCHES = {"conv": "", "depthwise conv": "\\\\", "inverted residual": "//",
                 "max-pool": "..", "global average pool": "..", "dense (linear)": "xx",
                 "BN + ReLU": "--"}
LAYER_SHORT = {"depthwise conv": "dw", "inverted residual": "IR", "max-pool": "pool",
               "global average pool": "GAP", "dense (linear)": "dense", "BN + ReLU": "BN"}


def _layer_kind(layer: str) -> str:
    return next((k for k in LAYER_COLORS if layer.startswith(k)), "conv")


def draw_network(table: pd.DataFrame, title: str | None = None):
    """A network drawn left to right from `fer_lib.models.layer_table(model)`.

    Each layer is a box whose height follows its output resolution (48 px tall at the
    input size) and whose width grows with the square root of its channels; colour and
    hatching tell the layer kinds apart (readable in greyscale). Below each box: its
    output shape; above: kind, stride (s2) and expansion to one decimal (e3.7)."""
    fig, ax = plt.subplots(figsize=(min(1.0 + 0.42 * len(table), FULL_WIDTH_IN), 3.4),
                           layout="constrained")
    x = 0.0
    for _, row in table.iterrows():
        dims = [int(d) for d in str(row["output"]).split(" × ")]
        channels, size = dims[0], (dims[1] if len(dims) > 1 else 1)
        width, height = 0.25 + 0.06 * np.sqrt(channels), 0.3 + 2.7 * size / 48
        kind = _layer_kind(row["layer"])
        ax.add_patch(plt.Rectangle((x, -height / 2), width, height, facecolor=LAYER_COLORS[kind],
                                   edgecolor="black", hatch=LAYER_HATCHES[kind], lw=0.8))
        short = LAYER_SHORT.get(kind, row["kernel"] or "conv")
        if row["layer"].endswith("skip"):
            short += "+"
        extra = "".join(f"\n{k[0]}{round(float(row[k]), 1):g}" for k in ("stride", "expansion")
                        if str(row[k]) not in ("", "1"))
        ax.text(x + width / 2, 1.75, short + extra, ha="center", va="bottom", fontsize=7)
        ax.text(x + width / 2, -1.75, row["output"], ha="center", va="top", fontsize=7,
                rotation=90)
        x += width + 0.18
    ax.set(xlim=(-0.2, x), ylim=(-4.2, 2.9))
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=LAYER_COLORS[k], hatch=LAYER_HATCHES[k],
                             edgecolor="black", label=k)
               for k in dict.fromkeys(_layer_kind(v) for v in table["layer"])]
    ax.legend(handles=handles, fontsize=7, loc="lower right", ncols=len(handles),
              frameon=False, bbox_to_anchor=(1, -0.02))
    return fig


BLOCK_WIDTH = 3.6  # data units of a box in `_draw_block`; the skip arrow runs on its right


def _draw_block(ax, steps: list[tuple[str, str]], title: str, skip: str | None = None) -> None:
    """A block's operations as boxes from top to bottom on `ax`, one unit apart; `skip`
    names the step that a dashed skip arrow from the input reaches (dashed itself)."""
    ys = 5.0 - np.arange(len(steps))
    mid = BLOCK_WIDTH / 2
    for (name, note), y in zip(steps, ys, strict=True):
        dashed = name == skip
        ax.add_patch(plt.Rectangle((0, y - 0.3), BLOCK_WIDTH, 0.6, facecolor="white" if dashed
                                   else "#E8F4EC", edgecolor="black", lw=0.8,
                                   ls="--" if dashed else "-"))
        ax.text(mid, y + 0.1, name, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(mid, y - 0.15, note, ha="center", va="center", fontsize=8)
    for upper, lower in zip(ys[:-1], ys[1:], strict=True):
        ax.annotate("", (mid, lower + 0.3), (mid, upper - 0.3),
                    arrowprops=dict(arrowstyle="->", lw=0.8))
    if skip is not None:
        end = ys[[name for name, _ in steps].index(skip)]
        ax.annotate("", (BLOCK_WIDTH, end), (BLOCK_WIDTH, ys[0]), arrowprops=dict(
            arrowstyle="->", lw=0.8, ls="--", connectionstyle="arc3,rad=-0.4"))
        ax.text(BLOCK_WIDTH + 0.55, (ys[0] + end) / 2, "skip", fontsize=9, rotation=90,
                va="center")
    ax.set(xlim=(-0.1, BLOCK_WIDTH + 1.0), ylim=(-0.5, 5.6))
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def draw_mobilenet_blocks(cin: str = "C", expansion: str = "t", cout: str = "C'"):
    """The unit each MobileNet repeats, side by side: MobileNetV1's depthwise-separable
    block (left) and MobileNetV2's inverted residual with its skip connection (right),
    each top to bottom, for `cin` input and `cout` output channels."""
    separable = [("input", f"{cin} × H × W"),
                 ("3×3 depthwise conv", "stride s, BN, ReLU; one filter per channel"),
                 ("1×1 conv", f"BN, ReLU; mixes into {cout} channels"),
                 ("output", f"{cout} × H/s × W/s")]
    inverted = [("input", f"{cin} × H × W"),
                ("1×1 conv", f"BN, ReLU6; expands to {expansion}·{cin} channels"),
                ("3×3 depthwise conv", "stride s, BN, ReLU6; one filter per channel"),
                ("1×1 conv, no activation", f"BN; projects to {cout}: linear bottleneck"),
                ("add the input", f"only when s = 1 and {cin} = {cout}"),
                ("output", f"{cout} × H/s × W/s")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(FULL_WIDTH_IN, 4.2), layout="constrained")
    _draw_block(left, separable, "MobileNetV1: depthwise separable")
    _draw_block(right, inverted, "MobileNetV2: inverted residual", skip="add the input")
    return fig
