"""Unstructured magnitude pruning, and what its mask costs in bytes.

Slimming (`fer_lib.prune`) removes whole channels, so the smaller network is dense and
its file simply shrinks. Unstructured pruning instead zeroes single weights, the
smallest in magnitude (Han et al., 2016), wherever they sit: the network keeps its
shape, and the zeros save bytes only if the file records *which* weights are zero (the
mask) and stores the others. This module prunes and counts those bytes honestly.

One pruned tensor is stored as

- its kept values, per-channel quantised as the dense export does them
  (`quantize.quantize_tensor`; int8 one byte each, int4 half a byte);
- its per-output-channel scales (float16, 2 B each), as in the dense file;
- its mask, in whichever of two encodings is smaller:
  a **bitmask**, one bit per weight (``np.packbits``), or **run lengths**, one byte per
  kept weight giving the zeros skipped since the previous one (the byte 255 means "255
  zeros, no weight yet", so a longer gap costs one more byte per 255 zeros).

The bitmask costs 1/8 byte for every weight, kept or not: at int8 (1 B a value) pruning
saves bytes only beyond 12.5 % zeros, at int4 (1/2 B) beyond 25 %. Run lengths cost a
byte per *kept* weight, so they win only when very few are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .quantize import QMAX, Quantized, dequantize, fold_batchnorm, quantize_tensor

SKIP = 255  # a run-length byte meaning "255 zeros, no weight yet"


def prunable(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights pruning may zero: every parameter with two or more dimensions (the
    convolutions' and the classifier's weights; biases and BatchNorm stay), by name."""
    return {name: p for name, p in model.named_parameters() if p.ndim >= 2}


def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global"
                    ) -> dict[str, torch.Tensor]:
    """Boolean masks (True = kept) zeroing the fraction `sparsity` of the smallest |w|.

    scope "global" ranks all `prunable` weights together (a layer of small weights may
    lose most of them); "layer" prunes each tensor by the same fraction. Ties at the
    threshold are kept, so at most `sparsity` of the weights are zeroed."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity is a fraction in [0, 1), got {sparsity}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope is 'global' or 'layer', got {scope!r}")
    weights = {n: p.detach().abs() for n, p in prunable(model).items()}

    def threshold(values: torch.Tensor) -> float:
        cut = int(sparsity * values.numel())
        return -1.0 if cut == 0 else float(values.flatten().kthvalue(cut).values)

    if scope == "global":
        every = torch.cat([w.flatten() for w in weights.values()])
        limit = threshold(every)
        return {n: w > limit for n, w in weights.items()}
    return {n: w > threshold(w) for n, w in weights.items()}


def stored_magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """`magnitude_masks` ranked on the weights as the file stores them, keyed by `model`'s
    own parameter names: BatchNorm folded into each convolution first.

    A convolution followed by BatchNorm can be scaled freely (the BatchNorm undoes it), so
    its raw weights say little about how much each one matters; the folded weights are
    the map the network computes. Folding scales each output channel by one factor, so a
    weight zeroed in the training network is zero in the folded one too, and stays zero
    while `apply_masks` is called after every step. Global ranking (one threshold)."""
    return magnitude_masks(fold_batchnorm(model), sparsity, "global")


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Zero the pruned weights of `model` in place (after every optimiser step while
    fine-tuning, so that pruned weights stay zero); returns the model."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].dtype))
    return model


def sparsity_of(masks: dict[str, torch.Tensor]) -> float:
    """The fraction of the masked weights that are zeroed."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total if total else 0.0


# ----------------------------------------------------------------------------- mask encodings
def encode_bitmask(mask: np.ndarray) -> np.ndarray:
    """Bool mask (any shape, n elements) -> uint8 (ceil(n / 8),), one bit per weight."""
    return np.packbits(np.asarray(mask, dtype=bool).ravel())


def decode_bitmask(bits: np.ndarray, count: int) -> np.ndarray:
    """Inverse of `encode_bitmask` for `count` weights: a flat bool array."""
    return np.unpackbits(bits, count=count).astype(bool)


def encode_runs(mask: np.ndarray) -> np.ndarray:
    """Bool mask -> uint8 run lengths: per kept weight, the zeros since the previous
    kept one (gaps of 255 or more spend a `SKIP` byte per 255 zeros first)."""
    kept = np.flatnonzero(np.asarray(mask, dtype=bool).ravel())
    gaps = np.diff(kept, prepend=-1) - 1
    skips, rest = np.divmod(gaps, SKIP)
    out = np.full(int(skips.sum()) + len(kept), SKIP, dtype=np.uint8)
    ends = np.cumsum(skips + 1) - 1  # where each kept weight's own byte goes
    out[ends] = rest
    return out


def decode_runs(runs: np.ndarray, count: int) -> np.ndarray:
    """Inverse of `encode_runs` for `count` weights: a flat bool array."""
    mask = np.zeros(count, dtype=bool)
    position = 0
    for byte in runs.tolist():
        if byte == SKIP:
            position += SKIP
        else:
            position += byte
            mask[position] = True
            position += 1
    return mask


# ----------------------------------------------------------------------------- storage
@dataclass(frozen=True)
class SparseTensor:
    """One pruned tensor as stored: `values` the kept weights' integers (flat, in order),
    `scales` per output channel (float16), the mask as `encoding` ("bitmask" or "runs")
    in `mask_bytes`."""

    scheme: str
    shape: tuple[int, ...]
    values: np.ndarray
    scales: np.ndarray
    encoding: str
    mask_bytes: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes on disk: values (int4 two per byte), scales, mask (container aside)."""
        value_bytes = len(self.values) if self.scheme == "int8" else (len(self.values) + 1) // 2
        return value_bytes + self.scales.nbytes + self.mask_bytes.nbytes


def encode(tensor: torch.Tensor, mask: torch.Tensor, scheme: str) -> SparseTensor:
    """Quantise the kept weights of `tensor` (zeros where `mask` is False) per output
    channel at `scheme` ("int8" or "int4") and store the mask in the smaller encoding."""
    if scheme not in QMAX:
        raise ValueError(f"sparse storage is for int8 or int4, not {scheme!r}")
    if tuple(mask.shape) != tuple(tensor.shape):
        raise ValueError(f"mask {tuple(mask.shape)} does not match tensor {tuple(tensor.shape)}")
    keep = mask.detach().cpu().numpy().astype(bool)
    q = quantize_tensor(tensor.detach() * torch.as_tensor(keep), scheme)
    bits, runs = encode_bitmask(keep), encode_runs(keep)
    encoding, stored = ("runs", runs) if runs.nbytes < bits.nbytes else ("bitmask", bits)
    return SparseTensor(scheme, q.shape, q.values.ravel()[keep.ravel()], q.scales,
                        encoding, stored)


def decode(sparse: SparseTensor) -> torch.Tensor:
    """The float32 tensor a `SparseTensor` stands for: zeros where pruned."""
    count = int(np.prod(sparse.shape))
    unpack = decode_runs if sparse.encoding == "runs" else decode_bitmask
    keep = unpack(sparse.mask_bytes, count)
    values = np.zeros(count, dtype=np.int8)
    values[keep] = sparse.values
    return dequantize(Quantized(sparse.scheme, sparse.shape, values.reshape(sparse.shape),
                                sparse.scales))


def dense_bytes(tensor: torch.Tensor, scheme: str) -> int:
    """Bytes of the same tensor stored dense at `scheme` (values and scales)."""
    count, channels = tensor.numel(), tensor.shape[0]
    return (count if scheme == "int8" else (count + 1) // 2) + 2 * channels


def state_bytes(model: nn.Module, precision: str, share: float = 0.0,
                scope: str = "global") -> int:
    """Bytes of `model`'s weights stored at `precision` ("int8" or "int4") after zeroing
    the fraction `share` of its smallest prunable weights: BatchNorm folded first (the
    file stores folded weights, so their magnitudes are ranked), pruned tensors stored
    sparse (`encode`), every other tensor dense as `quantize.export_npz` stores it
    (biases float16). Values, scales and masks only: the file's container (its zip
    headers and metadata, a few hundred bytes) is left out, the same for every share."""
    folded = fold_batchnorm(model)
    masks = magnitude_masks(folded, share, scope) if share > 0 else {}
    total = 0
    for name, tensor in folded.state_dict().items():
        if not tensor.is_floating_point():
            continue
        if name in masks:
            total += encode(tensor, masks[name], precision).nbytes
        elif tensor.ndim >= 2:
            total += dense_bytes(tensor, precision)
        else:
            total += 2 * tensor.numel()  # float16, as scheme_for keeps 1-D tensors
    return total


def pruned_summary(model: nn.Module, sparsity: float) -> dict:
    """What a run pruned to `sparsity` stores: the share of its prunable weights that are
    zero once BatchNorm is folded (at least `sparsity`), and its weights' bytes at int8
    and int4 dense and with the zeros left out (`state_bytes`: values, scales, masks)."""
    folded = prunable(fold_batchnorm(model))
    zeros = sum(int((w == 0).sum()) for w in folded.values())
    total = sum(w.numel() for w in folded.values())
    return {"zeroed": zeros / total,
            "weight_bytes": {p: {"dense": state_bytes(model, p), "sparse": state_bytes(
                model, p, sparsity)} for p in ("int8", "int4")}}
