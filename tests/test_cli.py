"""The `fer` command line, called in-process through `fer_lib.cli.main`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import fer_lib.cli as cli
import fer_lib.experiments as experiments


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("summary", "train", "evaluate", "reproduce"):
        assert command in out


def test_a_subcommand_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([])
    assert exit_.value.code != 0


def test_summary_prints_table_and_params(capsys):
    from fer_lib.models import build, count_params

    cli.main(["summary", "mobilenet_v2", "--width", "0.3"])
    out = capsys.readouterr().out
    assert "InvertedResidual" in out and "output shape" in out
    assert f"{count_params(build('mobilenet_v2', width=0.3)):,} parameters" in out
    assert "MFLOPs" in out


@pytest.fixture(scope="module")
def trained(sample_zip, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_train") / "run"
    cli.main(["train", "smoke", "--subset", "200", "--epochs", "1", "--out", str(out),
              "--data", str(sample_zip), "--device", "cpu", "--quiet"])
    return out


def test_train_writes_checkpoint_and_metrics(trained):
    assert (trained / "checkpoint.pt").is_file()
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    for split in ("val", "public", "private"):
        assert 0 <= metrics[f"{split}_acc"] <= 1


def test_evaluate_prints_accuracies(trained, sample_zip, capsys):
    cli.main(["evaluate", str(trained / "checkpoint.pt"), "--data", str(sample_zip)])
    out = capsys.readouterr().out
    assert "mobilenet_v2" in out
    for split in ("val", "public", "private"):
        assert any(line.startswith(split) and "acc" in line for line in out.splitlines())


def test_reproduce_with_nothing_selected(monkeypatch, capsys):
    # never touch the committed results/: the summary writer and the job runner are stubbed
    monkeypatch.setattr(experiments, "write_summary", lambda *a, **k: None)
    monkeypatch.setattr(experiments, "summary_rows", lambda *a, **k: [])
    monkeypatch.setattr(cli, "run_jobs", lambda todo, args: [])
    cli.main(["reproduce", "--only", "nothing-matches"])
    assert "0 experiments selected, 0 to run" in capsys.readouterr().out


def _fer(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_lib.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, check=False)


FORMS = ("zip", "folder", "CSV")


@pytest.mark.parametrize("command", [["data-summary"], ["train", "smoke"],
                                     ["data-summary", "--write"]])
def test_fer2013_path_to_nothing_is_one_line(command, tmp_path):
    missing = tmp_path / "nowhere" / "fer2013.zip"
    done = _fer(command, {"FER2013_PATH": str(missing)})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert str(missing) in lines[0]
    assert all(form in lines[0] for form in FORMS), lines[0]


@pytest.mark.parametrize("content", [b"\xff\xfe not a data set \x00" * 50, b"PK\x03\x04junk"])
def test_fer2013_path_to_an_unreadable_file_is_one_line(content, tmp_path):
    bad = tmp_path / "fer2013.zip"
    bad.write_bytes(content)
    done = _fer(["data-summary"], {"FER2013_PATH": str(bad)})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(bad) in lines[0]
    assert all(form in lines[0] for form in FORMS), lines[0]


def test_debug_shows_the_traceback(tmp_path):
    done = _fer(["--debug", "data-summary"], {"FER2013_PATH": str(tmp_path / "none.zip")})
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "FileNotFoundError" in done.stderr
