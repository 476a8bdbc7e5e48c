"""Bad input on a student's path gets one clear line before any work (issue 39, item 7).

* The hw8 folder's predictor (numpy only): an empty or header-only test.csv, a missing
  one, a wrong header, a short row, or an output whose folder does not exist is one line
  on stderr naming the file, before the model is even read; while it predicts it says
  how far it is on stderr, and nothing on stdout.
* A copy of the image-folder release without a class folder (or a challenge CSV without
  a class) is refused by name, with the counts the full release has there.
* `rescore` on a run whose numbers do not change rewrites nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_lib import experiments as ex
from fer_lib import rescoring
from fer_lib.data import CLASS_NAMES, RELEASE_COUNTS, SPLITS, FER2013Error, load_fer2013
from fer_lib.errors import FER2013RowError
from fer_lib.homework import ModelSource, read_submission, write_folder
from fer_lib.models import build

REPO = Path(__file__).resolve().parents[1]
PREDICTOR = REPO / "fer_lib" / "hw8_predict.py"


def write_test_csv(path: Path, images: np.ndarray, header: str = "id,feature") -> Path:
    rows = [f"{i},{' '.join(map(str, image.ravel()))}" for i, image in enumerate(images)]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def predict(folder: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The grader's call: ``bash hw8_test.sh test.csv out.csv`` (or predict.py alone)."""
    script = folder / "hw8_test.sh"
    command = ["bash", str(script)] if script.exists() else [sys.executable,
                                                               str(folder / "predict.py")]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120, check=False)


# ----------------------------------------------------------------------------- predictor
@pytest.fixture
def bare_predictor(tmp_path) -> Path:
    """predict.py alone, with no model.npz or plan.json beside it: a check that comes
    after any of the work would end in a traceback about those files."""
    folder = tmp_path / "hw8"
    folder.mkdir()
    shutil.copyfile(PREDICTOR, folder / "predict.py")
    return folder


def _random(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48), dtype=np.uint8)


BAD_CALLS = {
    # name: (what to write in the work folder, the arguments, the file (and row) the line names)
    "empty test.csv": (lambda d: (d / "test.csv").write_text(""), ("test.csv", "out.csv"),
                       "test.csv"),
    "header only": (lambda d: (d / "test.csv").write_text("id,feature\n"),
                    ("test.csv", "out.csv"), "test.csv"),
    "missing test.csv": (lambda d: None, ("nowhere.csv", "out.csv"), "nowhere.csv"),
    "wrong header": (lambda d: write_test_csv(d / "train.csv", _random(3), "label,feature"),
                     ("train.csv", "out.csv"), "train.csv line 1"),
    "short row": (lambda d: (d / "test.csv").write_text("id,feature\n0,1 2 3\n"),
                  ("test.csv", "out.csv"), "test.csv line 2"),
    "no output folder": (lambda d: write_test_csv(d / "test.csv", _random(3)),
                         ("test.csv", "no/such/folder/out.csv"), "no/such/folder/out.csv"),
    "output is a folder": (lambda d: write_test_csv(d / "test.csv", _random(3)),
                           ("test.csv", "."), "."),
    "no arguments": (lambda d: None, (), "out.csv"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_is_one_line_before_any_work(case, bare_predictor, tmp_path):
    prepare, args, named = BAD_CALLS[case]
    work = tmp_path / "work"
    work.mkdir()
    prepare(work)
    before = sorted(p.name for p in work.iterdir())
    done = predict(bare_predictor, *args, cwd=work)
    assert done.returncode != 0 and done.stdout == ""
    line = done.stderr
    assert len(line.strip().splitlines()) == 1 and "Traceback" not in line, line
    assert re.match(rf"{re.escape(named)}(:| line \d+:) ", line), line
    assert len(line) < 120, line
    assert sorted(p.name for p in work.iterdir()) == before  # nothing written


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """An hw8 folder as `fer package` writes it, of a tiny untrained MobileNetV2."""
    torch.manual_seed(0)
    model = build("mobilenet_v2", width=0.15).eval()
    folder = tmp_path_factory.mktemp("tiny") / "hw8"
    folder.mkdir()
    write_folder(folder, ModelSource("tiny", "fp32", trained=model))
    return folder, model


def test_the_predictor_says_how_far_it_is_on_stderr(tiny_folder, tmp_path):
    folder, _ = tiny_folder
    n = 700  # three batches of 256
    path = write_test_csv(tmp_path / "test.csv", _random(n))
    done = predict(folder, str(path), str(tmp_path / "out.csv"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    counts = [int(m[1].replace(",", "")) for m in
              (re.fullmatch(rf"predict\.py: ([\d,]+)/{n} images", line) for line in lines)
              if m is not None]
    assert len(counts) == len(lines) >= 2, done.stderr
    assert counts == sorted(counts) and counts[-1] == n
    assert len(read_submission(tmp_path / "out.csv")) == n


# ----------------------------------------------------------------------------- data set
def _members_of(fer_sample, split: str, label: int) -> list[str]:
    return [name for name, usage, y in zip(fer_sample.names, fer_sample.usage,
                                           fer_sample.labels, strict=True)
            if usage == split and y == label]


@pytest.mark.parametrize("form", ["zip", "folder"])
def test_a_missing_class_folder_is_named_with_the_release_counts(form, fer_sample, tmp_path):
    disgust = CLASS_NAMES.index("Disgust")
    drop = _members_of(fer_sample, "Training", disgust)
    assert drop and all(name.startswith("train/disgust/") for name in drop)
    source = (fer_sample.write_zip(tmp_path / "fer2013.zip", drop=drop) if form == "zip"
              else fer_sample.write_folder(tmp_path / "fer2013", drop=drop))
    with pytest.raises(FER2013RowError) as error:
        load_fer2013(source, cache_dir=tmp_path / "cache")
    message = str(error.value)
    expected = f"{RELEASE_COUNTS['Training'][disgust]:,} Training"
    assert message.startswith(f"{source}: no images in train/disgust/ ("), message
    assert expected in message and "\n" not in message
    assert "test/" not in message  # only what is missing is named


def test_a_missing_test_folder_names_both_test_splits(fer_sample, tmp_path):
    fear = CLASS_NAMES.index("Fear")
    drop = _members_of(fer_sample, "PublicTest", fear) + _members_of(fer_sample,
                                                                     "PrivateTest", fear)
    source = fer_sample.write_zip(tmp_path / "fer2013.zip", drop=drop)
    with pytest.raises(FER2013Error, match=re.escape(
            f"no images in test/fear/ (the full release has "
            f"{RELEASE_COUNTS['PublicTest'][fear]} PublicTest + "
            f"{RELEASE_COUNTS['PrivateTest'][fear]} PrivateTest)")):
        load_fer2013(source, cache_dir=tmp_path / "cache")


def test_a_challenge_csv_without_a_class_is_named(fer_sample, tmp_path):
    happy = CLASS_NAMES.index("Happy")
    lines = [line for line, y in zip(fer_sample.csv_lines(), fer_sample.labels, strict=True)
             if y != happy]
    source = fer_sample.write_csv(tmp_path / "fer2013.csv", lines)
    counts = " + ".join(f"{RELEASE_COUNTS[s][happy]:,} {s}" for s in SPLITS)
    with pytest.raises(FER2013Error, match=re.escape(f"no Happy rows (the full release has "
                                                     f"{counts})")):
        load_fer2013(source, cache_dir=tmp_path / "cache")


def test_the_synthetic_release_and_the_course_files_still_load(fer_sample, small_fer,
                                                               tmp_path):
    """Every class in every split: the fixtures load; the course's test.csv (no labels)
    and train.csv (Training only) are not held to the release's classes."""
    assert all((counts > 0).all() for counts in small_fer.class_counts().values())
    write_test_csv(tmp_path / "test.csv", _random(4))
    loaded = load_fer2013(tmp_path / "test.csv", cache_dir=tmp_path / "cache")
    assert len(loaded) == 4
    rows = [f"0,{' '.join(map(str, image.ravel()))}" for image in _random(2)]  # angry only
    (tmp_path / "train.csv").write_text("\n".join(["label,feature", *rows]) + "\n")
    assert len(load_fer2013(tmp_path / "train.csv", cache_dir=tmp_path / "cache")) == 2


def test_the_fer_command_says_it_in_one_line(fer_sample, tmp_path, capsys):
    """The `fer` command adds its list of accepted forms to other data errors; this file
    is of an accepted form, so the line stays about what it lacks."""
    import fer_lib.cli as cli

    drop = _members_of(fer_sample, "Training", CLASS_NAMES.index("Disgust"))
    source = fer_sample.write_zip(tmp_path / "fer2013.zip", drop=drop)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data-summary", "--data", str(source)])
    line = str(exit_.value.code)
    assert len(line.splitlines()) == 1 and "train/disgust/" in line, line
    assert "image-folder release as a zip" not in line
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- rescore
@pytest.mark.slow
def test_rescoring_an_unchanged_run_rewrites_nothing(mini, small_fer, tmp_path):
    catalogue, results = mini
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    for name in ("stu", "t-a"):  # weights stored; a teacher whose weights we drop below
        folder = ex.find_result(catalogue[name], copy).path
        if name == "t-a":
            (folder / "weights-bn.npz").unlink()
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        said = rescoring.rescore(catalogue[name], small_fer, results_dir=copy)
        assert "unchanged" in said, said
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # A changed number is still written, with how it was measured.
    stu = ex.find_result(catalogue["stu"], copy)
    stu.metrics["val_acc"] = -1.0
    ex.write_metrics(stu.path, stu.metrics)
    assert rescoring.rescore(catalogue["stu"], small_fer, results_dir=copy) == \
        "fp32, from the stored fp16 weights"
    assert ex.find_result(catalogue["stu"], copy).metrics["val_acc"] >= 0
