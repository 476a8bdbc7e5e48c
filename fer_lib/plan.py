"""What the missing runs will cost on a CPU, before anyone starts them.

The estimate for a run is its number of training images (epochs x Training rows kept
for training) times the seconds one image takes through the real trainer on this
machine. That rate is measured by a *probe*: one short epoch of `fer_lib.train.train`
on a small synthetic data set (no FER2013 needed), per architecture, so it includes the
augmentation, the optimiser and the validation pass exactly as a real run does.
Probes are recorded in ``results/cpu_probes.json`` (with the machine and the thread
count), so the book can list the missing runs with their cost without probing while it
builds. Runs that do not train (ensembles, cuts) count as free: they take seconds, except
an ensemble scored on shifted views (`view_shift`: minutes, not estimated). The first run
that distils on stored views also pays for labelling them (`store_seconds`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import catalogue, paths
from .catalogue import Experiment
from .data import FER2013, TRAINING_IMAGES, TRAINING_ROWS, VAL_FRACTION  # noqa: F401
from .records import benchmark_record, read_benchmark, write_benchmark  # noqa: F401

PROBES = "cpu_probes.json"  # in results/
PROBE_IMAGES = 2_560  # synthetic Training images per probe (nine batches + validation)


def architecture_key(exp: Experiment) -> str:
    """What a probe depends on: family, hyperparameters, batch size and memory format."""
    cfg = exp.train
    args = json.dumps(cfg.model_args, sort_keys=True)
    return f"{cfg.family} {args} batch={cfg.batch_size} channels_last={cfg.channels_last}"


def synthetic_fer(n: int, seed: int = 0) -> FER2013:
    """`n` random 48 x 48 Training images with balanced labels (for timing only)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 7
    return FER2013(images, labels, np.array(["Training"] * n), source="synthetic (probe)")


def probe(exp: Experiment, images: int | None = None) -> float:
    """Seconds per Training image of `exp`'s trainer on this CPU (synthetic epochs).

    Two short epochs; the second is timed (from the trainer's own history), so set-up
    and first-call costs are left out, and the validation pass is in, as in a real run.
    """
    from .train import train

    images = images or PROBE_IMAGES
    cfg = replace(exp.train, epochs=2, subset=None)  # no teacher: distillation costs ~0
    result = train(cfg, synthetic_fer(images), device="cpu", quiet=True)
    seconds = result.history[-1]["seconds"]
    return seconds / (images * (1 - VAL_FRACTION))


def estimate_seconds(exp: Experiment, seconds_per_image: float | None,
                     epochs_done: int = 0) -> float:
    """Training seconds of `exp` at `seconds_per_image` (0 for runs that do not train),
    for the epochs after its first `epochs_done` (`epochs_done`: a checkpoint's)."""
    if exp.kind != "train":
        return 0.0
    if seconds_per_image is None:
        return float("nan")
    return max(exp.train.epochs - epochs_done, 0) * TRAINING_ROWS * seconds_per_image


def epochs_done(exp: Experiment, runs_dir: str | os.PathLike | None = None) -> int:
    """Epochs `exp` has trained so far by its checkpoint in `runs_dir` (default: runs/),
    0 without one: a run longer than a session resumes there and pays only for the rest."""
    from .checkpoint import load_checkpoint

    path = Path(runs_dir or paths.runs_dir()) / exp.folder / "checkpoint.pt"
    return int(load_checkpoint(path)["epoch"]) if exp.kind == "train" and path.is_file() else 0


def store_seconds(exp: Experiment, counted: set, results_dir=None, runs_dir=None) -> float:
    """The one-off CPU seconds of labelling `exp`'s soft-label store (``teacher_views``),
    charged to the first run in `counted`'s walk that needs a store not yet built (0 for
    every other run; NaN without a measured labelling rate). Adds the store to `counted`.
    """
    if not exp.teacher_views:
        return 0.0
    from .experiments import MissingResultError, ensemble_members, soft_label_path
    from .softlabels import teaching_costs

    path = soft_label_path(exp, Path(results_dir or paths.results_dir()),
                           Path(runs_dir or paths.runs_dir()))
    if path in counted or path.exists():
        return 0.0
    counted.add(path)
    teacher = catalogue.get(exp.teacher)
    try:  # the members a stored ensemble chose; before it runs, every candidate (a bound)
        teachers = len(ensemble_members(teacher, results_dir and Path(results_dir)))
    except MissingResultError:
        teachers = len(teacher.members) or 1
    try:
        costs = teaching_costs(teachers, exp.teacher_views, exp.train.epochs,
                               results_dir=results_dir)
    except FileNotFoundError:
        return float("nan")
    return costs["store"]


def shared_epochs(epoch_seconds, slow: float = 1.5) -> dict:
    """How much a run's measured time was inflated by another job on the same CPU.

    epoch_seconds: wall seconds of each epoch (a stored history's ``seconds``). An epoch
    slower than `slow` times the median is counted as shared (the median is the run's
    own pace: most epochs run alone). Returns ``epochs`` (how many were shared),
    ``slowdown`` (their mean over the median; NaN when none), ``measured`` (seconds, the
    sum) and ``alone`` (seconds: every epoch at the median pace).
    """
    seconds = np.asarray(epoch_seconds, dtype=float)
    if seconds.size == 0:
        raise ValueError("shared_epochs: no epochs")
    median = float(np.median(seconds))
    shared = seconds[seconds > slow * median]
    return {"epochs": int(shared.size),
            "slowdown": float(shared.mean() / median) if shared.size else float("nan"),
            "measured": float(seconds.sum()), "alone": median * seconds.size}


def load_probes(results_dir: str | os.PathLike | None = None) -> dict:
    """The recorded probes: ``{"machine": str, "threads": int, "rates": {key: s/image}}``."""
    path = Path(results_dir or paths.results_dir()) / PROBES
    return json.loads(path.read_text()) if path.exists() else {"rates": {}}


def write_probes(probes: dict, results_dir: str | os.PathLike | None = None) -> Path:
    path = Path(results_dir or paths.results_dir()) / PROBES
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(probes, indent=1, sort_keys=True) + "\n")
    return path


def plan(names: list[str], *, measure: bool = False, record: bool = False,
         results_dir: str | os.PathLike | None = None, log=None) -> list[dict]:
    """One row per run in `names`: ``run``, ``kind``, ``architecture`` and ``seconds``,
    the estimated CPU training time (NaN when no probe is recorded and `measure` is off).

    measure: probe every architecture without a recorded rate (the estimate uses it);
    record: also write the new rates into `results_dir`'s ``cpu_probes.json``, a
    committed file, so only when asked. `log` is called with a line before and after
    each probe (each takes tens of seconds).
    """
    from .deploy import machine_description

    probes = load_probes(results_dir)
    rates = probes.setdefault("rates", {})
    rows, stores = [], set()
    for name in names:
        exp = catalogue.get(name)
        key = architecture_key(exp) if exp.kind == "train" else ""
        if measure and key and key not in rates:
            if log:
                log(f"probing {name}'s architecture: two short epochs on synthetic images")
            start = time.perf_counter()
            rates[key] = probe(exp)
            if log:
                log(f"probed {key}: {rates[key] * 1000:.2f} ms per image "
                    f"({time.perf_counter() - start:.0f} s)")
            if record:
                probes.update(machine=machine_description(torch.get_num_threads()),
                              threads=torch.get_num_threads())
                write_probes(probes, results_dir)
        rows.append({"run": name, "kind": exp.kind, "architecture": key,
                     "seconds": estimate_seconds(exp, rates.get(key), epochs_done(exp))
                     + store_seconds(exp, stores, results_dir)})
    return rows


def format_duration(seconds: float) -> str:
    """"1 h 05 min", "12 min", "45 s"; "?" for NaN."""
    if seconds != seconds:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def total_estimate(seconds) -> tuple[float, int]:
    """(sum of the known estimates in seconds, number of runs without one) of `seconds`,
    estimates where NaN means "no probe"; the one way the plan and the book add them."""
    seconds = [float(s) for s in seconds]
    known = [s for s in seconds if s == s]
    return sum(known), len(seconds) - len(known)


def plan_table(rows: list[dict]) -> str:
    """The plan as text: one line per run with its estimate, then the total."""
    lines = [f"{'run':36s} {'kind':6s} {'estimate':>12s}"]
    lines += [f"{r['run']:36s} {r['kind']:6s} {format_duration(r['seconds']):>12s}"
              for r in rows]
    known, unknown = total_estimate([r["seconds"] for r in rows])
    total = f"{len(rows)} runs, about {format_duration(known)} on this CPU"
    if unknown:
        total += f" plus {unknown} without a probe (run with --probe to time them)"
    return "\n".join(lines + [total])


class Progress:
    """Progress of a batch of runs with an ETA: the plan's estimates for what is left,
    scaled by how the finished runs compared with their own estimates."""

    def __init__(self, rows: list[dict]):
        self.estimates = {r["run"]: r["seconds"] for r in rows}
        self.actual: dict[str, float] = {}
        self.start = time.perf_counter()

    def done(self, name: str, seconds: float) -> str:
        """Record that `name` took `seconds`; return the status line to print."""
        self.actual[name] = seconds
        left = [e for n, e in self.estimates.items() if n not in self.actual and e == e]
        pairs = [(s, self.estimates.get(n)) for n, s in self.actual.items()
                 if self.estimates.get(n) == self.estimates.get(n) and self.estimates.get(n)]
        scale = sum(s for s, _ in pairs) / sum(e for _, e in pairs) if pairs else 1.0
        spent = format_duration(time.perf_counter() - self.start)
        status = f"{len(self.actual)}/{len(self.estimates)} done, {spent} spent"
        if len(self.actual) < len(self.estimates):
            status += f", about {format_duration(scale * sum(left))} left"
        return status
