"""load_or_train: hit, miss and stale results; the teacher -> ensemble -> student -> slim chain.

Runs a miniature catalogue (conftest's `mini`: one-epoch runs on the few hundred synthetic
images) in a tmp folder, so it exercises exactly the code `fer reproduce` uses on the GPU.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from fer_lib import catalogue as catalogue_module
from fer_lib import experiments as ex
from fer_lib import rescoring
from fer_lib.data import evaluation_sets
from fer_lib.evaluate import accuracy, predict_logits, to_input
from fer_lib.quantize import load_model, quantized_copy
from fer_lib.train import load_checkpoint, model_from_checkpoint


def test_hit_returns_stored_result_without_training(mini, small_fer, monkeypatch):
    catalogue, results = mini
    monkeypatch.setattr(ex, "train", lambda *a, **k: pytest.fail("trained on a cache hit"))
    result = ex.load_or_train(catalogue["stu"], small_fer, results_dir=results)
    assert result.path.name == catalogue["stu"].folder


def test_miss_without_training_allowed_is_an_error(mini, tmp_path):
    catalogue, _ = mini
    with pytest.raises(ex.MissingResultError, match="stu"):
        ex.load_or_train(catalogue["stu"], results_dir=tmp_path, allow_train=False)


def test_changed_config_leaves_old_result_stale_and_unused(mini, tmp_path, monkeypatch):
    catalogue, results = mini
    changed = dataclasses.replace(catalogue["stu"],
                                  train=dataclasses.replace(catalogue["stu"].train, seed=7))
    with pytest.warns(UserWarning, match="stale"):
        assert ex.find_result(changed, results) is None


def test_tampered_config_is_refused(mini, tmp_path):
    catalogue, results = mini
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    cfg_file = copy / catalogue["t-a"].folder / "config.json"
    stored = json.loads(cfg_file.read_text())
    stored["experiment"]["train"]["lr"] = 1.0
    cfg_file.write_text(json.dumps(stored))
    with pytest.raises(ex.StaleResultError, match="hashes to"):
        ex.find_result(catalogue["t-a"], copy)


def test_every_stored_config_hashes_to_its_folder(mini):
    _, results = mini
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        stored = json.loads((folder / "config.json").read_text())
        assert folder.name.endswith("-" + ex.config_hash(stored["experiment"]))


def test_accuracies_recomputed_from_stored_outputs_match_metrics(mini, small_fer):
    catalogue, results = mini
    labels = {"public": small_fer.split("PublicTest")[1],
              "private": small_fer.split("PrivateTest")[1]}
    for name in catalogue:
        result = ex.find_result(catalogue[name], results)
        outputs = result.logits()
        for split, y in labels.items():
            out = outputs[split]
            acc = accuracy(out, y) if out.ndim == 2 else float((out == y).mean())
            assert acc == pytest.approx(result.metrics[f"{split}_acc"], abs=1e-9), (name, split)


def test_summary_agrees_with_per_run_files(mini):
    import pandas as pd

    catalogue, results = mini
    summary = pd.read_csv(results / "summary.csv")
    assert list(summary["run"]) == list(catalogue)
    for row in summary.itertuples():
        result = ex.find_result(catalogue[row.run], results)
        assert row.params == result.metrics["params"]
        assert row.bytes == result.metrics["bytes"][row.precision]


def _best_model(results, exp: ex.Experiment):
    """The exact model a run was measured on: its stored weights when it keeps them (the
    fp16 copy every later number comes from), else the fp32 model from its checkpoint."""
    result = ex.find_result(exp, results)
    if result.has_weights():
        return result.model()
    state = load_checkpoint(results.parent / "runs" / exp.folder / "checkpoint.pt")
    return model_from_checkpoint(state)


def _stored_cache(results, exp) -> np.ndarray:
    """A teacher's Training logits, as stored with its result (float32 copy)."""
    with np.load(results / exp.folder / "train_logits.npz") as z:
        return z["logits"].astype(np.float32)


def test_teacher_caches_hold_each_training_row_and_its_mirror(mini, small_fer):
    catalogue, results = mini
    images, _ = small_fer.split("Training")
    x = to_input(torch.as_tensor(images))
    for name in ("t-a", "t-b"):
        cache = _stored_cache(results, catalogue[name])
        assert cache.shape == (len(images), 2, 7)  # every Training row, val rows included
        model = _best_model(results, catalogue[name])
        with torch.no_grad():
            plain, mirror = model(x).numpy(), model(torch.flip(x, dims=[-1])).numpy()
        # float16 copies of the logits: row r is image r, [:, 1] its mirror image
        np.testing.assert_allclose(cache[:, 0], plain, rtol=2e-3, atol=1e-5)
        np.testing.assert_allclose(cache[:, 1], mirror, rtol=2e-3, atol=1e-5)
        if name == "t-a":  # rows and views differ far beyond that tolerance, so a
            tolerance = 2e-3 * np.abs(plain).mean() + 1e-5  # misaligned cache would fail
            assert np.abs(np.diff(plain, axis=0)).mean() > 10 * tolerance
            assert np.abs(plain - mirror).mean() > 10 * tolerance


def test_student_distils_from_the_ensemble_cache(mini, small_fer):
    catalogue, results = mini
    teachers = [_stored_cache(results, catalogue[m]) for m in catalogue["ens"].members]
    ens = ex.find_result(catalogue["ens"], results)
    with np.load(ens.path / "train_logits.npz") as z:
        stored = z["logits"].astype(np.float32)
    # The ensemble's targets: the log of the teachers' mean probabilities, row by row.
    mean_probs = np.mean([np.exp(t - t.max(-1, keepdims=True))
                          / np.exp(t - t.max(-1, keepdims=True)).sum(-1, keepdims=True)
                          for t in teachers], axis=0)
    np.testing.assert_allclose(np.exp(stored), mean_probs, atol=2e-3)
    # ... which is what the student's cached teacher hands out, for the rows asked.
    teacher = ex._teacher_for(catalogue["stu"], small_fer, results, results.parent / "runs",
                              "cpu")
    np.testing.assert_array_equal(teacher.logits.numpy(), stored)
    rows, flipped = torch.tensor([0, 7, len(stored) - 1]), torch.tensor([False, True, True])
    np.testing.assert_array_equal(teacher(torch.zeros(3, 1, 48, 48), rows, flipped).numpy(),
                                  stored[[0, 7, len(stored) - 1], [0, 1, 1]])


def test_view_student_learns_from_its_teachers_on_stored_views(mini, small_fer):
    """``teacher_views`` builds the store from the members' stored weights, once, under
    runs/softlabels/: each stored target is the members' mean probability on the view its
    draws make, and the student's trainer replays those views."""
    from fer_lib.softlabels import SoftLabelStore, make_views

    catalogue, results = mini
    exp = catalogue["stu-views"]
    path = ex.soft_label_path(exp, results, results.parent / "runs")
    assert path.parent.name == "softlabels" and path.exists()
    images, _ = small_fer.split("Training")
    members = [ex.find_result(catalogue[m], results).model() for m in ("t-a", "t-b")]
    store = SoftLabelStore.load(path, teachers=members, images=images, views=2,
                                seed=ex.SOFT_LABEL_SEED, cfg=exp.train)
    rows = torch.tensor([0, 5, len(images) - 1])
    x = make_views(torch.as_tensor(images)[rows], store.draws[rows, 1], exp.train)
    with torch.no_grad():
        want = torch.stack([torch.softmax(m(x), -1) for m in members]).mean(0)
    torch.testing.assert_close(store.probs[rows, 1].float(), want, atol=2e-3, rtol=0)
    teacher = ex._teacher_for(exp, small_fer, results, results.parent / "runs", "cpu")
    assert teacher.views == 2 and torch.equal(teacher.store.probs, store.probs)
    cost = ex.find_result(exp, results).metrics["soft_labels"]
    assert cost["views"] == 2 and cost["bytes"] == store.nbytes() and cost["build_seconds"] > 0


def test_averaged_run_stores_its_variant_without_the_average(mini):
    """An averaged run also measures its plain iterate (same run, own best epoch) at every
    precision, beside the average it keeps."""
    catalogue, results = mini
    metrics = ex.find_result(catalogue["stu-views"], results).metrics
    plain = metrics["without_average"]
    assert 1 <= plain["best_epoch"] <= metrics["epochs"]
    assert set(plain["acc_by_precision"]) == set(metrics["acc_by_precision"])
    for precision, accs in plain["acc_by_precision"].items():
        assert set(accs) == set(metrics["acc_by_precision"][precision])
        assert all(0 <= a <= 1 for a in accs.values())
    assert "without_average" not in ex.find_result(catalogue["stu"], results).metrics


def test_views_need_the_teachers_weights(mini, small_fer, tmp_path):
    import shutil

    catalogue, results = mini
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    (copy / catalogue["t-b"].folder / "weights-bn.npz").unlink()
    with pytest.raises(ex.MissingResultError, match=r"weights of teacher 't-b'.*--only t-b"):
        ex.view_teacher(catalogue["stu-views"], small_fer, copy, tmp_path / "runs")


def test_a_later_experiment_field_at_its_default_keeps_stored_hashes():
    """`teacher_views` came after results were stored: at 0 it is not hashed, so every
    stored run keeps its folder; set, it is part of the description."""
    base = ex.Experiment("s", "student", teacher="ens")
    assert "teacher_views" not in base.to_dict()
    views = dataclasses.replace(base, teacher_views=4)
    assert views.to_dict()["teacher_views"] == 4 and views.key != base.key
    with pytest.raises(ValueError, match="teacher_views"):
        ex.Experiment("s", "student", teacher_views=4)


@pytest.mark.parametrize("name", ["stu", "cut"])
def test_int8_export_reloads_to_the_stored_accuracy(mini, small_fer, name):
    catalogue, results = mini
    exp = catalogue[name]
    result = ex.find_result(exp, results)
    path = results.parent / "runs" / exp.folder / "model-int8.npz"
    assert result.metrics["bytes"]["int8"] == path.stat().st_size
    loaded = load_model(path)
    sets = evaluation_sets(small_fer, exp.train.val_fraction, exp.train.split_seed)
    for split, (images, labels) in sets.items():
        acc = accuracy(predict_logits(loaded, images, tta=True), labels)
        assert acc == result.metrics["acc_by_precision"]["int8"][split], split
    if name == "stu":  # a trained run: its checkpoint holds the exact model that was exported
        model = _best_model(results, exp)
        images = sets["public"][0]
        reloaded = predict_logits(loaded, images)
        np.testing.assert_allclose(reloaded, predict_logits(quantized_copy(model, "int8"), images),
                                   rtol=1e-5, atol=1e-5)
        full = predict_logits(model, images)
        scale = np.abs(full).max()
        assert np.abs(reloaded - full).max() < 0.02 * scale  # int8 is close to fp32
        assert (reloaded.argmax(1) == full.argmax(1)).mean() > 0.9


def test_slimmed_model_is_smaller_and_rebuilds(mini):
    catalogue, results = mini
    sparse = ex.find_result(catalogue["sparse"], results)
    slim = ex.find_result(catalogue["slim"], results)
    assert slim.metrics["params"] < sparse.metrics["params"]
    assert slim.model().hparams["hidden"]
    # Its architecture, without weights, is the slimmed network, not the one its config
    # describes (the network it was cut from).
    assert ex.count_params(slim.architecture()) == slim.metrics["params"]
    assert ex.count_params(sparse.architecture()) == sparse.metrics["params"]


def test_catalogue_covers_the_book():
    groups = {e.group for e in ex.CATALOGUE.values()}
    assert {"hw3", "teacher", "ensemble", "student", "sweep-mobilenet", "sweep-cnn",
            "ablation-kd", "ablation-temperature", "ablation-prune"} <= groups
    for family in ("sweep-mobilenet", "sweep-cnn"):
        runs = [e for e in ex.CATALOGUE.values() if e.group == family]
        assert len({e.train.model_args["width"] for e in runs}) >= 6
        assert len({e.train.seed for e in runs}) == 3


def test_cut_run_slims_without_training_and_is_exported(mini, small_fer, monkeypatch):
    catalogue, results = mini
    source = ex.find_result(catalogue["stu"], results)
    cut = ex.find_result(catalogue["cut"], results)
    assert cut.metrics["epochs"] == 0 and cut.history == []
    assert cut.metrics["params"] < source.metrics["params"]
    for precision, size in cut.metrics["bytes"].items():
        assert 0 < size < source.metrics["bytes"][precision], precision
    # Scored on the validation rows of the source's own split, like every run.
    val_labels = evaluation_sets(small_fer)["val"][1]
    predictions = cut.logits()["val"]
    assert float((predictions == val_labels).mean()) == pytest.approx(cut.metrics["val_acc"])
    # Its weights are kept, so it rebuilds as the smaller dense network.
    assert ex.count_params(cut.model()) == cut.metrics["params"]


def test_catalogue_cut_runs_start_from_the_stored_student():
    """Every cut share of the stored student (no penalty) and of the sparsity-trained one."""
    cuts = [e for e in ex.CATALOGUE.values() if e.kind == "cut"]
    sources = {e.slim_from for e in cuts}
    assert sources == {"student-200k-kd", "student-200k-kd-sparse"}
    for source in sources:
        assert [e.slim_fraction for e in cuts if e.slim_from == source] == list(ex.CUT_FRACTIONS)
    for exp in cuts:
        assert exp.needs == (exp.slim_from,)
        assert exp.train == ex.CATALOGUE[exp.slim_from].train  # same validation split


def test_catalogue_kd_grid_is_every_temperature_and_weight_once():
    """T x alpha at one student size: the students' own recipe is the stored student, the
    other cells are runs of their own that differ from it only in T and alpha."""
    from fer_lib.catalogue import KD_ALPHAS, KD_GRID_SIZE, KD_TEMPERATURES, STUDENT_RECIPE

    base = ex.CATALOGUE[f"student-{KD_GRID_SIZE}-kd"]
    cells = {(e.train.kd_temperature, e.train.kd_alpha): e for e in ex.CATALOGUE.values()
             if e.group == "ablation-temperature"}
    own = (STUDENT_RECIPE["kd_temperature"], STUDENT_RECIPE["kd_alpha"])
    assert set(cells) | {own} == {(t, a) for t in KD_TEMPERATURES for a in KD_ALPHAS}
    assert own not in cells and len(cells) == len(KD_TEMPERATURES) * len(KD_ALPHAS) - 1
    for (t, a), exp in cells.items():
        assert exp.teacher == base.teacher
        assert exp.train == dataclasses.replace(base.train, kd_temperature=t, kd_alpha=a)
        assert exp.folder != base.folder


def test_catalogue_kd_seeds_repeat_the_default_and_the_pick_with_new_seeds_only():
    """The extra seeds of the distillation grid: the students' own cell and the pick, each
    a grid cell's config with another seed, and nothing else changed."""
    from fer_lib.catalogue import KD_EXTRA_SEEDS, KD_PICK, kd_grid_runs, kd_recipe

    grid = kd_grid_runs()
    assert all(name in ex.CATALOGUE for name in grid.values())
    seeded = {e.name: e for e in ex.CATALOGUE.values() if e.group == "seeds-kd"}
    expected = {kd_grid_runs(seed)[cell] for seed in KD_EXTRA_SEEDS
                for cell in (kd_recipe(), KD_PICK)}
    assert set(seeded) == expected and 0 not in KD_EXTRA_SEEDS
    for seed in KD_EXTRA_SEEDS:
        for cell in (kd_recipe(), KD_PICK):
            exp, base = seeded[kd_grid_runs(seed)[cell]], ex.CATALOGUE[grid[cell]]
            assert exp.train == dataclasses.replace(base.train, seed=seed)
            assert exp.teacher == base.teacher and exp.precision == base.precision


def test_catalogue_slimming_fine_tunes_every_cut_of_the_sparse_student():
    from fer_lib.catalogue import SLIM_FINETUNE

    sparse = ex.CATALOGUE["student-200k-kd-sparse"]
    assert sparse.train.bn_l1 > 0
    slims = [e for e in ex.CATALOGUE.values() if e.group == "ablation-prune" and e.slim_from]
    assert [e.slim_fraction for e in slims] == list(ex.CUT_FRACTIONS)
    for exp in slims:
        assert exp.kind == "train" and exp.slim_from == sparse.name
        assert exp.train == dataclasses.replace(sparse.train, **SLIM_FINETUNE)
        assert exp.train.bn_l1 == 0  # the penalty belongs to step 1 only


def test_catalogue_fine_tune_starts_from_the_stored_student_uncut():
    student = ex.CATALOGUE["student-200k-kd"]
    ft = ex.CATALOGUE["student-200k-kd-ft"]
    assert (ft.slim_from, ft.slim_fraction, ft.teacher) == (student.name, 0.0, student.teacher)
    assert ft.train.epochs < student.train.epochs and ft.train.lr < student.train.lr
    assert (ft.train.val_fraction, ft.train.split_seed) == (student.train.val_fraction,
                                                            student.train.split_seed)


# ----------------------------------------------------------------------------- the fixes
def test_ensemble_is_rebuilt_from_results_alone(mini, small_fer, tmp_path):
    """Teachers store their Training logits with their results: with runs/ gone and the
    ensemble deleted, `load_or_train` rebuilds the same ensemble."""
    import shutil

    catalogue, results = mini
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    stored = ex.find_result(catalogue["ens"], copy)
    with np.load(stored.path / "train_logits.npz") as z:
        before = z["logits"]
    shutil.rmtree(stored.path)
    rebuilt = ex.load_or_train(catalogue["ens"], small_fer, results_dir=copy,
                               runs_dir=tmp_path / "no-runs", device="cpu")
    with np.load(rebuilt.path / "train_logits.npz") as z:
        np.testing.assert_array_equal(z["logits"], before)
    assert rebuilt.metrics["val_acc"] == stored.metrics["val_acc"]


def test_missing_teacher_cache_says_exactly_what_to_run(mini, small_fer, tmp_path):
    import shutil

    catalogue, results = mini
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    (copy / catalogue["t-b"].folder / "train_logits.npz").unlink()
    shutil.rmtree(copy / catalogue["ens"].folder)
    with pytest.raises(ex.MissingResultError, match=r"fer reproduce --only t-b --rerun"):
        ex.load_or_train(catalogue["ens"], small_fer, results_dir=copy,
                         runs_dir=tmp_path / "no-runs", device="cpu")


def test_a_teacher_on_another_split_is_refused(mini, small_fer, monkeypatch, tmp_path):
    catalogue, results = mini
    moved = dataclasses.replace(catalogue["stu"], name="stu-split1",
                                train=dataclasses.replace(catalogue["stu"].train, split_seed=1))
    monkeypatch.setattr(catalogue_module, "experiments", lambda: {**catalogue,
                                                                  moved.name: moved})
    with pytest.raises(ex.ConfigError, match="saw the student's validation rows"):
        ex.load_or_train(moved, small_fer, results_dir=results, runs_dir=tmp_path,
                         device="cpu")


def test_a_teacher_cache_of_other_data_is_refused(mini, small_fer):
    from fer_lib.data import FER2013

    catalogue, results = mini
    fewer = FER2013(small_fer.images[5:], small_fer.labels[5:], small_fer.usage[5:])
    with pytest.raises(ex.ConfigError, match="not the data it was trained on"):
        ex._teacher_for(catalogue["stu"], fewer, results, results.parent / "runs", "cpu")


def test_rerun_replaces_a_stored_result(mini, small_fer, tmp_path):
    import shutil

    catalogue, results = mini
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    before = ex.find_result(catalogue["t-a"], copy)
    stamp = (before.path / "metrics.json").stat().st_mtime_ns
    again = ex.load_or_train(catalogue["t-a"], small_fer, results_dir=copy,
                             runs_dir=tmp_path / "runs", device="cpu", quiet=True, rerun=True)
    assert (again.path / "metrics.json").stat().st_mtime_ns != stamp
    assert again.path == before.path  # same content key, same folder


def test_rescore_measures_the_stored_weights_and_their_exported_files(mini, small_fer,
                                                                    tmp_path):
    import shutil

    from fer_lib.quantize import PRECISIONS, export_npz, file_sha256

    catalogue, results = mini
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    before = ex.find_result(catalogue["stu"], copy).metrics
    assert rescoring.rescore(catalogue["stu"], small_fer, results_dir=copy).startswith("fp32")
    result = ex.find_result(catalogue["stu"], copy)
    model = result.model()
    sets = evaluation_sets(small_fer)
    for split, (images, labels) in sets.items():
        acc = accuracy(predict_logits(model, images, tta=True), labels)
        assert result.metrics[f"{split}_acc"] == pytest.approx(acc)
        assert result.metrics["acc_by_precision"]["fp32"][split] == result.metrics[f"{split}_acc"]
    for precision in PRECISIONS:  # the recorded files are the ones exported from the weights
        path = tmp_path / f"{precision}.npz"
        assert export_npz(model, path, precision) == result.metrics["bytes"][precision]
        assert file_sha256(path) == result.metrics["sha256"][precision]
    assert result.metrics["best_epoch"] == before["best_epoch"]
    # A run without weights keeps its accuracies; its byte counts come from its shapes.
    teacher = ex.find_result(catalogue["t-a"], copy)
    (teacher.path / "weights-bn.npz").unlink()
    teacher.metrics["bytes"] = dict.fromkeys(PRECISIONS, 1)
    ex.write_metrics(teacher.path, teacher.metrics)
    assert "bytes re-measured" in rescoring.rescore(catalogue["t-a"], small_fer, results_dir=copy)
    after = ex.find_result(catalogue["t-a"], copy).metrics
    assert after["val_acc"] == teacher.metrics["val_acc"]
    assert after["bytes"] == ex.find_result(catalogue["t-a"], results).metrics["bytes"]
    assert (rescoring.rescore(catalogue["ens"], small_fer, results_dir=copy)
            == "members' stored logits")


def test_a_trained_run_is_measured_on_the_weights_it_stores(mini, small_fer):
    """What a run reports is what its stored weights give: scoring them again changes
    no accuracy at any precision (the in-memory float32 model is never what is scored)."""
    from fer_lib.evaluate import score
    from fer_lib.quantize import PRECISIONS

    catalogue, results = mini
    result = ex.find_result(catalogue["stu"], results)
    sets = evaluation_sets(small_fer)
    again = score(result.model(), sets, PRECISIONS)
    assert again.accuracy == result.metrics["acc_by_precision"]


def test_importing_the_library_does_not_build_the_catalogue():
    import subprocess
    import sys

    code = ("import fer_lib.experiments, fer_lib.cli, fer_lib.catalogue as c; "
            "print(c.experiments.cache_info().currsize)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "0"
    assert "student-200k-kd" in ex.CATALOGUE  # ... and first use builds it


def test_paths_follow_the_working_directory(tmp_path, monkeypatch):
    from fer_lib import paths

    for variable in ("FER_PROJECT_DIR", "FER_RESULTS_DIR", "FER_RUNS_DIR"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / "results").mkdir()
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")  # as a chapter runs: the repo's results/ above
    assert paths.results_dir() == tmp_path / "results"
    assert paths.runs_dir() == tmp_path / "runs"
    assert paths.data_dir() == tmp_path / "data"
    monkeypatch.setenv("FER_RESULTS_DIR", str(tmp_path / "elsewhere"))
    assert paths.results_dir() == tmp_path / "elsewhere"
    assert ex.find_result(ex.CATALOGUE["hw3-cnn"]) is None  # looks there, finds nothing


def test_averaging_table_sets_the_average_against_its_plain_iterate(mini):
    from fer_lib.design import averaging_table

    catalogue, results = mini
    table = averaging_table(["stu-views", "stu"], results)
    assert list(table["run"]) == ["stu-views"]  # only averaged runs
    with pytest.raises(KeyError, match="no experiment named 'nope'"):
        averaging_table(["nope"], results)
    row = table.iloc[0]
    metrics = ex.find_result(catalogue["stu-views"], results).metrics
    assert row["val"] == metrics["acc_by_precision"]["int8"]["val"]
    plain = metrics["without_average"]
    assert row["plain_private"] == plain["acc_by_precision"]["int8"]["private"]
    assert row["plain_best_epoch"] == plain["best_epoch"]


def test_chosen_ensemble_averages_the_members_validation_keeps(mini, small_fer, tmp_path):
    """An ensemble with ``choose_members`` stores the greedy path over its candidates on
    validation, averages exactly the members on it, and names them to its students."""
    import shutil

    from fer_lib.distill import average_logits, choose_members

    catalogue, results = mini
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    exp = dataclasses.replace(catalogue["ens"], name="ens-chosen", choose_members=True)
    stored = ex.load_or_train(exp, small_fer, results_dir=copy, runs_dir=tmp_path / "runs",
                              device="cpu")
    candidates = {m: ex.find_result(catalogue[m], copy).logits() for m in exp.members}
    train = catalogue["t-a"].train
    val_y = evaluation_sets(small_fer, train.val_fraction, train.split_seed)["val"][1]
    path = choose_members({m: out["val"] for m, out in candidates.items()}, val_y)
    members = [m for m, _ in path]
    assert stored.metrics["members"] == members
    assert [s["member"] for s in stored.metrics["selection"]] == members
    assert stored.metrics["val_acc"] == pytest.approx(path[-1][1])
    want = average_logits(np.stack([candidates[m]["private"] for m in members]))
    np.testing.assert_allclose(stored.logits()["private"], want, atol=2e-2)  # float16 copy
    assert ex.ensemble_members(exp, copy) == tuple(members)
    assert ex.ensemble_members(catalogue["ens"], copy) == ("t-a", "t-b")


def test_chosen_ensemble_needs_its_stored_result_to_name_members(mini, tmp_path):
    catalogue, _ = mini
    exp = dataclasses.replace(catalogue["ens"], name="ens-chosen", choose_members=True)
    with pytest.raises(ex.MissingResultError, match="fer reproduce --only ens-chosen"):
        ex.ensemble_members(exp, tmp_path)


def test_choose_members_only_on_an_ensemble():
    with pytest.raises(ValueError, match="choose_members and view_shift apply to an ensemble"):
        ex.Experiment("x", "student", choose_members=True)


def test_shifted_ensemble_chooses_and_averages_its_members_on_shifted_views(mini, small_fer,
                                                                           tmp_path):
    """``view_shift`` scores every candidate from its stored weights on the shifted views
    (`evaluate.predict_shifted`), chooses the members on validation from those, and
    averages exactly those members on every set."""
    import shutil

    from fer_lib.distill import average_logits, choose_members
    from fer_lib.evaluate import predict_shifted

    catalogue, results = mini
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    exp = dataclasses.replace(catalogue["ens"], name="ens-shift", choose_members=True,
                              view_shift=2)
    stored = ex.load_or_train(exp, small_fer, results_dir=copy, runs_dir=tmp_path / "runs",
                              device="cpu")
    train = catalogue["t-a"].train
    sets = evaluation_sets(small_fer, train.val_fraction, train.split_seed)
    shifted = {m: {s: predict_shifted(ex.find_result(catalogue[m], copy).model(), images, 2)
                   for s, (images, _) in sets.items()} for m in exp.members}
    flip = {m: ex.find_result(catalogue[m], copy).logits()["val"] for m in exp.members}
    # float16 copies of flip-TTA logits differ from them by ~1e-3; the shifts move more
    assert max(np.abs(shifted[m]["val"] - flip[m]).max() for m in exp.members) > 0.01
    path = choose_members({m: out["val"] for m, out in shifted.items()}, sets["val"][1])
    members = [m for m, _ in path]
    assert stored.metrics["members"] == members
    assert stored.metrics["val_acc"] == pytest.approx(path[-1][1])
    assert stored.metrics["member_val_acc"] == {
        m: pytest.approx(accuracy(out["val"], sets["val"][1])) for m, out in shifted.items()}
    for split in ("public", "private"):
        want = average_logits(np.stack([shifted[m][split] for m in members]))
        np.testing.assert_allclose(stored.logits()[split], want, atol=5e-3)  # float16 copy
    assert "shifts by 2 px" in stored.metrics["scoring"]


def test_view_shift_only_on_an_ensemble():
    with pytest.raises(ValueError, match="view_shift apply to an ensemble"):
        ex.Experiment("x", "student", view_shift=2)
