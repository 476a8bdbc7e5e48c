"""The book's CPU latencies: measured once, on a quiet machine, and read from results/.

A latency measured while the book builds depends on whatever else the machine is doing:
on a busy machine the spread of the timings (their interquartile range) exceeded their
median, and two chapters timing the same network printed two different numbers. So the
timings are a benchmark (``python benchmarks/bench_latency.py --write``): every network
the book times, in one run, one after the other, on one pinned thread, with nothing else
running; the chapters read ``results/latency.json`` (`stored_latency`). A reader times
the same networks on their own machine with `measure` (or `deploy.latency_table`).

The networks are architectures only (weights do not change the arithmetic): the HW3 CNN,
the submission under each budget (`report.submission`) and the first seed of every
student design (`catalogue.DESIGN_BUDGETS`).
"""

from __future__ import annotations

import os

import pandas as pd

from . import catalogue
from .deploy import latency_table
from .quantize import STRONG_BUDGET, TINY_BUDGET
from .records import read_benchmark
from .report import submission
from .store import load_result

LATENCY = "latency.json"  # in results/, written by benchmarks/bench_latency.py
HW3 = "hw3-cnn"
REPEATS = 200  # timed single-image calls per network and runtime
COLUMNS = ["torch median ms", "torch IQR ms", "ort median ms", "ort IQR ms", "timed runs"]


def timed_runs() -> list[str]:
    """The catalogue names of every network the book times (see the module docstring)."""
    designs = [catalogue.design_name(budget, design, 0)
               for budget, (_, _, names) in catalogue.DESIGN_BUDGETS.items() for design in names]
    submissions = [submission(budget).run for budget in (STRONG_BUDGET, TINY_BUDGET)]
    return list(dict.fromkeys([HW3, *submissions, *designs]))


def measure(runs: list[str] | None = None, *, threads: int = 1,
            repeats: int = REPEATS) -> pd.DataFrame:
    """`deploy.latency_table` of `runs` (default `timed_runs`), one row per run (the
    ``model`` column holds the run's name): ms per face at batch 1, median and IQR, in
    eager PyTorch and onnxruntime, BN folded, float32."""
    names = runs or timed_runs()
    # Result.architecture: the stored run's network, freshly initialised (weights do not
    # change the arithmetic; a slimmed run has its own widths).
    return latency_table({name: load_result(name).architecture() for name in names},
                         threads=threads, repeats=repeats)


def stored_latency(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The committed timings, indexed by run: ``torch median ms``, ``torch IQR ms``,
    ``ort median ms``, ``ort IQR ms`` (ms per face, batch 1), ``timed runs``; the
    record's ``machine`` and ``threads`` in ``.attrs``. FileNotFoundError naming the
    benchmark that writes them if absent."""
    record = read_benchmark(LATENCY, results_dir)
    if record is None:
        raise FileNotFoundError(f"results/{LATENCY} is missing: run "
                                "python benchmarks/bench_latency.py --write on a quiet machine")
    table = pd.DataFrame(record["rows"]).set_index("model")[COLUMNS]
    table.attrs.update(machine=record["machine"], threads=record["threads"])
    return table
