"""Unstructured magnitude pruning and the bytes of its mask (fer_lib.sparsity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_lib import sparsity
from fer_lib.models import build
from fer_lib.quantize import dequantize, quantize_tensor


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("mobilenet_v2", width=0.25)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_masks_zero_the_asked_fraction_of_the_smallest_weights(model, scope):
    masks = sparsity.magnitude_masks(model, 0.6, scope)
    assert sparsity.sparsity_of(masks) == pytest.approx(0.6, abs=0.01)
    weights = sparsity.prunable(model)
    if scope == "global":  # every kept weight is at least as large as every pruned one
        kept = torch.cat([weights[n].abs()[m] for n, m in masks.items()])
        cut = torch.cat([weights[n].abs()[~m] for n, m in masks.items()])
        assert kept.min() >= cut.max()
    else:  # each layer loses the same share
        for mask in masks.values():
            assert 1 - mask.float().mean() == pytest.approx(0.6, abs=1 / mask.numel() + 1e-6)


def test_no_sparsity_keeps_everything_and_bad_arguments_say_which(model):
    assert sparsity.sparsity_of(sparsity.magnitude_masks(model, 0.0)) == 0.0
    with pytest.raises(ValueError, match="fraction"):
        sparsity.magnitude_masks(model, 1.0)
    with pytest.raises(ValueError, match="scope"):
        sparsity.magnitude_masks(model, 0.5, "row")


def test_apply_masks_zeroes_exactly_the_pruned_weights():
    torch.manual_seed(1)
    net = build("mobilenet_v2", width=0.25)
    masks = sparsity.magnitude_masks(net, 0.5)
    sparsity.apply_masks(net, masks)
    for name, weight in sparsity.prunable(net).items():
        assert not weight[~masks[name]].any()


@pytest.mark.parametrize("density", [0.0, 0.001, 0.02, 0.3, 0.9, 1.0])
def test_both_mask_encodings_round_trip(density):
    rng = np.random.default_rng(3)
    mask = rng.random(3000) < density
    mask[-1] = density == 1.0  # a trailing zero unless everything is kept
    assert np.array_equal(sparsity.decode_bitmask(sparsity.encode_bitmask(mask), 3000), mask)
    runs = sparsity.encode_runs(mask)
    assert np.array_equal(sparsity.decode_runs(runs, 3000), mask)
    # one byte per kept weight, plus one per 255 zeros skipped in a row
    assert len(runs) >= mask.sum()


def test_a_long_gap_costs_one_byte_per_255_zeros():
    mask = np.zeros(1000, dtype=bool)
    mask[[0, 600]] = True  # 599 zeros between: two SKIP bytes and 89
    assert sparsity.encode_runs(mask).tolist() == [0, 255, 255, 89]


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_a_stored_pruned_tensor_decodes_to_the_quantised_masked_weights(scheme):
    torch.manual_seed(2)
    weight = torch.randn(16, 8, 3, 3)
    mask = weight.abs() > 0.8
    stored = sparsity.encode(weight, mask, scheme)
    expected = dequantize(quantize_tensor(weight * mask, scheme))
    assert torch.equal(sparsity.decode(stored), expected)
    assert not sparsity.decode(stored)[~mask].any()


@pytest.mark.parametrize("scheme, breakeven", [("int8", 1 / 8), ("int4", 1 / 4)])
def test_pruning_saves_bytes_only_past_the_bitmask_break_even(scheme, breakeven):
    """The bitmask costs 1/8 byte per weight: below the break-even share of zeros a
    pruned tensor takes more bytes than the dense one, above it fewer."""
    torch.manual_seed(4)
    weight = torch.randn(64, 64 * 9)
    dense = sparsity.dense_bytes(weight, scheme)
    for share, cheaper in ((breakeven - 0.05, False), (breakeven + 0.05, True)):
        mask = torch.rand(weight.shape) >= share
        stored = sparsity.encode(weight, mask, scheme)
        assert stored.encoding == "bitmask"
        assert (stored.nbytes < dense) == cheaper, (share, stored.nbytes, dense)


def test_run_lengths_win_when_few_weights_are_kept():
    weight = torch.randn(32, 288)
    mask = torch.zeros_like(weight, dtype=torch.bool)
    mask.view(-1)[::40] = True  # 2.5 % kept
    stored = sparsity.encode(weight, mask, "int8")
    assert stored.encoding == "runs"
    assert stored.mask_bytes.nbytes < weight.numel() / 8


def test_encode_refuses_float_schemes_and_mismatched_masks():
    weight = torch.randn(4, 4)
    with pytest.raises(ValueError, match="int8 or int4"):
        sparsity.encode(weight, weight > 0, "fp16")
    with pytest.raises(ValueError, match="does not match"):
        sparsity.encode(weight, torch.ones(2, 2, dtype=torch.bool), "int8")


def test_state_bytes_without_pruning_is_the_dense_exports_payload(model, tmp_path):
    """Unpruned, the count equals the dense npz's arrays (values, scales, biases)."""
    import zipfile

    from fer_lib.quantize import export_npz

    for precision in ("int8", "int4"):
        path = tmp_path / f"{precision}.npz"
        export_npz(model, path, precision)
        with zipfile.ZipFile(path) as z:
            payload = sum(i.file_size - 128 for i in z.infolist()  # .npy header: 128 B
                          if i.filename != "__meta__.npy")
        assert sparsity.state_bytes(model, precision) == payload


def test_state_bytes_shrink_with_pruning_but_less_than_the_share_pruned(model):
    dense = sparsity.state_bytes(model, "int8")
    half = sparsity.state_bytes(model, "int8", 0.5)
    assert half < dense and dense - half < 0.5 * dense
