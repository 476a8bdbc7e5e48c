"""Deployment numbers: size on disk at each precision, FLOPs, and CPU latency.

Latency is measured for eager PyTorch and for onnxruntime (CPUExecutionProvider) on the
same BN-folded fp32 graph: folding is free at deployment time, and timing one graph
under two runtimes compares the runtimes, not the graphs. (onnxruntime would fuse
Conv + BatchNorm by itself; eager PyTorch would not.)

`export_onnx_at_precision` writes the ONNX file the book's browser demo runs: the weights
stored as fer_lib stores them at a precision (int8 values and per-channel scales), so the
graph computes with exactly the weights of `fer_lib.quantize.quantized_copy`.
"""

from __future__ import annotations

import os
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
from fer_lib.quantize import (
    PRECISIONS,
    Quantized,
    dequantize,
    export_npz,
    fold_batchnorm,
    quantize_state,
    quantized_copy,
)

OPSET = 17


def latency_ms(fn: Callable[[np.ndarray], object], batch: int, *, repeats: int = 20,
               warmup: int = 3, seed: int = 0) -> float:
    """Median wall time of ``fn(x)`` per image, in ms, for x float32 (batch, 1, 48, 48)."""
    return latency_stats(fn, batch, repeats=repeats, warmup=warmup, seed=seed)["median"]


def latency_stats(fn: Callable[[np.ndarray], object], batch: int = 1, *, repeats: int = 100,
                  warmup: int = 10, seed: int = 0) -> dict[str, float]:
    """Wall time of ``fn(x)`` per image in ms, over `repeats` timed calls after `warmup`
    untimed ones, for x float32 (batch, 1, 48, 48): ``{"median", "q1", "q3", "iqr",
    "runs"}`` (quartiles of the per-call times divided by `batch`)."""
    if repeats < 1 or batch < 1:
        raise ValueError(f"need repeats >= 1 and batch >= 1, got {repeats} and {batch}")
    x = np.random.default_rng(seed).standard_normal((batch, *models.INPUT_SHAPE),
                                                    dtype=np.float32)
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    q1, median, q3 = (1000.0 * float(q) / batch for q in np.percentile(times, [25, 50, 75]))
    return {"median": median, "q1": q1, "q3": q3, "iqr": q3 - q1, "runs": repeats}


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


def _stored_initializers(name: str, q: Quantized) -> tuple[list, list]:
    """(initializers, nodes) that give the float32 tensor `name` from its stored form.

    int8/int4: the integers as an int8 tensor and the float16 scales, widened to float32
    by a ``Cast`` (exact), through one per-output-channel ``DequantizeLinear`` (axis 0,
    zero point 0): ``int8 * scale`` in float32, the very product that
    `fer_lib.quantize.dequantize` takes. fp16: the float16 values through a ``Cast`` to
    float32 (exact). fp32: the values as they are.
    """
    from onnx import TensorProto, helper, numpy_helper

    if q.scheme == "fp32":
        return [numpy_helper.from_array(q.values.astype(np.float32).reshape(q.shape), name)], []
    if q.scheme == "fp16":
        values = numpy_helper.from_array(q.values.astype(np.float16).reshape(q.shape),
                                         f"{name}_fp16")
        return [values], [helper.make_node("Cast", [values.name], [name], to=TensorProto.FLOAT)]
    # int4 values travel unpacked in int8: ONNX's INT4 needs opset 21, the export uses 17.
    values = numpy_helper.from_array(q.values.astype(np.int8).reshape(q.shape), f"{name}_int8")
    scales = numpy_helper.from_array(q.scales.astype(np.float16), f"{name}_scale_fp16")
    return [values, scales], [
        helper.make_node("Cast", [scales.name], [f"{name}_scale"], to=TensorProto.FLOAT),
        helper.make_node("DequantizeLinear", [values.name, f"{name}_scale"], [name], axis=0)]


def _compact(graph) -> None:
    """Shrink `graph` in place without changing what it computes: one ``Constant`` node
    per distinct value (the exporter writes Clip's 0 and 6 once per ReLU6), short tensor
    names (``t0``, ``t1``, ...; the input and output keep theirs), no node names."""
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    alias, first, nodes = {}, {}, []
    for node in graph.node:
        if node.op_type == "Constant":
            key = b"".join(a.SerializeToString() for a in node.attribute)
            if key in first:
                alias[node.output[0]] = first[key]
                continue
            first[key] = node.output[0]
        nodes.append(node)
    names: dict[str, str] = {}

    def short(name: str) -> str:
        name = alias.get(name, name)
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for node in nodes:
        node.name, node.doc_string = "", ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for init in graph.initializer:
        init.name = short(init.name)
    graph.ClearField("value_info")
    graph.ClearField("node")
    graph.node.extend(nodes)


def export_onnx_at_precision(model: nn.Module, path: str | os.PathLike,
                             precision: str) -> Path:
    """Write `model` (from ``models.build``, BatchNorm not yet folded) at `precision` as
    ONNX, its weights kept in fer_lib's stored form (`_stored_initializers`).

    Same input ``x`` and output ``logits`` as `export_onnx`. The graph's dequantized
    weights are bit-identical to those of ``quantized_copy(model, precision)`` (fp32:
    the BN-folded model), so it computes what fer_lib's model at that precision computes,
    up to float32 rounding in the runtime's kernels. int4 weights are stored unpacked (one
    byte each): the file is larger than the ``.npz``, the values the same.
    """
    import onnx

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    state = quantize_state(model, precision)
    path = Path(path)
    export_onnx(quantized_copy(model, precision), path)
    proto = onnx.load(str(path))
    graph = proto.graph
    by_value = {(tuple(q.shape), dequantize(q).numpy().tobytes()): n for n, q in state.items()}
    kept, added_nodes, done = [], [], set()
    for init in graph.initializer:
        array = onnx.numpy_helper.to_array(init)
        name = init.name if init.name in state else by_value.get(
            (array.shape, array.astype(np.float32).tobytes()))
        if name is None or name in done:
            kept.append(init)  # a constant of the graph's own, not a weight
            continue
        initializers, nodes = _stored_initializers(init.name, state[name])
        kept += initializers
        added_nodes += nodes
        done.add(name)
    if done != set(state):
        raise RuntimeError(f"export_onnx_at_precision: weights missing from the exported "
                           f"graph: {sorted(set(state) - done)}")
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    nodes = added_nodes + list(graph.node)  # the weights' producers first: topological
    graph.ClearField("node")
    graph.node.extend(nodes)
    _compact(graph)
    onnx.helper.set_model_props(proto, {"fer_lib.precision": precision,
                                        "fer_lib.family": str(getattr(model, "family", ""))})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


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


def latency_table(named_models: dict[str, nn.Module], *, threads: int = 1, batch: int = 1,
                  repeats: int = 100, warmup: int = 10):
    """CPU latency of each model (BN folded, fp32) in eager PyTorch and onnxruntime.

    One row per model: ``model``, ``torch median ms``, ``torch IQR ms``, ``ort median
    ms``, ``ort IQR ms`` (per image at `batch`, `threads` pinned threads in both
    runtimes) and ``timed runs``. All torch timings run before any onnxruntime session
    exists: onnxruntime's spinning worker threads would otherwise steal the cores.
    """
    import pandas as pd

    folded = {name: fold_batchnorm(model).cpu().float().eval()
              for name, model in named_models.items()}
    rows = {name: {"model": name} for name in folded}
    with _torch_threads(threads):
        for name, model in folded.items():
            stats = latency_stats(_torch_fn(model), batch, repeats=repeats, warmup=warmup)
            rows[name].update({"torch median ms": stats["median"], "torch IQR ms": stats["iqr"]})
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, model) in enumerate(folded.items()):
            session = onnx_session(export_onnx(model, Path(tmp) / f"m{i}.onnx"), threads)
            stats = latency_stats(lambda x, s=session: onnx_predict(s, x), batch,
                                  repeats=repeats, warmup=warmup)
            rows[name].update({"ort median ms": stats["median"], "ort IQR ms": stats["iqr"],
                               "timed runs": repeats})
    return pd.DataFrame(list(rows.values()))


def machine_description(threads: int | None = None) -> str:
    """The CPU's model name, the threads used of those available, and runtime versions."""
    import platform

    import onnxruntime

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    used = f"{threads} of {os.cpu_count()} logical CPUs" if threads else \
        f"{os.cpu_count()} logical CPUs"
    return (f"{name}, {used}, PyTorch {torch.__version__.split('+')[0]}, "
            f"onnxruntime {onnxruntime.__version__}")
