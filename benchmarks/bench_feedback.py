"""How long a reader and CI wait: `make test`, `make test-all`, `make book` and CI's stages.

    python benchmarks/bench_feedback.py [--stages test,test-all,book-nodata,book-data]
                                        [--repeat N] [--data PATH] [--venv PATH] [--write]
    python benchmarks/bench_feedback.py --stages ci      # the whole of .ci/run, by stage

Each stage runs in a fresh clone of this repository's HEAD (commit first what you want
measured) in a temporary folder, so every cache starts empty: the execution cache of the
book, pytest's, fer_lib's decoded-array cache (``FER_CACHE_DIR`` points into the clone's
temporary folder). The stages, with the targets of issue 42 (2 idle cores):

* ``test``: `make test` without the data set (at most 300 s);
* ``test-all``: `make test-all` without the data set (every test, slow ones included);
* ``test-data``: `make test-data` with the data set (the tests that skip without it, and
  nbval with it: what CI's second world runs);
* ``book-nodata``: `make book` without the data set, from an empty execution cache;
* ``book-data``: `make book` with the data set, from an empty execution cache (at most
  180 s); the data set's decoded-array cache starts empty too unless ``--warm-data``;
* ``ci``: `.ci/run` in the clone, its own ``=== [ N s] stage`` stamps turned into the
  seconds of each stage (it builds its own clone and venv for its first world, and uses
  the data set, ``--data``, for its second, as CI does).

Set-up is not timed: the clone uses an existing virtual environment (``--venv``, this
checkout's ``.venv`` by default; `make` is told not to reinstall it) and runs the clone's
own fer_lib (``PYTHONPATH``). The ``ci`` stage is the exception: .ci/run makes its venvs
itself (as on CI: a fresh one for its first world), and that set-up is in its total.

Without the data set means FER2013_PATH unset and no
``../shared`` beside the clone; with it, FER2013_PATH is ``--data`` (default: the
FER2013_PATH of the environment, else ``../shared/data/fer2013.zip``). Stages run one after
the other, ``--repeat`` times each (default once: each takes minutes); with repeats the
median and the range are printed. Only ratios mean something on a shared machine: the
load average before and after each run is printed, and a run whose load average exceeded
the core count is marked "under load". ``--write`` records the seconds in
``results/feedback_times.json`` (which, being in results/, makes the next book build
execute every chapter again).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FEEDBACK_TIMES = "feedback_times.json"
# stage -> (make target or None for .ci/run, needs the data set, target seconds or None)
STAGES = {
    "test": ("test", False, 300),
    "test-all": ("test-all", False, None),
    "test-data": ("test-data", True, None),
    "book-nodata": ("book", False, None),
    "book-data": ("book", True, 180),
    "ci": (None, True, 30 * 60),
}
DEFAULT_STAGES = ("test", "test-all", "book-nodata", "book-data")
STAMP = re.compile(r"^=== \[\s*(\d+) s\] (.*)$", re.M)


def default_data() -> Path | None:
    """FER2013_PATH, else the shared development copy beside the repository."""
    explicit = os.environ.get("FER2013_PATH", "").strip()
    path = Path(explicit) if explicit else REPO.parent / "shared" / "data" / "fer2013.zip"
    return path if path.exists() else None


def fresh_clone(tmp: Path, venv: Path | None) -> Path:
    """A clone of HEAD in `tmp`/fer-hw8 whose .venv is a link to `venv` (if given)."""
    clone = tmp / "fer-hw8"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    if venv is not None:
        (clone / ".venv").symlink_to(venv)
    return clone


def stage_env(clone: Path, tmp: Path, data: Path | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("FER2013_PATH", "VIRTUAL_ENV", "PYTHONPATH")
           and not key.startswith("PYTEST_")}
    env["FER_CACHE_DIR"] = str(tmp / "fer-cache")
    env["PYTHONPATH"] = str(clone)  # the clone's fer_lib, not the venv's editable one
    if data is not None:
        env["FER2013_PATH"] = str(data)
    return env


def run_stage(name: str, venv: Path, data: Path | None, warm_data: bool,
              log_dir: Path) -> dict:
    """One timed run of stage `name` in a fresh clone: seconds, success, load averages."""
    target, needs_data, _ = STAGES[name]
    with tempfile.TemporaryDirectory(prefix=f"feedback-{name}-") as folder:
        tmp = Path(folder)
        # .ci/run sets up its own venvs, as CI does (`make venv` in a clone linked to a
        # shared venv would reinstall that venv's editable fer_lib from the clone).
        clone = fresh_clone(tmp, venv if target is not None else None)
        env = stage_env(clone, tmp, data if needs_data else None)
        if needs_data and warm_data:
            env.pop("FER_CACHE_DIR")
        if target is None:
            env.pop("PYTHONPATH")  # its venvs are its own: their editable fer_lib is right
            command = [str(clone / ".ci" / "run")]
        else:
            # -o: take the venv as set up (never reinstall the shared one into the clone).
            command = ["make", "-o", ".venv/.installed", target]
        log = log_dir / f"{name}.log"
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        with open(log, "w") as out:
            done = subprocess.run(command, cwd=clone, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, check=False)
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()[0]
    record = {"seconds": round(seconds, 1), "ok": done.returncode == 0, "log": str(log),
              "load_before": round(load_before, 2), "load_after": round(load_after, 2)}
    if target is None:
        record["ci_stages"] = ci_stages(log.read_text())
    return record


def ci_stages(text: str) -> dict[str, float]:
    """Seconds of each stage of a .ci/run log: from one stamp to the next."""
    stamps = [(int(s), label) for s, label in STAMP.findall(text)]
    return {label: later - at
            for (at, label), (later, _) in zip(stamps, stamps[1:], strict=False)}


def summarize(seconds: list[float]) -> str:
    if len(seconds) == 1:
        return f"{seconds[0]:7.1f} s"
    return (f"{statistics.median(seconds):7.1f} s median "
            f"({min(seconds):.1f} to {max(seconds):.1f} s over {len(seconds)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                        help=f"comma-separated, of: {', '.join(STAGES)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each stage")
    parser.add_argument("--data", type=Path, default=None,
                        help="the data set for the stages that need it (default: "
                             "FER2013_PATH, else ../shared/data/fer2013.zip)")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv",
                        help="the virtual environment the clones use")
    parser.add_argument("--warm-data", action="store_true",
                        help="with the data set, use the usual decoded-array cache")
    parser.add_argument("--logs", type=Path, default=None,
                        help="keep each stage's output here (default: a temporary folder)")
    parser.add_argument("--write", action="store_true",
                        help=f"record the seconds in results/{FEEDBACK_TIMES}")
    args = parser.parse_args()

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    data = args.data or default_data()
    if data is not None and not data.exists():
        parser.error(f"--data {data} does not exist")
    venv = args.venv.resolve()
    if not (venv / "bin" / "python").exists():
        parser.error(f"no virtual environment at {venv} (run `make venv` first)")
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="feedback-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout.strip()
    cores = os.cpu_count() or 1
    print(f"commit {head}, {cores} cores, data set: {data or 'none'}; logs in {log_dir}")

    results: dict[str, list[dict]] = {}
    for name in stages:
        if STAGES[name][1] and data is None:
            print(f"{name:12s} skipped: needs the data set (--data)")
            continue
        for _ in range(args.repeat):
            record = run_stage(name, venv, data, args.warm_data, log_dir)
            results.setdefault(name, []).append(record)
            loaded = max(record["load_before"], record["load_after"]) > cores
            print(f"{name:12s} {record['seconds']:7.1f} s  "
                  f"{'ok' if record['ok'] else 'FAILED (see ' + record['log'] + ')'}  "
                  f"load {record['load_before']:.1f} -> {record['load_after']:.1f}"
                  f"{'  (under load)' if loaded else ''}", flush=True)
            for label, seconds in record.get("ci_stages", {}).items():
                print(f"{'':14s}{seconds:6d} s  {label}")

    print("\nsummary (target on 2 idle cores)")
    for name, records in results.items():
        target = STAGES[name][2]
        seconds = [r["seconds"] for r in records]
        failed = not all(r["ok"] for r in records)
        verdict = ("  FAILED: no time to compare" if failed else "" if target is None else
                   f"  target {target} s: {'met' if max(seconds) <= target else 'MISSED'}")
        print(f"  {name:12s} {summarize(seconds)}{verdict}")

    if args.write:
        sys.path.insert(0, str(REPO))
        from fer_lib.plan import benchmark_record, write_benchmark

        record = benchmark_record({"commit": head, "cores": cores,
                                   "data": str(data) if data else None, "stages": results})
        print(f"wrote {write_benchmark(FEEDBACK_TIMES, record, REPO / 'results')}")
    if not all(r["ok"] for records in results.values() for r in records):
        sys.exit(1)


if __name__ == "__main__":
    main()
