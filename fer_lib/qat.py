"""Quantisation-aware training: train the network with the weights its file will hold.

Post-training quantisation rounds weights the network never saw rounded: at int4 each
output channel keeps 15 levels, and the 200k student loses about 2 points, smaller ones
more. Quantisation-aware training (Jacob et al. 2018; Krishnamoorthi 2018) keeps a float
copy of every weight, the *latent* weight, and runs each forward pass with its quantised
value instead. Rounding has no useful gradient (zero almost everywhere), so the backward
pass treats it as the identity, the straight-through estimator (Bengio et al. 2013): the
gradient computed at the quantised weight updates the latent one. Small updates pile up
in the latent weight until it crosses a rounding boundary, so the network learns which
side of each boundary its weights should sit on.

Here the fake quantisation is exactly `fer_lib.quantize`'s export:

- the network is trained BN-folded (`quantize.fold_batchnorm`), since the file holds the
  folded weights: QAT fine-tunes a trained network, whose BatchNorm statistics are
  folded in first (the folded network has no batch statistics left to learn);
- every tensor of two or more dimensions is rounded per output channel to the symmetric
  grid ``scale * q``, ``|q| <= 127`` (int8) or ``<= 7`` (int4), with ``scale`` the
  channel's largest magnitude over the grid's top, rounded up to float16;
- 1-D tensors (biases) are rounded to float16, as the file stores them;
- the latent weights themselves are rounded to float16 first, as ``weights-bn.npz``
  stores a run's weights, so the run re-scored from its stored weights is the network
  that trained.

`strip` removes the fake quantisation and leaves the latent weights; `export_npz` at the
same precision then writes exactly the integers and scales the network trained with
(a test checks it bit for bit). The scales follow the weights (each channel's maximum);
learned step sizes (LSQ, Esser et al. 2020) are not used here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import models
from .quantize import QMAX, fold_batchnorm, scheme_for

# "fp32": the same folded fine-tune without rounding: the control at equal epochs.
QAT_PRECISIONS = ("fp32", "fp16", "int8", "int4")


def fp16_ceil(x: torch.Tensor) -> torch.Tensor:
    """float32 -> float32: the smallest float16 value >= each element (`quantize`'s
    rounding of a scale: no weight is pushed off the integer grid by its stored scale)."""
    h = x.half()
    low = h.float() < x
    return torch.where(low, torch.nextafter(h, torch.tensor(float("inf"), dtype=h.dtype)),
                       h).float()


def quantized_values(w: torch.Tensor, scheme: str) -> torch.Tensor:
    """`w` as the file stores it under `scheme` (float32 values, same shape), no gradient:
    per-output-channel integers times float16 scales for int8/int4, float16 for fp16."""
    w = w.detach()
    if scheme == "fp32":
        return w
    if scheme == "fp16":
        return w.half().float()
    qmax = QMAX[scheme]
    rows = w.reshape(w.shape[0], -1)
    amax = rows.abs().amax(dim=1)
    scale = fp16_ceil(torch.where(amax > 0, amax / qmax, torch.ones_like(amax)))
    q = torch.clamp(torch.round(rows / scale[:, None]), -qmax, qmax)
    return (q * scale[:, None]).reshape(w.shape)


class FakeQuantize(nn.Module):
    """A parametrization: the weight the forward pass sees is its stored value under
    `scheme` (of the latent weight rounded to float16); the gradient passes straight
    through to the latent weight."""

    def __init__(self, scheme: str):
        super().__init__()
        self.scheme = scheme

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        stored = quantized_values(latent.detach().half().float(), self.scheme)
        return latent + (stored - latent).detach()  # value: stored; gradient: identity

    def extra_repr(self) -> str:
        return self.scheme


def prepare(model: nn.Module, precision: str) -> nn.Module:
    """A BN-folded copy of `model` (from ``models.build``) in training mode, each float
    parameter fake-quantised as `export_npz(..., precision)` stores it (see the module's
    docstring); "fp32": folded only, the control. Keeps ``.family``/``.hparams``."""
    if precision not in QAT_PRECISIONS:
        raise ValueError(f"qat precision {precision!r}: expected one of "
                         f"{', '.join(QAT_PRECISIONS)}")
    folded = fold_batchnorm(model).train()
    if precision == "fp32":
        return folded
    for module in list(folded.modules()):
        for name, param in list(module.named_parameters(recurse=False)):
            parametrize.register_parametrization(
                module, name, FakeQuantize(scheme_for(param, precision)))
    return folded


def strip(model: nn.Module) -> nn.Module:
    """The network of a `prepare`d model without its fake quantisation, in eval mode:
    plain parameters holding the latent weights (float16-rounded), which `export_npz` at
    the trained precision turns into exactly the values the network trained with.

    Built afresh rather than by removing the parametrizations from a deep copy: a copy
    shares its parametrized class with the original, and removing them from one would
    break the other."""
    plain = fold_batchnorm(models.build(model.family, **model.hparams))
    state = {key.replace("parametrizations.", "").replace(".original", ""): value
             for key, value in model.state_dict().items()}
    plain.load_state_dict({k: v.detach().half().float() if v.is_floating_point() else v
                           for k, v in state.items()})
    return plain.eval()
