"""Real int8 inference: static post-training quantisation with onnxruntime.

`fer_lib.quantize` stores weights as int8 but multiplies in float32: it saves bytes, not
time. Here the arithmetic itself is int8. onnxruntime's `quantize_static` rewrites the
BN-folded float32 graph in QDQ form (a QuantizeLinear/DequantizeLinear pair around every
tensor), and its graph optimiser fuses each ``DequantizeLinear -> Conv -> QuantizeLinear``
into one ``QLinearConv`` that multiplies uint8 activations by int8 weights and adds in
int32 (Jacob et al. 2018). ReLU6 disappears into the output range of the convolution
before it: an activation clipped to [0, 6] needs no Clip once its uint8 grid spans
exactly [0, 6].

Every real value is ``scale * (q - zero_point)``. Weights get one scale per output
channel and zero point 0 (symmetric); activations get one scale and zero point per
tensor, chosen from the ranges the tensor takes on calibration images: Training rows
only, seeded, never a validation or test image (the numbers we select and report on).

``reduce_range``: on x86 CPUs without VNNI, the u8 x s8 multiply-add instruction
(``vpmaddubsw``) sums two products into int16 and saturates when both are large; with
7-bit weights it cannot. `int8_report` measures both: the full range's accuracy is kept
as ``int8_full_range``, the graph it times is the 7-bit one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import paths
from .data import FER2013, SPLIT_SEED, VAL_FRACTION, evaluation_sets, train_val_split
from .deploy import export_onnx, machine_description, onnx_predict, onnx_session
from .evaluate import SCORE_BATCH, accuracy, to_input
from .quantize import fold_batchnorm

CALIBRATION_IMAGES = 1_000
CALIBRATION_SEED = 0
LATENCY_BATCHES = (1, 256)
THREADS = 2
METHODS = ("minmax", "percentile", "entropy")
REPORT = "int8.json"
STORED = "int8"  # results/int8/<run>/int8.json: the committed reports (`stored_report`)
# results/int8/<run>/web.json: the same two graphs timed in onnxruntime-web, in Chromium
# (benchmarks/bench_web_int8.py --write; `stored_web_report`)
WEB_REPORT = "web.json"


def calibration_images(data: FER2013, n: int = CALIBRATION_IMAGES,
                       seed: int = CALIBRATION_SEED, val_fraction: float = VAL_FRACTION,
                       split_seed: int = SPLIT_SEED) -> np.ndarray:
    """uint8 (n, 48, 48): `n` Training images drawn with `seed` from the rows a run
    trains on (`train_val_split` with these arguments): never a validation image."""
    images, labels = data.split("Training")
    train_rows, _ = train_val_split(labels, val_fraction, split_seed)
    if not 1 <= n <= len(train_rows):
        raise ValueError(f"calibration images: asked for {n:,}, the training rows hold "
                         f"{len(train_rows):,}")
    rows = np.sort(np.random.default_rng(seed).choice(train_rows, n, replace=False))
    return images[rows]


def _calibration_reader(images: np.ndarray, batch: int = 100):
    """An onnxruntime CalibrationDataReader over `images` (uint8), as model inputs."""
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        def __init__(self):
            x = to_input(_tensor(images)).numpy()
            self.batches = iter([{"x": x[i:i + batch]} for i in range(0, len(x), batch)])

        def get_next(self):
            return next(self.batches, None)

    return Batches()


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images))


def quantize_onnx(fp32_path: str | os.PathLike, int8_path: str | os.PathLike,
                  images: np.ndarray, *, method: str = "minmax",
                  reduce_range: bool = True) -> Path:
    """Write the static int8 (QDQ) version of the float32 ONNX model at `fp32_path`:
    int8 weights with per-output-channel scales, uint8 activations whose ranges come
    from `images` (uint8 (N, 48, 48), calibration only) by `method` (`METHODS`)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: expected one of {', '.join(METHODS)}")
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"  # shapes inferred, graph simplified
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(str(prepared), str(int8_path), _calibration_reader(images),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        reduce_range=reduce_range,
                        calibrate_method={"minmax": CalibrationMethod.MinMax,
                                          "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[method])
    return Path(int8_path)


def with_mirrors(x: np.ndarray) -> np.ndarray:
    """float32 (B, 1, 48, 48) -> (2B, 1, 48, 48): the batch, then each image mirrored."""
    return np.concatenate([x, x[..., ::-1]])


def onnx_flip_logits(session, images: np.ndarray, batch: int = SCORE_BATCH) -> np.ndarray:
    """float32 (N, 7): the average of the logits of each uint8 image (N, 48, 48) and of
    its mirror image, the book's one way of scoring (`evaluate.score`)."""
    x = to_input(_tensor(images)).numpy()
    out = []
    for i in range(0, len(x), batch):
        both = onnx_predict(session, with_mirrors(x[i:i + batch]))
        half = len(both) // 2
        out.append((both[:half] + both[half:]) / 2)
    return np.concatenate(out)


def onnx_accuracies(path: str | os.PathLike, sets: dict, threads: int = THREADS) -> dict:
    """``{set: accuracy}`` of the ONNX model at `path` with flip averaging, for `sets`
    as `data.evaluation_sets` gives them."""
    session = onnx_session(path, threads)
    return {name: accuracy(onnx_flip_logits(session, images), labels)
            for name, (images, labels) in sets.items()}


def _timing_session(path: str | os.PathLike, threads: int):
    """A session for timing beside another: its threads sleep between runs instead of
    spinning, so that they take no core from the graph timed next."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_graphs(paths: dict[str, Path], *, threads: int = THREADS,
                batches: tuple[int, ...] = LATENCY_BATCHES, flips: bool = False,
                repeats: int = 30) -> dict[str, dict[str, dict[str, float]]]:
    """ms per image of each ONNX graph in `paths`, timed in turns (one call of each graph,
    then the next round), so that a machine growing busier or quieter during the
    measurement slows every graph alike: ``{"median": {graph: {batch: ms}}, "iqr":
    {...}}``. With `flips`, each image runs with its mirror (the flip average's cost).
    Batch 1 gets four times the `repeats`, after 5 untimed calls of each graph."""
    sessions = {name: _timing_session(p, threads) for name, p in paths.items()}
    times = {name: {} for name in paths}
    for batch in batches:
        x = np.random.default_rng(0).standard_normal((batch, 1, 48, 48), dtype=np.float32)
        x = with_mirrors(x) if flips else x
        taken = {name: [] for name in sessions}
        for round_ in range(5 + (4 * repeats if batch == 1 else repeats)):
            for name, session in sessions.items():
                start = time.perf_counter()
                onnx_predict(session, x)
                if round_ >= 5:
                    taken[name].append(1000.0 * (time.perf_counter() - start) / batch)
        for name, ms in taken.items():
            q1, median, q3 = np.percentile(ms, [25, 50, 75])
            times[name][str(batch)] = (float(median), float(q3 - q1))
    return {"median": {n: {b: t[0] for b, t in bs.items()} for n, bs in times.items()},
            "iqr": {n: {b: t[1] for b, t in bs.items()} for n, bs in times.items()}}


def op_times(path: str | os.PathLike, *, batch: int = 256, threads: int = THREADS,
             repeats: int = 10) -> dict[str, float]:
    """Where a graph's time goes: ms per batch of `batch` images spent in each kind of
    operator, from onnxruntime's profiler, averaged over `repeats` calls after 3 untimed
    ones. Kinds are the optimised graph's operator types (``Conv``, ``QLinearConv``,
    ``ReorderInput``, ...), with ``-dw`` for depthwise (grouped) convolutions."""
    import onnx
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((batch, 1, 48, 48), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        groups = {node.name: max([a.i for a in node.attribute if a.name == "group"] or [1])
                  for node in onnx.load(options.optimized_model_filepath).graph.node}
        for _ in range(3):
            onnx_predict(session, x)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(repeats):
            onnx_predict(session, x)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        node = name[:-len("_kernel_time")]
        kind = event["args"]["op_name"] + ("-dw" if groups.get(node, 1) > 1 else "")
        totals[kind] = totals.get(kind, 0.0) + event["dur"] / 1000.0 / repeats
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def int8_report(run: str, model: nn.Module, data: FER2013, out_dir: str | os.PathLike, *,
                split: tuple[float, int] = (VAL_FRACTION, SPLIT_SEED), n: int = CALIBRATION_IMAGES,
                seed: int = CALIBRATION_SEED, method: str = "minmax",
                threads: int = THREADS, repeats: int = 30) -> dict:
    """Quantise `model` (from run `run`), score and time both graphs, write the report.

    Writes ``out_dir/fp32.onnx`` (BatchNorm folded), ``out_dir/int8.onnx`` and
    ``out_dir/int8.json``: the calibration, the accuracy of both graphs on val, public and
    private (flip averaged), their latencies in ms per image at `LATENCY_BATCHES` (one
    view, and with the flip average), the threads and the machine. Time it on a quiet
    machine: the latencies are only as good as the idle cores they ran on.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = calibration_images(data, n, seed, *split)  # checks `n` before any long work
    paths = {"fp32": export_onnx(fold_batchnorm(model).float(), out / "fp32.onnx")}
    paths["int8"] = quantize_onnx(paths["fp32"], out / "int8.onnx", images, method=method)
    sets = evaluation_sets(data, *split)
    full = quantize_onnx(paths["fp32"], out / "int8-full-range.onnx", images, method=method,
                         reduce_range=False)
    report = {"run": run, "calibration_images": n, "calibration_seed": seed,
              "calibration_method": method, "reduce_range": True,
              "bytes": {k: p.stat().st_size for k, p in paths.items()},
              "accuracy": {k: onnx_accuracies(p, sets, threads) for k, p in paths.items()}
              | {"int8_full_range": onnx_accuracies(full, sets, threads)}}
    full.unlink()  # scored, not shipped: its weights saturate on CPUs without VNNI
    # The timings last, with nothing else running in this process.
    timed = time_graphs(paths, threads=threads, repeats=repeats)
    flipped = time_graphs(paths, threads=threads, repeats=repeats, flips=True)
    report |= {"latency_ms": timed["median"], "latency_iqr_ms": timed["iqr"],
               "latency_ms_flip_average": flipped["median"],
               "op_ms_b256": {k: op_times(p, threads=threads) for k, p in paths.items()},
               "threads": threads, "machine": machine_description(threads)}
    (out / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    return report


def describe(report: dict) -> str:
    """The report as a short table for the terminal."""
    lines = [f"{report['run']}: int8 by onnxruntime, calibrated on "
             f"{report['calibration_images']:,} Training images ({report['calibration_method']})",
             f"{'graph':6s} {'bytes':>9s} {'val':>7s} {'public':>7s} {'private':>7s} "
             + " ".join(f"{'ms b' + b:>8s}" for b in report["latency_ms"]["fp32"])]
    for graph in report["latency_ms"]:
        acc = report["accuracy"][graph]
        times = " ".join(f"{t:8.3f}" for t in report["latency_ms"][graph].values())
        lines.append(f"{graph:6s} {report['bytes'][graph]:9,d} {acc['val']:7.4f} "
                     f"{acc['public']:7.4f} {acc['private']:7.4f} {times}")
    full = report["accuracy"]["int8_full_range"]
    lines.append(f"8-bit weights (no reduce_range): val {full['val']:.4f} public "
                 f"{full['public']:.4f} private {full['private']:.4f}")
    lines.append(f"ms per image, median, {report['threads']} threads, one view; the flip "
                 "average: " + ", ".join(
                     f"{g} " + "/".join(f"{t:.3f}" for t in v.values())
                     for g, v in report["latency_ms_flip_average"].items()))
    return "\n".join(lines)


def stored_report(run: str, results_dir: str | os.PathLike | None = None) -> dict:
    """The committed `int8_report` of `run` (``results/int8/<run>/int8.json``, written by
    ``fer int8 RUN -o results/int8/RUN``); FileNotFoundError naming the command if absent."""
    return _stored(run, REPORT, "no int8 report; run `fer int8 {run} -o {folder}` on a "
                   "quiet machine", results_dir)


def stored_web_report(run: str, results_dir: str | os.PathLike | None = None) -> dict:
    """The committed browser timings of `run`'s two ONNX graphs (``web.json`` beside its
    `stored_report`): ``latency_ms`` and ``latency_iqr_ms`` {graph: {batch: ms}} with
    batches "1" and "2" (a face, a face with its mirror), ``max_logit_gap``,
    ``same_class``, ``runtime``, ``calls``. FileNotFoundError naming the benchmark."""
    return _stored(run, WEB_REPORT, "no browser timings; run `python benchmarks/"
                   "bench_web_int8.py --onnx-dir {folder} --write`", results_dir)


def _stored(run: str, name: str, missing: str, results_dir) -> dict:
    """``results/int8/<run>/<name>`` read as JSON; FileNotFoundError with `missing` (a
    format string of `run` and `folder`) when it is not there."""
    path = Path(results_dir or paths.results_dir()) / STORED / run / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: " + missing.format(run=run, folder=path.parent))
    return json.loads(path.read_text())
