"""Holm's correction (`fer_lib.report.holm`): the book reads families of tests through it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fer_lib.report import holm


def test_holm_steps_down_and_keeps_the_input_order():
    # Sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04; the
    # step-down keeps each adjusted p at least the one before it: 0.04 becomes 0.06.
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_never_lowers_a_p_value_and_caps_at_one():
    raw = np.random.default_rng(0).uniform(size=20)
    adjusted = holm(raw)
    assert np.all(adjusted >= raw)
    assert np.all(adjusted <= 1)
    order = np.argsort(raw)
    assert np.all(np.diff(adjusted[order]) >= 0), "adjusted p-values keep the raw order"


def test_holm_of_one_test_is_the_test_itself():
    assert holm([0.03])[0] == pytest.approx(0.03)


def test_holm_leaves_untestable_entries_out_of_the_family():
    adjusted = holm([math.nan, 0.02, 0.4])
    assert math.isnan(adjusted[0])
    np.testing.assert_allclose(adjusted[1:], [0.04, 0.4])  # a family of two, not three


def test_holm_matches_bonferroni_for_the_smallest_p_value():
    raw = np.array([0.2, 0.001, 0.5, 0.07])
    assert holm(raw)[1] == pytest.approx(len(raw) * raw[1])

