"""The trainer: configs, augmentation, a smoke run, determinism, exact resume, checkpoints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import fer_lib.train as train_mod
from fer_lib.distill import CachedTeacher
from fer_lib.evaluate import predict_logits
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

# A run of a few seconds on 2 CPU cores: ~4k parameters, 270 training images.
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
@pytest.fixture(scope="module")
def tiny_run(small_fer, tmp_path_factory):
    """TINY trained once with a checkpoint folder; several tests read it."""
    out = tmp_path_factory.mktemp("tiny_run")
    return train(TINY, small_fer, device="cpu", out_dir=out, quiet=True), out


def test_smoke_training_learns(small_fer):
    cfg = TrainConfig(family="mobilenet_v2", model_args={"width": 0.25}, epochs=4,
                      batch_size=32, lr=0.05, warmup_epochs=0.2, channels_last=False)
    result = train(cfg, small_fer, device="cpu", quiet=True)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    # four epochs on 270 images: better than guessing uniformly, not yet much more
    assert result.metrics["val_acc"] > 1 / 7
    for split in ("val", "public", "private"):
        assert result.logits[split].shape == (len(result.labels[split]), 7)
        assert 0 <= result.metrics[f"{split}_acc"] <= 1


def test_same_seed_same_run(small_fer, tiny_run):
    first, _ = tiny_run
    again = train(TINY, small_fer, device="cpu", quiet=True)
    _same_history(first.history, again.history)
    _same_metrics(first.metrics, again.metrics)
    for split in first.logits:
        np.testing.assert_array_equal(first.logits[split], again.logits[split])


def test_resume_continues_exactly(small_fer, tiny_run, tmp_path, monkeypatch):
    full, _ = tiny_run
    real = train_mod.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > TINY.epochs - 1:
            raise KeyboardInterrupt  # killed during the last epoch
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, small_fer, device="cpu", out_dir=tmp_path, quiet=True)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == TINY.epochs - 1
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    resumed = train(TINY, small_fer, device="cpu", out_dir=tmp_path, resume=True, quiet=True)
    _same_history(full.history, resumed.history)
    _same_metrics(full.metrics, resumed.metrics)
    for split in full.logits:
        np.testing.assert_array_equal(full.logits[split], resumed.logits[split])


def test_resume_with_another_config_is_refused(small_fer, tiny_run):
    _, out = tiny_run
    other = dataclasses.replace(TINY, lr=0.1)
    with pytest.raises(CheckpointError, match="different config"):
        train(other, small_fer, device="cpu", out_dir=out, resume=True, quiet=True)


def test_checkpoint_describes_itself(tiny_run):
    result, out = tiny_run
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["family"] == TINY.family and state["hparams"] == TINY.model_args
    assert state["config"] == dataclasses.asdict(TINY)
    assert state["epoch"] == TINY.epochs == len(state["history"])
    for key in ("optimizer", "scheduler", "model", "best_model", "best_epoch"):
        assert key in state
    assert {"generator", "torch"} <= set(state["rng"])
    assert {"fer_lib", "torch", "numpy", "python"} <= set(state["versions"])
    assert state["best_epoch"] == result.metrics["best_epoch"]


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


def test_distillation_from_a_cached_teacher(small_fer):
    n_train = len(small_fer.split("Training")[1])
    teacher = CachedTeacher(np.random.default_rng(0).normal(size=(n_train, 2, 7)))
    cfg = dataclasses.replace(TINY, epochs=1)
    result = train(cfg, small_fer, device="cpu", teacher=teacher, quiet=True)
    assert np.isfinite(result.history[0]["loss"])


def test_network_slimming_penalty_runs(small_fer):
    cfg = dataclasses.replace(TINY, epochs=1, bn_l1=1e-3)
    result = train(cfg, small_fer, device="cpu", quiet=True)
    assert np.isfinite(result.history[0]["loss"])


def test_affine_grid_matches_torch():
    import torch.nn.functional as F

    from fer_lib.train import affine_grid

    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    want = F.affine_grid(theta, [5, 1, 48, 48], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, 48, 48), want, atol=1e-5, rtol=0)
