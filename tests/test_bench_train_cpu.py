"""The CPU training benchmark's alternatives compute what they stand in for."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fer_lib import catalogue

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_cpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train_cpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 12])
def test_shifted_depthwise_is_the_depthwise_convolution(bench, stride, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(9, 9, 3, stride=stride, padding=1, groups=9, bias=False)
    x = torch.randn(4, 9, size, size).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(bench.shifted_depthwise(x, conv), conv(x), rtol=1e-5,
                               atol=1e-6)


def test_depthwise_inputs_are_the_students_depthwise_layers(bench):
    cfg = catalogue.get("student-200k-kd").train
    layers = bench.depthwise_inputs(cfg)
    model_layers = [m for m in bench.build(cfg.family, **cfg.model_args).modules()
                    if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert len(layers) == len(model_layers) > 0
    for conv, shape in layers:
        assert shape[:2] == (cfg.batch_size, conv.in_channels)
