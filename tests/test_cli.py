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
def trained(smoke_run):
    return smoke_run


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


ROW = re.compile(r"^(?P<name>fp32|fp16|int8|int4|fp32, no TTA)\s+(?P<val>[0-9.]+)\s+"
                 r"(?P<public>[0-9.]+)\s+(?P<private>[0-9.]+)$", re.MULTILINE)


def _printed_rows(out: str) -> dict[str, tuple[float, float, float]]:
    return {m["name"]: (float(m["val"]), float(m["public"]), float(m["private"]))
            for m in ROW.finditer(out)}


def test_evaluate_prints_accuracies(trained, sample_zip, capsys):
    cli.main(["evaluate", str(trained / "checkpoint.pt"), "--data", str(sample_zip)])
    out = capsys.readouterr().out
    assert "mobilenet_v2" in out.splitlines()[0]
    assert "epoch 1" in out and "best val epoch 1" in out
    rows = _printed_rows(out)
    assert list(rows) == ["fp32", "fp16", "int8", "int4", "fp32, no TTA"]
    want = _accuracies(trained / "checkpoint.pt", sample_zip)
    for column, split in enumerate(("val", "public", "private")):
        plain, tta = want[split]
        assert rows["fp32"][column] == round(tta, 4), split
        assert rows["fp32, no TTA"][column] == round(plain, 4), split


def test_evaluate_a_result_folder_prints_its_summary_row(mini, sample_zip, capsys):
    import csv

    catalogue, results = mini
    folder = results / catalogue["stu"].folder
    cli.main(["evaluate", str(folder), "--data", str(sample_zip)])
    rows = _printed_rows(capsys.readouterr().out)
    with open(results / "summary.csv", newline="") as f:
        summary = {row["run"]: row for row in csv.DictReader(f)}["stu"]
    got = rows[summary["precision"]]
    for column, split in enumerate(("val", "public", "private")):
        assert got[column] == pytest.approx(float(summary[f"{split}_acc"]), abs=5e-5), split


def test_evaluate_an_exported_file_matches_its_precision(mini, sample_zip, capsys):
    catalogue, results = mini
    exp = catalogue["stu"]
    export = results.parent / "runs" / exp.folder / "model-int8.npz"
    cli.main(["evaluate", str(export), "--data", str(sample_zip)])
    rows = _printed_rows(capsys.readouterr().out)
    stored = experiments.find_result(exp, results).metrics["acc_by_precision"]["int8"]
    assert list(rows) == ["fp32", "fp32, no TTA"]  # the file's weights are what they are
    for column, split in enumerate(("val", "public", "private")):
        assert rows["fp32"][column] == pytest.approx(stored[split], abs=5e-5), split


def test_evaluate_moves_the_model_to_the_device(mini, sample_zip, monkeypatch, capsys):
    """`--device` reaches the model, not only its inputs (the model used to stay on CPU)."""
    import fer_lib.evaluate as evaluate

    moved = []
    real = evaluate.predict_views

    def spy(model, images, *, device="cpu", **kwargs):
        moved.append(str(device))
        return real(model, images, device="cpu", **kwargs)

    monkeypatch.setattr(evaluate, "predict_views", spy)
    catalogue, results = mini
    cli.main(["evaluate", str(results / catalogue["stu"].folder), "--precision", "int8",
              "--device", "cuda:7", "--data", str(sample_zip)])
    assert moved and set(moved) == {"cuda:7"}


def test_evaluate_unknown_target_is_one_line(tmp_path):
    done = _fer(["evaluate", str(tmp_path / "nothing")], {})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "nothing" in done.stderr


def test_train_refuses_to_overwrite_a_checkpoint(trained, sample_zip):
    done = _fer(["train", "smoke", "--out", str(trained), "--data", str(sample_zip)], {})
    assert done.returncode != 0 and "--resume" in done.stderr and "--force" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_yaml_config_names_the_file(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("epochs: [1, 2\nlr: 0.1\n")
    done = _fer(["train", str(config)], {})
    assert done.returncode != 0 and str(config) in done.stderr and "YAML" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_help_hides_the_internal_worker(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert ("{summary,train,evaluate,reproduce,rescore,data-summary,predict,score,package,"
            "int8}" in out)
    listed = [line.split()[0] for line in out.split("positional arguments:")[1].splitlines()
              if line.startswith("    ") and line.split()]
    assert "evaluate" in listed and "run" not in listed


def test_reproduce_with_a_pattern_that_matches_nothing_says_so(capsys):
    done = _fer(["reproduce", "--only", "nothing-matches"], {})
    assert done.returncode != 0 and "nothing-matches" in done.stderr


def test_reproduce_with_nothing_to_run(monkeypatch, capsys):
    # never touch the committed results/: the summary writer and the job runner are stubbed
    import fer_lib.store as store

    monkeypatch.setattr(store, "write_summary", lambda *a, **k: None)
    monkeypatch.setattr(store, "summary_rows", lambda *a, **k: [])
    monkeypatch.setattr(cli, "run_jobs", lambda todo, args: todo and pytest.fail("ran"))
    cli.main(["reproduce", "--only", "hw3-cnn"])
    assert "1 experiments selected, 0 to run" in capsys.readouterr().out


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


def test_evaluate_a_run_without_weights_scores_its_stored_outputs(mini, sample_zip, tmp_path,
                                                                   capsys):
    import shutil

    catalogue, results = mini
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    folder = copy / catalogue["sparse"].folder
    (folder / "weights-bn.npz").unlink()  # as a sweep run: predictions only
    cli.main(["evaluate", str(folder), "--data", str(sample_zip)])
    out = capsys.readouterr().out
    assert "no weights committed" in out
    stored = experiments.find_result(catalogue["sparse"], results).metrics
    got = _printed_rows(out)["fp32"]
    for column, split in enumerate(("val", "public", "private")):
        assert got[column] == pytest.approx(stored[f"{split}_acc"], abs=5e-5), split
