"""Model families: shapes, self-description, parameter targeting, bad configs, FLOPs."""

from __future__ import annotations

import math

import pytest
import torch

from fer_lib.models import (
    FAMILIES,
    INPUT_SHAPE,
    NUM_CLASSES,
    build,
    count_flops,
    count_params,
    summary,
    width_for_params,
)

# Big families are slow on 2 CPU cores at full width: test them narrow only.
SMALL_FAMILIES = ("cnn", "mobilenet_v1", "mobilenet_v2")
BIG_FAMILIES = tuple(f for f in FAMILIES if f not in SMALL_FAMILIES)


def _forward(model: torch.nn.Module, batch: int = 3) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, *INPUT_SHAPE))


def test_every_family_is_covered():
    assert set(SMALL_FAMILIES) | set(BIG_FAMILIES) == set(FAMILIES)


@pytest.mark.parametrize("width", [0.05, 0.25, 1.0])
@pytest.mark.parametrize("family", SMALL_FAMILIES)
def test_output_shape_small_families(family, width):
    assert _forward(build(family, width=width)).shape == (3, NUM_CLASSES)


@pytest.mark.parametrize("family", BIG_FAMILIES)
def test_output_shape_big_families(family):
    assert _forward(build(family, width=0.25), batch=2).shape == (2, NUM_CLASSES)


def test_build_describes_itself():
    model = build("mobilenet_v2", width=0.3, dropout=0.1)
    assert model.family == "mobilenet_v2"
    assert model.hparams == {"width": 0.3, "dropout": 0.1}
    again = build(model.family, **model.hparams)
    assert count_params(again) == count_params(model)


@pytest.mark.parametrize("family, target", [("mobilenet_v1", 1_000), ("cnn", 10_000),
                                            ("mobilenet_v2", 100_000)])
def test_width_for_params_hits_target(family, target):
    width = width_for_params(family, target)
    assert abs(count_params(build(family, width=width)) - target) <= 0.1 * target


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="no_such_net"):
        build("no_such_net")


@pytest.mark.parametrize("width", [-1.0, 0.0, math.nan, math.inf])
def test_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        build("cnn", width=width)


def test_unknown_hyperparameter_is_named():
    with pytest.raises(ValueError, match="colour"):
        build("mobilenet_v1", colour=3)


def test_bad_target_params():
    with pytest.raises(ValueError, match="target"):
        width_for_params("cnn", 0)


def test_flops_positive_and_grow_with_width():
    flops = [count_flops(build("mobilenet_v2", width=w)) for w in (0.25, 0.5, 1.0)]
    assert flops[0] > 0
    assert flops == sorted(flops) and len(set(flops)) == 3


def test_count_flops_keeps_training_mode():
    model = build("cnn", width=0.1).train()
    count_flops(model)
    assert model.training


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("family", ["mobilenet_v2", "resnet"])
def test_summary_table_matches_param_count(family, depth):
    model = build(family, width=0.25)
    table = summary(model, depth=depth)
    assert list(table.columns) == ["layer", "output shape", "params"]
    assert table["params"].sum() == count_params(model)
    assert table["output shape"].iloc[-1] == (NUM_CLASSES,)


def test_mobilenet_v2_hidden_override():
    base = build("mobilenet_v2", width=0.25)
    blocks = sum(1 for m in base.modules() if type(m).__name__ == "InvertedResidual")
    slim = build("mobilenet_v2", width=0.25, hidden=(4,) * blocks)
    assert count_params(slim) < count_params(base)
    assert _forward(slim).shape == (3, NUM_CLASSES)
    for bad in [(4,) * (blocks - 1), (0,) + (4,) * (blocks - 1)]:
        with pytest.raises(ValueError, match="hidden"):
            build("mobilenet_v2", width=0.25, hidden=bad)


def test_mobilenet_v2_bad_expansion():
    with pytest.raises(ValueError, match="expansion"):
        build("mobilenet_v2", expansion=0)
