"""Significance tests for comparisons the book makes.

- `welch`: are two families' mean accuracies over seeds different? (Welch's t-test:
  unequal variances, small samples.)
- `mcnemar`: do two models, scored on the same test images, differ? (McNemar's exact
  test on the images exactly one of them gets right.)
- `holm`: a family of such tests read together (Holm's step-down correction), so that
  "significant somewhere" is not the luck of many tries.

Both return plain dicts of numbers, so results can be stored and glued.
"""

from __future__ import annotations

import math

import numpy as np


def welch(a, b) -> dict:
    """Welch's t-test of mean(a) - mean(b) (e.g. accuracies over seeds, fractions).

    Returns ``{"diff": mean(a) - mean(b), "t", "df", "p": two-sided p-value,
    "low", "high": 95 % confidence interval of the difference, "n_a", "n_b"}``; t, p
    and the interval are NaN when either side has fewer than two values or no spread.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"welch: both samples need values (got {a.size} and {b.size})")
    diff = float(a.mean() - b.mean())
    out = {"diff": diff, "t": math.nan, "df": math.nan, "p": math.nan, "low": math.nan,
           "high": math.nan, "n_a": int(a.size), "n_b": int(b.size)}
    if a.size < 2 or b.size < 2:
        return out
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:
        return out
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    t = diff / se
    from scipy import stats  # here, not at the top: scipy.stats takes a second to import

    half = stats.t.ppf(0.975, df) * se
    out.update(t=float(t), df=float(df), p=float(2 * stats.t.sf(abs(t), df)),
               low=diff - half, high=diff + half)
    return out


def mcnemar(correct_a, correct_b) -> dict:
    """McNemar's exact test for two models scored on the same images.

    correct_a, correct_b: (N,) booleans, whether each model got image i right.
    Returns ``{"n", "both", "only_a", "only_b", "neither", "diff": accuracy(a) -
    accuracy(b), "p": two-sided exact p-value}`` (binomial on the discordant images).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"mcnemar: need two 1-D arrays of equal length, got {a.shape} "
                         f"and {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    from scipy import stats  # here, not at the top: scipy.stats takes a second to import

    p = 1.0 if discordant == 0 else float(
        stats.binomtest(only_a, discordant, 0.5, alternative="two-sided").pvalue)
    return {"n": int(a.size), "both": int(np.sum(a & b)), "only_a": only_a, "only_b": only_b,
            "neither": int(np.sum(~a & ~b)), "diff": (only_a - only_b) / max(a.size, 1),
            "p": p}


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (any order; NaN stays NaN).

    Returns adjusted p-values in the input's order: reject at level a exactly where the
    adjusted p is at most a, which controls the chance of any false rejection in the
    family at a. The family is the non-NaN values.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    index = np.flatnonzero(~np.isnan(p))
    order = index[np.argsort(p[index], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
