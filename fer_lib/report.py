"""The book's layer: read ``results/`` once and answer what the chapters ask.

Every chapter gets its numbers here, so no two chapters can disagree:

- `precision_table()`: every stored run at every precision it was scored at (bytes,
  val/public/private accuracy), the table the frontier and the submission are read from;
- `submission(budget)`: the homework submission under a byte budget, chosen one way
  (a MobileNet, best validation accuracy; never public or private accuracy);
- `seed_table()`: means and spreads over seeds; `welch()` and `mcnemar()`: the tests;
- `missing_runs()`: catalogue runs without a stored result;
- `gap()`, `kd_effect()`: the differences the book quotes, as `Effect`s;
- `fmt()`, `Table`, `Effect` (from `fer_lib.formatting`): the one formatter, tables for
  HTML and LaTeX, and differences as printed.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import catalogue, paths
from .distill_study import describe_teacher, describe_teaching  # noqa: F401  (re-exported)
from .formatting import (  # noqa: F401  (re-exported: the chapters' one import)
    NBSP,
    Effect,
    Table,
    fmt,
    join_words,
    mean_sd,
    number_word,
    printed_sign,
)
from .quantize import PRECISIONS, STRONG_BUDGET
from .seeds import SeedComparison, compare_values  # noqa: F401  (re-exported)
from .stats import holm  # noqa: F401  (re-exported)
from .store import accuracy_by_precision, find_result, stored_results

# The homework requires a MobileNet: only these families may be the submission.
MOBILENET_FAMILIES = ("mobilenet_v1", "mobilenet_v2")
PRECISION_COLUMNS = ("run", "group", "family", "kd", "seed", "params", "flops", "precision",
                     "bytes", "val_acc", "public_acc", "private_acc", "reported", "weights")


# The two homework reports the book answers alongside, exactly as they give their numbers
# (shared/reference/hw8_reports.md); None where a report does not state a number.
# "bytes" is stated by neither: report A's is fp16 arithmetic (2 B per parameter, before
# the npz container's overhead), marked as such; report B's precision is not stated.
REPORTS = {
    "report-a": dict(
        label="report A", model="MobileNetV2-like (inverted residuals, expansion 4)",
        params=102_709, precision="fp16", bytes=2 * 102_709, bytes_note="fp16 arithmetic",
        public_acc=0.70548, private_acc=0.69601,
        technique="KD from 8 teachers; weights as float16 in a numpy npz", teachers=8,
        hw3_model="ensemble of 5 CNNs (parameters of one of them)", hw3_params=4_184_839,
        hw3_public_acc=0.71412, hw3_private_acc=0.71440),
    "report-b": dict(
        label="report B", model="MobileNetV1-like (Keras, depthwise separable)",
        params=73_511, precision=None, bytes=None, bytes_note="not stated",
        public_acc=0.64781, private_acc=0.63973, technique="none stated", teachers=None,
        hw3_model="VGG-like Keras CNN", hw3_params=22_614_919,
        hw3_public_acc=0.68208, hw3_private_acc=0.68487),
}


# ----------------------------------------------------------------------------- differences
def gap(a_run: str, b_run: str, split: str = "private",
        results_dir: str | os.PathLike | None = None) -> Effect:
    """`a_run` minus `b_run` on `split`, each at the precision it is reported at (its
    summary.csv row): the one definition of "run A scores X points above run B"."""
    rows = reported_table(results_dir).set_index("run")
    missing = [r for r in (a_run, b_run) if r not in rows.index]
    if missing:
        raise KeyError(f"no stored result for {', '.join(missing)}")
    return Effect(float(rows.loc[a_run, f"{split}_acc"]), float(rows.loc[b_run, f"{split}_acc"]))


def kd_effect(size: str, split: str = "private",
              results_dir: str | os.PathLike | None = None) -> Effect:
    """What distillation did to the `size` student (``"100k"``): ``student-<size>-kd``
    minus its label-only twin ``student-<size>-nokd`` on `split`, one seed each, at
    their reported precision. Every chapter quotes the KD effect from here."""
    return gap(f"student-{size}-kd", f"student-{size}-nokd", split, results_dir)


def validation_size(results_dir: str | os.PathLike | None = None) -> int:
    """How many images the protocol's validation split holds (results/data_summary.json)."""
    from .store import load_data_summary

    return int(sum(load_data_summary(results_dir)["validation"]["val"]))


def selection_noise(accuracy: float, results_dir: str | os.PathLike | None = None) -> float:
    """The standard error (a fraction) of an accuracy near `accuracy` measured on the
    validation split: sqrt(p (1 - p) / n). Two models closer than about this on validation
    are not told apart by it, so choosing between them is partly chance."""
    n = validation_size(results_dir)
    return math.sqrt(accuracy * (1 - accuracy) / n)


# ----------------------------------------------------------------------------- the runs
def precision_table(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every stored run at every precision it was scored at: one row per (run, precision).

    Columns `PRECISION_COLUMNS`; accuracies are fractions (flip TTA, float32 scoring of
    the weights at that precision), bytes the exported file's size. ``reported`` marks
    the precision the run's summary.csv row uses; ``kd`` whether it distilled;
    ``weights`` whether its weights are committed (only then can it be submitted).
    Ensembles, which have no weights of their own, appear once at fp32.
    """
    rows = []
    for exp, result in stored_results(results_dir):
        m = result.metrics
        by_precision = accuracy_by_precision(exp, m)
        trained = exp.kind != "ensemble"
        for precision in PRECISIONS:
            if precision not in by_precision:
                continue
            acc = by_precision[precision]
            rows.append({"run": exp.name, "group": exp.group,
                         "family": exp.train.family if trained else "ensemble",
                         "kd": exp.teacher is not None, "seed": exp.train.seed,
                         "params": m["params"], "flops": m["flops"], "precision": precision,
                         "bytes": m["bytes"][precision], "val_acc": acc["val"],
                         "public_acc": acc["public"], "private_acc": acc["private"],
                         "reported": precision == exp.precision,
                         "weights": result.has_weights()})
    return pd.DataFrame(rows, columns=list(PRECISION_COLUMNS))


@dataclass(frozen=True)
class Submission:
    """The run and precision submitted under `budget` bytes, with its numbers."""

    run: str
    family: str
    precision: str
    bytes: int
    params: int
    flops: int
    val_acc: float
    public_acc: float
    private_acc: float
    budget: int

    def result(self):
        """The stored result (`fer_lib.store.Result`)."""
        from .store import load_result

        return load_result(self.run)

    def model(self):
        """The model as submitted: the stored weights at `precision` (BN folded unless fp32)."""
        from .quantize import quantized_copy

        model = self.result().model()
        return model if self.precision == "fp32" else quantized_copy(model, self.precision)

    def plain_weights(self) -> dict[str, float] | None:
        """``{"val", "public", "private"}`` accuracies of the same run's plain weights at
        `precision`, for a run that submits its weight average (`TrainConfig.ema`);
        None for a run without one."""
        plain = self.result().metrics.get("without_average")
        return plain["acc_by_precision"][self.precision] if plain else None

    def to_dict(self) -> dict:
        return asdict(self)


def submission(budget_bytes: int = STRONG_BUDGET,
               table: pd.DataFrame | str | os.PathLike | None = None) -> Submission:
    """Our homework submission under `budget_bytes`: chosen on validation accuracy only.

    Among every stored run and precision (`precision_table()`, or `table`: a DataFrame
    or a CSV with its columns) it keeps the MobileNets (`MOBILENET_FAMILIES`: the
    homework requires one) whose weights are committed (a submission is files one can
    hand in; a table without a ``weights`` column counts every run as having them) and
    whose model file has at most `budget_bytes` bytes, and returns the one with the best
    validation accuracy; ties go to fewer bytes, then to the run's name. Public and
    private accuracy are never looked at. Raises LookupError when no stored MobileNet fits,
    FileNotFoundError when there is no results folder to look in (not "none fits").
    """
    table = _as_table(table)
    if "weights" in table.columns:
        table = table[table["weights"].astype(bool)]
    return best_run(budget_bytes, table, MOBILENET_FAMILIES)


def _as_table(table: pd.DataFrame | str | os.PathLike | None) -> pd.DataFrame:
    if table is None:  # a missing results folder is named, not taken for one without runs
        return precision_table(paths.existing_results_dir())
    return pd.read_csv(table) if isinstance(table, (str, Path)) else table


def best_run(budget_bytes: int, table: pd.DataFrame | str | os.PathLike | None = None,
             families: tuple[str, ...] | None = None) -> Submission:
    """The run and precision with the best validation accuracy whose model file has at
    most `budget_bytes` bytes, among `families` (None: every family); ties as in
    `submission`, the book's one way of choosing a model."""
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer)) \
            or budget_bytes <= 0:
        raise ValueError(f"budget_bytes must be a positive whole number of bytes, "
                         f"got {budget_bytes!r}")
    table = _as_table(table)
    missing = {"run", "family", "precision", "bytes", "val_acc"} - set(table.columns)
    if missing:
        raise ValueError(f"submission: the table lacks column(s) {sorted(missing)}")
    allowed = table["family"].isin(families) if families else table["family"].notna()
    fits = table[allowed & (table["bytes"] <= budget_bytes) & table["val_acc"].notna()]
    if fits.empty:
        which = f"{' or '.join(families)} run" if families else "run"
        raise LookupError(f"no stored {which} has a model file of at most "
                          f"{budget_bytes:,} bytes")
    # Accuracies are counts over the same validation images: round away float noise.
    order = fits.assign(_val=-fits["val_acc"].round(9)).sort_values(
        ["_val", "bytes", "run", "precision"], kind="stable")
    best = order.iloc[0]
    return Submission(run=str(best["run"]), family=str(best["family"]),
                      precision=str(best["precision"]), bytes=int(best["bytes"]),
                      params=int(best.get("params", 0)), flops=int(best.get("flops", 0)),
                      val_acc=float(best["val_acc"]),
                      public_acc=float(best.get("public_acc", float("nan"))),
                      private_acc=float(best.get("private_acc", float("nan"))),
                      budget=int(budget_bytes))


def close_to_submission(budget_bytes: int = STRONG_BUDGET,
                        table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The runs `submission(budget_bytes)` could have chosen as well as its pick: every
    run it considers (a MobileNet with committed weights, a file within the budget), each
    at the precision validation prefers (ties: fewer bytes), whose validation accuracy is
    within one `selection_noise` of the pick's. The pick is among them. Columns as
    `precision_table`, best validation first."""
    table = _as_table(table)
    pick = submission(budget_bytes, table)
    pool = table[table["family"].isin(MOBILENET_FAMILIES) & (table["bytes"] <= budget_bytes)]
    if "weights" in pool.columns:
        pool = pool[pool["weights"].astype(bool)]
    per_run = pool.sort_values(["val_acc", "bytes"], ascending=[False, True],
                               kind="stable").drop_duplicates("run")
    near = per_run["val_acc"] >= pick.val_acc - selection_noise(pick.val_acc)
    return per_run[near].reset_index(drop=True)


# ----------------------------------------------------------------------------- seeds and tests
SWEEP_GROUPS = {"mobilenet_v1": "sweep-mobilenet", "cnn": "sweep-cnn"}
PAIRED_TESTS = "paired_tests.csv"  # in results/: McNemar counts per pair of sweep runs


def size_label(run: str) -> str:
    """The size part of a sweep run's name: ``sweep-cnn-16k-s2`` -> ``16k``."""
    return run.split("-")[-2]


def reported_table(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per stored run, at the precision it is reported at (as summary.csv)."""
    table = precision_table(results_dir)
    return table[table["reported"]].reset_index(drop=True)


def sweep_runs(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The Q2/Q3 sweep runs at their reported precision, with a ``size`` column (``4k``)."""
    table = reported_table(results_dir)
    sweeps = table[table["group"].isin(SWEEP_GROUPS.values())].copy()
    sweeps["size"] = sweeps["run"].map(size_label)
    return sweeps.reset_index(drop=True)


def seed_table(runs: pd.DataFrame, value: str = "private_acc") -> pd.DataFrame:
    """Mean, standard deviation (NaN for one seed) and seed count of `value` per
    (family, size), with the mean parameter count; sorted by family then parameters."""
    grouped = runs.groupby(["family", "size"])
    table = pd.DataFrame({"params": grouped["params"].mean().round().astype(int),
                          "mean": grouped[value].mean(), "std": grouped[value].std(ddof=1),
                          "seeds": grouped[value].count()}).reset_index()
    return table.sort_values(["family", "params"]).reset_index(drop=True)


def family_comparison(runs: pd.DataFrame, value: str = "private_acc") -> pd.DataFrame:
    """MobileNetV1 against the plain CNN at each sweep size: Welch's t-test over seeds.

    One row per size both families have: ``size``, the two means and seed counts, and
    `fer_lib.stats.welch`'s ``diff`` (MobileNet minus CNN), ``low``/``high`` (its 95 %
    interval) and ``p``. Sorted by the MobileNet's parameter count.
    """
    from .stats import welch

    rows = []
    mb, cnn = (runs[runs["family"] == f] for f in SWEEP_GROUPS)
    for size in sorted(set(mb["size"]) & set(cnn["size"]),
                       key=lambda s: mb.loc[mb["size"] == s, "params"].iloc[0]):
        a, b = mb.loc[mb["size"] == size, value], cnn.loc[cnn["size"] == size, value]
        test = welch(a, b)
        rows.append({"size": size, "params_mb": int(mb.loc[mb["size"] == size, "params"].iloc[0]),
                     "params_cnn": int(cnn.loc[cnn["size"] == size, "params"].iloc[0]),
                     "mean_mb": a.mean(), "mean_cnn": b.mean(), "seeds_mb": len(a),
                     "seeds_cnn": len(b), **{k: test[k] for k in ("diff", "low", "high", "p")}})
    return pd.DataFrame(rows)


def write_paired_tests(data, results_dir: str | os.PathLike | None = None) -> Path:
    """McNemar's test, on the public and private test images, for every stored pair of
    `paired_runs` (sweep runs of the two families, students with and without
    distillation, long runs with and without): ``results/paired_tests.csv``.

    Needs the data set (the labels); the book reads the stored counts without it.
    """
    from .data import evaluation_sets
    from .stats import mcnemar
    from .store import load_result

    sets = evaluation_sets(data)
    rows = []
    for run, other, kind in paired_runs(set(reported_table(results_dir)["run"])):
        outputs = [load_result(name, results_dir).logits() for name in (run, other)]
        for split in ("public", "private"):
            labels = sets[split][1]
            correct = [_predictions(out[split]) == labels for out in outputs]
            rows.append({"kind": kind, "size": size_label(run) if kind == "sweep"
                         else run.split("-")[1], "seed": int(run[-1]) if kind == "sweep"
                         else _seed_of(run), "set": split, "run_a": run, "run_b": other,
                         **mcnemar(*correct)})
    path = (Path(results_dir) if results_dir else _results_dir()) / PAIRED_TESTS
    pd.DataFrame(rows).to_csv(path, index=False, float_format="%.6g")
    return path


def paired_runs(stored: set[str]) -> list[tuple[str, str, str]]:
    """(run, its twin, kind) of every pair of `stored` runs that `write_paired_tests`
    compares: "sweep", a MobileNet sweep run and the plain CNN of the same size and seed;
    "kd", a distilled 50-epoch student and its label-only twin; "long-kd", a distilled
    long run and the same design on labels only (``long-200k-early-kd``, ``-early``)."""
    pairs = [(run, run.replace(SWEEP_GROUPS["mobilenet_v1"], SWEEP_GROUPS["cnn"], 1), "sweep")
             for run in sorted(stored) if run.startswith(SWEEP_GROUPS["mobilenet_v1"])]
    pairs += [(run, run.replace("-kd", "-nokd"), "kd") for run in sorted(stored)
              if run.startswith("student-") and run.endswith("-kd")]
    pairs += [(run, run.removesuffix("-kd"), "long-kd") for run in sorted(stored)
              if run.startswith("long-") and run.endswith("-kd")]
    return [pair for pair in pairs if pair[1] in stored]


def _seed_of(run: str) -> int:
    return catalogue.get(run).train.seed


def _predictions(outputs: np.ndarray) -> np.ndarray:
    return outputs.argmax(axis=1) if outputs.ndim == 2 else outputs


def _results_dir() -> Path:
    from . import paths

    return paths.results_dir()


def kd_tests(sizes, results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Private KD-vs-labels McNemar tests of the stored `sizes`, in order, + Holm's p_holm."""
    pairs = paired_tests(results_dir)
    kd = pairs[(pairs["kind"] == "kd") & (pairs["set"] == "private")].set_index("size")
    kd = kd.loc[[size for size in sizes if size in kd.index]]
    return kd.assign(p_holm=holm(kd["p"].to_numpy()))


def paired_tests(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The stored McNemar tests (`write_paired_tests`); empty if never written."""
    path = (Path(results_dir) if results_dir else _results_dir()) / PAIRED_TESTS
    return pd.read_csv(path) if path.exists() else pd.DataFrame(
        columns=["kind", "size", "seed", "set", "run_a", "run_b", "n", "both", "only_a", "only_b",
                 "neither", "diff", "p"])


# ----------------------------------------------------------------------------- missing runs
def missing_runs(results_dir: str | os.PathLike | None = None,
                 runs_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Catalogue runs without a stored result: ``run``, ``group``, ``kind``, ``needs``
    (runs that must exist first and are not stored yet) and ``cpu_minutes``, the estimated
    training time on the CPU recorded in ``results/cpu_probes.json`` (`fer_lib.plan`; NaN
    where no probe of that architecture is recorded, 0 for runs that do not train) of the
    epochs its checkpoint in `runs_dir` (default runs/; the book passes
    `paths.committed_runs_dir`) has not trained yet (`plan.epochs_done`), plus labelling
    a soft-label store for the first run that needs one not in `runs_dir`
    (`plan.store_seconds`)."""
    from .plan import architecture_key, epochs_done, estimate_seconds, load_probes, store_seconds

    rates = load_probes(results_dir).get("rates", {})
    rows, stores = [], set()
    stored = {n for n, e in catalogue.experiments().items() if find_result(e, results_dir)}
    for e in catalogue.experiments().values():
        if e.name in stored:
            continue
        rate = rates.get(architecture_key(e)) if e.kind == "train" else None
        seconds = (estimate_seconds(e, rate, epochs_done(e, runs_dir))
                   + store_seconds(e, stores, results_dir, runs_dir))
        rows.append({"run": e.name, "group": e.group, "kind": e.kind,
                     "needs": ", ".join(n for n in e.needs if n not in stored),
                     "cpu_minutes": seconds / 60})
    return pd.DataFrame(rows, columns=["run", "group", "kind", "needs", "cpu_minutes"])


def probe_machine(results_dir: str | os.PathLike | None = None) -> str:
    """The machine the recorded CPU probes ran on ("" if none is recorded)."""
    from .plan import load_probes

    return load_probes(results_dir).get("machine", "")


# ----------------------------------------------------------------------------- the reports' HW3
#: How many models each report's HW3 accuracy comes from (shared/reference/hw8_reports.md):
#: report A's is the score of an ensemble of 5 CNNs, and it gives the parameters of one.
REPORT_HW3_MEMBERS = {"report-a": 5, "report-b": 1}


def report_hw3_params(report: str) -> dict:
    """The parameters behind report `report`'s HW3 accuracy (``"report-a"``): ``members``
    (the models whose ensemble scored it), ``each`` (the count the report gives: one
    model's) and ``total`` (members × each, an estimate for an ensemble: the report
    does not give its other members' counts)."""
    members, each = REPORT_HW3_MEMBERS[report], REPORTS[report]["hw3_params"]
    return {"members": members, "each": each, "total": members * each}


def compare_seeds(groups: dict[str, list[str]], baseline: str,
                  splits: tuple[str, ...] = ("val", "public", "private"),
                  results_dir: str | os.PathLike | None = None) -> SeedComparison:
    """Compare recipes over seeds: `groups` maps a label to its runs (one per seed), each
    at its reported precision; every other group is tested against `baseline` with
    Welch's test. Missing runs are left out and counted (`SeedComparison.complete`)."""
    rows = reported_table(results_dir).set_index("run")
    accuracies = {n: {s: float(rows.loc[n, f"{s}_acc"]) for s in splits}
                  for names in groups.values() for n in names if n in rows.index}
    return compare_values(groups, baseline, accuracies, splits)
