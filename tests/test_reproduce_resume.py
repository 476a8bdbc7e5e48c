"""`fer reproduce` killed mid-run (SIGKILL, as when a session ends) resumes the run from
its last checkpoint instead of starting it again."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

CATALOGUE = '''
from fer_lib.catalogue import Experiment
from fer_lib.config import TrainConfig


def catalogue():
    cfg = TrainConfig(family="cnn", model_args={"width": 0.05}, epochs=12, batch_size=4,
                      lr=0.05, warmup_epochs=0.1, channels_last=False)
    return [Experiment("resumable", "sweep", cfg)]
'''


def _checkpoint(runs: Path) -> Path | None:
    found = sorted(runs.glob("resumable-*/checkpoint.pt"))
    return found[0] if found else None


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
@pytest.mark.slow
def test_reproduce_killed_mid_run_resumes_from_its_checkpoint(sample_zip, tmp_path):
    (tmp_path / "cat.py").write_text(CATALOGUE)
    results, runs = tmp_path / "results", tmp_path / "runs"
    env = dict(os.environ, FER_CATALOGUE=f"{tmp_path / 'cat.py'}:catalogue",
               FER_RESULTS_DIR=str(results), FER_RUNS_DIR=str(runs),
               FER2013_PATH=str(sample_zip), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "fer_lib.cli", "reproduce", "--device", "cpu"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        path = _checkpoint(runs)
        if path is not None:
            try:
                if torch.load(path, weights_only=False)["epoch"] >= 1:
                    break
            except Exception:  # written while we read it: look again
                pass
        time.sleep(0.05)
    assert first.poll() is None, "the run finished before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)  # the whole tree: driver and worker
    first.wait()
    killed_at = torch.load(_checkpoint(runs), weights_only=False)
    assert 1 <= killed_at["epoch"] < 12 and not any(results.glob("resumable-*"))

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "ETA" in second.stdout or "done" in second.stdout
    (folder,) = results.glob("resumable-*")
    with open(folder / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    assert [int(float(r["epoch"])) for r in history] == list(range(1, 13))
    # The epochs before the kill are the checkpoint's own rows, not new ones: resumed.
    for before, after in zip(killed_at["history"], history, strict=False):
        assert float(after["seconds"]) == pytest.approx(before["seconds"])
