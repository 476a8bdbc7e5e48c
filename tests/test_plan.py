"""fer_lib.plan: what the missing runs cost on a CPU (probes, estimates, progress)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from fer_lib import catalogue as catalogue_module
from fer_lib import plan
from fer_lib.catalogue import Experiment
from fer_lib.config import TrainConfig

TINY = TrainConfig(family="cnn", model_args={"width": 0.05}, epochs=3, batch_size=64)


@pytest.fixture()
def tiny_catalogue(monkeypatch):
    exps = {"tiny-a": Experiment("tiny-a", "sweep", TINY),
            "tiny-b": Experiment("tiny-b", "sweep", dataclasses.replace(TINY, seed=1)),
            "tiny-cut": Experiment("tiny-cut", "ablation-cut", TINY, kind="cut",
                                   slim_from="tiny-a", slim_fraction=0.5)}
    monkeypatch.setattr(catalogue_module, "experiments", lambda: exps)
    return exps


def test_architecture_key_ignores_the_seed_but_not_the_model():
    a = Experiment("a", "g", TINY)
    assert plan.architecture_key(a) == plan.architecture_key(
        Experiment("b", "g", dataclasses.replace(TINY, seed=3, epochs=9)))
    assert plan.architecture_key(a) != plan.architecture_key(
        Experiment("c", "g", dataclasses.replace(TINY, model_args={"width": 0.1})))
    assert plan.architecture_key(a) != plan.architecture_key(
        Experiment("d", "g", dataclasses.replace(TINY, batch_size=128)))


def test_estimate_scales_with_epochs_and_is_zero_without_training():
    a = Experiment("a", "g", TINY)
    doubled = Experiment("a", "g", dataclasses.replace(TINY, epochs=6))
    assert plan.estimate_seconds(doubled, 1e-3) == pytest.approx(2 * plan.estimate_seconds(a, 1e-3))
    assert plan.estimate_seconds(a, 1e-3) == pytest.approx(
        3 * plan.TRAINING_IMAGES * 0.9 * 1e-3)
    assert math.isnan(plan.estimate_seconds(a, None))
    cut = Experiment("c", "g", TINY, kind="cut", slim_from="a", slim_fraction=0.5)
    assert plan.estimate_seconds(cut, None) == 0.0


def test_a_run_with_a_checkpoint_is_estimated_for_the_epochs_it_has_left(tmp_path):
    """A run split across sessions pays only for the epochs after its checkpoint's."""
    from fer_lib.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, save_checkpoint

    a = Experiment("a", "g", dataclasses.replace(TINY, epochs=10))
    assert plan.epochs_done(a, tmp_path) == 0
    (tmp_path / a.folder).mkdir()
    save_checkpoint(tmp_path / a.folder / "checkpoint.pt",
                    {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": 4})
    assert plan.epochs_done(a, tmp_path) == 4
    assert plan.estimate_seconds(a, 1e-3, 4) == pytest.approx(
        0.6 * plan.estimate_seconds(a, 1e-3))
    assert plan.estimate_seconds(a, 1e-3, 12) == 0.0
    cut = Experiment("c", "g", TINY, kind="cut", slim_from="a", slim_fraction=0.5)
    assert plan.epochs_done(cut, tmp_path) == 0


def test_probe_measures_a_positive_rate_without_the_data_set():
    rate = plan.probe(Experiment("a", "g", TINY), images=320)
    assert 0 < rate < 1  # seconds per image


def test_plan_probes_once_per_architecture_and_records_it(tmp_path, tiny_catalogue,
                                                           monkeypatch):
    monkeypatch.setattr(plan, "PROBE_IMAGES", 320)  # a quick probe is enough here
    lines = []
    rows = plan.plan(["tiny-a", "tiny-b", "tiny-cut"], measure=True, record=True,
                     results_dir=tmp_path, log=lines.append)
    assert len(lines) == 2, "two seeds of one architecture share one probe (said before/after)"
    assert [r["run"] for r in rows] == ["tiny-a", "tiny-b", "tiny-cut"]
    assert rows[0]["seconds"] == rows[1]["seconds"] > 0 and rows[2]["seconds"] == 0
    recorded = json.loads((tmp_path / plan.PROBES).read_text())
    assert recorded["threads"] >= 1 and "logical CPUs" in recorded["machine"]
    again = plan.plan(["tiny-a"], results_dir=tmp_path, log=lines.append)
    assert len(lines) == 2 and again[0]["seconds"] == rows[0]["seconds"]
    text = plan.plan_table(rows)
    assert "tiny-a" in text and text.splitlines()[-1].startswith("3 runs, about")


def test_a_probe_is_recorded_only_when_asked(tmp_path, tiny_catalogue, monkeypatch):
    monkeypatch.setattr(plan, "PROBE_IMAGES", 320)
    rows = plan.plan(["tiny-a"], measure=True, results_dir=tmp_path)
    assert rows[0]["seconds"] > 0 and not (tmp_path / plan.PROBES).exists()


def test_plan_without_probes_says_what_is_unknown(tmp_path, tiny_catalogue):
    rows = plan.plan(["tiny-a"], results_dir=tmp_path)
    assert math.isnan(rows[0]["seconds"])
    assert "without a probe" in plan.plan_table(rows)


@pytest.mark.parametrize("seconds, text", [(45, "45 s"), (720, "12 min"), (3900, "1 h 05 min"),
                                           (float("nan"), "?")])
def test_format_duration(seconds, text):
    assert plan.format_duration(seconds) == text


def test_progress_scales_what_is_left_by_what_was_seen():
    progress = plan.Progress([{"run": "a", "seconds": 100.0}, {"run": "b", "seconds": 100.0},
                              {"run": "c", "seconds": 200.0}])
    line = progress.done("a", 200.0)  # twice as slow as estimated: the rest is 2 x 300 s
    assert line.startswith("1/3 done") and "about 10 min left" in line
    assert "about 7 min left" in progress.done("b", 200.0)  # 2 x 200 s for c
    last = progress.done("c", 10.0)
    assert last.startswith("3/3 done") and "left" not in last


def test_the_first_run_on_stored_views_pays_for_labelling_them(tmp_path, monkeypatch):
    """Three seeds share one store: the plan charges its labelling once, to the first
    run that needs it, at the measured rate; a store already built costs nothing."""
    import dataclasses
    import json

    from fer_lib import catalogue
    from fer_lib.catalogue import Experiment
    from fer_lib.plan import TRAINING_IMAGES, store_seconds

    ens = Experiment("ens", "ensemble", kind="ensemble", members=("a", "b"))
    runs = [Experiment(f"v{seed}", "views", teacher="ens", teacher_views=4) for seed in range(3)]
    monkeypatch.setattr(catalogue, "experiments", lambda: {e.name: e for e in (ens, *runs)})
    (tmp_path / "results").mkdir()
    record = {"teacher_seconds_per_view": 0.001, "student_seconds_per_image": 0.001}
    (tmp_path / "results" / "softlabel_costs.json").write_text(json.dumps(record))
    counted: set = set()
    costs = [store_seconds(e, counted, tmp_path / "results", tmp_path / "runs") for e in runs]
    assert costs[0] == pytest.approx(TRAINING_IMAGES * 4 * 2 * 0.001) and costs[1:] == [0, 0]
    other = dataclasses.replace(runs[0], name="k8", teacher_views=8)
    assert store_seconds(other, counted, tmp_path / "results", tmp_path / "runs") > costs[0]
    from fer_lib.experiments import soft_label_path

    built = soft_label_path(runs[0], tmp_path / "results", tmp_path / "runs")
    built.parent.mkdir(parents=True)
    built.touch()
    assert store_seconds(runs[0], set(), tmp_path / "results", tmp_path / "runs") == 0
    assert store_seconds(Experiment("plain", "student"), set()) == 0


def test_a_store_for_a_chosen_ensemble_is_charged_for_the_members_it_kept(tmp_path,
                                                                          monkeypatch):
    """Before the ensemble runs every candidate is charged (a bound); once its result has
    chosen members, only those label the views."""
    import json
    import types

    from fer_lib import catalogue, experiments
    from fer_lib.catalogue import Experiment
    from fer_lib.plan import store_seconds

    ens = Experiment("ens", "ensemble", kind="ensemble", members=("a", "b", "c", "d"),
                     choose_members=True)
    run = Experiment("v0", "views", teacher="ens", teacher_views=4)
    monkeypatch.setattr(catalogue, "experiments", lambda: {e.name: e for e in (ens, run)})
    (tmp_path / "results").mkdir()
    record = {"teacher_seconds_per_view": 0.001, "student_seconds_per_image": 0.001}
    (tmp_path / "results" / "softlabel_costs.json").write_text(json.dumps(record))
    args = (tmp_path / "results", tmp_path / "runs")
    before = store_seconds(run, set(), *args)
    chosen = types.SimpleNamespace(metrics={"members": ["b"]}, path=tmp_path / "ens-abc")
    monkeypatch.setattr(experiments, "find_result", lambda exp, results_dir=None: chosen)
    assert store_seconds(run, set(), *args) == pytest.approx(before / 4)


def test_a_benchmark_record_names_its_machine_and_is_written_sorted(tmp_path):
    import json

    from fer_lib.plan import benchmark_record, write_benchmark

    record = benchmark_record({"rate": 0.5})
    assert record["rate"] == 0.5 and record["threads"] >= 1 and record["machine"]
    path = write_benchmark("costs.json", record, tmp_path)
    assert path == tmp_path / "costs.json" and json.loads(path.read_text()) == record
    assert list(json.loads(path.read_text())) == sorted(record)


def test_shared_epochs_finds_the_epochs_another_job_slowed():
    from fer_lib.plan import shared_epochs

    found = shared_epochs([250, 240, 70, 72, 68, 70, 71])
    assert found["epochs"] == 2 and found["slowdown"] == pytest.approx(245 / 71)
    assert found["measured"] == 841 and found["alone"] == pytest.approx(7 * 71)
    alone = shared_epochs([70, 72, 68])
    assert alone["epochs"] == 0 and alone["alone"] == pytest.approx(alone["measured"])
    with pytest.raises(ValueError, match="no epochs"):
        shared_epochs([])


def test_the_book_counts_only_committed_checkpoints(tmp_path, monkeypatch):
    """`paths.committed_runs_dir`: the appendix's plan sees runs/ as a fresh clone does,
    not this machine's soft-label stores and runs in progress."""
    import subprocess

    from fer_lib.paths import committed_runs_dir

    root = tmp_path / "project"
    (root / "results").mkdir(parents=True)
    (root / "runs" / "long-x-abc").mkdir(parents=True)
    (root / "runs" / "long-x-abc" / "checkpoint.pt").write_bytes(b"committed")
    (root / "runs" / "softlabels").mkdir()
    (root / "runs" / "softlabels" / "store.npz").write_bytes(b"only here")
    monkeypatch.setenv("FER_PROJECT_DIR", str(root))
    monkeypatch.delenv("FER_RUNS_DIR", raising=False)
    assert committed_runs_dir() == root / "runs"  # not a git checkout: runs/ as it is
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-f", "runs/long-x-abc/checkpoint.pt"], check=True)
    view = committed_runs_dir()
    assert sorted(str(p.relative_to(view)) for p in view.rglob("*") if p.is_file()) == [
        "long-x-abc/checkpoint.pt"]
    assert (view / "long-x-abc" / "checkpoint.pt").read_bytes() == b"committed"
