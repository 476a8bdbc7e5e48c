"""Quantisation-aware training (`fer_lib.qat`): the forward pass sees exactly the weights
the file stores, the gradient reaches the latent weights, and a QAT run re-scored from
its stored weights is the network that trained."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from fer_lib import catalogue as catalogue_module
from fer_lib import models
from fer_lib.data import train_val_split
from fer_lib.evaluate import accuracy, predict_logits
from fer_lib.experiments import load_or_train
from fer_lib.qat import FakeQuantize, fp16_ceil, prepare, quantized_values, strip
from fer_lib.quantize import (
    _fp16_ceil,
    dequantize,
    export_npz,
    load_model,
    quantize_state,
    quantize_tensor,
    quantized_copy,
)


def _weights(seed: int = 0) -> torch.Tensor:
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(seed))
    w[2] = 0.0  # a dead channel: its scale must not divide by zero
    return w


def test_fp16_ceil_is_the_export_rounding_of_a_scale():
    x = torch.rand(10_000, generator=torch.Generator().manual_seed(1)) * 3
    assert torch.equal(fp16_ceil(x), torch.from_numpy(_fp16_ceil(x.numpy()).astype(np.float32)))
    assert (fp16_ceil(x) >= x).all()


@pytest.mark.parametrize("scheme", ["int8", "int4", "fp16"])
def test_fake_quantised_values_are_the_exported_ones(scheme):
    w = _weights()
    assert torch.equal(quantized_values(w, scheme), dequantize(quantize_tensor(w, scheme)))


def test_gradient_passes_straight_through_to_the_latent_weight():
    latent = _weights().requires_grad_()
    seen = FakeQuantize("int4")(latent)
    assert torch.equal(seen.detach(), quantized_values(latent.detach().half().float(), "int4"))
    upstream = torch.randn_like(seen)
    seen.backward(upstream)
    assert torch.equal(latent.grad, upstream)
    assert len(torch.unique(seen.detach()[0])) <= 15  # int4: at most 15 levels a channel


def _trained_like(family: str = "mobilenet_v2", width: float = 0.2) -> torch.nn.Module:
    torch.manual_seed(0)
    model = models.build(family, width=width)
    with torch.no_grad():  # BatchNorm statistics a trained network would have
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("precision", ["int4", "int8"])
def test_export_holds_exactly_the_values_the_network_trained_with(tmp_path, precision):
    qat = prepare(_trained_like(), precision)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in qat.modules())
    with torch.no_grad():  # a few "updates" so the latent weights are not the folded ones
        for p in qat.parameters():
            p.add_(0.01 * torch.randn_like(p))
    stored = quantize_state(strip(qat), precision)
    for name, q in stored.items():  # every tensor, bit for bit
        assert torch.equal(_seen(qat, name), dequantize(q)), name
    export_npz(strip(qat), tmp_path / "m.npz", precision)
    x = torch.randn(4, *models.INPUT_SHAPE)
    with torch.no_grad():
        np.testing.assert_allclose(load_model(tmp_path / "m.npz")(x).numpy(),
                                   qat.eval()(x).numpy(), atol=1e-5)


def _seen(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The tensor the forward pass uses for state-dict entry `name` (``0.0.weight``)."""
    module_name, _, attribute = name.rpartition(".")
    return getattr(model.get_submodule(module_name), attribute).detach()


def test_fp32_arm_is_folded_and_unrounded():
    model = _trained_like()
    control = prepare(model, "fp32")
    x = torch.randn(3, *models.INPUT_SHAPE)
    with torch.no_grad():
        np.testing.assert_allclose(control.eval()(x).numpy(), model(x).numpy(), atol=1e-4)
    assert not any("original" in k for k in control.state_dict())


def test_unknown_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="'int3'"):
        prepare(_trained_like(), "int3")


def test_a_qat_run_rescored_from_its_stored_weights_is_the_network_that_trained(
        mini, small_fer, tmp_path, monkeypatch):
    catalogue, results = mini
    shutil.copytree(results, tmp_path / "results")
    student = catalogue["stu"]
    exp = dataclasses.replace(student, name="stu-qat4", group="qat", teacher=None,
                              slim_from="stu", precision="int4",
                              train=dataclasses.replace(student.train, qat="int4"))
    monkeypatch.setattr(catalogue_module, "experiments", lambda: {**catalogue, exp.name: exp})
    result = load_or_train(exp, small_fer, results_dir=tmp_path / "results",
                           runs_dir=tmp_path / "runs", device="cpu", quiet=True)
    model = result.model()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    images, labels = small_fer.split("Training")  # the trainer's validation rows
    _, val = train_val_split(labels, exp.train.val_fraction, exp.train.split_seed)
    rescored = accuracy(predict_logits(quantized_copy(model, "int4"), images[val]), labels[val])
    assert rescored == pytest.approx(result.history[-1]["val_acc"])
