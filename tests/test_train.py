"""The trainer: configs, augmentation, a smoke run, determinism, exact resume, checkpoints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import fer_lib.train as train_mod
from fer_lib.data import FER2013, evaluation_sets, stratified_subset, train_val_split
from fer_lib.distill import CachedTeacher
from fer_lib.evaluate import accuracy, predict_logits, score, to_input
from fer_lib.models import count_params
from fer_lib.train import (
    AUGMENT_DRAWS,
    PRESETS,
    CheckpointError,
    ConfigError,
    TrainConfig,
    augment,
    load_checkpoint,
    load_config,
    make_config,
    model_from_checkpoint,
    random_erase,
    train,
)

# A run of a few seconds on 2 CPU cores: ~4k parameters, ~270 training images.
TINY = TrainConfig(family="mobilenet_v1", model_args={"width": 0.1}, epochs=3, batch_size=64,
                   lr=0.05, warmup_epochs=0.2, channels_last=False)
NO_GEOMETRY = dict(rotate=0.0, scale=0.0, shift=0.0, erase=0.0)


def _same_history(a: list[dict], b: list[dict]) -> None:
    strip = [[{k: v for k, v in h.items() if k != "seconds"} for h in hist] for hist in (a, b)]
    assert strip[0] == strip[1]


def _same_metrics(a: dict, b: dict) -> None:
    timing = {"train_seconds"}
    assert {k: v for k, v in a.items() if k not in timing} == \
        {k: v for k, v in b.items() if k not in timing}


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_loads(name):
    cfg = load_config(name)
    assert isinstance(cfg, TrainConfig)
    assert cfg.family == PRESETS[name]["family"]


def test_overrides_apply_and_none_is_ignored():
    cfg = load_config("smoke", epochs=5, subset=None)
    assert cfg.epochs == 5 and cfg.subset is None
    assert cfg.lr == PRESETS["smoke"]["lr"]


def test_json_config(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"family": "cnn", "model_args": {"width": 0.1}, "epochs": 3}))
    cfg = load_config(path)
    assert (cfg.family, cfg.model_args, cfg.epochs) == ("cnn", {"width": 0.1}, 3)


def test_yaml_config_on_top_of_a_preset(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: smoke\nlr: 0.1\noptimizer: adamw\n")
    cfg = load_config(path)
    assert cfg.lr == 0.1 and cfg.optimizer == "adamw"
    assert cfg.family == PRESETS["smoke"]["family"] and cfg.epochs == PRESETS["smoke"]["epochs"]


def test_unknown_preset():
    with pytest.raises(ConfigError, match="no-such-preset"):
        load_config("no-such-preset")


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"epochz": 3}))
    with pytest.raises(ConfigError, match="epochz"):
        load_config(path)
    with pytest.raises(ConfigError, match="learning_rate"):
        make_config({"learning_rate": 0.1})


def test_config_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


@pytest.mark.parametrize("key, value", [("epochs", -1), ("epochs", 0), ("optimizer", "rmsprop"),
                                        ("lr", 0.0), ("schedule", "step"), ("erase", 1.5),
                                        ("subset", 3), ("kd_alpha", 2.0)])
def test_invalid_values_are_named(key, value):
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**{key: value})


def test_bad_model_is_a_config_error():
    with pytest.raises(ConfigError, match="no_such_net"):
        TrainConfig(family="no_such_net")
    with pytest.raises(ConfigError, match="width"):
        TrainConfig(model_args={"width": -1.0})


# ----------------------------------------------------------------------------- augmentation
def test_augment_keeps_shape_and_dtype():
    x = torch.randn(8, 1, 48, 48)
    out, flipped = augment(x, TrainConfig(), torch.rand(8, AUGMENT_DRAWS))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert flipped.shape == (8,) and flipped.dtype == torch.bool


def test_augment_flips_exactly_the_flagged_images():
    cfg = TrainConfig(**NO_GEOMETRY)
    x = torch.randn(6, 1, 48, 48)
    u = torch.rand(6, AUGMENT_DRAWS)
    u[:, 2] = torch.tensor([0.1, 0.9, 0.3, 0.7, 0.2, 0.8])
    out, flipped = augment(x, cfg, u)
    assert flipped.tolist() == [True, False, True, False, True, False]
    torch.testing.assert_close(out[flipped], torch.flip(x[flipped], dims=[-1]),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[~flipped], x[~flipped], atol=1e-5, rtol=1e-5)


def test_augment_without_flip_never_mirrors():
    cfg = TrainConfig(flip=False, **NO_GEOMETRY)
    x = torch.randn(4, 1, 48, 48)
    out, flipped = augment(x, cfg, torch.zeros(4, AUGMENT_DRAWS))
    assert not flipped.any()
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)


def test_random_erase_zeroes_one_rectangle():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 48, 48) + 1  # no zeros before erasing
    u = torch.rand(16, 5)
    u[:, 0] = 0.0  # every coin says "erase"
    out = random_erase(x, 1.0, u)
    for i, image in enumerate(out[:, 0]):
        zero = image == 0
        assert zero.any()
        rows, cols = zero.any(1).nonzero()[:, 0], zero.any(0).nonzero()[:, 0]
        box = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert (box == 0).all()  # the zeros fill their bounding box: a rectangle
        assert zero.sum() <= 0.25 * image.numel()
        assert torch.equal(image[~zero], x[i, 0][~zero])  # the rest is untouched


def test_random_erase_respects_the_coin():
    x = torch.rand(4, 1, 48, 48) + 1
    u = torch.rand(4, 5)
    u[:, 0] = 0.9
    assert torch.equal(random_erase(x, 0.5, u), x)


# ----------------------------------------------------------------------------- training
# The tests that train more than one short run (twice, to compare; killed and resumed)
# or for many epochs are marked slow: `make test-all` and CI run them, `make test` not.
@pytest.fixture(scope="module")
def tiny_run(small_fer, tmp_path_factory):
    """TINY trained once with a checkpoint folder; several tests read it."""
    out = tmp_path_factory.mktemp("tiny_run")
    return train(TINY, small_fer, device="cpu", out_dir=out, quiet=True), out


@pytest.mark.slow
def test_smoke_training_learns(small_fer):
    cfg = TrainConfig(family="mobilenet_v2", model_args={"width": 0.25}, epochs=8,
                      batch_size=32, lr=0.05, warmup_epochs=0.2, channels_last=False)
    result = train(cfg, small_fer, device="cpu", quiet=True)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    scores = score(result.model, evaluation_sets(small_fer))
    for split, usage in (("public", "PublicTest"), ("private", "PrivateTest")):
        np.testing.assert_array_equal(scores.labels[split], small_fer.split(usage)[1])
    for split in ("val", "public", "private"):
        assert scores.logits[split].shape == (len(scores.labels[split]), 7)
        assert scores.accuracy["fp32"][split] == accuracy(scores.logits[split],
                                                          scores.labels[split])
    # The synthetic classes differ in their gratings (conftest): eight epochs on ~270 images
    # learn them well beyond always answering the largest class (Happy, a quarter).
    test_labels = np.concatenate([scores.labels["public"], scores.labels["private"]])
    majority = np.bincount(test_labels).max() / len(test_labels)
    test_acc = accuracy(np.concatenate([scores.logits["public"], scores.logits["private"]]),
                        test_labels)
    assert majority < 0.3 and test_acc > 2 * majority
    assert scores.accuracy["fp32"]["val"] > 2 * majority


class _NoTestSplits(FER2013):
    """FER2013 that fails the test if anything asks for PublicTest or PrivateTest."""

    def split(self, usage):
        if usage != "Training":
            raise AssertionError(f"the trainer asked for {usage}")
        return super().split(usage)


def test_training_never_touches_the_test_splits(small_fer):
    guarded = _NoTestSplits(small_fer.images, small_fer.labels, small_fer.usage)
    result = train(TINY, guarded, device="cpu", quiet=True)
    assert set(result.metrics) == {"params", "epochs", "best_epoch", "best_val_acc", "device",
                                   "train_seconds"}


@pytest.mark.slow
def test_same_seed_same_run(small_fer, tiny_run):
    first, _ = tiny_run
    again = train(TINY, small_fer, device="cpu", quiet=True)
    _same_history(first.history, again.history)
    _same_metrics(first.metrics, again.metrics)
    images, _ = small_fer.split("PublicTest")
    np.testing.assert_array_equal(predict_logits(first.model, images),
                                  predict_logits(again.model, images))


def _killed_in_last_epoch(cfg, data, out, monkeypatch) -> None:
    """Train `cfg` into `out` and kill it during its last epoch (a checkpoint of every
    earlier epoch is left); the trainer is whole again afterwards."""
    real = train_mod.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > cfg.epochs - 1:
            raise KeyboardInterrupt  # killed during the last epoch
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, device="cpu", out_dir=out, quiet=True)
    monkeypatch.setattr(train_mod, "train_one_epoch", real)


@pytest.mark.slow
def test_resume_continues_exactly(small_fer, tiny_run, tmp_path, monkeypatch):
    full, _ = tiny_run
    _killed_in_last_epoch(TINY, small_fer, tmp_path, monkeypatch)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == TINY.epochs - 1
    resumed = train(TINY, small_fer, device="cpu", out_dir=tmp_path, resume=True, quiet=True)
    _same_history(full.history, resumed.history)
    _same_metrics(full.metrics, resumed.metrics)
    images, _ = small_fer.split("PublicTest")
    np.testing.assert_array_equal(predict_logits(full.model, images),
                                  predict_logits(resumed.model, images))


def test_resume_with_another_config_is_refused(small_fer, tiny_run):
    _, out = tiny_run
    other = dataclasses.replace(TINY, lr=0.1)
    with pytest.raises(CheckpointError, match="different config"):
        train(other, small_fer, device="cpu", out_dir=out, resume=True, quiet=True)


def test_checkpoint_describes_itself(tiny_run):
    result, out = tiny_run
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["family"] == TINY.family and state["hparams"] == TINY.model_args
    assert state["config"] == TINY.to_dict()
    assert state["epoch"] == TINY.epochs == len(state["history"])
    for key in ("optimizer", "scheduler", "model", "best_model", "best_epoch"):
        assert key in state
    assert {"generator", "torch"} <= set(state["rng"])
    assert {"fer_lib", "torch", "numpy", "python"} <= set(state["versions"])
    assert state["history"] == result.history


def test_the_best_validation_epoch_is_kept(small_fer, tiny_run):
    result, out = tiny_run
    state = load_checkpoint(out / "checkpoint.pt")
    val = [h["val_acc"] for h in result.history]
    assert [h["epoch"] for h in result.history] == list(range(1, TINY.epochs + 1))
    assert result.best_epoch == state["best_epoch"] == 1 + int(np.argmax(val))
    assert result.metrics["best_epoch"] == result.best_epoch
    assert state["best_val_acc"] == result.metrics["best_val_acc"] == max(val)
    # The returned model is the best epoch's, so it scores that epoch's val accuracy.
    assert score(result.model, evaluation_sets(small_fer)).plain["val"] == max(val)
    images, _ = small_fer.split("PublicTest")
    best = predict_logits(model_from_checkpoint(state, "best"), images)
    np.testing.assert_allclose(predict_logits(result.model, images), best, rtol=1e-5, atol=1e-5)
    if state["best_epoch"] != TINY.epochs:  # then the last weights are another model
        last = predict_logits(model_from_checkpoint(state, "last"), images)
        assert np.abs(last - best).max() > 1e-3


def _lrs(cfg: TrainConfig, steps_per_epoch: int) -> np.ndarray:
    """The learning rate of every optimiser step of a run (before its scheduler step)."""
    model = torch.nn.Linear(2, 2)
    opt = train_mod.make_optimizer(model, cfg)
    sched = train_mod.make_scheduler(opt, cfg, steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


@pytest.mark.parametrize("warmup_epochs", [0.2, 2.0])
def test_lr_schedule_warms_up_linearly_then_decays_to_zero(warmup_epochs):
    cfg = TrainConfig(epochs=10, lr=0.2, warmup_epochs=warmup_epochs)
    steps = 7
    lrs = _lrs(cfg, steps)
    warmup = max(1, int(warmup_epochs * steps))
    np.testing.assert_allclose(lrs[:warmup], 0.2 * np.arange(1, warmup + 1) / warmup)
    assert lrs.max() == pytest.approx(0.2) and lrs[warmup] == pytest.approx(0.2)
    decay = lrs[warmup:]
    assert np.all(np.diff(decay) < 0)  # strictly down after the warm-up
    assert decay[-1] < 0.01 * 0.2  # ~0 at the end
    # Cosine, not linear: half the peak halfway through the decay, slow at both ends.
    assert decay[len(decay) // 2] == pytest.approx(0.1, rel=0.05)
    assert decay[0] - decay[1] < decay[len(decay) // 2] - decay[len(decay) // 2 + 1]
    assert decay[-2] - decay[-1] < decay[len(decay) // 2] - decay[len(decay) // 2 + 1]


def test_history_records_the_schedule(small_fer, tiny_run):
    result, _ = tiny_run
    train_rows, _ = train_val_split(small_fer.split("Training")[1])
    steps = -(-len(train_rows) // TINY.batch_size)
    lrs = _lrs(TINY, steps)
    after_each_epoch = [lrs[(e + 1) * steps] if (e + 1) * steps < len(lrs) else None
                        for e in range(TINY.epochs)]
    recorded = [h["lr"] for h in result.history]
    np.testing.assert_allclose(recorded[:-1], after_each_epoch[:-1])
    assert recorded[-1] < 0.01 * TINY.lr


def test_model_from_checkpoint_predicts_the_same(small_fer, tiny_run):
    result, out = tiny_run
    model = model_from_checkpoint(load_checkpoint(out / "checkpoint.pt"))
    assert count_params(model) == result.metrics["params"]
    images, _ = small_fer.split("PublicTest")
    np.testing.assert_allclose(predict_logits(model, images), predict_logits(result.model, images),
                               rtol=1e-5, atol=1e-5)


def test_truncated_checkpoint(tiny_run, tmp_path):
    _, out = tiny_run
    blob = (out / "checkpoint.pt").read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(CheckpointError, match="not a fer_lib checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_cached_teacher_rows_are_the_training_rows(small_fer, monkeypatch):
    """The trainer asks a cached teacher for the Training-split rows (and the flips) of
    the images it trains on, also when it trains on a subset of them."""
    images, labels = small_fer.split("Training")
    # Row r, view f, class c of the cache holds 100 r + 10 f + c: every entry is unique.
    known = (100 * np.arange(len(labels))[:, None, None] + 10 * np.arange(2)[None, :, None]
             + np.arange(7)[None, None, :]).astype(np.float32)
    calls = []

    class Recording(CachedTeacher):
        def __call__(self, x, index, flipped):
            out = super().__call__(x, index, flipped)
            calls.append({"x": x.clone(), "rows": index.clone(), "flipped": flipped.clone(),
                          "out": out.clone()})
            return out

    real_kd = train_mod.kd_loss

    def recording_kd(student, teacher, targets, *args, **kwargs):
        calls[-1].update(teacher=teacher.detach().clone(), targets=targets.clone())
        return real_kd(student, teacher, targets, *args, **kwargs)

    monkeypatch.setattr(train_mod, "kd_loss", recording_kd)
    cfg = dataclasses.replace(TINY, epochs=1, subset=100, **NO_GEOMETRY)
    train(cfg, small_fer, device="cpu", teacher=Recording(known), quiet=True)

    train_rows, _ = train_val_split(labels, cfg.val_fraction, cfg.split_seed)
    expected_rows = train_rows[stratified_subset(labels[train_rows], 100, cfg.seed)]
    seen = torch.cat([c["rows"] for c in calls]).numpy()
    assert sorted(seen) == sorted(expected_rows)  # each subset row once, nothing else
    flips = torch.cat([c["flipped"] for c in calls]).numpy()
    assert 0 < flips.mean() < 1
    for c in calls:
        rows, flipped = c["rows"].numpy(), c["flipped"].numpy()
        np.testing.assert_array_equal(c["out"].numpy(), known[rows, flipped.astype(int)])
        np.testing.assert_array_equal(c["teacher"].numpy(), c["out"].numpy())  # what KD got
        np.testing.assert_array_equal(c["targets"].numpy(), labels[rows])
        # and the batch is those rows' images, mirrored where the teacher was told so
        want = to_input(torch.as_tensor(images[rows])[:, None])
        want = torch.where(c["flipped"].view(-1, 1, 1, 1), torch.flip(want, dims=[-1]), want)
        torch.testing.assert_close(c["x"], want, atol=1e-4, rtol=1e-4)


def test_network_slimming_penalty_enters_the_loss(small_fer, monkeypatch):
    cfg = dataclasses.replace(TINY, epochs=1)
    plain = train(cfg, small_fer, device="cpu", quiet=True)
    # A constant penalty leaves the gradients alone: the loss moves by exactly bn_l1 * c.
    monkeypatch.setattr(train_mod, "bn_l1_penalty", lambda model: torch.tensor(3.0))
    shifted = train(dataclasses.replace(cfg, bn_l1=0.5), small_fer, device="cpu", quiet=True)
    assert shifted.history[0]["loss"] == pytest.approx(plain.history[0]["loss"] + 1.5, rel=1e-5)
    assert shifted.history[0]["val_acc"] == plain.history[0]["val_acc"]
    monkeypatch.undo()
    # The real penalty pulls the BatchNorm gammas towards zero.
    sparse = train(dataclasses.replace(cfg, bn_l1=0.05), small_fer, device="cpu", quiet=True)

    def gammas(model):
        return torch.cat([m.weight.detach().abs().flatten() for m in model.modules()
                          if isinstance(m, torch.nn.BatchNorm2d)])

    assert gammas(sparse.model).sum() < gammas(plain.model).sum() - 0.01 * len(gammas(plain.model))


def test_affine_grid_matches_torch():
    import torch.nn.functional as F

    from fer_lib.train import affine_grid

    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    want = F.affine_grid(theta, [5, 1, 48, 48], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, 48, 48), want, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- weight averaging
def test_weight_average_is_the_warmed_up_exponential_average():
    from fer_lib.averaging import WeightAverage

    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.9)
    want = [p.detach().clone() for p in model.parameters()]
    for step in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update(model)
        d = min(0.9, (1 + step) / (10 + step))
        want = [d * w + (1 - d) * p.detach() for w, p in zip(want, model.parameters(),
                                                             strict=True)]
    for got, expected in zip(average.model.parameters(), want, strict=True):
        torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_a_later_option_at_its_default_leaves_stored_keys_alone():
    """`ema` came after results were stored: at its default it is not in the config's
    dict, so every stored run's hash and checkpoint config stay what they were."""
    assert "ema" not in TINY.to_dict()
    assert dataclasses.replace(TINY, ema=0.99).to_dict()["ema"] == 0.99
    with pytest.raises(ConfigError, match="ema"):
        dataclasses.replace(TINY, ema=1.0)


@pytest.mark.slow
def test_averaged_run_keeps_the_average_and_resumes_exactly(small_fer, tmp_path, monkeypatch):
    """With ``ema`` the kept model is the average at the best epoch (not the last SGD
    iterate), and a run killed at an epoch boundary continues to the same weights."""
    cfg = dataclasses.replace(TINY, ema=0.9)
    full = train(cfg, small_fer, device="cpu", out_dir=tmp_path / "full", quiet=True)
    state = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert set(state["average"]) == {"model", "steps"} and state["average"]["steps"] > 0
    assert state["config"]["ema"] == 0.9
    kept = full.model.state_dict()
    for name, value in state["best_model"].items():  # what was selected is what is kept
        torch.testing.assert_close(kept[name], value, rtol=0, atol=0)
    if full.best_epoch == cfg.epochs:  # the average at the last epoch, not the iterate
        for name, value in state["average"]["model"].items():
            torch.testing.assert_close(kept[name], value, rtol=0, atol=0)
    assert any(not torch.equal(kept[name], value) for name, value in state["model"].items()
               if value.is_floating_point())
    _killed_in_last_epoch(cfg, small_fer, tmp_path / "split", monkeypatch)
    resumed = train(cfg, small_fer, device="cpu", out_dir=tmp_path / "split", resume=True,
                    quiet=True)
    _same_history(full.history, resumed.history)
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0)
    for name, value in full.plain_model.state_dict().items():
        torch.testing.assert_close(resumed.plain_model.state_dict()[name], value, rtol=0, atol=0)


@pytest.mark.slow
def test_averaged_run_also_selects_the_plain_iterate(small_fer, tmp_path):
    """The variant without averaging comes from the same run: every epoch validates the
    plain iterate too, and `plain_model` is the iterate of its own best epoch."""
    cfg = dataclasses.replace(TINY, ema=0.9, epochs=2)
    res = train(cfg, small_fer, device="cpu", out_dir=tmp_path, quiet=True)
    plain = [h["plain_val_acc"] for h in res.history]
    best = int(np.argmax(plain)) + 1  # the first best, as selection keeps the first
    assert res.metrics["plain_best_epoch"] == best
    assert res.metrics["plain_best_val_acc"] == plain[best - 1]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["best_plain_epoch"] == best
    for name, value in state["best_plain_model"].items():
        torch.testing.assert_close(res.plain_model.state_dict()[name], value, rtol=0, atol=0)
    if best == cfg.epochs:  # then it is the last iterate itself, not the average
        for name, value in state["model"].items():
            torch.testing.assert_close(res.plain_model.state_dict()[name], value, rtol=0,
                                       atol=0)
    unaveraged = train(TINY, small_fer, device="cpu", quiet=True)
    assert unaveraged.plain_model is None and "plain_val_acc" not in unaveraged.history[0]


@pytest.mark.slow
def test_trainer_trains_on_exactly_the_views_the_store_labelled(small_fer):
    """Distilling from a soft-label store, every image the student is shown is, bit for
    bit, the view whose stored probabilities are its target: the trainer rebuilds each
    view from the stored draws of the (row, view) it asks the teacher for."""
    from fer_lib.models import build
    from fer_lib.softlabels import StoredViewTeacher, build_store

    images, _ = small_fer.split("Training")
    cfg = dataclasses.replace(TINY, epochs=2, kd_alpha=0.5)
    labeller, labelled = build("mobilenet_v1", width=0.1), []
    labeller.register_forward_pre_hook(lambda _m, args: labelled.append(args[0].clone()))
    store = build_store([labeller], images, cfg, views=3, seed=3, batch_size=32,
                        channels_last=False)
    labelled = torch.cat(labelled).view(len(images), 3, 1, 48, 48)

    class Recording(StoredViewTeacher):
        asked: list = []

        def __call__(self, x, rows, flipped, k):
            self.asked.append((rows.clone(), k.clone()))
            return super().__call__(x, rows, flipped, k)

    student, shown = build(cfg.family, **cfg.model_args), []
    student.register_forward_pre_hook(
        lambda m, args: shown.append(args[0].clone()) if m.training else None)
    teacher = Recording(store, cfg)
    train(cfg, small_fer, device="cpu", teacher=teacher, model=student, quiet=True)
    assert len(shown) == len(teacher.asked) > 2
    for x, (rows, k) in zip(shown, teacher.asked, strict=True):
        assert torch.equal(x, labelled[rows, k])
    views = torch.cat([k for _, k in teacher.asked])
    assert set(views.tolist()) == {0, 1, 2}  # each epoch picks among all stored views
