"""Network slimming of mobilenet_v2: which channels go, and what the cut model computes."""

import numpy as np
import pytest
import torch
from torch import nn

from fer_lib import models
from fer_lib.prune import bn_l1_penalty, gamma_summary, slim
from fer_lib.quantize import export_npz, load_model


def randomized(seed: int = 0, **hparams) -> nn.Module:
    """An eval-mode mobilenet_v2 with random BN statistics and gammas in [0.5, 1.5]."""
    torch.manual_seed(seed)
    model = models.build("mobilenet_v2", **{"width": 0.2, **hparams})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def sparsify(model: nn.Module, share: float, zero_beta: bool) -> dict[int, np.ndarray]:
    """Set the gate gammas of a random `share` of each block's hidden channels to zero,
    as a strong L1 penalty would; return the kept-channel mask per block."""
    rng = np.random.default_rng(0)
    keep = {}
    for i, gammas in gamma_summary(model).items():
        drop = rng.permutation(len(gammas))[:int(share * len(gammas))]
        bn = model[i].block[1][1]
        with torch.no_grad():
            bn.weight[drop] = 0.0
            if zero_beta:
                bn.bias[drop] = 0.0
        keep[i] = np.ones(len(gammas), bool)
        keep[i][drop] = False
    return keep


@pytest.fixture(scope="module")
def x():
    return torch.randn(4, *models.INPUT_SHAPE, generator=torch.Generator().manual_seed(1))


def test_gamma_summary_lists_every_expanded_block():
    model = randomized()
    gammas = gamma_summary(model)
    blocks = [i for i, m in enumerate(model) if isinstance(m, models.InvertedResidual)]
    assert list(gammas) == blocks[1:]  # the first block has no expansion conv
    for i, g in gammas.items():
        assert g.dtype == np.float32 and g.shape == (model[i].block[0][0].out_channels,)
        assert (g >= 0).all()


@pytest.mark.parametrize("zero_beta", [True, False])
def test_slim_removes_exactly_the_zeroed_channels(x, zero_beta):
    model = randomized()
    keep = sparsify(model, 0.25, zero_beta)
    dropped = sum(int((~k).sum()) for k in keep.values())
    total = sum(len(k) for k in keep.values())
    pruned = slim(model, dropped / total)
    assert pruned.family == "mobilenet_v2" and pruned.hparams["width"] == 0.2
    hidden = pruned.hparams["hidden"]
    for j, (i, m) in enumerate((i, m) for i, m in enumerate(model)
                               if isinstance(m, models.InvertedResidual)):
        expected = int(keep[i].sum()) if i in keep else m.block[0][0].in_channels
        assert hidden[j] == expected
        if i in keep:  # the surviving channels' weights, in order
            mask = torch.from_numpy(keep[i])
            torch.testing.assert_close(pruned[i].block[0][0].weight,
                                       model[i].block[0][0].weight[mask])
            torch.testing.assert_close(pruned[i].block[2][0].weight,
                                       model[i].block[2][0].weight[:, mask])
    assert models.count_params(pruned) < models.count_params(model)
    with torch.no_grad():
        # zero-gamma channels emit the constant ReLU6(beta), which slim folds into the
        # projection's BN, so the cut is exact in eval mode whatever beta was
        torch.testing.assert_close(pruned.eval()(x), model(x), atol=1e-4, rtol=1e-4)


def test_slim_ranks_globally_and_keeps_a_floor_per_block():
    model = randomized()
    gammas = gamma_summary(model)
    weak = next(iter(gammas))  # make one whole block the weakest: only its floor survives
    with torch.no_grad():
        model[weak].block[1][1].weight.mul_(1e-3)
    pruned = slim(model, 0.3, min_channels=3)
    blocks = [i for i, m in enumerate(model) if isinstance(m, models.InvertedResidual)]
    hidden = dict(zip(blocks, pruned.hparams["hidden"], strict=True))
    assert hidden[weak] == 3
    cut = sum(len(g) for g in gammas.values()) - sum(hidden[i] for i in gammas)
    assert cut == round(0.3 * sum(len(g) for g in gammas.values()))


def test_slim_keeps_mode_and_zero_fraction_changes_nothing(x):
    model = randomized()
    same = slim(model, 0.0)
    assert not same.training
    assert models.count_params(same) == models.count_params(model)
    with torch.no_grad():
        torch.testing.assert_close(same(x), model(x))
    assert slim(model.train(), 0.1).training


def test_slimmed_model_exports_and_reloads(tmp_path, x):
    model = randomized()
    sparsify(model, 0.5, zero_beta=True)
    pruned = slim(model, 0.4)
    for precision in ("fp32", "int4"):
        path = tmp_path / f"{precision}.npz"
        export_npz(pruned, path, precision)
        loaded = load_model(path)
        assert loaded.hparams["hidden"] == pruned.hparams["hidden"]
        assert isinstance(loaded.hparams["hidden"], tuple)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "fp32.npz")(x), pruned.eval()(x),
                                   atol=1e-4, rtol=1e-4)


def test_slim_rejects_other_families_and_bad_fractions():
    with pytest.raises(ValueError, match="mobilenet_v2"):
        slim(models.build("cnn", width=0.1), 0.2)
    with pytest.raises(ValueError, match="fraction"):
        slim(randomized(), 1.0)


def test_bn_l1_penalty_sums_absolute_gammas():
    model = randomized()
    expected = sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    torch.testing.assert_close(bn_l1_penalty(model), expected)


@pytest.mark.parametrize("nesterov", [True, False])
def test_l1_pull_is_how_far_the_penalty_alone_moves_a_gamma(nesterov):
    """SGD with momentum on the penalty alone, over the trainer's own schedule, moves a
    gamma (kept far from zero, so its sign stays) by what `l1_pull` predicts."""
    from fer_lib.config import TrainConfig
    from fer_lib.prune import l1_pull
    from fer_lib.train import make_scheduler

    cfg = TrainConfig(epochs=30, batch_size=32, lr=0.1, bn_l1=1e-3, warmup_epochs=1.0)
    images = 640  # 20 steps an epoch
    gamma = torch.full((1,), 100.0, requires_grad=True)
    opt = torch.optim.SGD([gamma], lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov)
    schedule = make_scheduler(opt, cfg, images // cfg.batch_size)
    for _ in range(cfg.epochs * images // cfg.batch_size):
        opt.zero_grad()
        (cfg.bn_l1 * gamma.abs().sum()).backward()
        opt.step()
        schedule.step()
    moved = 100.0 - gamma.item()
    # The momentum buffer needs ~1 / (1 - mu) = 10 steps to build up: over 600 steps
    # that costs a few percent.
    assert moved == pytest.approx(l1_pull(cfg, images), rel=0.05)


def test_l1_pull_scales_with_the_weight_and_momentum():
    from fer_lib.config import TrainConfig
    from fer_lib.prune import l1_pull

    base = TrainConfig(epochs=3, batch_size=64, bn_l1=1e-4)
    assert l1_pull(TrainConfig(epochs=3, batch_size=64), 640) == 0.0
    assert l1_pull(TrainConfig(epochs=3, batch_size=64, bn_l1=2e-4), 640) == pytest.approx(
        2 * l1_pull(base, 640))
    slow = TrainConfig(epochs=3, batch_size=64, bn_l1=1e-4, momentum=0.0)
    assert l1_pull(base, 640) == pytest.approx(10 * l1_pull(slow, 640))
    with pytest.raises(ValueError, match="adamw"):
        l1_pull(TrainConfig(optimizer="adamw", bn_l1=1e-4), 640)
