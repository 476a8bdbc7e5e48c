"""The student design study (#26): candidate MobileNets at the homework's budgets,
described by their architecture before any run and by their stored seeds after.

The catalogue defines the runs (`fer_lib.catalogue.DESIGN_BUDGETS`); this module is the
book's view of them, one row per budget and design.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import catalogue
from .report import precision_table
from .store import find_result

DESIGN_COLUMNS = ("budget", "design", "run", "family", "params", "flops", "precision", "bytes",
                  "last_resolution", "epoch_seconds", "epoch_seconds_measured", "seeds",
                  "val_mean", "val_std", "public_mean", "public_std", "private_mean",
                  "private_std")


def last_resolution(model) -> int:
    """The side, in pixels, of the last feature map before the classifier's pooling."""
    import torch

    sides = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sides.append(out.shape[-1]))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, 48, 48))
    finally:
        for hook in hooks:
            hook.remove()
    return int(sides[-1])


def design_study(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The student design study (`fer_lib.catalogue.DESIGN_BUDGETS`): one row per budget
    and design, columns `DESIGN_COLUMNS`.

    Architecture facts (parameters, FLOPs, the bytes of its file at the budget's
    precision, the last feature map's side) come from the network itself, so they exist
    before any run. ``epoch_seconds`` is the mean over the stored seeds of each run's
    median epoch (a median, so epochs slowed by other work on the machine do not count)
    when there are any (``epoch_seconds_measured`` True), else the recorded CPU probe's
    estimate. Accuracies are means and sample standard deviations over the stored seeds
    (NaN without runs; std NaN with one), at the budget's precision.
    """
    import tempfile

    from .models import build, count_flops, count_params
    from .plan import architecture_key, estimate_seconds, load_probes
    from .quantize import export_npz

    rates = load_probes(results_dir).get("rates", {})
    table = precision_table(results_dir)
    rows = []
    for budget, (_, precision, designs) in catalogue.DESIGN_BUDGETS.items():
        for design in designs:
            runs = [catalogue.design_name(budget, design, s) for s in catalogue.DESIGN_SEEDS]
            exp = catalogue.get(runs[0])
            model = build(exp.train.family, **exp.train.model_args)
            with tempfile.TemporaryDirectory() as tmp:
                size = export_npz(model, Path(tmp) / "model.npz", precision)
            stored = table[table["run"].isin(runs) & (table["precision"] == precision)]
            seconds = [np.median([h["seconds"] for h in find_result(catalogue.get(r),
                                                                  results_dir).history])
                       for r in stored["run"]]
            rate = rates.get(architecture_key(exp))
            rows.append({
                "budget": budget, "design": design, "run": runs[0].rsplit("-s", 1)[0],
                "family": exp.train.family, "params": count_params(model),
                "flops": count_flops(model), "precision": precision, "bytes": size,
                "last_resolution": last_resolution(model),
                "epoch_seconds": float(np.mean(seconds)) if seconds else
                estimate_seconds(exp, rate) / exp.train.epochs,
                "epoch_seconds_measured": bool(seconds), "seeds": len(stored),
                "val_mean": stored["val_acc"].mean(), "val_std": stored["val_acc"].std(ddof=1),
                "public_mean": stored["public_acc"].mean(),
                "public_std": stored["public_acc"].std(ddof=1),
                "private_mean": stored["private_acc"].mean(),
                "private_std": stored["private_acc"].std(ddof=1)})
    return pd.DataFrame(rows, columns=list(DESIGN_COLUMNS))


def design_pick(study: pd.DataFrame, budget: str) -> str | None:
    """The design chosen at `budget`: the best mean validation accuracy over seeds, once
    every design of the budget has all its seeds stored (None before). Ties go to the
    design listed first in `catalogue.DESIGN_BUDGETS`."""
    rows = study[study["budget"] == budget]
    if rows.empty or (rows["seeds"] < len(catalogue.DESIGN_SEEDS)).any():
        return None
    return str(rows.loc[rows["val_mean"].idxmax(), "design"])


def nearest_counts(family: str, target: int, width: float, step: float = 1e-4,
                   **hparams) -> tuple[int, int]:
    """The parameter counts of `family` nearest `target` from below (<=) and above (>),
    walking the width multiplier from `width` in steps of `step`: channels are whole
    numbers, so the count moves in jumps and cannot hit every target."""
    from .models import params_for

    def count(w: float) -> int:
        return params_for(family, width=w, **hparams)

    w = width
    while count(w) > target:
        w -= step
    below = count(w)
    while count(w) <= target:
        w += step
    return below, count(w)
