"""Real int8 inference (`fer_lib.int8`): calibration never sees a validation image, the
quantised graph is int8 where it claims to be, and scoring is the book's flip average."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fer_lib import models
from fer_lib.cli import main
from fer_lib.data import evaluation_sets, train_val_split
from fer_lib.deploy import export_onnx, onnx_predict, onnx_session
from fer_lib.evaluate import predict_logits
from fer_lib.int8 import (
    calibration_images,
    onnx_flip_logits,
    quantize_onnx,
    with_mirrors,
)
from fer_lib.quantize import export_npz, fold_batchnorm


def _model(width: float = 0.2) -> torch.nn.Module:
    """A small MobileNetV2 with non-trivial BatchNorm statistics (so folding matters)."""
    torch.manual_seed(0)
    model = models.build("mobilenet_v2", width=width)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _rows_of(images: np.ndarray, pool: np.ndarray) -> set[int]:
    keys = {img.tobytes(): i for i, img in enumerate(pool)}
    return {keys.get(img.tobytes(), -1) for img in images}


def test_calibration_images_are_seeded_training_rows_never_validation(small_fer):
    images, labels = small_fer.split("Training")
    train_rows, val_rows = train_val_split(labels)
    picked = calibration_images(small_fer, n=50, seed=3)
    rows = _rows_of(picked, images)
    assert len(picked) == 50 and -1 not in rows
    assert rows <= set(train_rows.tolist()) and not rows & set(val_rows.tolist())
    assert np.array_equal(picked, calibration_images(small_fer, n=50, seed=3))
    assert not np.array_equal(picked, calibration_images(small_fer, n=50, seed=4))


def test_calibration_refuses_more_images_than_the_training_rows(small_fer):
    with pytest.raises(ValueError, match="asked for 100,000"):
        calibration_images(small_fer, n=100_000)


def test_quantized_graph_runs_int8_convolutions_close_to_float(tmp_path, small_fer):
    model = _model()
    fp32 = export_onnx(fold_batchnorm(model), tmp_path / "fp32.onnx")
    int8 = quantize_onnx(fp32, tmp_path / "int8.onnx", calibration_images(small_fer, n=64))
    graph = onnx.load(int8).graph
    weights = {t.name: t for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    for conv in convs:  # every weight arrives through a per-channel int8 DequantizeLinear
        dq = next(n for n in graph.node if n.output[0] == conv.input[1])
        assert dq.op_type == "DequantizeLinear"
        assert weights[dq.input[0]].data_type == onnx.TensorProto.INT8
        out_channels = weights[dq.input[0]].dims[0]
        assert list(weights[dq.input[1]].dims) == [out_channels]
    # onnxruntime's optimiser fuses every DequantizeLinear -> Conv -> QuantizeLinear
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node]
    assert ops.count("QLinearConv") == len(convs) and "Conv" not in ops and "Clip" not in ops
    images = small_fer.split("PublicTest")[0]
    x = ((images.astype(np.float32) - 129.5) / 65.0)[:, None]
    a, b = onnx_predict(onnx_session(fp32, 1), x), onnx_predict(onnx_session(int8, 1), x)
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()


def test_with_mirrors_appends_each_image_mirrored():
    x = np.arange(2 * 48 * 48, dtype=np.float32).reshape(2, 1, 48, 48)
    both = with_mirrors(x)
    assert both.shape == (4, 1, 48, 48)
    assert np.array_equal(both[:2], x) and np.array_equal(both[3, 0, :, 0], x[1, 0, :, -1])


def test_onnx_flip_logits_score_as_the_book_does(tmp_path, small_fer):
    model = _model()
    session = onnx_session(export_onnx(fold_batchnorm(model), tmp_path / "m.onnx"), 1)
    images = small_fer.split("PrivateTest")[0]
    got = onnx_flip_logits(session, images, batch=32)
    expected = predict_logits(model, images, tta=True)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_fer_int8_writes_both_graphs_and_the_report(tmp_path, small_fer, sample_zip, capsys):
    path = tmp_path / "model.npz"
    export_npz(_model(0.1), path, "fp32")
    main(["int8", str(path), "-o", str(tmp_path / "out"), "--images", "40", "--repeats", "2",
          "--data", str(sample_zip)])
    report = json.loads((tmp_path / "out" / "int8.json").read_text())
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"fp32.onnx", "int8.onnx",
                                                              "int8.json"}
    assert report["run"] == "model" and report["calibration_images"] == 40
    for key in ("latency_ms", "latency_ms_flip_average"):
        assert set(report[key]) == {"fp32", "int8"}
        assert all(set(t) == {"1", "256"} and min(t.values()) > 0 for t in report[key].values())
    assert set(report["accuracy"]) == {"fp32", "int8", "int8_full_range"}
    assert "QLinearConv-dw" in report["op_ms_b256"]["int8"]
    assert "QLinearConv" not in report["op_ms_b256"]["fp32"]
    sets = evaluation_sets(small_fer)
    session = onnx_session(tmp_path / "out" / "fp32.onnx", 1)
    images, labels = sets["private"]
    expected = float((onnx_flip_logits(session, images).argmax(1) == labels).mean())
    assert report["accuracy"]["fp32"]["private"] == pytest.approx(expected)
    assert "int8 by onnxruntime" in capsys.readouterr().out


def test_fer_int8_refuses_a_bad_calibration_count_in_one_line(tmp_path, sample_zip):
    path = tmp_path / "model.npz"
    export_npz(_model(0.1), path, "fp32")
    with pytest.raises(SystemExit) as exited:
        main(["int8", str(path), "-o", str(tmp_path / "out"), "--images", "0",
              "--data", str(sample_zip)])
    err = str(exited.value.code)
    assert err.startswith("fer int8: error: calibration images: asked for 0") and "\n" not in err
    assert not (tmp_path / "out" / "fp32.onnx").exists()  # refused before any work


def test_the_browser_benchmark_reads_medians_and_the_logit_gap():
    """benchmarks/bench_web_int8.py: what the page returns becomes web.json's numbers."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_web_int8.py"
    spec = importlib.util.spec_from_file_location("bench_web_int8", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    logits = {"fp32": [0.1, 2.0, -1.0, 0, 0, 0, 0], "int8": [0.2, 1.9, -1.0, 0, 0, 0, 0]}
    raw = {"version": "1.30.0", "results": {
        "1": {"ms": {"fp32": [1.0, 2.0, 3.0, 4.0, 100.0], "int8": [2.0] * 5}, "logits": logits},
        "2": {"ms": {"fp32": [5.0] * 5, "int8": [9.0, 9.0, 9.0, 9.0, 9.0]}, "logits": logits}}}
    out = bench.summarise(raw)
    assert out["latency_ms"] == {"fp32": {"1": 3.0, "2": 5.0}, "int8": {"1": 2.0, "2": 9.0}}
    assert out["latency_iqr_ms"]["fp32"]["1"] == 2.0  # 4 - 2: one slow call moves no median
    assert out["max_logit_gap"] == pytest.approx(0.1) and out["same_class"]
    assert out["calls"] == 5 and "1.30.0" in out["runtime"]
