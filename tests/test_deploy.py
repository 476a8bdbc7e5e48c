"""Deployment numbers: every key present and positive; onnxruntime agrees with PyTorch."""

import numpy as np
import torch

from fer_lib import models
from fer_lib.deploy import deployment_numbers, export_onnx, latency_ms, onnx_predict, onnx_session
from fer_lib.quantize import PRECISIONS, fold_batchnorm


def test_deployment_numbers_has_every_key_positive():
    model = models.build("mobilenet_v2", width=0.2)
    row = deployment_numbers(model, batch_sizes=(1, 4), repeats=2, warmup=1, threads=1)
    expected = {"params", "flops", *(f"bytes_{p}" for p in PRECISIONS),
                "torch_ms_b1", "torch_ms_b4", "ort_ms_b1", "ort_ms_b4"}
    assert set(row) == expected
    assert all(row[k] > 0 for k in expected)
    assert row["params"] == models.count_params(model)
    assert row["bytes_fp32"] > row["bytes_fp16"] > row["bytes_int8"] > row["bytes_int4"]


def test_onnxruntime_matches_pytorch_on_a_batch(tmp_path):
    torch.manual_seed(0)
    model = models.build("hw3_cnn", width=0.1)
    with torch.no_grad():  # non-trivial BN statistics, so the exported graph has work to do
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model = fold_batchnorm(model)
    session = onnx_session(export_onnx(model, tmp_path / "m.onnx"), threads=1)
    x = np.random.default_rng(0).standard_normal((5, *models.INPUT_SHAPE), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = onnx_predict(session, x)
    assert got.shape == (5, 7)  # a batch size the export never saw: the axis is dynamic
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_latency_is_per_image():
    calls = []
    ms = latency_ms(lambda x: calls.append(x.shape), 8, repeats=3, warmup=2)
    assert ms >= 0 and len(calls) == 5 and calls[0] == (8, *models.INPUT_SHAPE)
