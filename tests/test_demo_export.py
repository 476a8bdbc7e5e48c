"""The ONNX file of the "Try it" page: fer_lib's model at its precision, int8 kept as int8.

`fer_lib.deploy.export_onnx_at_precision` stores the weights as fer_lib stores them and
dequantizes them in the graph; these tests check, on synthetic inputs only (no data set,
no face), that the graph's weights are bit-identical to fer_lib's model at that precision
and that onnxruntime computes what fer_lib computes. book/_ext/demo_site.py is checked too:
the manifest and model it writes into the built site. The page itself is tested in
headless Chromium by tests/browser/test_demo.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import load, numpy_helper

import fer_lib
from fer_lib import models
from fer_lib.data import CLASS_NAMES
from fer_lib.deploy import export_onnx_at_precision, onnx_predict, onnx_session
from fer_lib.evaluate import PIXEL_MEAN, PIXEL_STD, predict_views
from fer_lib.quantize import PRECISIONS, QMAX, quantized_copy

REPO = Path(__file__).resolve().parents[1]


def graph_weights(path: Path) -> list[np.ndarray]:
    """The float32 weight and bias of each Conv and Gemm, in graph order, computed from
    the stored initializers the way the graph does (Cast, DequantizeLinear on axis 0)."""
    graph = load(str(path)).graph
    stored = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def value(name: str) -> np.ndarray:
        if name in stored:
            return stored[name]
        node = producer[name]
        if node.op_type == "Cast":
            return value(node.input[0]).astype(np.float32)
        assert node.op_type == "DequantizeLinear" and len(node.input) == 2  # zero point 0
        q, scale = value(node.input[0]), value(node.input[1])
        assert q.dtype == np.int8 and scale.dtype == np.float32
        rows = q.reshape(len(scale), -1).astype(np.float32) * scale[:, None]
        return rows.reshape(q.shape)

    return [value(name) for node in graph.node if node.op_type in ("Conv", "Gemm")
            for name in node.input[1:]]


def tta_probabilities(logits_plain: np.ndarray, logits_mirror: np.ndarray) -> np.ndarray:
    mean = (logits_plain + logits_mirror) / 2
    e = np.exp(mean - mean.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def onnx_tta_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    """What the page computes, in Python: normalise, image + mirror, average, softmax."""
    x = ((images.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD)[:, None]
    session = onnx_session(path, threads=1)
    return tta_probabilities(onnx_predict(session, x), onnx_predict(session, x[..., ::-1]))


def synthetic_images(n: int = 6, seed: int = 0) -> np.ndarray:
    """Grey gradients, gratings and noise (uint8 (n, 48, 48)): no face, no FER2013."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:48] / 47.0
    out = []
    for i in range(n):
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * (i + 1) * (x + 0.3 * i * y))
        image = 255 * (0.6 * pattern + 0.4 * x) + rng.normal(0, 20, (48, 48))
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(out)


def _random_mobilenet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = models.build("mobilenet_v2", width=0.2)
    with torch.no_grad():  # non-trivial BatchNorm, so folding has work to do
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_export_keeps_fer_lib_weights_at_each_precision(tmp_path, precision):
    model = _random_mobilenet()
    path = export_onnx_at_precision(model, tmp_path / "m.onnx", precision)
    reference = quantized_copy(model, precision)
    expected = [t.numpy() for t in reference.state_dict().values() if t.is_floating_point()]
    got = graph_weights(path)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, b)  # bit-identical
    stored = {str(numpy_helper.to_array(i).dtype) for i in load(str(path)).graph.initializer}
    assert ("int8" in stored) == (precision in QMAX)
    x = np.random.default_rng(1).standard_normal((3, *models.INPUT_SHAPE), dtype=np.float32)
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_predict(onnx_session(path, 1), x), want, atol=1e-4)


def test_submission_onnx_matches_fer_lib(tmp_path):
    """The file the page runs: the submission at its precision, checked on synthetic
    images through the page's pipeline against fer_lib's own flip-TTA logits."""
    submission = fer_lib.submission(225_000)
    path = export_onnx_at_precision(submission.result().model(), tmp_path / "sub.onnx",
                                    submission.precision)
    model = submission.model()
    expected = [t.numpy() for t in model.state_dict().values() if t.is_floating_point()]
    assert all(np.array_equal(a, b) for a, b in zip(graph_weights(path), expected, strict=True))
    images = synthetic_images()
    got = onnx_tta_probabilities(path, images)
    want = tta_probabilities(*predict_views(model, images))
    assert np.abs(got - want).max() <= 1e-3
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    if submission.precision in QMAX:  # int8 stored as int8: about a quarter of float32
        # (biases, scales and the graph itself stay a few kB, a larger share of a small
        # model's file, so the bound is against the float32 file, not the npz)
        fp32 = export_onnx_at_precision(submission.result().model(), tmp_path / "fp32.onnx",
                                        "fp32")
        assert path.stat().st_size < 0.35 * fp32.stat().st_size


def _demo_site_module():
    spec = importlib.util.spec_from_file_location("demo_site", REPO / "book/_ext/demo_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_site_writes_model_and_manifest(tmp_path):
    demo_site = _demo_site_module()
    manifest = demo_site.write_demo(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    submission = fer_lib.submission(225_000)
    assert (manifest["run"], manifest["precision"], manifest["bytes"]) == (
        submission.run, submission.precision, submission.bytes)
    assert manifest["class_names"] == list(CLASS_NAMES)
    assert (manifest["pixel_mean"], manifest["pixel_std"]) == (PIXEL_MEAN, PIXEL_STD)
    assert (tmp_path / "model.onnx").stat().st_size == manifest["onnx_bytes"]
    assert {"try_it.js", "try_it.css"} <= {p.name for p in tmp_path.iterdir()}
    runtime = manifest["runtime"]
    if runtime is not None:  # npm ci ran: the pinned version's files are there
        lock = json.loads((REPO / "package-lock.json").read_text())
        assert runtime["version"] == lock["packages"]["node_modules/onnxruntime-web"]["version"]
        assert all((tmp_path / "ort" / name).is_file() for name in demo_site.RUNTIME_FILES)
    # Only the demo's own files: never an image (no FER2013 face reaches the site).
    images = [p for p in tmp_path.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}]
    assert not images
