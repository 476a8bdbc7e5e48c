"""FER2013 sources -> arrays: loading, caching, sanity checks and splits.

Three sources give identical arrays for the same images:

* the image-folder release as a zip (``train/<class>/Training_<id>.jpg``,
  ``test/<class>/PublicTest_<id>.jpg``, ``test/<class>/PrivateTest_<id>.jpg``);
* the same extracted into a folder;
* the challenge CSV (columns ``emotion,pixels,Usage``).

The course's own files read too, alone or from a folder holding both: ``train.csv``
(``label,feature``: Training, labelled) and ``test.csv`` (``id,feature``: PublicTest then
PrivateTest, *unlabelled*: their labels are :data:`UNLABELLED`, and asking for them is
an error; public = the first 3,589 ids, as on Kaggle).

Arrays come out in a canonical order: by split in :data:`SPLITS` order; within a
split, CSV row order for CSVs, ascending numeric id for image folders and zips, the id
for test.csv. So :meth:`FER2013.test_images` is test.csv's order for test.csv and for
the challenge CSV (Kaggle's order); the image-folder release's file names are not row
numbers (1- to 8-digit ids with gaps), so Kaggle's order *within* each half cannot be
recovered from it, while which half an image is in (public or private) is kept.
Decoding 35,887 JPEGs takes seconds, so the result is cached as an ``.npz`` keyed by
the source's content (:mod:`fer_lib.datacache`: a changed source is never served from
the cache). The readers of each kind live in :mod:`fer_lib.readers`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import datacache, paths
from .datacheck import (  # noqa: F401  (re-exported)
    RELEASE_COUNTS,
    SplitStats,
    check_classes,
    check_statistics,
    split_statistics,
)
from .errors import FER2013Error, FER2013RowError, FER2013Warning  # noqa: F401
from .readers import (  # noqa: F401  (re-exported: the data layer's vocabulary)
    CLASS_NAMES,
    CSV_COLUMNS,
    FOLDER_LABELS,
    IMAGE_SIZE,
    IMAGE_SUFFIXES,
    NUM_PIXELS,
    PUBLIC_TEST_SIZE,
    SPLITS,
    UNLABELLED,
    course_files,
    decode_source,
    source_kind,
    warn_skipped,
)

# The protocol: every model is selected on this stratified share of Training, carved
# with this seed (train_val_split); PublicTest and PrivateTest are only reported.
VAL_FRACTION = 0.1
SPLIT_SEED = 0
TRAINING_IMAGES = 28_709  # FER2013's Training split
TRAINING_ROWS = TRAINING_IMAGES * (1 - VAL_FRACTION)  # what one epoch trains on
# The evaluation sets every reported accuracy is measured on (see `evaluation_sets`).
EVAL_SETS = ("val", "public", "private")
@dataclass(frozen=True, eq=False)
class FER2013:
    """The FER2013 images with their labels and challenge splits.

    Attributes:
        images: uint8, shape (N, 48, 48), grey levels 0..255.
        labels: int64, shape (N,), challenge numbering (index into ``class_names``), or
            :data:`UNLABELLED` (-1) for the images of the course's test.csv.
        usage: str array, shape (N,), each one of :data:`SPLITS`.
        class_names: the seven class names in label order.
        source: the path the data was loaded from.
    """

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or self.images.dtype != np.uint8:
            raise FER2013Error(
                f"images must be uint8 (N, 48, 48), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (n,) or self.usage.shape != (n,):
            raise FER2013Error(
                f"labels {self.labels.shape} and usage {self.usage.shape} must be ({n},)"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, usage: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(images, labels)`` of one split: uint8 (n, 48, 48) and int64 (n,).

        Raises FER2013Error for a split without labels (the course's test.csv): its
        images are :meth:`test_images`, and predictions are scored with `fer score`.
        """
        if usage not in SPLITS:
            raise FER2013Error(f"unknown split {usage!r}; expected one of {SPLITS}")
        mask = self.usage == usage
        if (self.labels[mask] == UNLABELLED).any():
            raise FER2013Error(
                f"{self.source}: {usage} has no labels (the course's test.csv is unlabelled); "
                "predict its images with `fer predict` and score the submission with "
                "`fer score` against a labelled FER2013"
            )
        return self.images[mask], self.labels[mask]

    def test_images(self) -> np.ndarray:
        """uint8 (n, 48, 48): PublicTest then PrivateTest, in canonical order, labelled or
        not. Row i is test.csv's id i (Kaggle's ids: public = the first 3,589)."""
        return np.concatenate([self.images[self.usage == s] for s in SPLITS[1:]])

    def class_counts(self) -> dict[str, np.ndarray]:
        """Images per class in each split: ``{split: int64 array of shape (7,)}``."""
        return {
            split: np.bincount(self.split(split)[1], minlength=len(self.class_names))
            for split in SPLITS
        }


# --------------------------------------------------------------------------- locating


# Said after any error about the source, so a reader knows what would have worked.
ACCEPTED_FORMS = (
    "FER2013 is read from the image-folder release as a zip (train/<class>/Training_<id>.jpg, "
    "test/<class>/PublicTest_<id>.jpg, test/<class>/PrivateTest_<id>.jpg), the same release "
    "extracted into a folder, the challenge CSV (emotion,pixels,Usage), or the course's "
    "train.csv (label,feature) and/or test.csv (id,feature; unlabelled), alone or in a "
    "folder holding them; see README.md, 'Getting FER2013' and 'The homework's formats'."
)


def _missing_data_message(looked_in: Iterable[Path]) -> str:
    places = ", ".join(str(p) for p in looked_in)
    data_dir = paths.data_dir()
    return (
        "FER2013 not found (looked in: "
        f"{places}). Put the image-folder release zip at {data_dir / 'fer2013.zip'} "
        f"(or the challenge CSV at {data_dir / 'fer2013.csv'}, or the extracted "
        f"folder at {data_dir / 'fer2013'}/), or set FER2013_PATH=/path/to/fer2013.zip "
        "(a .zip, a .csv or a folder). See README.md, 'Getting FER2013'."
    )


def _default_candidates(data_dir: Path) -> list[Path]:
    return [data_dir / "fer2013.zip", data_dir / "fer2013.csv", data_dir / "fer2013"]


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """Find the FER2013 source: ``path``, else ``$FER2013_PATH``, else the project's ``data/``
    (:func:`fer_lib.paths.data_dir`: found from the working directory).

    In ``data/`` the first of ``fer2013.zip``, ``fer2013.csv`` and the folder
    ``fer2013/`` that exists wins. Raises :class:`FileNotFoundError` saying where to
    put the data when nothing is found.
    """
    if path is not None:
        chosen = Path(path).expanduser()
        if not chosen.exists():
            raise FileNotFoundError(_missing_data_message([chosen]))
        return chosen
    env = os.environ.get("FER2013_PATH", "").strip()
    if env:
        chosen = Path(env).expanduser()
        if not chosen.exists():
            raise FileNotFoundError(
                f"FER2013_PATH={env} does not exist. " + _missing_data_message([chosen])
            )
        return chosen
    candidates = _default_candidates(paths.data_dir())
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(_missing_data_message(candidates))



def _decoded(kind: str, source: Path, cache_dir, use_cache: bool, skip_bad: bool) -> dict:
    """The arrays of one source file or folder, from the cache when it holds them."""
    cache_file = (datacache.cache_path(kind, source, datacache.cache_folder(cache_dir))
                  if use_cache else None)
    arrays = datacache.read_cache(cache_file) if cache_file else None
    if arrays is None:
        arrays = decode_source(kind, source, skip_bad)
        if cache_file:
            datacache.write_cache(cache_file, arrays)
    return arrays


def load_fer2013(
    path: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    skip_bad: bool = False,
) -> FER2013:
    """Load FER2013 from a zip, folder or CSV, or the course's train.csv / test.csv
    (see :func:`resolve_path` and the module doc).

    Args:
        path: the source; None means ``$FER2013_PATH``, then ``data/`` in the repo.
        cache_dir: where decoded arrays are cached; default ``$FER_CACHE_DIR``, else
            ``~/.cache/fer_lib``.
        use_cache: read and write the cache; False always decodes the source.
        skip_bad: skip bad images/rows with a warning instead of raising (never the
            rows of test.csv: a submission needs every id).

    Returns:
        A :class:`FER2013` in canonical order (split, then CSV row, numeric image id or
        test.csv id). From the course's files, only the splits they hold: train.csv
        gives Training alone, test.csv PublicTest/PrivateTest alone, without labels.

    Raises:
        FileNotFoundError: no source found.
        FER2013Error: a bad source; the message names the file and row or image.
    """
    kind, source = source_kind(resolve_path(path))
    # The course's folder is read file by file, each cached on its own content.
    parts = [_decoded(kind, part, cache_dir, use_cache, skip_bad)
             for part in (course_files(source) if kind == "course" else [source])]
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    skipped = [str(reason) for reason in arrays["skipped"]]
    if skipped and not skip_bad:
        # The cache was written by a skip_bad load; without skip_bad the source is an error.
        raise FER2013RowError(skipped[0])
    if skipped:
        warn_skipped(skipped, str(source))
    data = FER2013(arrays["images"], arrays["labels"], arrays["usage"], source=str(source))
    if kind != "course":  # the course's files hold some splits only, test.csv no labels
        check_classes(data, "rows" if kind == "csv" else "folder")
    check_statistics(data)
    return data


# --------------------------------------------------------------------------- splits


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise FER2013Error(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    return labels


def train_val_split(
    labels: np.ndarray, val_fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of the Training split into train and validation.

    Args:
        labels: int, shape (N,), the Training split's labels.
        val_fraction: share of each class held out, in (0, 1); per class the count
            is rounded, so each class's proportion is within one image of it.
        seed: the same seed gives the same split.

    Returns:
        ``(train_idx, val_idx)``: sorted int64 indices into ``labels``, disjoint and
        together covering ``0..N-1``.
    """
    labels = _check_labels(labels)
    if not 0.0 < val_fraction < 1.0:
        raise FER2013Error(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        val.append(members[: int(round(val_fraction * len(members)))])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels), dtype=np.int64), val_idx)
    return train_idx, val_idx


def stratified_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of ``n`` samples with the class proportions of ``labels``.

    Classes get ``n * share`` images, rounded by largest remainder so the total is
    exactly ``n``. Meant for smoke runs on a few hundred images.
    """
    labels = _check_labels(labels)
    if not 0 <= n <= len(labels):
        raise FER2013Error(f"n must be in 0..{len(labels)} (the number of labels), got {n}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts / counts.sum()
    take = np.floor(quota).astype(np.int64)
    # Largest remainder; a stable sort breaks ties by class order, so it is deterministic.
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == label), size=k, replace=False)
        for label, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# --------------------------------------------------------------------------- summary


def data_summary(
    data: FER2013, val_fraction: float = VAL_FRACTION, split_seed: int = SPLIT_SEED
) -> dict:
    """The numbers the book shows about the data set, never its pixels.

    Returns a JSON-ready dict: ``image_size`` [48, 48]; ``class_names``; per split
    (``splits[split]``) the images per class (7 ints), the pixel ``mean`` and ``std``
    (0..255 scale, two decimals); and ``validation``: the protocol's ``val_fraction``
    and ``split_seed`` with the per-class counts of the rows that models train on
    (``train``) and are selected on (``val``).

    A split without images (the test splits of the course's train.csv alone) is listed
    with zero counts and a null ``mean`` and ``std``: NaN is not JSON, and a split left
    out would make every reader check which are there.
    """
    stats = split_statistics(data)
    _, train_labels = data.split("Training")
    train_rows, val_rows = train_val_split(train_labels, val_fraction, split_seed)
    n_classes = len(data.class_names)

    def per_class(labels: np.ndarray) -> list[int]:
        return np.bincount(labels, minlength=n_classes).tolist()

    def rounded(split: str, stat: str) -> float | None:
        return round(getattr(stats[split], stat), 2) if stats[split].n_images else None

    return {
        "image_size": list(data.images.shape[1:]),
        "class_names": list(data.class_names),
        "splits": {
            split: {"count": counts.tolist(), "mean": rounded(split, "mean"),
                    "std": rounded(split, "std")}
            for split, counts in data.class_counts().items()
        },
        "validation": {"val_fraction": val_fraction, "split_seed": split_seed,
                       "train": per_class(train_labels[train_rows]),
                       "val": per_class(train_labels[val_rows])},
    }


def evaluation_sets(
    data: FER2013, val_fraction: float = VAL_FRACTION, split_seed: int = SPLIT_SEED
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The sets every reported accuracy is measured on, carved here and nowhere else.

    Returns ``{"val": ..., "public": ..., "private": ...}`` (see :data:`EVAL_SETS`), each
    ``(images uint8 (N, 48, 48), labels int64 (N,))``: ``val`` is the protocol's
    validation part of Training (`train_val_split` with these arguments, the rows a run
    selects its model on); ``public`` and ``private`` are PublicTest and PrivateTest.
    """
    images, labels = data.split("Training")
    _, val_rows = train_val_split(labels, val_fraction, split_seed)
    return {"val": (images[val_rows], labels[val_rows]),
            "public": data.split("PublicTest"), "private": data.split("PrivateTest")}
