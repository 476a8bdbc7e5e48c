"""The homework's own formats: train.csv / test.csv, id,label submissions, the hw8/ folder.

Without the data set everything runs on the synthetic FER2013 (conftest) and on test.csv
files of random pixels made here; the committed submission model (results/) is packaged
and its numpy predictor checked against fer_lib. With FER2013, a submission's Kaggle
scores must be the stored accuracies of that model at that precision.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fer_lib
import fer_lib.cli as cli
from fer_lib import hw8_predict, readers
from fer_lib.data import FER2013Error, evaluation_sets, load_fer2013
from fer_lib.evaluate import predict_logits
from fer_lib.homework import (
    SubmissionError,
    apparent_size,
    du_size,
    folder_size,
    model_source,
    package,
    plan_of,
    read_submission,
    score_submission,
    write_course_csvs,
    write_submission,
)
from fer_lib.models import build
from fer_lib.quantize import (
    PRECISIONS,
    SIMPLE_BUDGET,
    STRONG_BUDGET,
    export_npz,
    file_sha256,
    load_model,
)
from fer_lib.store import load_result

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FILES = {"model.npz", "plan.json", "predict.py", "hw8_test.sh"}


@pytest.fixture(autouse=True)
def repo_results(monkeypatch):
    """The committed results, whatever the working directory."""
    monkeypatch.setenv("FER_RESULTS_DIR", str(REPO / "results"))


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def random_images(n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, 48, 48) of uniform random grey levels: never faces."""
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def id_feature_lines(images: np.ndarray, order=None) -> list[str]:
    """Data lines ``id,feature`` of a test.csv, in `order` (default: by id)."""
    order = range(len(images)) if order is None else order
    return [f"{i},{' '.join(map(str, images[i].ravel()))}" for i in order]


def write_lines(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


@pytest.fixture
def random_test_csv(tmp_path) -> tuple[Path, np.ndarray]:
    """A test.csv of 40 random images whose rows are shuffled; (path, images by id)."""
    images = random_images(40)
    order = np.random.default_rng(1).permutation(len(images))
    return write_lines(tmp_path / "test.csv", "id,feature", id_feature_lines(images, order)), images


# ----------------------------------------------------------------------------- reading


def test_course_csvs_alone_and_together(small_fer, tmp_path, cache):
    written = write_course_csvs(small_fer, tmp_path)
    assert set(written) == {"train", "test"}
    both = load_fer2013(tmp_path, cache_dir=cache)
    train_images, train_labels = small_fer.split("Training")
    np.testing.assert_array_equal(both.split("Training")[0], train_images)
    np.testing.assert_array_equal(both.split("Training")[1], train_labels)
    np.testing.assert_array_equal(both.test_images(), small_fer.test_images())
    # Fewer than 3,589 ids: on Kaggle all of them would have been public.
    assert set(both.usage[both.usage != "Training"]) == {"PublicTest"}
    alone = load_fer2013(written["train"], cache_dir=cache)
    assert set(alone.usage) == {"Training"} and len(alone) == len(train_labels)
    test_only = load_fer2013(written["test"], cache_dir=cache)
    np.testing.assert_array_equal(test_only.test_images(), small_fer.test_images())
    assert (test_only.labels == readers.UNLABELLED).all()


def test_unlabelled_test_images_are_never_scored(small_fer, tmp_path, cache):
    data = load_fer2013(write_course_csvs(small_fer, tmp_path)["test"], cache_dir=cache)
    for ask in (lambda: data.split("PublicTest"), data.class_counts,
                lambda: evaluation_sets(load_fer2013(tmp_path, cache_dir=cache))):
        with pytest.raises(FER2013Error, match="no labels"):
            ask()
    with pytest.raises(SubmissionError, match="no test labels"):
        score_submission(np.zeros(len(data), np.int64), data)


def test_test_csv_rows_come_back_by_id_and_split_like_kaggle(tmp_path, monkeypatch):
    images = random_images(12)
    order = np.random.default_rng(2).permutation(12)
    path = write_lines(tmp_path / "test.csv", "id,feature", id_feature_lines(images, order))
    monkeypatch.setattr(readers, "PUBLIC_TEST_SIZE", 5)  # Kaggle's 3,589, scaled down
    data = load_fer2013(path, use_cache=False)
    np.testing.assert_array_equal(data.test_images(), images)
    assert list(data.usage) == ["PublicTest"] * 5 + ["PrivateTest"] * 7


def _pixels(values) -> str:
    return " ".join(map(str, values))


# (change to the lines of a 6-image test.csv, the error expected); lines start at line 2.
BAD_TEST_CSVS = {
    "missing id": (lambda lines: lines[:3] + lines[4:], r"test.csv: id 3 is missing"),
    "duplicated id": (lambda lines: lines[:4] + ["2" + lines[4][1:]] + lines[5:],
                      r"test.csv line 6: duplicate id 2 \(also at line 4\)"),
    "short row": (lambda lines: lines[:2] + [f"2,{_pixels([0] * 2303)}"] + lines[3:],
                  r"test.csv line 4: 2303 pixels, expected 2304"),
    "non-numeric pixel": (lambda lines: lines[:2] + [f"2,{_pixels([0] * 2303 + ['x'])}"]
                          + lines[3:], r"test.csv line 4: non-integer pixel"),
    "non-numeric id": (lambda lines: lines[:1] + ["a" + lines[1][1:]] + lines[2:],
                       r"test.csv line 3: id 'a' is not a whole number"),
    "extra field": (lambda lines: lines[:1] + [lines[1] + ",3"] + lines[2:],
                    r"test.csv line 3: 3 fields, expected 2"),
}


@pytest.mark.parametrize("case", BAD_TEST_CSVS)
def test_bad_test_csv_is_named_and_nothing_is_written(case, tmp_path, cache):
    change, match = BAD_TEST_CSVS[case]
    path = write_lines(tmp_path / "test.csv", "id,feature", change(id_feature_lines(
        random_images(6))))
    with pytest.raises(FER2013Error, match=match):
        load_fer2013(path, cache_dir=cache)
    with pytest.raises(FER2013Error, match=match):  # every id needs its image
        load_fer2013(path, cache_dir=cache, skip_bad=True)
    out = tmp_path / "submission.csv"
    with pytest.raises(SystemExit, match=match):
        cli.main(["predict", "student-27k-kd", str(path), "-o", str(out)])
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["test.csv"]


@pytest.mark.parametrize("case", [c for c in BAD_TEST_CSVS if c != "missing id"])
def test_a_bad_test_csv_row_is_one_short_line(case, tmp_path):
    """A row error names the file, the line and what was expected, and no more: the list
    of accepted forms (~300 characters) is for a file of no accepted form."""
    change, match = BAD_TEST_CSVS[case]
    path = write_lines(tmp_path / "test.csv", "id,feature", change(id_feature_lines(
        random_images(6))))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["predict", "student-27k-kd", str(path), "-o", str(tmp_path / "out.csv")])
    line = str(exit_.value.code)
    assert len(line.splitlines()) == 1 and len(line) < 200, line
    assert f"{path} line " in line and re.search(match, line), line


@pytest.mark.parametrize(("header", "row", "match"), [
    ("label,feature", f"7,{_pixels([0] * 2304)}", r"train.csv line 2: label '7' is not"),
    ("label,feature", f"3,{_pixels([0] * 2305)}", r"train.csv line 2: 2305 pixels"),
    ("label,feature", f"3,{_pixels([0] * 2304)},Training", r"train.csv line 2: 3 fields"),
    (None, f"3,{_pixels([0] * 2304)}", r"train.csv: 2 columns and no header.*label,feature"),
    ("id,pixels", f"3,{_pixels([0] * 2304)}", r"train.csv: missing CSV column.*id,feature"),
    ("label,feature", None, r"train.csv: a header and no rows"),
])
def test_bad_train_csv_is_named(header, row, match, tmp_path, cache):
    lines = [line for line in (header, row) if line is not None]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FER2013Error, match=match):
        load_fer2013(tmp_path / "train.csv", cache_dir=cache)


def test_accepted_forms_name_the_course_files():
    from fer_lib.data import ACCEPTED_FORMS

    assert "train.csv (label,feature)" in ACCEPTED_FORMS
    assert "test.csv (id,feature; unlabelled)" in ACCEPTED_FORMS


# ----------------------------------------------------------------------------- submissions


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_predict_writes_kaggle_format_with_flip_tta(random_test_csv, tmp_path):
    path, images = random_test_csv
    out = tmp_path / "submission.csv"
    cli.main(["predict", "student-27k-kd", str(path), "-o", str(out)])
    chosen = model_source("student-27k-kd")
    assert chosen.precision == load_result("student-27k-kd").experiment.precision
    expected = predict_logits(chosen.model(), images, tta=True).argmax(axis=1)
    assert _rows(out) == ["id,label"] + [f"{i},{c}" for i, c in enumerate(expected)]
    # The same model from its exported file writes the same file.
    exported = tmp_path / "model.npz"
    chosen.export(exported)
    again = tmp_path / "again.csv"
    cli.main(["predict", str(exported), str(path), "-o", str(again)])
    assert again.read_text() == out.read_text()
    with pytest.raises(SystemExit, match=f"holds {chosen.precision} weights, not fp32"):
        cli.main(["predict", str(exported), str(path), "--precision", "fp32", "-o", str(again)])


def test_predict_at_another_precision(random_test_csv, tmp_path):
    path, images = random_test_csv
    out = tmp_path / "fp32.csv"
    cli.main(["predict", "student-27k-kd", str(path), "--precision", "fp32", "-o", str(out)])
    model = load_result("student-27k-kd").model()
    expected = predict_logits(model, images, tta=True).argmax(axis=1)
    np.testing.assert_array_equal(read_submission(out), expected)


def test_score_is_public_then_private(small_fer, sample_zip, tmp_path, capsys):
    public, private = small_fer.split("PublicTest")[1], small_fer.split("PrivateTest")[1]
    labels = np.concatenate([public, private])
    labels[len(public):len(public) + 10] = (labels[len(public):len(public) + 10] + 1) % 7
    path = write_submission(tmp_path / "sub.csv", labels)
    assert score_submission(read_submission(path), small_fer) == {
        "public": 1.0, "private": 1 - 10 / len(private), "n_public": len(public),
        "n_private": len(private)}
    cli.main(["score", str(path), "--data", str(sample_zip)])
    out = capsys.readouterr().out
    assert f"public  (ids 0..{len(public) - 1}, {len(public)} images): 1.00000" in out
    assert f"private (ids {len(public)}..{len(labels) - 1}" in out
    assert f"{1 - 10 / len(private):.5f}" in out


BAD_SUBMISSIONS = {
    "duplicated id": (["0,1", "1,2", "1,3"], r"sub.csv line 4: duplicate id 1"),
    "missing id": (["0,1", "2,2"], r"sub.csv: id 1 is missing"),
    "label out of range": (["0,1", "1,9"], r"sub.csv line 3: label '9' is not an integer"),
    "three fields": (["0,1,2"], r"sub.csv line 2: 3 fields, expected 2"),
}


@pytest.mark.parametrize("case", BAD_SUBMISSIONS)
def test_bad_submission_is_named(case, tmp_path, sample_zip):
    lines, match = BAD_SUBMISSIONS[case]
    path = write_lines(tmp_path / "sub.csv", "id,label", lines)
    with pytest.raises(SubmissionError, match=match):
        read_submission(path)
    with pytest.raises(SystemExit, match=match):
        cli.main(["score", str(path), "--data", str(sample_zip)])


def test_submission_of_the_wrong_length(small_fer, tmp_path):
    path = write_submission(tmp_path / "sub.csv", np.zeros(7, np.int64))
    with pytest.raises(SubmissionError, match="7 predictions, but the test set"):
        score_submission(read_submission(path), small_fer)


def test_score_of_a_short_submission_names_it(small_fer, sample_zip, tmp_path):
    n = len(small_fer.test_images())
    path = write_submission(tmp_path / "short.csv", np.zeros(n - 1, np.int64))  # no last id
    with pytest.raises(SubmissionError, match=rf"^{re.escape(str(path))}: {n - 1} predictions"):
        score_submission(read_submission(path), small_fer, path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["score", str(path), "--data", str(sample_zip)])
    assert str(path) in str(exit_.value.code) and f"has {n} images" in str(exit_.value.code)


# ----------------------------------------------------------------------------- the folder


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """The homework submission's folder, built once: (Package, its ModelSource)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER_RESULTS_DIR", str(REPO / "results"))
        built = package(out=tmp_path_factory.mktemp("package") / "hw8")
        return built, model_source()


def test_package_is_the_submission_and_measured_like_du(packaged):
    built, chosen = packaged
    submission = fer_lib.submission(STRONG_BUDGET)
    assert (built.run, built.precision) == (submission.run, submission.precision)
    assert {p.name for p in built.folder.iterdir()} == PACKAGE_FILES == set(built.files)
    recorded = load_result(built.run).metrics
    assert built.weights == recorded["bytes"][built.precision] == submission.bytes
    # ... and it is the very file the run was scored as: byte for byte, by its hash.
    assert file_sha256(built.folder / "model.npz") == recorded["sha256"][built.precision]
    assert built.code == sum(built.files.values()) - built.weights < 25_000
    assert built.total == built.weights + built.code + built.directories
    assert built.total == apparent_size(built.folder) <= STRONG_BUDGET < SIMPLE_BUDGET
    if built.du is not None:
        assert built.du == built.total
    assert os.access(built.folder / "hw8_test.sh", os.X_OK)
    # The weights are the export, unchanged: fer_lib reads them back as the same model.
    x = random_images(8, seed=3)
    np.testing.assert_allclose(predict_logits(load_model(built.folder / "model.npz"), x),
                               predict_logits(chosen.model(), x), atol=1e-6)


def test_hw8_test_sh_predicts_like_fer_lib_without_torch(packaged, random_test_csv, tmp_path):
    built, chosen = packaged
    path, images = random_test_csv
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the predictor must not need torch')")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = tmp_path / "out.csv"
    done = subprocess.run(["bash", str(built.folder / "hw8_test.sh"), str(path), str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    logits = predict_logits(chosen.model(), images, tta=True)
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3  # a near-tie may go either way in float32
    assert clear.mean() > 0.9
    got = read_submission(out)
    np.testing.assert_array_equal(got[clear], logits.argmax(axis=1)[clear])
    assert _rows(out)[0] == "id,label" and len(got) == len(images)


def _folder_predictor(folder: Path):
    spec = importlib.util.spec_from_file_location("hw8_folder_predict", folder / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_logits_match_fer_lib(packaged):
    built, chosen = packaged
    module = _folder_predictor(built.folder)
    images = random_images(64, seed=4)
    plan = json.loads((built.folder / "plan.json").read_text())
    mine = module.logits(images, module.tensors(built.folder / "model.npz"), plan)
    np.testing.assert_allclose(mine, predict_logits(chosen.model(), images, tta=True),
                               atol=1e-4, rtol=0)


def test_package_cli_prints_the_breakdown(tmp_path, capsys):
    cli.main(["package", "student-27k-kd", "-o", str(tmp_path / "hw8")])
    out = capsys.readouterr().out
    for needle in ("model.npz", "predict.py", "weights ", "code ", "total ", "budget 225,000 B",
                   "two forward passes per face"):
        assert needle in out
    total = int(re.search(r"total ([\d,]+) B", out)[1].replace(",", ""))
    assert total == apparent_size(tmp_path / "hw8")
    with pytest.raises(SystemExit, match="not an empty folder: pass --force"):
        cli.main(["package", "student-27k-kd", "-o", str(tmp_path / "hw8")])
    cli.main(["package", "student-27k-kd", "-o", str(tmp_path / "hw8"), "--force",
              "--precision", "int4"])
    assert "student-27k-kd at int4" in capsys.readouterr().out


def test_package_over_budget_leaves_nothing(tmp_path):
    out = tmp_path / "new" / "deeper" / "hw8"
    with pytest.raises(SystemExit, match=r"over the budget of 100,000 B.*nothing written"):
        cli.main(["package", "-o", str(out), "--budget", "100000"])
    assert list(tmp_path.iterdir()) == []


def test_package_outside_a_project_says_where_it_looked(tmp_path, monkeypatch):
    """No results/ found: one line naming where fer looked and how to point it at one,
    not "no stored run fits" (there were none to look at), and nothing written."""
    from fer_lib import paths

    for variable in ("FER_RESULTS_DIR", "FER_PROJECT_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path.resolve()  # what fer names (on macOS /tmp is a link)
    if paths.project_root() != root:
        pytest.skip(f"{paths.project_root()}, above {root}, holds a results/ folder")
    looked_in = {"cwd": root, "FER_RESULTS_DIR": root / "elsewhere"}
    for how, where in looked_in.items():
        if how != "cwd":
            monkeypatch.setenv(how, str(where))
        with pytest.raises(SystemExit) as exit_:
            cli.main(["package", "-o", "hw8"])
        line = str(exit_.value.code)
        assert len(line.splitlines()) == 1 and "no results folder" in line, line
        assert str(where) in line and "FER_RESULTS_DIR" in line, line
    (root / "elsewhere").mkdir()  # a results folder, but no run in it
    with pytest.raises(SystemExit, match=rf"{re.escape(str(root))}.*no stored mobilenet"):
        cli.main(["package", "-o", "hw8"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]


def test_folder_size_needs_no_data(packaged, monkeypatch):
    built, _ = packaged
    monkeypatch.setenv("FER2013_PATH", "/nonexistent/fer2013.zip")
    sizes = folder_size()
    assert {"weights", "code", "total", "du", "directories", "run", "precision"} <= set(sizes)
    assert (sizes["weights"], sizes["code"]) == (built.weights, built.code)
    assert sizes["total"] == sizes["weights"] + sizes["code"] + sizes["directories"]
    assert sizes["du"] in (None, sizes["total"])


def test_apparent_size_is_what_du_reports(tmp_path):
    root = tmp_path / "folder"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("x" * 1234)
    (root / "sub" / "b.bin").write_bytes(bytes(5000))
    (root / "sub" / "deeper" / "empty").write_bytes(b"")
    os.link(root / "a.txt", root / "sub" / "hardlink.txt")  # counted once
    (root / "link").symlink_to(root / "sub")  # the link itself, not what it points to
    du = du_size(root)
    if du is None:
        pytest.skip("no GNU du here")
    assert apparent_size(root) == du


# ----------------------------------------------------------------------------- the predictor


def _random_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Running statistics far from (0, 1), so folding them is really tested."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)
    return model.eval()


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(("family", "hparams"), [
    ("mobilenet_v2", {"width": 0.2}), ("mobilenet_v1", {"width": 0.1}),
    ("cnn", {"width": 0.05}), ("hw3_cnn", {"width": 0.05}), ("vgg", {"width": 0.05}),
    ("resnet", {"width": 0.05}),
])
def test_numpy_predictor_runs_every_family(family, hparams, precision, tmp_path):
    torch.manual_seed(0)
    model = _random_batchnorm(build(family, **hparams))
    export_npz(model, tmp_path / "model.npz", precision)
    folded = load_model(tmp_path / "model.npz")
    images = random_images(6, seed=5)
    plan = json.loads(json.dumps(plan_of(folded)))  # as predict.py reads it
    mine = hw8_predict.logits(images, hw8_predict.tensors(tmp_path / "model.npz"), plan)
    np.testing.assert_allclose(mine, predict_logits(folded, images, tta=True),
                               atol=1e-4, rtol=1e-4)


def test_plan_refuses_what_the_predictor_cannot_run():
    with pytest.raises(ValueError, match="BatchNorm2d"):
        plan_of(build("mobilenet_v2", width=0.2))  # not folded
    grouped = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1, groups=2))
    with pytest.raises(ValueError, match="cannot run 0"):
        plan_of(grouped)


def _imports(path: Path) -> set[str]:
    """Modules `path` imports anywhere: absolute names, or ".name" for the package's own."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            names |= ({f".{node.module}"} if node.module
                      else {f".{alias.name}" for alias in node.names})
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    return names


def test_predictor_needs_numpy_only_and_homework_sits_above_the_layers():
    assert _imports(REPO / "fer_lib" / "hw8_predict.py") <= {"json", "sys", "pathlib", "numpy"}
    for lower in ("readers", "data", "datacache", "models", "evaluate", "quantize", "store",
                  "report", "catalogue"):
        imported = _imports(REPO / "fer_lib" / f"{lower}.py")
        assert not {".homework", "fer_lib.homework"} & imported, lower


# ----------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_real_submission_scores_the_stored_accuracies(fer_zip_path, tmp_path, capsys):
    """The homework submission's Kaggle scores are the book's numbers at its precision."""
    data = load_fer2013(fer_zip_path)
    test_csv = write_course_csvs(data, tmp_path, which=("test",))["test"]
    out = tmp_path / "submission.csv"
    cli.main(["predict", "student-200k-kd", str(test_csv), "-o", str(out)])
    precision = load_result("student-200k-kd").experiment.precision
    stored = load_result("student-200k-kd").metrics["acc_by_precision"][precision]
    scores = score_submission(read_submission(out), data)
    assert (scores["n_public"], scores["n_private"]) == (3589, 3589)
    assert scores["public"] == pytest.approx(stored["public"], abs=1e-12)
    assert scores["private"] == pytest.approx(stored["private"], abs=1e-12)
    capsys.readouterr()
    cli.main(["score", str(out), "--data", str(fer_zip_path)])
    printed = capsys.readouterr().out
    assert f"{stored['public']:.5f}" in printed and f"{stored['private']:.5f}" in printed


@pytest.mark.slow
def test_the_packaged_folder_scores_what_the_book_reports(fer_zip_path, tmp_path, capsys):
    """The check a grader makes: `fer package`, then the folder's own hw8_test.sh (numpy
    only, no fer_lib), then `fer score` on its output prints the submission's stored
    public and private accuracies, the numbers the book prints."""
    data = load_fer2013(fer_zip_path)
    test_csv = write_course_csvs(data, tmp_path, which=("test",))["test"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER_RESULTS_DIR", str(REPO / "results"))
        built = package(out=tmp_path / "hw8")
    out = tmp_path / "out.csv"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH="")  # python3 of this environment, but nothing of fer_lib
    subprocess.run(["bash", str(built.folder / "hw8_test.sh"), str(test_csv), str(out)],
                   check=True, env=env, cwd=tmp_path)
    stored = load_result(built.run).metrics["acc_by_precision"][built.precision]
    capsys.readouterr()
    cli.main(["score", str(out), "--data", str(fer_zip_path)])
    printed = capsys.readouterr().out
    assert f"{stored['public']:.5f}" in printed and f"{stored['private']:.5f}" in printed
