"""Measurements kept in results/: one JSON record per benchmark, with its machine.

A benchmark (``benchmarks/*.py --write``) measures a rate once and writes it here, so
that the book and the planner quote it without measuring again. Low in the library:
the modules that read a record (`fer_lib.softlabels`, `fer_lib.design`, the planner)
sit above it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from . import paths


def benchmark_record(values: dict) -> dict:
    """`values` measured by a benchmark, with the machine and thread count they were
    measured on (what every ``results/*_costs.json`` holds)."""
    from .deploy import machine_description

    return {"machine": machine_description(torch.get_num_threads()),
            "threads": torch.get_num_threads(), **values}


def write_benchmark(filename: str, record: dict,
                    results_dir: str | os.PathLike | None = None) -> Path:
    """Write a `benchmark_record` as ``results/<filename>`` (sorted JSON); returns its path."""
    path = Path(results_dir or paths.results_dir()) / filename
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def read_benchmark(filename: str, results_dir: str | os.PathLike | None = None
                   ) -> dict | None:
    """The record `write_benchmark` wrote as ``results/<filename>``, or None if absent."""
    path = Path(results_dir or paths.results_dir()) / filename
    return json.loads(path.read_text()) if path.exists() else None
