"""The catalogue on a Ray cluster: `fer reproduce --backend ray`.

Each missing run becomes one Ray task with a CPU/GPU request (fractional GPUs let small
sweep models share one). A task receives the runs it needs (teachers, the ensemble, the
student a slimming run starts from) as their stored folders, as bytes, and returns its
own folder the same way: so workers need no filesystem shared with the driver, and the
driver writes every result into ``results/`` exactly as the local backend does (same
folders, same content keys), rebuilding ``summary.csv`` once at the end. Dependencies
are Ray object references, so Ray starts a run only when what it needs has finished.

A failed task is retried a bounded number of times (``--retries``; a worker that died
counts too), and a retried training run resumes from its checkpoint in ``runs/`` when
the new worker can read it (one machine, or a shared filesystem). The FER2013 arrays
travel once, through the object store. Ray is an optional extra:
``pip install -e ".[cluster]"``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import catalogue
from .store import replacing_folder

# Settings a worker must share with the driver (the catalogue, the data's location...).
FORWARDED_ENV = ("FER_", "FER2013_PATH")


@dataclass(frozen=True)
class ClusterOptions:
    """How `run_on_ray` asks for resources; see `fer reproduce --help`."""

    address: str | None = None     # None: start a local Ray; "auto", "host:port", "ray://..."
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    retries: int = 2
    device: str | None = None      # default: "cuda" when gpus_per_run > 0, else "cpu"


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when a ``host:port`` or ``ray://host:port`` is unreachable."""
    if address in (None, "", "auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address {address}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(f"--address {address}: cannot reach {host}:{port} ({err})") from None


def folder_bytes(path: Path) -> dict:
    """A result folder as ``{"folder": name, "files": {relative path: bytes}}``."""
    return {"folder": path.name,
            "files": {p.relative_to(path).as_posix(): p.read_bytes()
                      for p in sorted(path.rglob("*")) if p.is_file()}}


def write_folder(packed: dict, results_dir: Path) -> Path:
    """Write a packed result folder into `results_dir` atomically; returns its path."""
    with replacing_folder(results_dir, packed["folder"]) as tmp:
        for relative, blob in packed["files"].items():
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp / relative).write_bytes(blob)
    return results_dir / packed["folder"]


def run_task(exp, data, runs_dir: str, device: str, threads: int, *needs: dict) -> dict:
    """What one Ray task does: run `exp` beside the folders it needs; return its folder."""
    import torch

    from .experiments import load_or_train

    torch.set_num_threads(max(1, threads))
    # The worker's catalogue must describe the run as the driver's does: another code
    # version on a node would otherwise train something else under the same name.
    if catalogue.get(exp.name) != exp:
        raise RuntimeError(f"{exp.name}: this worker's catalogue describes it differently "
                           "from the driver's (another fer_lib version or $FER_CATALOGUE?)")
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        for packed in needs:
            write_folder(packed, results)
        result = load_or_train(exp, data, results_dir=results, runs_dir=Path(runs_dir),
                               device=device, quiet=True)
        return folder_bytes(result.path)


def _init_ray(options: ClusterOptions):
    """Connect to (or start) Ray; an already initialised Ray (a notebook's, a test's) is used."""
    import ray

    check_address(options.address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home
    if not ray.is_initialized():
        ray.init(address=options.address, log_to_driver=False, include_dashboard=False)
    return ray


def _worker_env() -> dict[str, str]:
    """The driver's fer settings, for every task (set per task: Ray may already run)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0"}


def run_on_ray(todo: list[str], data, options: ClusterOptions, *, results_dir: Path,
               runs_dir: Path) -> list[str]:
    """Run the catalogue entries `todo` (in dependency order) as Ray tasks.

    Every finished run's folder is written into `results_dir`; returns the names that
    still failed after their retries (a run whose dependency failed fails too).
    """
    ray = _init_ray(options)
    device = options.device or ("cuda" if options.gpus_per_run > 0 else "cpu")
    task = ray.remote(run_task).options(num_cpus=options.cpus_per_run,
                                        num_gpus=options.gpus_per_run,
                                        max_retries=options.retries, retry_exceptions=True,
                                        runtime_env={"env_vars": _worker_env()})
    data_ref = ray.put(data)
    refs: dict[str, object] = {}
    for name in todo:  # the catalogue's order: every run after what it needs
        exp = catalogue.get(name)
        needs = [refs[n] if n in refs else _stored(n, results_dir) for n in exp.needs]
        refs[name] = task.remote(exp, data_ref, str(runs_dir), device,
                                 int(max(1, options.cpus_per_run)), *[n for n in needs if n])
        print(f"[submit] {name}", flush=True)
    return _collect(ray, refs, results_dir)


def _stored(name: str, results_dir: Path) -> dict | None:
    """A stored dependency, packed for the worker (None if it is not stored)."""
    path = results_dir / catalogue.get(name).folder
    return folder_bytes(path) if path.is_dir() else None


def _collect(ray, refs: dict, results_dir: Path) -> list[str]:
    """Write each result as it arrives; report failures in one line each."""
    names = {ref: name for name, ref in refs.items()}
    pending, failed, t0 = list(refs.values()), [], time.time()
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        name = names[done[0]]
        try:
            path = write_folder(ray.get(done[0]), results_dir)
            print(f"[done] {name} ({time.time() - t0:.0f} s) -> {path}", flush=True)
        except Exception as err:  # RayTaskError wraps the worker's exception
            failed.append(name)
            cause = getattr(err, "cause", None) or err
            print(f"[FAIL] {name}: {type(cause).__name__}: "
                  f"{' '.join(str(cause).split())[:300]}", flush=True)
    return failed
