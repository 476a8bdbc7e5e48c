"""Test-time views: a face shifted by whole pixels, and logits averaged over its shifts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fer_lib.augment import AUGMENT_DRAWS, augment
from fer_lib.config import TrainConfig
from fer_lib.evaluate import (
    predict_logits,
    predict_shifted,
    shift_offsets,
    shifted_images,
    to_input,
)


def _faces(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_a_shift_moves_whole_pixels_and_repeats_the_edge():
    faces = _faces()
    right = shifted_images(faces, 2, 0)
    assert right.shape == faces.shape and right.dtype == np.uint8
    np.testing.assert_array_equal(right[:, :, 2:], faces[:, :, :-2])
    np.testing.assert_array_equal(right[:, :, :2], np.repeat(faces[:, :, :1], 2, axis=2))
    up = shifted_images(faces, 0, -3)
    np.testing.assert_array_equal(up[:, :-3], faces[:, 3:])
    np.testing.assert_array_equal(up[:, -3:], np.repeat(faces[:, -1:], 3, axis=1))
    np.testing.assert_array_equal(shifted_images(faces, 0, 0), faces)


@pytest.mark.parametrize(("dx", "dy"), [(2, 0), (0, -2), (3, 1)])
def test_a_test_time_shift_is_the_trainers_shift_of_the_same_size(dx, dy):
    """The views the teachers are scored on are views they trained on: `augment` with no
    rotation, zoom, mirror or erasing and an integer shift gives the same pixels."""
    cfg = TrainConfig(shift=4.0, erase=0.0)
    faces = _faces(4)
    u = torch.full((len(faces), AUGMENT_DRAWS), 0.5)
    u[:, 2] = 0.9  # no mirror
    # augment samples pixel x + t: a content shift of dx pixels is t = -dx
    u[:, 3], u[:, 4] = (-dx / cfg.shift + 1) / 2, (-dy / cfg.shift + 1) / 2
    trained, _ = augment(to_input(torch.as_tensor(faces)), cfg, u)
    np.testing.assert_allclose(trained.numpy(), to_input(torch.as_tensor(
        shifted_images(faces, dx, dy))).numpy(), atol=1e-4)


def test_the_shifted_views_are_the_face_and_four_axis_shifts():
    offsets = shift_offsets(2)
    assert offsets[0] == (0, 0) and len(set(offsets)) == 5
    assert sorted(abs(dx) + abs(dy) for dx, dy in offsets[1:]) == [2, 2, 2, 2]
    assert all(dx == 0 or dy == 0 for dx, dy in offsets)


def test_predict_shifted_averages_flip_tta_over_the_positions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 44 * 44, 7))
    faces = _faces()
    flip = predict_logits(model, faces, tta=True)
    np.testing.assert_allclose(predict_shifted(model, faces, 0, channels_last=False), flip,
                               rtol=1e-6, atol=1e-6)
    each = [predict_logits(model, shifted_images(faces, dx, dy), tta=True)
            for dx, dy in shift_offsets(2)]
    shifted = predict_shifted(model, faces, 2, channels_last=False)
    np.testing.assert_allclose(shifted, np.mean(each, axis=0), rtol=1e-5, atol=1e-6)
    assert np.abs(shifted - flip).max() > 1e-3  # the shifts do move this model's logits
    with pytest.raises(ValueError, match="shift must be a number of pixels"):
        predict_shifted(model, faces, -1)
