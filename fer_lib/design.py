"""The student design study (#26): candidate MobileNets at the homework's budgets,
described by their architecture before any run and by their stored seeds after.

The catalogue defines the runs (`fer_lib.catalogue.DESIGN_BUDGETS`); this module is the
book's view of them, one row per budget and design.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import catalogue
from .formatting import Effect
from .report import precision_table, selection_noise
from .store import find_result

DESIGN_COLUMNS = ("budget", "design", "run", "family", "params", "flops", "precision", "bytes",
                  "last_resolution", "epoch_seconds", "epoch_seconds_benchmarked",
                  "run_epoch_seconds", "seeds",
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
    before any run. ``epoch_seconds`` is one training epoch (FER2013's Training rows bar
    validation) at the rate `benchmarks/bench_design.py` measured for every candidate in
    one run on an otherwise idle machine (``results/design_costs.json``;
    ``epoch_seconds_benchmarked`` True), else at the recorded CPU probe's rate. The runs'
    own epochs (``run_epoch_seconds``: the mean over stored seeds of each run's median
    epoch) are kept for the record only: they shared the machine with other work, so
    they compare candidates less fairly. Accuracies are means and sample standard
    deviations over the stored seeds (NaN without runs; std NaN with one), at the
    budget's precision.
    """
    import tempfile

    from .models import build, count_flops, count_params
    from .plan import architecture_key, estimate_seconds, load_probes
    from .quantize import export_npz

    rates = load_probes(results_dir).get("rates", {})
    benchmarked = load_design_costs(results_dir).get("seconds_per_image", {})
    table = precision_table(results_dir)
    rows = []
    for budget, (_, precision, designs) in catalogue.DESIGN_BUDGETS.items():
        for design in designs:
            name = catalogue.design_name(budget, design)
            runs = [catalogue.design_name(budget, design, s) for s in catalogue.DESIGN_SEEDS]
            exp = catalogue.get(runs[0])
            model = build(exp.train.family, **exp.train.model_args)
            with tempfile.TemporaryDirectory() as tmp:
                size = export_npz(model, Path(tmp) / "model.npz", precision)
            stored = table[table["run"].isin(runs) & (table["precision"] == precision)]
            seconds = [np.median([h["seconds"] for h in find_result(catalogue.get(r),
                                                                  results_dir).history])
                       for r in stored["run"]]
            rate = benchmarked.get(name, rates.get(architecture_key(exp)))
            rows.append({
                "budget": budget, "design": design, "run": name,
                "family": exp.train.family, "params": count_params(model),
                "flops": count_flops(model), "precision": precision, "bytes": size,
                "last_resolution": last_resolution(model),
                "epoch_seconds": estimate_seconds(exp, rate) / exp.train.epochs,
                "epoch_seconds_benchmarked": name in benchmarked,
                "run_epoch_seconds": float(np.mean(seconds)) if seconds else float("nan"),
                "seeds": len(stored),
                "val_mean": stored["val_acc"].mean(), "val_std": stored["val_acc"].std(ddof=1),
                "public_mean": stored["public_acc"].mean(),
                "public_std": stored["public_acc"].std(ddof=1),
                "private_mean": stored["private_acc"].mean(),
                "private_std": stored["private_acc"].std(ddof=1)})
    return pd.DataFrame(rows, columns=list(DESIGN_COLUMNS))


DESIGN_COSTS = "design_costs.json"  # in results/, written by benchmarks/bench_design.py


def load_design_costs(results_dir: str | os.PathLike | None = None) -> dict:
    """The benchmark's record: ``{"machine", "threads", "seconds_per_image": {run: s}}``
    keyed by the study's run names without seed (``design-200k-early``); {} if absent."""
    from .records import read_benchmark

    return read_benchmark(DESIGN_COSTS, results_dir) or {}


def design_pick(study: pd.DataFrame, budget: str) -> str | None:
    """The design chosen at `budget`: the best mean validation accuracy over seeds, once
    every design of the budget has all its seeds stored (None before). Ties go to the
    design listed first in `catalogue.DESIGN_BUDGETS`."""
    rows = study[study["budget"] == budget]
    if rows.empty or (rows["seeds"] < len(catalogue.DESIGN_SEEDS)).any():
        return None
    return str(rows.loc[rows["val_mean"].idxmax(), "design"])


@dataclass(frozen=True)
class DesignChoice:
    """What a budget's pick (`design_pick`) rests on. lead: the pick's mean validation
    accuracy minus the runner-up's (an `Effect`); firm: the lead exceeds one validation
    standard error (`report.selection_noise`) at the pick's accuracy; cost: the pick's
    seconds per epoch over the cheapest design's at the budget (1.0: it is the cheapest)."""

    budget: str
    pick: str
    runner_up: str
    lead: Effect
    firm: bool
    cost: float


def design_choice(study: pd.DataFrame, budget: str,
                  results_dir: str | os.PathLike | None = None) -> DesignChoice | None:
    """The facts behind `budget`'s pick in `study` (`design_study`), None before it is
    made or when the budget tried one design only."""
    pick = design_pick(study, budget)
    rows = study[study["budget"] == budget].set_index("design")
    if pick is None or len(rows) < 2:
        return None
    runner_up = str(rows.drop(index=pick)["val_mean"].idxmax())
    lead = Effect(rows.loc[pick, "val_mean"], rows.loc[runner_up, "val_mean"])
    firm = lead.value > selection_noise(rows.loc[pick, "val_mean"], results_dir)
    return DesignChoice(budget, pick, runner_up, lead, bool(firm),
                        float(rows.loc[pick, "epoch_seconds"] / rows["epoch_seconds"].min()))


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


AVERAGING_COLUMNS = ("run", "precision", "epochs", "best_epoch", "plain_best_epoch", "val",
                     "plain_val", "public", "plain_public", "private", "plain_private")


def averaging_table(runs: list[str], results_dir: str | os.PathLike | None = None
                    ) -> pd.DataFrame:
    """Each stored run of `runs` that averaged its weights (``TrainConfig.ema``), against
    the same run without the average: the kept average's best epoch and accuracies, and
    those of the plain iterate at its own best validation epoch (``without_average`` in
    its metrics), both at the run's reported precision. Columns `AVERAGING_COLUMNS`;
    runs not stored, or without an average, are left out."""
    rows = []
    for name in runs:
        result = find_result(catalogue.get(name), results_dir)
        if result is None or "without_average" not in result.metrics:
            continue
        precision = result.experiment.precision
        kept = result.metrics["acc_by_precision"][precision]
        plain = result.metrics["without_average"]
        rows.append({"run": name, "precision": precision,
                     "epochs": result.metrics["epochs"],
                     "best_epoch": result.metrics["best_epoch"],
                     "plain_best_epoch": plain["best_epoch"],
                     **{split: kept[split] for split in ("val", "public", "private")},
                     **{f"plain_{split}": plain["acc_by_precision"][precision][split]
                        for split in ("val", "public", "private")}})
    return pd.DataFrame(rows, columns=list(AVERAGING_COLUMNS))


LONG_COLUMNS = ("run", "baseline", "budget", "precision", "bytes", "epochs",
                "baseline_epochs", "val", "baseline_val", "private", "baseline_private")


def long_against_first(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Each stored long-schedule run (group ``long``, ``long-<budget>-<design>``) against
    the first label-only student of its budget, ``student-<budget>-nokd`` (the V2 layout
    on the short schedule): design and schedule changed together, one seed each. Both at
    their reported precision (`precision_table`'s ``reported`` rows). Columns
    `LONG_COLUMNS`; a pair with either run not stored is left out."""
    table = precision_table(results_dir)
    reported = table[table["reported"]].set_index("run")
    rows = []
    for exp in catalogue.experiments().values():
        budget = exp.name.split("-")[1] if exp.group == "long" else None
        baseline = f"student-{budget}-nokd"
        if budget is None or exp.name not in reported.index or baseline not in reported.index:
            continue
        run, base = reported.loc[exp.name], reported.loc[baseline]
        rows.append({"run": exp.name, "baseline": baseline, "budget": budget,
                     "precision": run["precision"], "bytes": int(run["bytes"]),
                     "epochs": exp.train.epochs,
                     "baseline_epochs": catalogue.get(baseline).train.epochs,
                     "val": run["val_acc"], "baseline_val": base["val_acc"],
                     "private": run["private_acc"], "baseline_private": base["private_acc"]})
    return pd.DataFrame(rows, columns=list(LONG_COLUMNS))


