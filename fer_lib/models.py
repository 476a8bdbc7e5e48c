"""Model families for 1 x 48 x 48 grey faces -> 7 expression logits.

`FAMILIES` maps a family name to its builder; `build(name, **hparams)` returns an
`nn.Module` that remembers how it was built (`model.family`, `model.hparams`), so a
checkpoint or an exported file can rebuild it from the file alone.

Families (all scaled by a float `width` multiplier on every channel count):

- ``hw3_cnn``: the "HW3" baseline of the course, a VGG-style stack with a dense head.
- ``cnn``: the plain-CNN family of the Q3 sweep: conv-BN-ReLU, max-pooling, global
  average pooling. Same stage layout as ``mobilenet_v1``.
- ``mobilenet_v1``: depthwise-separable convolutions (Q2 sweep).
- ``mobilenet_v2``: inverted residuals with linear bottlenecks; the compact student.
- ``vgg`` and ``resnet``: strong teachers for distillation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

NUM_CLASSES = 7
INPUT_SHAPE = (1, 48, 48)  # channels, height, width


def scaled(channels: int, width: float) -> int:
    """Channel count `channels * width`, rounded, never below 1."""
    return max(1, int(round(channels * width)))


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
            act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Conv (no bias: BatchNorm supplies it) -> BatchNorm -> optional activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


def classifier(features: int, dropout: float) -> nn.Sequential:
    """Global average pool -> dropout -> linear to the 7 classes."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(features, NUM_CLASSES))


def _check_width(width: float) -> None:
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")


# --- Plain CNN and MobileNetV1 share one stage layout, so Q3 and Q4 compare like with like.
# Each entry is (output channels at width 1, stride). Resolution 48 -> 24 -> 12 -> 6.
V1_STEM = 32
V1_LAYOUT = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1))


def plain_cnn(width: float = 1.0, dropout: float = 0.2, downsample: str = "pool"
              ) -> nn.Sequential:
    """Plain CNN: 3x3 conv-BN-ReLU everywhere. Where the layout strides, a 2x2 max-pool
    before the conv (``downsample="pool"``, the Q3 sweep) or a stride-2 conv
    (``"stride"``, as the MobileNet does it: the Q4 ablation)."""
    return _v1_layout(width, dropout, downsample,
                      lambda cin, cout, stride: conv_bn(cin, cout, 3, stride))


def _check_downsample(downsample: str) -> None:
    if downsample not in ("pool", "stride"):
        raise ValueError(f"downsample must be 'pool' or 'stride', got {downsample!r}")


def mobilenet_v1(width: float = 1.0, dropout: float = 0.2, downsample: str = "stride"
                 ) -> nn.Sequential:
    """MobileNetV1: each 3x3 conv factorised into depthwise 3x3 + pointwise 1x1. Where the
    layout strides, the depthwise conv has stride 2 (``downsample="stride"``, the Q2
    sweep) or a 2x2 max-pool comes first (``"pool"``, as the plain CNN: the Q4 ablation)."""
    return _v1_layout(width, dropout, downsample, lambda cin, cout, stride: nn.Sequential(
        conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, cout, 1)))


def _v1_layout(width: float, dropout: float, downsample: str, block) -> nn.Sequential:
    """The stem, `V1_LAYOUT` of ``block(cin, cout, stride)`` and the classifier, shared
    by the plain CNN and MobileNetV1 so that they differ in their blocks only. With
    ``downsample="pool"`` a 2x2 max-pool precedes each strided block, which then has
    stride 1."""
    _check_width(width)
    _check_downsample(downsample)
    cin = scaled(V1_STEM, width)
    layers: list[nn.Module] = [conv_bn(1, cin)]
    for channels, stride in V1_LAYOUT:
        if stride == 2 and downsample == "pool":
            layers.append(nn.MaxPool2d(2))
        cout = scaled(channels, width)
        layers.append(block(cin, cout, stride if downsample == "stride" else 1))
        cin = cout
    return nn.Sequential(*layers, classifier(cin, dropout))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection (+ skip)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: float,
                 hidden: int | None = None):
        super().__init__()
        if hidden is None:
            hidden = max(1, int(round(cin * expansion)))
        layers: list[nn.Module] = []
        if expansion != 1 or hidden != cin:
            layers.append(conv_bn(cin, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_skip else out


# (expansion or None for "use the model's", channels at width 1, repeats, first stride).
# Resolution 48 -> 48 -> 24 -> 12 -> 6 -> 6 -> 3; the stem keeps full resolution because
# 48 x 48 faces have little to spare.
V2_SETTINGS = ((1, 16, 1, 1), (None, 24, 2, 2), (None, 32, 3, 2), (None, 64, 3, 2),
               (None, 96, 2, 1), (None, 160, 2, 2))


def mobilenet_v2(width: float = 0.4, expansion: float = 4.0, last_channels: int = 320,
                 dropout: float = 0.2, hidden: tuple[int, ...] | None = None,
                 stem: int = 32, stem_stride: int = 1,
                 stages: tuple[tuple, ...] | None = None) -> nn.Sequential:
    """MobileNetV2 adapted to 48 x 48; the defaults give about 105k parameters.

    `stages` replaces `V2_SETTINGS`: one ``(expansion or None, channels at width 1,
    repeats, first stride)`` per stage (None: use `expansion`). With the stem's channels
    (`stem`, at width 1) and stride (`stem_stride`) it decides where the parameters sit
    and at which resolution they work (the student design study moves them).
    `hidden` overrides the expanded width of each inverted-residual block (one entry per
    block, in order); network slimming uses it to describe a pruned model.
    """
    _check_width(width)
    if expansion <= 0:
        raise ValueError(f"expansion must be positive, got {expansion!r}")
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
    stages = V2_SETTINGS if stages is None else tuple(tuple(stage) for stage in stages)
    if not stages or any(len(stage) != 4 or stage[2] < 1 or stage[3] not in (1, 2)
                         for stage in stages):
        raise ValueError("stages must list (expansion or None, channels, repeats >= 1, "
                         f"stride 1 or 2) per stage, got {stages!r}")
    blocks = sum(repeats for _, _, repeats, _ in stages)
    if hidden is not None and (len(hidden) != blocks or min(hidden) < 1):
        raise ValueError(f"hidden must list {blocks} positive channel counts, got {hidden!r}")
    cin = scaled(stem, width)
    layers: list[nn.Module] = [conv_bn(1, cin, stride=stem_stride, act=nn.ReLU6)]
    for t, channels, repeats, stride in stages:
        cout = scaled(channels, width)
        for i in range(repeats):
            ratio = expansion if t is None else t
            block_hidden = None if hidden is None else hidden[len(layers) - 1]
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, ratio,
                                           block_hidden))
            cin = cout
    last = scaled(last_channels, width)
    layers.append(conv_bn(cin, last, 1, act=nn.ReLU6))
    return nn.Sequential(*layers, classifier(last, dropout))


# --- VGG-style networks: the HW3 baseline and a wider teacher.
def vgg_stack(stages: tuple[tuple[int, int], ...], width: float) -> tuple[list[nn.Module], int]:
    """Stages of (channels, convs) 3x3 conv-BN-ReLU, each closed by a 2x2 max-pool."""
    _check_width(width)
    layers: list[nn.Module] = []
    cin = 1
    for channels, convs in stages:
        cout = scaled(channels, width)
        for _ in range(convs):
            layers.append(conv_bn(cin, cout))
            cin = cout
        layers.append(nn.MaxPool2d(2))
    return layers, cin


def hw3_cnn(width: float = 1.0, hidden: int = 768, dropout: float = 0.5) -> nn.Sequential:
    """The HW3 baseline: four VGG stages (48 -> 3 pixels), flatten, a dense layer, 7 logits.

    About 4.1M parameters at width 1; most sit in the first dense layer, which is
    what a compact model must avoid.
    """
    layers, cin = vgg_stack(((64, 2), (128, 2), (256, 2), (256, 2)), width)
    units = scaled(hidden, width)
    head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin * 3 * 3, units),
                         nn.BatchNorm1d(units), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(units, NUM_CLASSES))
    return nn.Sequential(*layers, head)


def vgg(width: float = 1.0, dropout: float = 0.3) -> nn.Sequential:
    """Teacher: a VGG-13-like stack (64-128-256-512, 2 convs each), average-pooled head."""
    layers, cin = vgg_stack(((64, 2), (128, 2), (256, 2), (512, 2)), width)
    return nn.Sequential(*layers, classifier(cin, dropout))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs and an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, act=None))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else conv_bn(cin, cout, 1, stride, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet(width: float = 1.0, blocks: tuple[int, ...] = (2, 2, 2, 2),
           dropout: float = 0.2) -> nn.Sequential:
    """Teacher: ResNet-18 layout for 48 x 48 input (3x3 stem, no max-pool; 48 -> 6 pixels)."""
    _check_width(width)
    cin = scaled(64, width)
    layers: list[nn.Module] = [conv_bn(1, cin)]
    for stage, repeats in enumerate(blocks):
        cout = scaled(64 * 2**stage, width)
        for i in range(repeats):
            layers.append(BasicBlock(cin, cout, 2 if i == 0 and stage > 0 else 1))
            cin = cout
    return nn.Sequential(*layers, classifier(cin, dropout))


@dataclass(frozen=True)
class Family:
    """A model family: its builder, a one-line description, its role in the book and
    `title`, the name prose gives it ("MobileNetV1")."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    role: str
    title: str
    defaults: dict = field(default_factory=dict)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("hw3_cnn", hw3_cnn, "VGG-style conv stack with a dense head", "HW3 baseline (Q1)",
           "HW3 CNN"),
    Family("cnn", plain_cnn, "plain conv-BN-ReLU + max-pool", "plain-CNN sweep (Q3)",
           "plain CNN"),
    Family("mobilenet_v1", mobilenet_v1, "depthwise-separable convs", "MobileNet sweep (Q2)",
           "MobileNetV1"),
    Family("mobilenet_v2", mobilenet_v2, "inverted residuals, linear bottlenecks", "student",
           "MobileNetV2"),
    Family("vgg", vgg, "VGG-13-like, average-pooled head", "teacher", "VGG"),
    Family("resnet", resnet, "ResNet-18 layout for 48x48", "teacher", "ResNet"),
)}


def build(name: str, **hparams) -> nn.Module:
    """Build family `name` with `hparams` (e.g. ``width=0.5``).

    The returned module carries ``.family`` and ``.hparams`` so it describes itself.
    Raises ValueError naming the family or the bad hyperparameter.
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    try:
        model = FAMILIES[name].builder(**hparams)
    except TypeError as err:  # an unknown keyword: say which family rejected it
        raise ValueError(f"bad hyperparameters for family {name!r}: {err}") from None
    model.family = name
    model.hparams = dict(hparams)
    return model


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm's affine weights included, buffers not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module) -> int:
    """Forward FLOPs for one 1 x 48 x 48 image (a multiply-add counts as 2), via torch."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, *INPUT_SHAPE, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def summary(model: nn.Module, depth: int = 3):
    """Keras-style per-layer table (layer, output shape, params) as a pandas DataFrame.

    Uses torchinfo; rows are the modules down to `depth`, in forward order.
    """
    import pandas as pd
    from torchinfo import summary as torchinfo_summary

    stats = torchinfo_summary(model, input_size=(1, *INPUT_SHAPE), depth=depth, verbose=0,
                              device="cpu", mode="eval")
    rows = [{"layer": f"{'  ' * (layer.depth - 1)}{layer.class_name}",
             "output shape": tuple(layer.output_size[1:]),
             "params": layer.num_params if layer.is_leaf_layer or layer.depth == depth else 0}
            for layer in stats.summary_list if 0 < layer.depth <= depth]
    return pd.DataFrame(rows)


def params_for(family: str, **hparams) -> int:
    """Parameter count of a family at given hyperparameters, without keeping the model."""
    return count_params(build(family, **hparams))


# width_for_params answers, kept for every later process: the catalogue asks for 66
# widths at ~15 model builds each, seconds in every process that builds it (each chapter's
# kernel, each `fer` command). Keyed by this file's bytes: an edited model family never
# reads an old answer.
_WIDTHS: dict[str, float] = {}


def _widths_file():
    import hashlib
    from pathlib import Path

    from .datacache import cache_folder

    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return cache_folder(None) / f"widths-{source}.json"


def width_for_params(family: str, target: int, **hparams) -> float:
    """Width multiplier whose parameter count is closest to `target` (`search_width`),
    remembered in the cache folder (``$FER_CACHE_DIR``) for later processes."""
    import json
    import os

    key = repr((family, target, sorted(hparams.items())))
    if key not in _WIDTHS:
        try:  # no home folder (RuntimeError), no file yet, a broken file: search again
            path = _widths_file()
            _WIDTHS.update(json.loads(path.read_text()))
        except (OSError, ValueError, RuntimeError):
            pass
    if key not in _WIDTHS:
        _WIDTHS[key] = search_width(family, target, **hparams)
        try:  # write whole, then rename: a reader never sees half a file
            path = _widths_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            partial.write_text(json.dumps(_WIDTHS, sort_keys=True))
            os.replace(partial, path)
        except (OSError, RuntimeError):
            pass  # an unwritable cache folder: only this process remembers
    return _WIDTHS[key]


def search_width(family: str, target: int, **hparams) -> float:
    """Width multiplier whose parameter count is closest to `target`.

    Parameter counts grow monotonically (up to channel rounding) with width: double or
    halve from width 1 until the target is bracketed, then bisect in log-width; the
    end closer to the target wins.
    """
    if target <= 0:
        raise ValueError(f"target must be a positive parameter count, got {target!r}")
    lo = hi = 1.0
    while params_for(family, width=lo, **hparams) > target:
        if lo < 1e-3:
            raise ValueError(f"{family} cannot get down to {target} parameters")
        lo, hi = lo / 2, lo
    while params_for(family, width=hi, **hparams) < target:
        if hi > 64:
            raise ValueError(f"{family} cannot reach {target} parameters")
        lo, hi = hi, hi * 2
    while hi / lo > 1.002:
        mid = math.sqrt(lo * hi)
        if params_for(family, width=mid, **hparams) < target:
            lo = mid
        else:
            hi = mid
    return min((lo, hi), key=lambda w: abs(params_for(family, width=w, **hparams) - target))


def layer_table(model: nn.Module):
    """One row per layer as the homework reports tabulate them, as a pandas DataFrame.

    Columns: ``layer`` (what it is), ``kernel`` ("3×3"; "" where none), ``stride``,
    ``expansion`` (inverted residuals' t; "" elsewhere), ``output`` ("C × H × W" or "C")
    and ``params`` (trainable parameters, BatchNorm included). A conv-BN-activation is
    one row, an inverted-residual block one row; pooling, dropout and flatten rows have
    no parameters (dropout and flatten are left out).
    """
    import pandas as pd

    units = [(name, m) for name, m in model.named_modules()
             if isinstance(m, InvertedResidual | nn.MaxPool2d | nn.AdaptiveAvgPool2d | nn.Linear
                          | nn.BatchNorm1d)
             or (isinstance(m, nn.Sequential) and len(m) and isinstance(m[0], nn.Conv2d))]
    inside = {n for n, _ in units for other, _ in units if n.startswith(other + ".")}
    units = [(n, m) for n, m in units if n not in inside]
    shapes, hooks = {}, []
    for name, module in units:
        hooks.append(module.register_forward_hook(
            lambda mod, _inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *INPUT_SHAPE, device=next(model.parameters()).device))
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    return pd.DataFrame([_layer_row(m, shapes[n]) for n, m in units])


def _layer_row(module: nn.Module, shape: tuple[int, ...]) -> dict:
    row = {"layer": "", "kernel": "", "stride": "", "expansion": "",
           "output": " × ".join(str(d) for d in shape),
           "params": sum(p.numel() for p in module.parameters())}
    if isinstance(module, InvertedResidual):
        convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        depthwise = next(c for c in convs if c.groups > 1 or c.kernel_size != (1, 1))
        cin = convs[0].in_channels
        row.update(layer="inverted residual" + (" + skip" if module.use_skip else ""),
                   kernel="3×3 dw", stride=depthwise.stride[0],
                   expansion=f"{depthwise.out_channels / cin:.3g}")
    elif isinstance(module, nn.Sequential):
        conv = module[0]
        kind = "depthwise conv" if conv.groups == conv.in_channels > 1 else "conv"
        act = type(module[-1]).__name__ if len(module) > 2 else "linear"
        row.update(layer=f"{kind} + BN + {act}", kernel="×".join(map(str, conv.kernel_size)),
                   stride=conv.stride[0])
    elif isinstance(module, nn.MaxPool2d):
        row.update(layer="max-pool", kernel=f"{module.kernel_size}×{module.kernel_size}",
                   stride=module.stride)
    elif isinstance(module, nn.AdaptiveAvgPool2d):
        row.update(layer="global average pool")
    elif isinstance(module, nn.BatchNorm1d):
        row.update(layer="BN + ReLU")
    else:
        row.update(layer="dense (linear)")
    return row
