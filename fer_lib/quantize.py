"""BatchNorm folding, fp32/fp16/int8/int4 weight export, and the homework's byte budget.

An exported model is ONE ``.npz``: a zip archive of ``.npy`` members, *stored*, not
deflated (the homework banned generic compressors, so every byte saved must come from
the representation itself), and written deterministically (fixed member dates, fixed
order), so the same weights always give the same bytes: the file a run's result records
by its sha256 (`file_sha256`) is the file `fer package` ships. It holds

- ``__meta__``: uint8 bytes of a compact JSON header: format, version, family, hparams
  (enough for ``models.build(family, **hparams)``), precision, ``folded: true``, the
  stored dtype of each blob, ``[shape, scheme]`` per tensor of the BN-folded model's
  state dict (in its order) and a digest of the tensor names (`names_digest`: the
  names themselves would cost ~1.6 kB of a tiny model's 32 kB; the rebuilt model
  supplies them, and the digest catches a model whose names no longer match);
- one concatenated blob per stored dtype: ``f`` float32, ``h`` float16, ``q`` int8,
  ``p`` uint8 (int4 values, two per byte).

Each tensor takes its slice of the blobs in header order, so offsets are implied, not
stored. Blobs rather than one member per tensor because every npz member costs about
250 bytes of zip and npy headers: ~20 kB for the 82 tensors of a MobileNetV2, which
would sink a 32 kB model.

Schemes: ``fp32`` and ``fp16`` store values as they are; ``int8`` and ``int4`` store
per-output-channel symmetric integers (``|q| <= 127`` or ``<= 7``) plus one float16
scale per output channel in ``h``. Scales are rounded *up* to float16, so no weight
leaves the integer range and every weight is within ``scale / 2`` of its stored value;
float16 halves their cost against float32 at no accuracy cost. Biases and other 1-D
tensors stay float16 at int8/int4: they are one number per channel, and an integer
grid with its own scale would save nothing.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fer_lib import models

PRECISIONS = ("fp32", "fp16", "int8", "int4")
FORMAT = "fer_lib.npz"
VERSION = 1

# The homework's limits on the bytes of model files, and the book's tiny challenge.
STRONG_BUDGET = 225_000
SIMPLE_BUDGET = 650_000
TINY_BUDGET = 32_768
# About this many of the strong baseline's bytes may be code (the TA slides), the rest weights.
CODE_ALLOWANCE = 25_000

QMAX = {"int8": 127, "int4": 7}  # symmetric: -QMAX..QMAX, so 0 is exact and no bias term
BLOB_DTYPES = {"f": "float32", "h": "float16", "q": "int8", "p": "uint8"}
META_KEY = "__meta__"


class ExportError(ValueError):
    """A file that is not a readable, consistent fer_lib export."""


class BudgetExceeded(ValueError):
    """Model files whose total size is over a byte budget."""


# --- BatchNorm folding ------------------------------------------------------------------
def _fold_into(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
    """Absorb eval-mode `bn` into `layer` in place: ``bn(layer(x)) == layer'(x)``."""
    if bn.running_mean is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    with torch.no_grad():
        gain = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            gain = gain * bn.weight
        bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * gain
        if bn.bias is not None:
            new_bias = new_bias + bn.bias
        layer.weight.mul_(gain.reshape(-1, *[1] * (layer.weight.ndim - 1)))
        layer.bias = nn.Parameter(new_bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Deep copy of `model` in eval mode with every BatchNorm folded into its producer.

    Folds ``Conv2d -> BatchNorm2d`` and ``Linear -> BatchNorm1d`` pairs that sit next to
    each other in an ``nn.Sequential`` (the ``conv_bn`` blocks and the hw3_cnn head); the
    BatchNorm becomes ``nn.Identity`` and the layer gains a bias. Eval-mode outputs are
    unchanged up to float rounding. ``.family``/``.hparams`` are kept.
    """
    folded = copy.deepcopy(model).eval()
    pairs = ((nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d))
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for first, second in pairwise(list(seq._modules)):
            layer, bn = seq._modules[first], seq._modules[second]
            if any(isinstance(layer, a) and isinstance(bn, b) for a, b in pairs):
                _fold_into(layer, bn)
                seq._modules[second] = nn.Identity()
    return folded


# --- Quantization -----------------------------------------------------------------------
@dataclass(frozen=True)
class Quantized:
    """One tensor as stored: `values` (fp32/fp16 as-is; int8 values in -qmax..qmax for the
    int schemes, shape `shape`) and per-output-channel float16 `scales` (shape[0],)."""

    scheme: str
    shape: tuple[int, ...]
    values: np.ndarray
    scales: np.ndarray | None = None


def _fp16_ceil(x: np.ndarray) -> np.ndarray:
    """Smallest float16 >= each float32 in `x` (so a scale never shrinks when stored)."""
    h = x.astype(np.float16)
    low = h.astype(np.float32) < x
    h[low] = np.nextafter(h[low], np.float16(np.inf))
    if not np.isfinite(h).all():
        raise ValueError("a per-channel scale overflows float16: weights far too large to quantize")
    return h


def quantize_tensor(tensor: torch.Tensor, scheme: str) -> Quantized:
    """Quantize one float tensor under `scheme` (one of PRECISIONS)."""
    w = tensor.detach().cpu().float().numpy()
    shape = tuple(w.shape)
    if scheme == "fp32":
        return Quantized(scheme, shape, w.copy())
    if scheme == "fp16":
        return Quantized(scheme, shape, w.astype(np.float16))
    if scheme not in QMAX:
        raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(PRECISIONS)}")
    rows = w.reshape(shape[0], -1)
    amax = np.abs(rows).max(axis=1)
    scales = _fp16_ceil(np.where(amax > 0, amax / QMAX[scheme], 1.0).astype(np.float32))
    q = np.rint(rows / scales.astype(np.float32)[:, None])
    q = np.clip(q, -QMAX[scheme], QMAX[scheme]).astype(np.int8).reshape(shape)
    return Quantized(scheme, shape, q, scales)


def dequantize(q: Quantized) -> torch.Tensor:
    """The float32 tensor a `Quantized` stands for (what inference will use)."""
    if q.scales is None:
        return torch.from_numpy(q.values.astype(np.float32).reshape(q.shape))
    rows = q.values.reshape(q.shape[0], -1).astype(np.float32)
    return torch.from_numpy((rows * q.scales.astype(np.float32)[:, None]).reshape(q.shape))


def scheme_for(tensor: torch.Tensor, precision: str) -> str:
    """Scheme a tensor gets at `precision`: 1-D tensors (biases) stay fp16 below fp16."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    return "fp16" if precision in QMAX and tensor.ndim < 2 else precision


def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Floating-point state-dict entries (drops BatchNorm's int64 batch counters)."""
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


def quantize_state(model: nn.Module, precision: str) -> dict[str, Quantized]:
    """BN-fold `model`, then quantize each float tensor of its state dict (in order)."""
    return {name: quantize_tensor(t, scheme_for(t, precision))
            for name, t in _float_state(fold_batchnorm(model)).items()}


def _load_dequantized(folded: nn.Module, state: dict[str, Quantized]) -> nn.Module:
    # Start from the model's own state so non-float buffers (batch counters) stay put.
    full = folded.state_dict()
    full.update({k: dequantize(q) for k, q in state.items()})
    folded.load_state_dict(full)
    return folded.eval()


def quantized_copy(model: nn.Module, precision: str) -> nn.Module:
    """BN-folded copy of `model` whose weights are the dequantized values of `precision`:
    in memory, exactly the model that `load_model(export_npz(...))` rebuilds."""
    folded = fold_batchnorm(model)
    return _load_dequantized(folded, quantize_state(folded, precision))


# --- int4 packing -----------------------------------------------------------------------
def pack_int4(values: np.ndarray) -> np.ndarray:
    """int values in -8..7, any shape (n elements) -> uint8 (ceil(n / 2),), two per byte.

    Element 2i goes in the low nibble of byte i, 2i+1 in the high nibble (two's
    complement); an odd length is padded with a zero nibble.
    """
    flat = np.asarray(values).astype(np.int8).ravel()
    if flat.size and (flat.min() < -8 or flat.max() > 7):
        raise ValueError("int4 values must lie in -8..7")
    nibbles = (flat.astype(np.uint8) & 0x0F)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of `pack_int4`: uint8 (ceil(count / 2),) -> int8 (count,) in -8..7."""
    packed = np.asarray(packed, dtype=np.uint8).ravel()
    if packed.size != (count + 1) // 2:
        raise ValueError(f"{packed.size} bytes cannot hold exactly {count} int4 values")
    nibbles = np.empty(packed.size * 2, dtype=np.uint8)
    nibbles[0::2], nibbles[1::2] = packed & 0x0F, packed >> 4
    return ((nibbles[:count].astype(np.int8) ^ 8) - 8).astype(np.int8)


# --- The file format --------------------------------------------------------------------
def _jsonable(value):
    """hparams -> JSON values (tuples become lists; `_from_json` turns them back)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value):
    # No family takes a list, so every JSON list was a tuple (e.g. mobilenet_v2 `hidden`).
    return tuple(_from_json(v) for v in value) if isinstance(value, list) else value


def names_digest(names: Iterable[str]) -> str:
    """12 hex digits of SHA-1 over the tensor names: the header stores this instead of the
    names (about 20 bytes each), yet a renamed or reordered model still fails loudly."""
    return hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]


def _blob_parts(q: Quantized) -> list[tuple[str, np.ndarray]]:
    """(blob, flat array) pieces one tensor contributes, in the order they are read."""
    if q.scheme == "fp32":
        return [("f", q.values.ravel())]
    if q.scheme == "fp16":
        return [("h", q.values.ravel())]
    return [("q" if q.scheme == "int8" else "p", q.values.ravel()), ("h", q.scales)]


def export_npz(model: nn.Module, path: str | os.PathLike, precision: str) -> int:
    """Write `model` (needs ``.family``/``.hparams``) at `precision`; return bytes on disk."""
    if not hasattr(model, "family") or not hasattr(model, "hparams"):
        raise ValueError("model must come from models.build (it needs .family and .hparams)")
    state = quantize_state(model, precision)
    blobs: dict[str, list[np.ndarray]] = {}
    for q in state.values():
        for blob, part in _blob_parts(q):
            blobs.setdefault(blob, []).append(part)
    arrays = {k: np.concatenate(v) for k, v in blobs.items()}
    if "p" in arrays:  # int4 values were kept unpacked (as int8) until now
        arrays["p"] = pack_int4(arrays["p"])
    arrays = {k: a.astype(BLOB_DTYPES[k], copy=False) for k, a in arrays.items()}
    meta = {"format": FORMAT, "version": VERSION, "family": model.family,
            # sorted: a model built from a stored config (keys sorted) and the same model
            # built by the trainer (keys in the catalogue's order) give the same bytes
            "hparams": _jsonable(dict(sorted(model.hparams.items()))),
            "precision": precision, "folded": True,
            "blobs": {k: BLOB_DTYPES[k] for k in arrays}, "names": names_digest(state),
            "tensors": [[list(q.shape), q.scheme] for q in state.values()]}
    header = json.dumps(meta, separators=(",", ":")).encode()
    path = Path(path)
    write_npz(path, {META_KEY: np.frombuffer(header, dtype=np.uint8), **arrays})
    return file_bytes(path)


# Every member's date: np.savez stamps the current time, so two exports of one model
# would differ in bytes. 1980-01-01 is the earliest date a zip can hold.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez` to `path`, but byte-for-byte reproducible: members stored (no deflate),
    in the given order, each dated `_ZIP_EPOCH`; `np.load` reads it like any npz."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o600 << 16  # what np.savez gives a member
            zf.writestr(info, buffer.getvalue())


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes: how a result records the exact model files it scored."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_meta(path: Path, npz) -> dict:
    if META_KEY not in npz.files:
        raise ExportError(f"{path}: no {META_KEY} header; not a fer_lib export")
    try:
        meta = json.loads(npz[META_KEY].tobytes().decode())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ExportError(f"{path}: unreadable {META_KEY} header ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ExportError(f"{path}: format is not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise ExportError(f"{path}: unsupported version {meta.get('version')!r}")
    missing = {"family", "hparams", "precision", "tensors"} - set(meta)
    if missing:
        raise ExportError(f"{path}: header lacks {', '.join(sorted(missing))}")
    if meta.get("folded") is not True:
        raise ExportError(f"{path}: header does not say the weights are BN-folded")
    if not (isinstance(meta["hparams"], dict) and isinstance(meta["tensors"], list)):
        raise ExportError(f"{path}: header's hparams or tensors are malformed")
    return meta


class _Reader:
    """Hands out consecutive slices of the blobs, as the tensors in the header ask."""

    def __init__(self, path: Path, blobs: dict[str, np.ndarray]):
        self.path, self.blobs = path, dict(blobs)
        if "p" in blobs:  # unpack once; the last nibble may be padding
            self.blobs["p"] = unpack_int4(blobs["p"], 2 * blobs["p"].size)
        self.offsets = dict.fromkeys(self.blobs, 0)

    def take(self, blob: str, count: int) -> np.ndarray:
        start = self.offsets.get(blob, 0)
        self.offsets[blob] = start + count
        if blob not in self.blobs or start + count > self.blobs[blob].size:
            raise ExportError(f"{self.path}: blob {blob!r} is too short for the header's tensors")
        return self.blobs[blob][start:start + count]

    def check_consumed(self) -> None:
        """Every stored value belongs to some tensor (one int4 padding nibble allowed)."""
        spare = {k: v.size - self.offsets[k] for k, v in self.blobs.items()}
        if any(n != 0 and not (k == "p" and n == 1) for k, n in spare.items()):
            raise ExportError(f"{self.path}: blobs hold values the header does not describe "
                              f"({spare})")


def _decode(path: Path, index: int, entry, reader: _Reader) -> Quantized:
    try:
        shape, scheme = tuple(int(d) for d in entry[0]), entry[1]
    except (TypeError, ValueError, IndexError, KeyError):
        raise ExportError(f"{path}: malformed entry {entry!r} for tensor {index}") from None
    count = int(np.prod(shape))
    if scheme in ("fp32", "fp16"):
        return Quantized(scheme, shape, reader.take("f" if scheme == "fp32" else "h", count))
    if scheme not in QMAX:
        raise ExportError(f"{path}: tensor {index} has unknown scheme {scheme!r}")
    values = reader.take("q" if scheme == "int8" else "p", count)
    return Quantized(scheme, shape, values, reader.take("h", shape[0]))


def _read_state(path: Path) -> tuple[dict, list[Quantized], _Reader]:
    """Header, tensors (in state-dict order) and their reader; damage -> ExportError."""
    try:
        # Our own file object: np.load leaks the one it opens when the zip is broken.
        with open(path, "rb") as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ExportError(f"{path}: a bare .npy array, not an npz archive")
            with npz:
                meta = _read_meta(path, npz)
                blobs = {k: npz[k].ravel() for k in npz.files if k != META_KEY}
    except (ExportError, FileNotFoundError):  # a missing file is not a damaged one
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ExportError(f"{path}: not a readable npz ({type(err).__name__}: {err})") from None
    for key, array in blobs.items():
        if BLOB_DTYPES.get(key) != str(array.dtype):
            raise ExportError(f"{path}: unexpected member {key!r} of dtype {array.dtype}")
    reader = _Reader(path, blobs)
    tensors = [_decode(path, i, entry, reader) for i, entry in enumerate(meta["tensors"])]
    return meta, tensors, reader


def _rebuild_folded(path: Path, meta: dict) -> nn.Module:
    try:
        hparams = {k: _from_json(v) for k, v in meta["hparams"].items()}
        return fold_batchnorm(models.build(meta["family"], **hparams))
    except (TypeError, ValueError, AttributeError) as err:
        raise ExportError(f"{path}: cannot rebuild the model ({err})") from None


def _match(path: Path, meta: dict, expected: dict[str, torch.Tensor],
           tensors: list[Quantized]) -> dict[str, Quantized]:
    """Pair the file's tensors with the rebuilt model's names, or say what does not fit."""
    names = list(expected)
    if len(tensors) < len(names):
        raise ExportError(f"{path}: missing tensors {', '.join(names[len(tensors):])}")
    if len(tensors) > len(names) or meta.get("names") != names_digest(names):
        raise ExportError(f"{path}: its {len(tensors)} tensors are not those of a "
                          f"{meta['family']} model built from its hparams ({len(names)} tensors, "
                          "different names); was models.py changed since the export?")
    for name, q in zip(names, tensors, strict=True):
        if tuple(expected[name].shape) != q.shape:
            raise ExportError(f"{path}: tensor {name!r} has shape {q.shape}, the "
                              f"{meta['family']} model expects {tuple(expected[name].shape)}")
    return dict(zip(names, tensors, strict=True))


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild the (BN-folded, eval-mode) model stored by `export_npz` from the file alone.

    Builds ``meta.family`` with ``meta.hparams``, folds its BatchNorm structure and loads
    the dequantized weights. Raises ExportError naming the file and the problem.
    """
    path = Path(path)
    meta, tensors, reader = _read_state(path)
    folded = _rebuild_folded(path, meta)
    state = _match(path, meta, _float_state(folded), tensors)
    reader.check_consumed()  # after `_match`: a missing tensor is the better diagnosis
    return _load_dequantized(folded, state)


# --- Byte budget ------------------------------------------------------------------------
def file_bytes(path: str | os.PathLike) -> int:
    """Size of a file on disk in bytes."""
    return os.path.getsize(path)


def check_budget(paths_or_bytes: str | os.PathLike | int | Iterable, budget: int) -> int:
    """Total bytes of model files (paths, or sizes as ints); raise if over `budget` bytes.

    BudgetExceeded names each file with its bytes, the total and the budget.
    """
    items = ([paths_or_bytes] if isinstance(paths_or_bytes, (str, os.PathLike, int))
             else list(paths_or_bytes))
    sizes = [(f"item {i}", int(x)) if isinstance(x, (int, np.integer)) else (str(x), file_bytes(x))
             for i, x in enumerate(items)]
    total = sum(n for _, n in sizes)
    if total > budget:
        listing = ", ".join(f"{name}: {n:,} B" for name, n in sizes)
        raise BudgetExceeded(f"model files total {total:,} B, over the budget of {budget:,} B "
                             f"by {total - budget:,} B ({listing})")
    return total
