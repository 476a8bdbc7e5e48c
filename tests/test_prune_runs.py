"""The pruning study (#40 item 5, `fer_lib.prune_runs`): magnitude pruning fine-tuned with
its mask, slimming, and slimming's shape trained from scratch (Liu et al., 2019), from
the same dense runs; the trainer keeps pruned weights at zero and the run states what
its zeros would save."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from fer_lib import catalogue
from fer_lib.data import TRAINING_IMAGES
from fer_lib.experiment_spec import Experiment
from fer_lib.experiments import _start_model, load_or_train
from fer_lib.prune import l1_pull
from fer_lib.prune_runs import GROUP, arm_names, pruning_arms
from fer_lib.sparsity import prunable, stored_magnitude_masks


def test_each_seed_has_the_three_arms_from_its_own_dense_run():
    runs = catalogue.experiments()
    share = catalogue.PRUNE_STUDY_SHARE
    for seed in catalogue.PRUNE_STUDY_SEEDS:
        dense = runs[catalogue.design_name("200k", catalogue.DESIGN_PICKS["200k"], seed)]
        names = arm_names("200k", share, seed)
        magnitude, sparse, slimmed, scratch = (runs[names[arm]] for arm in
                                               ("magnitude", "sparse", "slimming", "scratch"))
        assert magnitude.slim_from == dense.name and magnitude.train.prune_sparsity == share
        assert sparse.train.bn_l1 > 0 and sparse.train.epochs == dense.train.epochs
        assert slimmed.slim_from == sparse.name and slimmed.slim_fraction == share
        assert scratch.from_scratch and scratch.slim_from == sparse.name
        # Liu et al.'s control trains as many epochs as the slimming arm did in all.
        assert scratch.train.epochs == sparse.train.epochs + slimmed.train.epochs
        # Both fine-tunes are the same length: the two pruning methods compare fairly.
        assert slimmed.train.epochs == magnitude.train.epochs
        for exp in (sparse, slimmed, scratch, magnitude):
            assert exp.group == GROUP and exp.train.seed == seed and exp.teacher is None
            assert exp.train.model_args == dense.train.model_args


def test_the_study_penalty_pulls_a_gate_as_far_as_the_students_did():
    """Scaled to the shorter schedule: the gates move as far as in the first slimming study."""
    student = catalogue.get("student-200k-kd-sparse").train
    study = catalogue.get(arm_names("200k", catalogue.PRUNE_STUDY_SHARE, 0)["sparse"]).train
    assert study.epochs < student.epochs
    assert l1_pull(study, TRAINING_IMAGES) == pytest.approx(
        l1_pull(student, TRAINING_IMAGES), rel=0.01)


def test_pruning_a_single_weight_needs_a_run_to_start_from():
    cfg = catalogue.get("design-200k-early-s0").train
    with pytest.raises(ValueError, match="slim_from"):
        Experiment("x", GROUP, dataclasses.replace(cfg, prune_sparsity=0.5))
    with pytest.raises(ValueError, match="slim_from"):
        Experiment("x", GROUP, cfg, from_scratch=True)
    with pytest.raises(ValueError, match="prune_sparsity"):
        dataclasses.replace(cfg, prune_sparsity=1.0)


def test_a_magnitude_run_keeps_its_mask_and_states_what_the_zeros_save(
        mini, small_fer, tmp_path, monkeypatch):
    runs, results = mini
    shutil.copytree(results, tmp_path / "results")
    source = runs["stu"]
    exp = dataclasses.replace(source, name="stu-magnitude", group=GROUP, teacher=None,
                              slim_from="stu", train=dataclasses.replace(
                                  source.train, prune_sparsity=0.5))
    monkeypatch.setattr(catalogue, "experiments", lambda: {**runs, exp.name: exp})
    start = _start_model(exp, tmp_path / "results")
    wanted = stored_magnitude_masks(start, 0.5)

    result = load_or_train(exp, small_fer, results_dir=tmp_path / "results",
                           runs_dir=tmp_path / "runs", device="cpu", quiet=True)
    model = result.model()
    weights = prunable(model)
    for name, keep in wanted.items():  # the mask of the start, unchanged by fine-tuning
        assert torch.equal(weights[name] != 0, keep), name
    pruned = result.metrics["pruned"]
    assert pruned["zeroed"] >= 0.5
    for precision, sizes in pruned["weight_bytes"].items():
        assert sizes["sparse"] < sizes["dense"], precision


def test_folded_ranking_ignores_how_a_batchnorm_scales_its_convolution():
    """Scale a conv's channel by c and its BatchNorm's variance by c^2: the network is the
    same and so are the masks; ranking the raw weights would change."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4))
    model[1].running_var.uniform_(0.5, 2.0)
    before = stored_magnitude_masks(model, 0.5)
    with torch.no_grad():
        model[0].weight[1] *= 100.0
        model[0].bias[1] *= 100.0
        model[1].running_mean[1] *= 100.0
        model[1].running_var[1] *= 100.0 ** 2
    after = stored_magnitude_masks(model, 0.5)
    assert all(torch.equal(before[k], after[k]) for k in before)
    raw = (model[0].weight.abs() > model[0].weight.abs().flatten().kthvalue(36).values)
    assert not torch.equal(raw, after["0.weight"])
    assert set(before) == {"0.weight"}


def test_the_scratch_arm_is_the_slimmed_shape_freshly_initialised(mini):
    runs, results = mini
    sparse = runs["sparse"]
    exp = Experiment("sparse-scratch", GROUP, sparse.train, slim_from="sparse",
                     slim_fraction=0.5, from_scratch=True)
    slimmed = _start_model(dataclasses.replace(exp, from_scratch=False), results)
    fresh, again = _start_model(exp, results), _start_model(exp, results)
    assert fresh.hparams == slimmed.hparams
    state, cut = fresh.state_dict(), slimmed.state_dict()
    assert all(state[k].shape == cut[k].shape for k in cut)
    assert not torch.equal(state["0.0.weight"], cut["0.0.weight"])
    assert all(torch.equal(state[k], again.state_dict()[k]) for k in state)  # seeded


def test_arms_from_any_dense_run():
    dense = catalogue.get("design-200k-early-s1")
    arms = pruning_arms(dense, "200k", 0.25, 1e-3, dict(epochs=3, lr=0.01))
    assert [a.name for a in arms] == ["magnitude-200k-25-s1", "slimsparse-200k-s1",
                                      "slim-200k-25-s1", "slimscratch-200k-25-s1"]
    assert [a.train.epochs for a in arms] == [3, 20, 3, 23]
