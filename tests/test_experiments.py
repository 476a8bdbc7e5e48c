"""load_or_train: hit, miss and stale results; the teacher -> ensemble -> student -> slim chain.

Runs a miniature catalogue (one-epoch runs on a few hundred real images) in a tmp folder,
so it exercises exactly the code `fer reproduce` uses on the GPU.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fer_lib import experiments as ex
from fer_lib.evaluate import accuracy
from fer_lib.train import TrainConfig

TINY = dict(epochs=1, batch_size=64, lr=0.05, warmup_epochs=0.1, channels_last=False)


def mini_catalogue() -> dict[str, ex.Experiment]:
    small = dict(family="mobilenet_v2", model_args={"width": 0.15})
    exps = [
        ex.Experiment("t-a", "teacher",
                      TrainConfig(family="cnn", model_args={"width": 0.05}, **TINY),
                      keep_logits=True),
        ex.Experiment("t-b", "teacher", TrainConfig(family="mobilenet_v1",
                                                    model_args={"width": 0.05}, seed=1, **TINY),
                      keep_logits=True),
        ex.Experiment("ens", "ensemble", kind="ensemble", members=("t-a", "t-b"),
                      keep_logits=True),
        ex.Experiment("stu", "student", TrainConfig(**small, **TINY), teacher="ens",
                      precision="int8", keep_logits=True),
        ex.Experiment("sparse", "ablation-prune", TrainConfig(**small, bn_l1=1e-3, **TINY)),
    ]
    exps.append(dataclasses.replace(exps[-1], name="slim", slim_from="sparse",
                                    slim_fraction=0.5))
    exps.append(ex.Experiment("cut", "ablation-cut", exps[3].train, kind="cut",
                              slim_from="stu", slim_fraction=0.5, precision="int8"))
    return {e.name: e for e in exps}


@pytest.fixture(scope="module")
def mini_results(small_fer, tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments")
    catalogue = mini_catalogue()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ex, "CATALOGUE", catalogue)
        for exp in catalogue.values():  # insertion order respects the dependencies
            ex.load_or_train(exp, small_fer, results_dir=root / "results",
                             runs_dir=root / "runs", device="cpu", quiet=True)
        ex.write_summary(root / "results")
    return catalogue, root / "results"


@pytest.fixture()
def mini(mini_results, monkeypatch):
    catalogue, results = mini_results
    monkeypatch.setattr(ex, "CATALOGUE", catalogue)
    return catalogue, results


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


def test_student_distils_from_the_ensemble_cache(mini):
    catalogue, results = mini
    ens = ex.find_result(catalogue["ens"], results)
    with np.load(ens.path / "train_logits.npz") as z:
        assert z["logits"].shape[1:] == (2, 7)


def test_slimmed_model_is_smaller_and_rebuilds(mini):
    catalogue, results = mini
    sparse = ex.find_result(catalogue["sparse"], results)
    slim = ex.find_result(catalogue["slim"], results)
    assert slim.metrics["params"] < sparse.metrics["params"]
    assert slim.model().hparams["hidden"]


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
    val_labels = ex._val_of(small_fer, catalogue["stu"].train)[1]
    predictions = cut.logits()["val"]
    assert float((predictions == val_labels).mean()) == pytest.approx(cut.metrics["val_acc"])
    # Its weights are kept, so it rebuilds as the smaller dense network.
    assert ex.count_params(cut.model()) == cut.metrics["params"]


def test_catalogue_cut_runs_start_from_the_stored_student():
    cuts = [e for e in ex.CATALOGUE.values() if e.kind == "cut"]
    assert [e.slim_fraction for e in cuts] == list(ex.CUT_FRACTIONS)
    for exp in cuts:
        assert exp.needs == (exp.slim_from,)
        assert exp.train == ex.CATALOGUE[exp.slim_from].train  # same validation split
