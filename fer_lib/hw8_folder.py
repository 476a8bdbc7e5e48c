"""The graded hw8 folder: what goes in it, its layer plan, and its bytes as the course
measured them (``du --apparent-size``).

The folder holds the exported weights (``model.npz``, `fer_lib.quantize.export_npz`),
``plan.json`` (the layers, :func:`plan_of`), ``predict.py`` (the numpy-only predictor,
``fer_lib/hw8_predict.py``: the graders promised no GPU, so no torch) and
``hw8_test.sh``. :func:`write_folder` writes it, :func:`measure_folder` measures it,
:func:`folder_sizes` says what a model's folder weighs at each precision before it is
trained, and :func:`fitting_precision` picks the most precise that fits a budget.
`fer_lib.homework` builds the folder of a run (`fer package`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from torch import nn

from .models import BasicBlock, InvertedResidual
from .quantize import PRECISIONS, STRONG_BUDGET, BudgetExceeded, export_npz, load_model

WEIGHTS_FILE = "model.npz"
PREDICTOR = Path(__file__).with_name("hw8_predict.py")
# Plain sh is enough (the graders ran it as `bash hw8_test.sh`, which reads it the same).
TEST_SCRIPT = """#!/bin/sh
# HW8: bash hw8_test.sh test.csv out.csv  (numpy only; model.npz, plan.json beside it)
exec python3 "$(dirname "$0")/predict.py" "$1" "$2"
"""



# ----------------------------------------------------------------------------- the plan
# Layers without weights: module type -> the plan's ops (Dropout does nothing in eval).
_ELEMENTWISE = {nn.ReLU: [["relu"]], nn.ReLU6: [["relu6"]], nn.Identity: [], nn.Dropout: []}


def _conv_op(conv: nn.Conv2d, where: str) -> list:
    """``["conv", stride, padding, groups, has_bias]`` for the convs the predictor has."""
    k, s, p = conv.kernel_size, conv.stride, conv.padding
    depthwise = conv.groups == conv.in_channels == conv.out_channels
    if (k[0] != k[1] or s[0] != s[1] or isinstance(p, str) or p[0] != p[1]
            or conv.dilation != (1, 1) or conv.padding_mode != "zeros"
            or conv.groups not in (1,) and not depthwise):
        raise ValueError(f"the numpy predictor cannot run {where.rstrip('.')} ({conv!r})")
    return ["conv", s[0], p[0], conv.groups, int(conv.bias is not None)]


def _plan(module: nn.Module, where: str, names: list[str]) -> list:
    """The ops of `module`, walking children in registration order (the order of the
    state dict, so each conv/fc takes the next tensors); `names` collects theirs."""
    kind = type(module)
    if kind in (nn.Sequential, InvertedResidual, BasicBlock):
        parts = {name: _plan(child, f"{where}{name}.", names)
                 for name, child in module.named_children()}
        if kind is InvertedResidual:
            return [["add", parts["block"], []]] if module.use_skip else parts["block"]
        if kind is BasicBlock:
            return [["add", parts["body"], parts["shortcut"]], ["relu"]]
        return [op for ops in parts.values() for op in ops]
    if kind in (nn.Conv2d, nn.Linear):
        names += [f"{where}weight"] + ([f"{where}bias"] if module.bias is not None else [])
        return [_conv_op(module, where) if kind is nn.Conv2d
                else ["fc", int(module.bias is not None)]]
    if kind is nn.MaxPool2d and (module.kernel_size, module.stride, module.padding,
                                 module.dilation, module.ceil_mode) in [(2, 2, 0, 1, False)]:
        return [["max"]]
    if kind is nn.AdaptiveAvgPool2d and module.output_size in (1, (1, 1)):
        return [["mean"]]
    if kind is nn.Flatten and (module.start_dim, module.end_dim) == (1, -1):
        return [["flat"]]
    if kind in _ELEMENTWISE:
        return _ELEMENTWISE[kind]
    raise ValueError(f"the numpy predictor cannot run {where.rstrip('.') or 'the model'} "
                     f"({module!r})")


def plan_of(model: nn.Module) -> list:
    """The layer plan ``predict.py`` runs for a BN-folded model (e.g. `load_model`'s).

    A JSON-ready list of ops in forward order: ``["conv", stride, padding, groups,
    has_bias]`` (groups 1, or depthwise), ``["fc", has_bias]``, ``["relu"]``,
    ``["relu6"]``, ``["max"]`` (2x2 max-pool), ``["mean"]`` (global average pool),
    ``["flat"]`` and ``["add", ops, ops]`` (the sum of two branches; ``[]`` is the
    identity). Each conv/fc takes the next weight (and bias) of the state dict. Raises
    ValueError for a layer the predictor lacks (an unfolded BatchNorm among them).
    """
    names: list[str] = []
    plan = _plan(model, "", names)
    stored = [k for k, v in model.state_dict().items() if v.is_floating_point()]
    if names != stored:
        raise ValueError(f"the plan takes {len(names)} tensors, the model stores {len(stored)} "
                         "in another order; the predictor would misread the weights")
    return plan


# ----------------------------------------------------------------------------- the folder
def _entries(folder: Path):
    """The folder and everything below it; links are listed, never followed (as du)."""
    yield folder
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            yield Path(root) / name


def apparent_size(folder: str | os.PathLike) -> int:
    """Bytes as ``du --apparent-size -b -s folder`` counts them: the ``st_size`` of the
    folder itself, of every folder, file and link below it (a folder's own entry is 4,096
    B on ext4), each hard-linked file once."""
    seen, total = set(), 0
    for path in _entries(Path(folder)):
        stat = os.lstat(path)
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total


def du_size(folder: str | os.PathLike) -> int | None:
    """What GNU ``du --apparent-size -b -s`` reports for `folder`; None without GNU du."""
    try:
        done = subprocess.run(["du", "--apparent-size", "-b", "-s", str(folder)],
                              capture_output=True, text=True, check=False)
    except OSError:
        return None
    return int(done.stdout.split()[0]) if done.returncode == 0 else None


@dataclass(frozen=True)
class Package:
    """A hw8/ folder and its bytes as the course measured them.

    `files`: apparent bytes of each file; `directories`: what du adds for the folders'
    own entries; `total`: their sum, :func:`apparent_size`; `du`: GNU du's figure (None
    without it; when present it is the one judged); `budget`: bytes allowed (None: no
    limit). `weights` is ``model.npz``; `code` every other file.
    """

    folder: Path
    run: str
    precision: str
    files: dict[str, int]
    directories: int
    total: int
    du: int | None
    budget: int | None

    @property
    def weights(self) -> int:
        return self.files[WEIGHTS_FILE]

    @property
    def code(self) -> int:
        return sum(self.files.values()) - self.weights

    @property
    def size(self) -> int:
        """The size judged against the budget: du's when GNU du exists, else `total`."""
        return self.total if self.du is None else self.du

    def to_dict(self) -> dict:
        """JSON-ready: run, precision, weights, code, directories, total, du, budget, files."""
        return {**{k: v for k, v in asdict(self).items() if k != "folder"},
                "weights": self.weights, "code": self.code}

    def breakdown(self) -> str:
        """The table `fer package` prints: each file, the folders, the total, the budget."""
        lines = [f"{self.folder}/: {self.run} at {self.precision}"]
        lines += [f"  {name:14s} {size:9,d} B  {'weights' if name == WEIGHTS_FILE else 'code'}"
                  for name, size in sorted(self.files.items())]
        du = "no GNU du" if self.du is None else f"{self.du:,} B"
        lines += [f"  {'(folders)':14s} {self.directories:9,d} B  the folders' own entries",
                  f"  weights {self.weights:,} B + code {self.code:,} B + folders "
                  f"{self.directories:,} B = total {self.total:,} B (du -b: {du})"]
        if self.budget is not None:
            spare = self.budget - self.size
            lines.append(f"  budget {self.budget:,} B: " + (f"fits, {spare:,} B to spare"
                         if spare >= 0 else f"OVER by {-spare:,} B"))
        lines.append(f"  time: {FLIP_COST}")
        return "\n".join(lines)


# What the predictor's test-time flips cost (hw8_predict.logits): said in the report.
FLIP_COST = ("the predictor averages each face with its mirror image, two forward passes "
             "per face (the book's accuracies are scored the same way)")


def measure_folder(folder: Path, run: str = "", precision: str = "",
                   budget: int | None = None) -> Package:
    """Measure a folder like the course: every file's bytes, the folders', the total."""
    files = {p.relative_to(folder).as_posix(): os.lstat(p).st_size
             for p in _entries(folder) if not p.is_dir() or p.is_symlink()}
    total = apparent_size(folder)
    return Package(folder, run, precision, files, total - sum(files.values()), total,
                   du_size(folder), budget)


def write_folder(folder: Path, source) -> None:
    """Write model.npz (`source.export(path)`, e.g. a `homework.ModelSource`), plan.json
    (from the file, as the predictor will read it), predict.py and hw8_test.sh into the
    existing empty `folder`."""
    source.export(folder / WEIGHTS_FILE)
    plan = plan_of(load_model(folder / WEIGHTS_FILE))
    (folder / "plan.json").write_text(json.dumps(plan, separators=(",", ":")) + "\n")
    shutil.copyfile(PREDICTOR, folder / "predict.py")
    script = folder / "hw8_test.sh"
    script.write_text(TEST_SCRIPT)
    script.chmod(0o755)


def folder_sizes(model: nn.Module, name: str = "model") -> dict[str, Package]:
    """The graded folder of `model` (eval mode, BatchNorm unfolded) at each precision of
    `PRECISIONS`, written to a temporary folder and measured: its bytes do not depend on
    the weights' values, so an untrained model already says what the trained one weighs."""
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="fer-hw8-") as tmp:
        for precision in PRECISIONS:
            folder = Path(tmp) / precision / "hw8"
            folder.mkdir(parents=True)
            export = SimpleNamespace(export=lambda path, p=precision: export_npz(model.eval(),
                                                                                   path, p))
            write_folder(folder, export)
            sizes[precision] = replace(measure_folder(folder, name, precision), folder=Path("hw8"))
    return sizes


def fitting_precision(model: nn.Module, budget: int | None = STRONG_BUDGET) -> str:
    """The most precise of `PRECISIONS` whose graded folder of `model` fits `budget`
    bytes (fp32 when there is no budget); BudgetExceeded when not even the smallest does."""
    if budget is None:
        return PRECISIONS[0]
    sizes = folder_sizes(model)
    fits = [p for p in PRECISIONS if sizes[p].size <= budget]
    if not fits:
        smallest = PRECISIONS[-1]
        raise BudgetExceeded(f"even at {smallest} the folder is {sizes[smallest].size:,} B, "
                             f"over the budget of {budget:,} B: train a smaller model")
    return fits[0]
