"""Deployment numbers: size on disk at each precision, FLOPs, and CPU latency.

Latency is measured for eager PyTorch and for onnxruntime (CPUExecutionProvider) on the
same BN-folded fp32 graph: folding is free at deployment time, and timing one graph
under two runtimes compares the runtimes, not the graphs. (onnxruntime would fuse
Conv + BatchNorm by itself; eager PyTorch would not.)
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fer_lib import models
from fer_lib.quantize import PRECISIONS, export_npz, fold_batchnorm

OPSET = 17


def latency_ms(fn: Callable[[np.ndarray], object], batch: int, *, repeats: int = 20,
               warmup: int = 3, seed: int = 0) -> float:
    """Median wall time of ``fn(x)`` per image, in ms, for x float32 (batch, 1, 48, 48)."""
    x = np.random.default_rng(seed).standard_normal((batch, *models.INPUT_SHAPE),
                                                    dtype=np.float32)
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / batch


def export_onnx(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write `model` (eval mode) as ONNX with a dynamic batch axis: input ``x``
    (B, 1, 48, 48) float32 -> ``logits`` (B, 7).

    Uses the TorchScript exporter (``dynamo=False``), which needs nothing beyond onnx;
    falls back to the dynamo exporter if that one is unavailable or fails.
    """
    model = model.eval()
    dummy = torch.zeros(2, *models.INPUT_SHAPE)
    names = {"input_names": ["x"], "output_names": ["logits"]}
    try:
        with warnings.catch_warnings():  # torch deprecates this exporter; it still works
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=OPSET,
                              dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                              **names)
    except Exception:  # whatever broke the legacy exporter, the dynamo one may manage
        batch = torch.export.Dim("batch", min=1, max=4096)
        # opset 18: the dynamo exporter's native opset; asking for 17 only adds a conversion
        torch.onnx.export(model, (dummy,), str(path), dynamo=True, external_data=False,
                          opset_version=18, dynamic_shapes=({0: batch},), **names)
    return Path(path)


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """onnxruntime InferenceSession on the CPU (`threads` intra-op threads, None = ORT's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_predict(session, x: np.ndarray) -> np.ndarray:
    """Logits (B, 7) float32 for float32 `x` (B, 1, 48, 48) from an onnxruntime session."""
    return session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]


@contextmanager
def _torch_threads(threads: int | None):
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _torch_fn(model: nn.Module) -> Callable[[np.ndarray], torch.Tensor]:
    @torch.no_grad()
    def run(x: np.ndarray) -> torch.Tensor:
        return model(torch.from_numpy(x))
    return run


def deployment_numbers(model: nn.Module, *, batch_sizes: tuple[int, ...] = (1, 64),
                       repeats: int = 20, warmup: int = 3,
                       threads: int | None = None) -> dict[str, float]:
    """Size, cost and CPU speed of `model` (from ``models.build``), as one flat row.

    Keys: ``params``, ``flops`` (per image), ``bytes_<precision>`` (size of the
    `export_npz` file, for each of PRECISIONS), ``torch_ms_b<B>`` and ``ort_ms_b<B>``
    (median ms per image at batch B, eager PyTorch and onnxruntime on the BN-folded
    fp32 model; `threads` CPU threads, None = each runtime's default).
    """
    folded = fold_batchnorm(model).cpu().float()
    row: dict[str, float] = {"params": models.count_params(model),
                             "flops": models.count_flops(folded)}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in PRECISIONS:
            row[f"bytes_{precision}"] = export_npz(model, Path(tmp) / f"{precision}.npz",
                                                   precision)
        session = onnx_session(export_onnx(folded, Path(tmp) / "model.onnx"), threads)
    # All torch timings first: onnxruntime's worker threads keep spinning for a while
    # after each run and would steal the cores from torch if the two were interleaved.
    with _torch_threads(threads):
        for batch in batch_sizes:
            row[f"torch_ms_b{batch}"] = latency_ms(_torch_fn(folded), batch,
                                                   repeats=repeats, warmup=warmup)
    for batch in batch_sizes:
        row[f"ort_ms_b{batch}"] = latency_ms(lambda x: onnx_predict(session, x), batch,
                                             repeats=repeats, warmup=warmup)
    return row
