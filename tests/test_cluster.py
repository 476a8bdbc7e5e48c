"""`fer reproduce --backend ray`: the same results as the local backend, and fault tolerance.

Two tiny catalogue-style runs (a one-epoch student on the synthetic sample and a cut of
it, which needs the first) go through the local backend (subprocesses) and through a
local Ray (``ray.init(num_cpus=2)``); the result folders and summary rows must agree. A
worker killed mid-run must be retried and resume from its checkpoint. The tests that
start a local Ray are marked slow: `make test-all` and CI run them, `make test` does not.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='Ray not installed: pip install -e ".[cluster]"')

from fer_lib import catalogue, cli  # noqa: E402

CATALOGUE_FILE = textwrap.dedent('''
    """A two-run catalogue for the cluster tests (loaded through $FER_CATALOGUE)."""
    import os
    from pathlib import Path

    from fer_lib.catalogue import Experiment
    from fer_lib.config import TrainConfig

    CRASH_DIR = os.environ.get("FER_TEST_CRASH_DIR")
    if CRASH_DIR:
        # Kill this worker once, at the start of epoch 2 (epoch 1's checkpoint is on disk),
        # and log every epoch started, so the test can tell a resume from a restart.
        import fer_lib.train as train

        real = train.train_one_epoch

        def dying(*args, **kwargs):
            log = Path(CRASH_DIR) / "epochs.log"
            count = len(log.read_text().splitlines()) if log.exists() else 0
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\\n")
            if count == 1 and not (Path(CRASH_DIR) / "crashed").exists():
                (Path(CRASH_DIR) / "crashed").touch()
                os._exit(1)
            return real(*args, **kwargs)

        train.train_one_epoch = dying


    def build():
        cfg = TrainConfig(family="mobilenet_v2", model_args={"width": 0.15}, epochs=2,
                          batch_size=64, lr=0.05, warmup_epochs=0.1, channels_last=False)
        student = Experiment("tiny-student", "ablation-kd", cfg, precision="int8")
        cut = Experiment("tiny-cut", "ablation-cut", cfg, kind="cut", slim_from=student.name,
                         slim_fraction=0.5, precision="int8")
        return [student, cut]
''')
TIMING = {"train_seconds"}


@pytest.fixture(scope="module")
def catalogue_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("catalogue") / "tiny_catalogue.py"
    path.write_text(CATALOGUE_FILE)
    return path


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}})
    yield
    ray.shutdown()


def _project(root: Path, catalogue_path: Path) -> dict[str, str]:
    return {"FER_CATALOGUE": f"{catalogue_path}:build", "FER_RESULTS_DIR": str(root / "results"),
            "FER_RUNS_DIR": str(root / "runs")}


def _reproduce_in_process(env: dict, args: list[str], monkeypatch) -> None:
    """`fer reproduce` in this process, where the test's Ray runs, with `env` set."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    catalogue.experiments.cache_clear()
    try:
        cli.main(["reproduce", *args])
    finally:
        catalogue.experiments.cache_clear()


def _folders(results: Path) -> dict[str, dict]:
    """{folder: metrics without timings} of every run folder."""
    out = {}
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        metrics = json.loads((folder / "metrics.json").read_text())
        out[folder.name] = {k: v for k, v in metrics.items() if k not in TIMING}
    return out


def _summary(results: Path) -> list[dict]:
    with open(results / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _history(results: Path, folder: str) -> list[dict]:
    with open(results / folder / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def local_backend(catalogue_file, sample_zip, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("local_backend")
    env = {**os.environ, **_project(root, catalogue_file)}
    subprocess.run([sys.executable, "-m", "fer_lib.cli", "reproduce", "--data", str(sample_zip),
                    "--device", "cpu"], env=env, check=True, capture_output=True, text=True)
    return root / "results"


@pytest.mark.slow
def test_ray_backend_writes_what_the_local_backend_writes(local_backend, local_ray,
                                                          catalogue_file, sample_zip,
                                                          tmp_path, monkeypatch, capsys):
    env = _project(tmp_path, catalogue_file)
    _reproduce_in_process(env, ["--backend", "ray", "--cpus-per-run", "2", "--data",
                                str(sample_zip)], monkeypatch)
    out = capsys.readouterr().out
    assert "[done] tiny-student" in out and "[done] tiny-cut" in out
    ray_results = tmp_path / "results"
    assert _folders(ray_results) == _folders(local_backend)
    assert _summary(ray_results) == _summary(local_backend)
    assert len(_summary(ray_results)) == 2
    for folder in _folders(local_backend):
        assert _history(ray_results, folder) == _history(local_backend, folder)


@pytest.mark.slow
def test_stored_runs_are_skipped_and_dependencies_travel_to_workers(local_backend, local_ray,
                                                                    catalogue_file, sample_zip,
                                                                    tmp_path, monkeypatch,
                                                                    capsys):
    """With the student stored and the cut missing, only the cut runs: its worker gets the
    student's folder from the driver, not from a shared results/."""
    import shutil

    env = _project(tmp_path, catalogue_file)
    student = next(p for p in local_backend.iterdir() if p.name.startswith("tiny-student-"))
    shutil.copytree(student, tmp_path / "results" / student.name)
    _reproduce_in_process(env, ["--backend", "ray", "--cpus-per-run", "2", "--data",
                                str(sample_zip)], monkeypatch)
    out = capsys.readouterr().out
    assert "2 experiments selected, 1 to run" in out
    assert "[submit] tiny-cut" in out and "[submit] tiny-student" not in out
    assert _folders(tmp_path / "results") == _folders(local_backend)


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_retried_and_resumes(local_backend, local_ray,
                                                        catalogue_file, sample_zip, tmp_path,
                                                        monkeypatch, capsys):
    crash = tmp_path / "crash"
    crash.mkdir()
    env = {**_project(tmp_path, catalogue_file), "FER_TEST_CRASH_DIR": str(crash)}
    _reproduce_in_process(env, ["--backend", "ray", "--cpus-per-run", "2", "--only",
                                "tiny-student", "--data", str(sample_zip)], monkeypatch)
    assert (crash / "crashed").exists(), "the worker was never killed"
    workers = (crash / "epochs.log").read_text().split()
    # Epoch 1, epoch 2 (killed there), then only epoch 2 again in the new worker: resumed.
    assert len(workers) == 3 and workers[0] == workers[1] != workers[2]
    folder = next(name for name in _folders(local_backend) if name.startswith("tiny-student-"))
    assert _history(tmp_path / "results", folder) == _history(local_backend, folder)


def test_an_unreachable_address_fails_fast_in_one_line(tmp_path):
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fer_lib.cli", "reproduce", "--backend", "ray",
                           "--address", "ray://127.0.0.1:9"], capture_output=True, text=True,
                          env={**os.environ, "FER_RESULTS_DIR": str(tmp_path / "results")},
                          check=False)
    assert done.returncode != 0 and time.monotonic() - start < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:9" in lines[0] and "Traceback" not in done.stderr
