"""The CPU fast path: the same math as eager PyTorch, and nothing of the model changed.

The fused BatchNorm + activation kernels must land as close to a float64 reference as
eager float32 does (they sum in double, so they usually land closer); the patch must
leave parameters, state_dict keys and module types as they were; and a training run
must give the eager trainer's history up to float rounding.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_lib import fastkernels, fastpath
from fer_lib.models import build
from fer_lib.train import TrainConfig, train

CL = torch.channels_last


@pytest.fixture(scope="module")
def kernels():
    built = fastkernels.load()
    if built is None:
        pytest.skip("no C++ toolchain: the fast path falls back to eager PyTorch")
    return built


def _batch(shape, seed=0, scale=2.0, shift=0.5):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen) * scale + shift).contiguous(memory_format=CL)


def _bn_act(act: type[nn.Module] | None, channels: int) -> nn.Sequential:
    layers = [nn.BatchNorm2d(channels)] + ([act(inplace=True)] if act else [])
    seq = nn.Sequential(*layers)
    with torch.no_grad():
        seq[0].weight.uniform_(0.5, 1.5)
        seq[0].bias.uniform_(-0.5, 0.5)
    return seq


def _run(seq: nn.Sequential, x: torch.Tensor, dy: torch.Tensor, fused: bool):
    """Output, input gradient, parameter gradients and buffers after one training call."""
    seq = copy.deepcopy(seq)
    x = x.detach().clone().requires_grad_()
    with fastpath.fused_batchnorm(seq) if fused else torch.enable_grad():
        y = seq(x)
        y.backward(dy)
    grads = [p.grad for p in seq.parameters()]
    return [y.detach(), x.grad, *grads, *(b.float() for b in seq.buffers())]


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).norm() / ref.norm().clamp_min(1e-30))


@pytest.mark.parametrize("act", [None, nn.ReLU, nn.ReLU6], ids=["none", "relu", "relu6"])
@pytest.mark.parametrize("shape", [(64, 9, 12, 12), (32, 36, 6, 6), (8, 177, 3, 3),
                                   (5, 1, 7, 7), (3, 20, 1, 1)])
def test_fused_training_step_matches_float64(kernels, act, shape):
    seq = _bn_act(act, shape[1])
    x, dy = _batch(shape), _batch(shape, seed=1, scale=1.0, shift=0.0)
    ref = _run(copy.deepcopy(seq).double(), x.double(), dy.double(), fused=False)
    eager = _run(seq, x, dy, fused=False)
    fused = _run(seq, x, dy, fused=True)
    for name, e, f, r in zip(["y", "dx", "dweight", "dbias", "running_mean", "running_var"],
                             eager, fused, ref, strict=False):
        assert _rel(f, r) <= max(2 * _rel(e, r), 1e-6), name
    assert fused[-1] == eager[-1] == 1  # num_batches_tracked


def test_running_stats_follow_momentum_none_as_cumulative_average(kernels):
    seq = _bn_act(nn.ReLU6, 8)
    seq[0].momentum = None
    twin = copy.deepcopy(seq)
    with fastpath.fused_batchnorm(seq):
        for seed in range(3):
            seq(_batch((16, 8, 5, 5), seed))
    for seed in range(3):
        twin(_batch((16, 8, 5, 5), seed))
    for a, b in zip(seq.buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_eval_kernel_matches_eager(kernels):
    seq = _bn_act(nn.ReLU6, 24).eval()
    with torch.no_grad():
        seq[0].running_mean.uniform_(-1, 1)
        seq[0].running_var.uniform_(0.5, 2)
    x = _batch((16, 24, 8, 8))
    with torch.no_grad():
        expected = seq(x)
        with fastpath.fused_batchnorm(seq):
            got = seq(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_contiguous_input_falls_back_to_eager(kernels):
    seq = _bn_act(nn.ReLU6, 6)
    x = torch.randn(4, 6, 5, 5) * 4  # NCHW: not for the kernels
    expected = copy.deepcopy(seq)(x)
    with fastpath.fused_batchnorm(seq):
        got = seq(x)
    torch.testing.assert_close(got, expected)
    assert got.max() <= 6 and got.min() >= 0  # the activation was applied once, not lost


@pytest.mark.parametrize("family", ["mobilenet_v2", "mobilenet_v1", "cnn", "resnet"])
def test_patch_leaves_the_model_as_it_was(kernels, family):
    model = build(family, width=0.1)
    keys = list(model.state_dict())
    types = [type(m) for m in model.modules()]
    plan = fastpath.fusion_plan(model)
    assert len(plan) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    acts = sum(isinstance(m, nn.ReLU | nn.ReLU6) for m in model.modules())
    assert sum(act is not None for _, act in plan) == acts  # every activation follows a BN
    with fastpath.fused_batchnorm(model):
        assert list(model.state_dict()) == keys
        model(torch.randn(4, 1, 48, 48).contiguous(memory_format=CL))
    assert [type(m) for m in model.modules()] == types
    assert not any("forward" in vars(m) or "_fer_activation" in vars(m)
                   for m in model.modules())


def test_model_gradients_as_close_to_float64_as_eager(kernels):
    """Through a whole network float32 rounding flips a few ReLU6 masks either way, so
    eager and fused gradients differ by ~1e-3; each must be as close to float64."""
    torch.manual_seed(0)
    model = build("mobilenet_v2", width=0.2).to(memory_format=CL)
    x = _batch((32, 1, 48, 48), scale=1.0, shift=0.0)
    y = torch.arange(32) % 7

    def grads(m, fused, dtype=torch.float32):
        m = copy.deepcopy(m).to(dtype)
        torch.manual_seed(1)  # the same dropout mask
        with fastpath.fused_batchnorm(m) if fused else torch.enable_grad():
            loss = F.cross_entropy(m(x.to(dtype)), y)
            loss.backward()
        return loss.item(), torch.cat([p.grad.double().flatten() for p in m.parameters()])

    (loss64, ref), (loss_eager, eager), (loss_fused, fused) = (
        grads(model, False, torch.float64), grads(model, False), grads(model, True))
    assert abs(loss_fused - loss64) <= max(2 * abs(loss_eager - loss64), 1e-6)
    assert _rel(fused, ref) <= max(1.5 * _rel(eager, ref), 1e-5)


def test_switches(monkeypatch):
    monkeypatch.delenv(fastpath.ENV, raising=False)
    assert fastpath.wanted("cpu") and not fastpath.wanted("cpu", fast=False)
    assert not fastpath.wanted("cuda")
    monkeypatch.setenv(fastpath.ENV, "0")
    assert not fastpath.wanted("cpu") and fastpath.wanted("cpu", fast=True)


def test_heap_allocations_can_be_entered_twice():
    for _ in range(2):
        with fastpath.heap_allocations():
            assert torch.ones(3 << 20).sum() == 3 << 20


@pytest.mark.slow
def test_the_trainer_takes_the_fast_path_on_cpu(kernels, small_fer, monkeypatch):
    calls = {"fused": 0}
    real = fastpath._fused_forward

    def counting(bn, x):
        calls["fused"] += 1
        return real(bn, x)

    monkeypatch.setattr(fastpath, "_fused_forward", counting)
    monkeypatch.delenv(fastpath.ENV, raising=False)
    cfg = TrainConfig(family="mobilenet_v2", model_args={"width": 0.2}, epochs=1,
                      batch_size=64, lr=0.05, warmup_epochs=0.2)
    old = train(cfg, small_fer, device="cpu", quiet=True, fast=False)
    assert calls["fused"] == 0
    new = train(cfg, small_fer, device="cpu", quiet=True)
    assert calls["fused"] > 0
    # SGD amplifies rounding step by step: the first epoch's mean loss stays close
    assert new.history[0]["loss"] == pytest.approx(old.history[0]["loss"], rel=0.02)
    assert dataclasses.asdict(old.config) == dataclasses.asdict(new.config)
    assert list(old.model.state_dict()) == list(new.model.state_dict())
    assert not any("forward" in vars(m) for m in new.model.modules())
