"""BN folding, quantization, the npz export format, and the byte budget."""

import json
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from fer_lib import models
from fer_lib.quantize import (
    PRECISIONS,
    TINY_BUDGET,
    BudgetExceeded,
    ExportError,
    check_budget,
    dequantize,
    export_npz,
    fold_batchnorm,
    load_model,
    pack_int4,
    quantize_tensor,
    quantized_copy,
    unpack_int4,
)

SMALL = [("mobilenet_v2", {"width": 0.2}), ("cnn", {"width": 0.1}),
         ("hw3_cnn", {"width": 0.1}), ("resnet", {"width": 0.1, "blocks": (1, 1, 1, 1)})]


def randomized(family: str, seed: int = 0, **hparams) -> nn.Module:
    """A built model in eval mode with random BN statistics and affine parameters, so
    that folding has something to fold."""
    torch.manual_seed(seed)
    model = models.build(family, **hparams)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(6, *models.INPUT_SHAPE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_dequantized_weights_are_within_half_a_step(scheme):
    w = torch.randn(16, 8, 3, 3) * torch.logspace(-4, 1, 16).reshape(-1, 1, 1, 1)
    w[3] = 0  # an all-zero channel must survive too
    q = quantize_tensor(w, scheme)
    qmax = {"int8": 127, "int4": 7}[scheme]
    assert q.values.dtype == np.int8 and np.abs(q.values).max() <= qmax
    assert q.scales.dtype == np.float16 and q.scales.shape == (16,)
    step = torch.from_numpy(q.scales.astype(np.float32)).reshape(-1, 1, 1, 1)
    err = (dequantize(q) - w).abs()
    assert (err <= step / 2 * (1 + 1e-5) + 1e-12).all()
    assert dequantize(q)[3].abs().max() == 0


@pytest.mark.parametrize("count", [0, 1, 2, 7, 16, 101])
def test_int4_packing_round_trips(count):
    values = np.random.default_rng(count).integers(-8, 8, size=count).astype(np.int8)
    packed = pack_int4(values)
    assert packed.dtype == np.uint8 and packed.size == (count + 1) // 2
    np.testing.assert_array_equal(unpack_int4(packed, count), values)


def test_int4_packing_rejects_out_of_range_values():
    with pytest.raises(ValueError):
        pack_int4(np.array([8], np.int8))


@pytest.mark.parametrize("family, hparams", SMALL)
def test_folding_preserves_outputs_and_removes_batchnorm(family, hparams, x):
    model = randomized(family, **hparams)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
    assert folded.family == family


@pytest.mark.parametrize("family, hparams", SMALL)
def test_reloaded_export_predicts_like_the_in_memory_copy(family, hparams, x, tmp_path):
    model = randomized(family, **hparams)
    for precision in PRECISIONS:
        path = tmp_path / f"{family}-{precision}.npz"
        export_npz(model, path, precision)
        loaded = load_model(path)
        assert not loaded.training and loaded.hparams == model.hparams
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), quantized_copy(model, precision)(x),
                                       atol=0, rtol=0)
            if precision in ("fp32", "fp16"):  # near-lossless: close to the original too
                torch.testing.assert_close(loaded(x), model(x), atol=1e-2, rtol=1e-2)


def test_file_is_stored_not_deflated_and_shrinks_with_precision(tmp_path):
    model = randomized("mobilenet_v2", width=0.2)
    sizes = [export_npz(model, tmp_path / f"{p}.npz", p) for p in PRECISIONS]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    for p in PRECISIONS:
        with zipfile.ZipFile(tmp_path / f"{p}.npz") as z:
            assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
            assert "__meta__.npy" in z.namelist() and len(z.namelist()) <= 4
    # int4 packs two weights per byte: well under half of int8's weight bytes
    assert sizes[3] < 0.7 * sizes[2]


def test_budget_check_totals_and_names_the_offending_file(tmp_path):
    model = randomized("mobilenet_v2", width=0.2)
    small = tmp_path / "small.npz"
    big = tmp_path / "big.npz"
    n_small, n_big = export_npz(model, small, "int4"), export_npz(model, big, "fp32")
    assert check_budget([small], TINY_BUDGET) == n_small
    assert check_budget([small, 100], n_small + 100) == n_small + 100
    with pytest.raises(BudgetExceeded) as err:
        check_budget([small, big], TINY_BUDGET)
    message = str(err.value)
    assert str(big) in message and f"{n_big:,}" in message and f"{TINY_BUDGET:,}" in message
    assert f"{n_small + n_big:,}" in message


def test_truncated_or_corrupted_file_raises_export_error(tmp_path):
    path = tmp_path / "m.npz"
    export_npz(randomized("cnn", width=0.1), path, "int8")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # inside the int8 blob: the zip CRC catches it
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    for name in ("cut.npz", "flip.npz"):
        with pytest.raises(ExportError, match=name):
            load_model(tmp_path / name)


def test_foreign_npz_raises_export_error(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ExportError, match="__meta__"):
        load_model(path)
    np.save(tmp_path / "bare.npy", np.zeros(3))
    with pytest.raises(ExportError, match="npz"):
        load_model(tmp_path / "bare.npy")
    with pytest.raises(FileNotFoundError):  # absent is not damaged
        load_model(tmp_path / "absent.npz")


def _rewrite(src, dst, edit) -> None:
    """Copy an export with its header (a dict) and blobs passed through `edit`."""
    with np.load(src) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    edit(meta, arrays)
    header = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(dst, "wb") as f:
        np.savez(f, __meta__=header, **arrays)


@pytest.mark.parametrize("edit, match", [
    (lambda m, a: m.update(format="other"), "format"),
    (lambda m, a: m.update(version=99), "version"),
    (lambda m, a: m.pop("family"), "family"),
    (lambda m, a: m.pop("folded"), "folded"),
    (lambda m, a: m["hparams"].update(width=0.3), "shape"),
    (lambda m, a: m.update(tensors=m["tensors"][:-2]), "missing tensors"),
    (lambda m, a: m["tensors"][0].__setitem__(1, "int3"), "scheme"),
    (lambda m, a: a.update(q=a["q"][:-5]), "too short"),
    (lambda m, a: a.update(h=np.concatenate([a["h"], a["h"][:3]])), "header does not"),
    (lambda m, a: a.update(q=a["q"].astype(np.int16)), "dtype"),
])
def test_inconsistent_export_raises_export_error(tmp_path, edit, match):
    path = tmp_path / "m.npz"
    export_npz(randomized("mobilenet_v2", width=0.2), path, "int8")
    _rewrite(path, tmp_path / "bad.npz", edit)
    with pytest.raises(ExportError, match=match):
        load_model(tmp_path / "bad.npz")


def test_export_needs_a_built_model_and_a_known_precision(tmp_path):
    with pytest.raises(ValueError, match="models.build"):
        export_npz(nn.Sequential(nn.Linear(2, 2)), tmp_path / "m.npz", "fp32")
    with pytest.raises(ValueError, match="precision"):
        export_npz(models.build("cnn", width=0.1), tmp_path / "m.npz", "int2")


def test_export_bytes_do_not_depend_on_the_order_of_hparams(tmp_path):
    """The trainer builds a model with the catalogue's argument order, a stored result
    with its config's sorted keys: both must export the same bytes (the recorded hash)."""
    from fer_lib.quantize import file_sha256

    stages = ((1, 16, 1, 1), (None, 24, 2, 2), (None, 32, 2, 2))
    first = models.build("mobilenet_v2", width=0.25, stages=stages)
    second = models.build("mobilenet_v2", stages=stages, width=0.25)
    second.load_state_dict(first.state_dict())
    for precision in ("fp16", "int8"):
        a, b = tmp_path / f"a-{precision}.npz", tmp_path / f"b-{precision}.npz"
        export_npz(first, a, precision)
        export_npz(second, b, precision)
        assert file_sha256(a) == file_sha256(b)
        export_npz(first, b, precision)  # and an export is reproducible, byte for byte
        assert file_sha256(a) == file_sha256(b)
