"""The trainer's CPU fast path: the same math with fewer trips to memory.

At 48 x 48 with 9 to 36 channels in the first layers, a CPU training step of the
MobileNets is bound by memory traffic, not arithmetic: BatchNorm and ReLU6 passes
over the wide activations, and the page faults of allocating them. Two changes, each
exact up to float rounding, together about 3x the eager trainer's epoch speed for the
200k student on 2 idle cores (`benchmarks/bench_train_cpu.py` measures it, and what
each change gives alone):

- `heap_allocations`: glibc serves every allocation from its heap and keeps freed
  memory, so the next step's activations reuse warm pages instead of fresh ``mmap``
  pages that the kernel must fault in and zero (100k page faults per step of the 200k
  student at batch 256).
- `fused_batchnorm`: every ``BatchNorm2d`` of the model, with the ``ReLU`` or
  ``ReLU6`` that follows it in an ``nn.Sequential``, runs as one C++ kernel
  (`fer_lib.fastkernels`) in training (forward and backward) and evaluation, on
  channels_last float32 CPU tensors: 3 passes over memory forward and 5 backward
  instead of about 8 and 8. Parameters, buffers, state_dict keys and module types stay
  as they are; the patch is undone on exit.

`training(model, enabled)` applies both; the trainer uses it on CPU unless
``train(..., fast=False)`` or the environment variable ``FER_FAST=0`` says no.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import types

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import fastkernels

ENV = "FER_FAST"
ACTIVATIONS = {nn.ReLU: 1, nn.ReLU6: 2}  # kernel codes; 0 is no activation
# glibc mallopt parameters, and the values its dynamic mmap threshold settles at
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def wanted(device: str | torch.device, fast: bool | None = None) -> bool:
    """Whether to use the fast path: on CPU, unless `fast` is False or ``FER_FAST=0``."""
    if fast is None:
        fast = os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    return bool(fast) and torch.device(device).type == "cpu"


@contextlib.contextmanager
def training(model: nn.Module, enabled: bool = True):
    """The fast path for a training run of `model` (no-op when not `enabled`)."""
    with contextlib.ExitStack() as stack:
        if enabled:
            stack.enter_context(heap_allocations())
            stack.enter_context(fused_batchnorm(model))
        yield


# ----------------------------------------------------------------------------- allocation
def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextlib.contextmanager
def heap_allocations():
    """Serve big tensors from glibc's heap and keep freed pages for reuse, then give back.

    On exit ``mmap`` is allowed again at the threshold glibc's own dynamic rule settles
    at (32 MiB) and the unused heap is returned to the system. No-op off glibc.
    """
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_MAX, 65536)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_MAX)
        libc.malloc_trim(0)


# ----------------------------------------------------------------------------- BatchNorm
class BatchNormAct(torch.autograd.Function):
    """Training-mode BatchNorm2d (batch statistics) and activation `act`, one kernel each way.

    Updates the running statistics in place (as ``F.batch_norm`` does) when
    ``momentum >= 0``. Saves only the input and 4 x C statistics for the backward pass.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float,
                act: int):
        y, stats = fastkernels.load().bn_act_train(x, weight, bias, running_mean, running_var,
                                                   momentum, eps, act)
        ctx.save_for_backward(x, stats, weight)
        ctx.act = act
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, stats, weight = ctx.saved_tensors
        dy = dy.contiguous(memory_format=torch.channels_last)
        dx, dw, db = fastkernels.load().bn_act_backward(dy, x, stats, weight, ctx.act)
        return dx, dw, db, None, None, None, None, None


def fusable(bn: nn.BatchNorm2d, x: torch.Tensor) -> bool:
    """Whether the kernels take this call: a float32 channels_last CPU batch, more than
    one value per channel, affine BatchNorm with running statistics."""
    return (x.dim() == 4 and x.dtype == torch.float32 and x.device.type == "cpu"
            and x.is_contiguous(memory_format=torch.channels_last)
            and x.numel() > x.size(1) and bn.affine and bn.track_running_stats
            and bn.running_mean is not None and bn.weight.dtype == torch.float32)


def _fused_forward(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm then its activation (patched over ``bn.forward``)."""
    act = bn._fer_activation
    if fusable(bn, x) and bn.training:
        bn.num_batches_tracked.add_(1)
        momentum = (bn.momentum if bn.momentum is not None
                    else 1.0 / float(bn.num_batches_tracked))
        return BatchNormAct.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                  momentum, bn.eps, ACTIVATIONS.get(type(act), 0))
    if fusable(bn, x) and not (torch.is_grad_enabled() and x.requires_grad):
        return fastkernels.load().bn_act_eval(x, bn.weight, bn.bias, bn.running_mean,
                                              bn.running_var, bn.eps,
                                              ACTIVATIONS.get(type(act), 0))
    y = nn.BatchNorm2d.forward(bn, x)
    return type(act).forward(act, y) if act is not None else y


def _identity(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x


def fusion_plan(model: nn.Module) -> list[tuple[nn.BatchNorm2d, nn.Module | None]]:
    """Each BatchNorm2d of `model` with the ReLU/ReLU6 right after it in a Sequential."""
    follower: dict[int, nn.Module] = {}
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            for bn, act in zip(list(seq)[:-1], list(seq)[1:], strict=True):
                if type(bn) is nn.BatchNorm2d and type(act) in ACTIVATIONS:
                    follower[id(bn)] = act
    return [(m, follower.get(id(m))) for m in model.modules() if type(m) is nn.BatchNorm2d]


@contextlib.contextmanager
def fused_batchnorm(model: nn.Module):
    """Run `model`'s BatchNorm2d (+ activation) through the C++ kernels while inside.

    Patches the modules' ``forward`` (an instance attribute, removed on exit); the
    activation module passes its input through, as the BatchNorm applied it. Without
    the kernels (no compiler) nothing is patched.
    """
    plan = fusion_plan(model) if fastkernels.load() is not None else []
    for bn, act in plan:
        bn._fer_activation = act
        bn.forward = types.MethodType(_fused_forward, bn)
        if act is not None:
            act.forward = types.MethodType(_identity, act)
    try:
        yield
    finally:
        for bn, act in plan:
            del bn.forward, bn._fer_activation
            if act is not None:
                del act.forward
