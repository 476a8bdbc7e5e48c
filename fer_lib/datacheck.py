"""Is this copy of FER2013 the release? Checks a loaded data set must pass.

`check_classes` refuses a copy that lacks a class in a split (a class folder left out
of a zip), naming what is missing; `check_statistics` warns when the splits' pixel
statistics disagree (copies whose Training images were blurred or equalized in place).
`fer_lib.data.load_fer2013` runs both on every load.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from .errors import FER2013RowError, FER2013Warning
from .readers import CLASS_NAMES, SPLITS

# Statistics check: the real splits' std agree within ~1%, tampered copies differ by
# ~20%. Small samples also get a margin of 4 standard errors: with 100 images a
# split's mean alone wanders by ~3 grey levels, which a fixed margin would flag.
_STD_TOLERANCE = 0.10
_MEAN_TOLERANCE = 8.0
_MIN_SPLIT_FOR_STATS = 50
# The release's images per class (CLASS_NAMES order) in each split: a copy that lacks a
# class in a split is refused by name (`check_classes`) with these as the expected counts.
RELEASE_COUNTS = {
    "Training": (3995, 436, 4097, 7215, 4830, 3171, 4965),
    "PublicTest": (467, 56, 496, 895, 653, 415, 607),
    "PrivateTest": (491, 55, 528, 879, 594, 416, 626),
}


class SplitStats(NamedTuple):
    """Pixel statistics of one split, on the 0..255 scale.

    ``mean_se`` and ``std_se`` are standard errors from the spread across images, so
    small splits are judged with wider margins than the full data set.
    """

    mean: float
    std: float
    n_images: int
    mean_se: float
    std_se: float


def _image_moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mean and mean square, float64 (n,), in chunks to bound memory."""
    flat = images.reshape(len(images), -1)
    means, squares = [], []
    for start in range(0, len(flat), 4096):
        chunk = flat[start : start + 4096].astype(np.float32)
        means.append(chunk.mean(axis=1, dtype=np.float64))
        squares.append((chunk * chunk).mean(axis=1, dtype=np.float64))
    return np.concatenate(means), np.concatenate(squares)


def split_statistics(data) -> dict[str, SplitStats]:
    """Per split pixel mean and std (pooled over all pixels) with standard errors.

    `data` is a loaded `fer_lib.data.FER2013` (its ``images`` and ``usage``; not
    annotated, since data imports this module and the library has no import circle)."""
    stats = {}
    for split in SPLITS:
        images = data.images[data.usage == split]
        n = len(images)
        if n == 0:
            stats[split] = SplitStats(np.nan, np.nan, 0, np.nan, np.nan)
            continue
        means, squares = _image_moments(images)
        mean = float(means.mean())
        var = float(squares.mean()) - mean**2
        std = float(np.sqrt(max(var, 0.0)))
        # Delta method: var is a mean over images of (square - 2 * mean * image mean).
        var_se = float((squares - 2 * mean * means).std()) / np.sqrt(n)
        stats[split] = SplitStats(
            mean, std, n, float(means.std()) / np.sqrt(n), var_se / (2 * max(std, 1e-9))
        )
    return stats


def check_classes(data, form: str = "folder") -> None:
    """Refuse a copy of the release with no image of some class in some split (a class
    folder left out of the zip, say): it would load with none of that class and carve
    another validation split. The error names each missing folder ("folder" form:
    ``train/disgust/``) or class ("rows": the challenge CSV), with the images the full
    release has there in each split (:data:`RELEASE_COUNTS`)."""
    missing: dict[str, list[str]] = {}
    for split in SPLITS:
        counts = np.bincount(data.labels[data.usage == split], minlength=len(CLASS_NAMES))
        for label in np.flatnonzero(counts == 0):
            name = CLASS_NAMES[label]
            where = (f"images in {'train' if split == 'Training' else 'test'}/{name.lower()}/"
                     if form == "folder" else f"{name} rows")
            missing.setdefault(where, []).append(f"{RELEASE_COUNTS[split][label]:,} {split}")
    if missing:
        named = ", ".join(f"{where} (the full release has {' + '.join(expected)})"
                          for where, expected in missing.items())
        raise FER2013RowError(f"{data.source}: no {named}; a partial copy would change the "
                              "validation split: get the whole release (README.md, 'Getting "
                              "FER2013')")


def _disagree(a: SplitStats, b: SplitStats) -> bool:
    """Differ by more than the tolerance and by more than 4 standard errors."""
    mean_margin = max(_MEAN_TOLERANCE, 4 * np.hypot(a.mean_se, b.mean_se))
    std_margin = max(_STD_TOLERANCE * min(a.std, b.std), 4 * np.hypot(a.std_se, b.std_se))
    return abs(a.mean - b.mean) > mean_margin or abs(a.std - b.std) > std_margin


def check_statistics(data) -> None:
    """Warn if the splits' pixel statistics disagree (blurred/equalized copies).

    Splits with fewer than 50 images are too noisy to judge and are left out.
    """
    stats = {s: v for s, v in split_statistics(data).items() if v.n_images >= _MIN_SPLIT_FOR_STATS}
    pairs = [(a, b) for i, a in enumerate(stats.values()) for b in list(stats.values())[i + 1 :]]
    if not any(_disagree(a, b) for a, b in pairs):
        return
    described = "; ".join(f"{s} mean {v.mean:.1f} std {v.std:.1f}" for s, v in stats.items())
    warnings.warn(
        f"FER2013 splits disagree in pixel statistics ({described}) in {data.source}. "
        "Copies circulate whose Training images were blurred or histogram-equalized; "
        "a model trained on one scores near chance on the test splits. "
        "Get a clean copy (README.md, 'Getting FER2013').",
        FER2013Warning,
        stacklevel=3,
    )
