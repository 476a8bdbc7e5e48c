"""A student's path: `fer train` (presets, the book's runs, sizes), what it says before and
after, and `fer package` / `fer predict` from the training folder it writes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import fer_lib.cli as cli
from fer_lib import catalogue, coursework, homework
from fer_lib.config import ConfigError, load_config
from fer_lib.models import build, count_params


def test_quick_is_the_design_study_recipe_the_book_measured():
    # The book's stored design-100k-v1 runs are what a student should expect of `quick`.
    stored = catalogue.get(catalogue.design_name("100k", "v1", 0)).train
    assert load_config("quick") == stored


def test_a_catalogue_run_trains_exactly_its_configuration():
    cfg, exp = coursework.training_target("long-200k-early")
    assert exp is catalogue.get("long-200k-early") and cfg == exp.train


def test_a_stored_config_json_is_the_run_it_describes(tmp_path):
    exp = catalogue.get("long-100k-v1-kd")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"experiment": exp.to_dict(), "hash": exp.key}))
    cfg, found = coursework.training_target(str(config))
    assert found.key == exp.key and found.teacher == exp.teacher and cfg == exp.train


def test_overrides_and_sizes_apply_to_the_books_run():
    cfg, _ = coursework.training_target("long-200k-early", epochs=3, seed=5, width=0.25)
    assert (cfg.epochs, cfg.seed, cfg.model_args["width"]) == (3, 5, 0.25)
    assert cfg.model_args["stages"] == catalogue.get("long-200k-early").train.model_args["stages"]


def test_params_sizes_a_sweep_point():
    cfg, _ = coursework.training_target("cnn", params=20_000)
    params = count_params(build(cfg.family, **cfg.model_args))
    assert abs(params - 20_000) / 20_000 < 0.1


@pytest.mark.parametrize("target, kwargs, words", [
    ("teacher-cpu-ensemble", {}, "fer reproduce --only teacher-cpu-ensemble"),
    ("quick", {"width": 0.3, "params": 10_000}, "--width and --params"),
    ("quick", {"width": -1.0}, "--width"),
])
def test_what_cannot_be_trained_says_why(target, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        coursework.training_target(target, **kwargs)


def test_start_report_weighs_the_folder_at_every_precision_against_the_budget():
    cfg = load_config("quick")
    sizes = homework.folder_sizes(build(cfg.family, **cfg.model_args))
    text = coursework.start_report("quick", cfg, budget=150_000)
    for precision, size in sizes.items():
        verdict = "fits" if size.size <= 150_000 else f"over by {size.size - 150_000:,} B"
        assert f"{precision:5s} {size.size:9,d} B  {verdict}" in text


def test_expected_time_comes_from_a_recorded_probe(tmp_path):
    cfg = load_config("quick", epochs=4, subset=1_000)
    seconds, how = coursework.expected_seconds(cfg, results_dir=tmp_path)
    assert seconds != seconds and "no recorded" in how
    key = coursework.architecture_key(catalogue.Experiment("x", "", cfg))
    (tmp_path / "cpu_probes.json").write_text(json.dumps({"rates": {key: 0.002}}))
    seconds, _ = coursework.expected_seconds(cfg, results_dir=tmp_path)
    assert seconds == pytest.approx(4 * 1_000 * 0.002)


def test_near_the_majority_rate_is_a_warning():
    labels = np.array([3] * 40 + list(range(7)) * 10)
    floor = coursework.majority_rate(labels)
    assert floor == np.bincount(labels).max() / len(labels)
    assert coursework.learned_little(floor + 0.01, labels) is not None
    assert coursework.learned_little(floor + 0.2, labels) is None


@pytest.fixture(scope="module")
def trained_folder(smoke_run):
    return smoke_run


def test_train_says_what_it_costs_and_scores_every_precision(trained_folder, capsys):
    metrics = json.loads((trained_folder / "metrics.json").read_text())
    assert set(metrics["acc_by_precision"]) == {"fp32", "fp16", "int8", "int4"}
    assert metrics["acc_by_precision"]["fp32"]["private"] == metrics["private_acc"]


def test_a_training_folder_packages_at_the_most_precise_that_fits(trained_folder, tmp_path):
    model = homework.model_source(trained_folder, budget=None).model()
    sizes = homework.folder_sizes(model)
    budget = sizes["fp16"].size  # fp32 is over, fp16 fits exactly
    made = homework.package(trained_folder, tmp_path / "hw8", budget=budget)
    assert made.precision == "fp16" and made.size == sizes["fp16"].size
    made = homework.package(trained_folder / "checkpoint.pt", tmp_path / "hw8b",
                            precision="int8", budget=budget)
    assert made.precision == "int8" and made.size == sizes["int8"].size


def test_folder_sizes_do_not_depend_on_the_weights(trained_folder):
    trained = homework.model_source(trained_folder, budget=None).model()
    fresh = build(trained.family, **trained.hparams).eval()
    before = {p: s.size for p, s in homework.folder_sizes(fresh).items()}
    assert before == {p: s.size for p, s in homework.folder_sizes(trained).items()}


def test_predict_takes_a_training_folder(trained_folder, sample_zip, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    cli.main(["predict", str(trained_folder), str(sample_zip), "-o", str(out)])
    assert "fp32" in capsys.readouterr().out  # the tiny model fits the budget at fp32
    assert out.read_text().startswith("id,label\n0,")


def test_the_bar_counts_every_batch(small_fer):
    import torch

    from fer_lib import train as train_module

    cfg = dataclasses.replace(load_config("smoke"), batch_size=64)
    rows = train_module.prepare_data(small_fer, cfg, torch.device("cpu"))
    model = build(cfg.family, **cfg.model_args)
    opt = train_module.make_optimizer(model, cfg)
    sched = train_module.make_scheduler(opt, cfg, 10)
    calls = []
    train_module.train_one_epoch(model, rows, cfg, opt, sched, torch.Generator(), None,
                                 torch.contiguous_format, on_batch=lambda: calls.append(1))
    assert len(calls) == train_module._steps_per_epoch(len(rows.train_y), cfg.batch_size)


def test_grading_the_folder_agrees_with_the_library(trained_folder, small_fer, tmp_path):
    from fer_lib.data import evaluation_sets
    from fer_lib.evaluate import accuracy

    made = homework.package(trained_folder, tmp_path / "hw8", budget=None)
    graded = coursework.run_hw8_folder(made.folder, small_fer, per_half=20)
    model = homework.model_source(trained_folder, made.precision, budget=None).model()
    for half in ("public", "private"):
        images, labels = evaluation_sets(small_fer)[half]
        expected = accuracy(homework.predict(model, images[:20]), labels[:20])
        assert graded[half] == pytest.approx(expected)
    assert graded["images"] == 40 and graded["seconds"] > 0


def test_own_runs_lists_each_finished_run(trained_folder):
    runs = coursework.own_runs(trained_folder.parent)
    row = runs[runs["run"] == trained_folder.name].iloc[0]
    metrics = json.loads((trained_folder / "metrics.json").read_text())
    assert row["private_acc"] == metrics["private_acc"] and row["family"] == "mobilenet_v2"
