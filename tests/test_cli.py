"""The `fer` command line, called in-process through `fer_lib.cli.main`."""

from __future__ import annotations

import json
import os
import re
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


def _accuracies(checkpoint, data_path) -> dict[str, tuple[float, float]]:
    """(plain, flip-TTA) accuracy per split of a checkpoint's best model, computed here."""
    from fer_lib.data import load_fer2013, train_val_split
    from fer_lib.evaluate import accuracy, predict_logits
    from fer_lib.train import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state)
    data = load_fer2013(data_path)
    images, labels = data.split("Training")
    _, val = train_val_split(labels, state["config"]["val_fraction"],
                             state["config"]["split_seed"])
    sets = {"val": (images[val], labels[val]), "public": data.split("PublicTest"),
            "private": data.split("PrivateTest")}
    return {name: (accuracy(predict_logits(model, x), y),
                   accuracy(predict_logits(model, x, tta=True), y))
            for name, (x, y) in sets.items()}


def test_train_writes_checkpoint_and_metrics(trained, sample_zip):
    from fer_lib.train import load_checkpoint

    state = load_checkpoint(trained / "checkpoint.pt")
    assert state["config"]["subset"] == 200 and state["config"]["epochs"] == 1
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["best_epoch"] == state["best_epoch"] == 1
    for split, (plain, tta) in _accuracies(trained / "checkpoint.pt", sample_zip).items():
        assert metrics[f"{split}_acc_notta"] == pytest.approx(plain, abs=1e-12), split
        assert metrics[f"{split}_acc"] == pytest.approx(tta, abs=1e-12), split


def test_evaluate_prints_accuracies(trained, sample_zip, capsys):
    cli.main(["evaluate", str(trained / "checkpoint.pt"), "--data", str(sample_zip)])
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("mobilenet_v2 ")
    assert "epoch 1" in out and "best val epoch 1" in out
    printed = {m["split"]: (float(m["plain"]), float(m["tta"])) for m in re.finditer(
        r"^(?P<split>val|public|private)\s+acc (?P<plain>[0-9.]+)\s+with flip TTA "
        r"(?P<tta>[0-9.]+)$", out, re.MULTILINE)}
    want = _accuracies(trained / "checkpoint.pt", sample_zip)
    assert list(printed) == list(want)
    for split, (plain, tta) in want.items():
        assert printed[split] == (round(plain, 4), round(tta, 4)), split


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
