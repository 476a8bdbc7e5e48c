"""FER2013 sources -> arrays: loading, caching, sanity checks and splits.

Three sources give identical arrays for the same images:

* the image-folder release as a zip (``train/<class>/Training_<id>.jpg``,
  ``test/<class>/PublicTest_<id>.jpg``, ``test/<class>/PrivateTest_<id>.jpg``);
* the same extracted into a folder;
* the challenge CSV (columns ``emotion,pixels,Usage``).

Arrays come out in a canonical order: by split in :data:`SPLITS` order; within a
split, CSV row order for CSVs, ascending numeric id for image folders and zips.
Decoding 35,887 JPEGs takes seconds, so the result is cached as an ``.npz`` keyed by
the source's identity (a changed source is never served from the cache).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
SPLITS = ("Training", "PublicTest", "PrivateTest")
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "data"

IMAGE_SIZE = 48
# The protocol: every model is selected on this stratified share of Training, carved
# with this seed (train_val_split); PublicTest and PrivateTest are only reported.
VAL_FRACTION = 0.1
SPLIT_SEED = 0
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
# Image-folder class names -> challenge numbering (0=Angry ... 6=Neutral).
FOLDER_LABELS = {name.lower(): label for label, name in enumerate(CLASS_NAMES)}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CSV_COLUMNS = ("emotion", "pixels", "usage")
# Bump when the cached arrays' meaning changes, so old caches are never read.
_CACHE_VERSION = 1
_MEMBER_RE = re.compile(r"^(?P<split>[A-Za-z]+)_(?P<id>\d+)$")
# Statistics check: the real splits' std agree within ~1%, tampered copies differ by
# ~20%. Small samples also get a margin of 4 standard errors: with 100 images a
# split's mean alone wanders by ~3 grey levels, which a fixed margin would flag.
_STD_TOLERANCE = 0.10
_MEAN_TOLERANCE = 8.0
_MIN_SPLIT_FOR_STATS = 50
_REASONS_SHOWN = 5


class FER2013Error(ValueError):
    """Bad FER2013 input; the message names the file, row or argument at fault."""


class FER2013Warning(UserWarning):
    """A FER2013 source loaded, but something about it deserves attention."""


@dataclass(frozen=True, eq=False)
class FER2013:
    """The FER2013 images with their labels and challenge splits.

    Attributes:
        images: uint8, shape (N, 48, 48), grey levels 0..255.
        labels: int64, shape (N,), challenge numbering (index into ``class_names``).
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
        """Return ``(images, labels)`` of one split: uint8 (n, 48, 48) and int64 (n,)."""
        if usage not in SPLITS:
            raise FER2013Error(f"unknown split {usage!r}; expected one of {SPLITS}")
        mask = self.usage == usage
        return self.images[mask], self.labels[mask]

    def class_counts(self) -> dict[str, np.ndarray]:
        """Images per class in each split: ``{split: int64 array of shape (7,)}``."""
        return {
            split: np.bincount(self.labels[self.usage == split], minlength=len(self.class_names))
            for split in SPLITS
        }


# --------------------------------------------------------------------------- locating


# Said after any error about the source, so a reader knows what would have worked.
ACCEPTED_FORMS = (
    "FER2013 is read from the image-folder release as a zip (train/<class>/Training_<id>.jpg, "
    "test/<class>/PublicTest_<id>.jpg, test/<class>/PrivateTest_<id>.jpg), the same release "
    "extracted into a folder, or the challenge CSV (emotion,pixels,Usage); see README.md, "
    "'Getting FER2013'."
)


def _missing_data_message(looked_in: Iterable[Path]) -> str:
    places = ", ".join(str(p) for p in looked_in)
    return (
        "FER2013 not found (looked in: "
        f"{places}). Put the image-folder release zip at {DEFAULT_DATA_DIR / 'fer2013.zip'} "
        f"(or the challenge CSV at {DEFAULT_DATA_DIR / 'fer2013.csv'}, or the extracted "
        f"folder at {DEFAULT_DATA_DIR / 'fer2013'}/), or set FER2013_PATH=/path/to/fer2013.zip "
        "(a .zip, a .csv or a folder). See README.md, 'Getting FER2013'."
    )


def _default_candidates(data_dir: Path) -> list[Path]:
    return [data_dir / "fer2013.zip", data_dir / "fer2013.csv", data_dir / "fer2013"]


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """Find the FER2013 source: ``path``, else ``$FER2013_PATH``, else ``data/`` in the repo.

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
    candidates = _default_candidates(DEFAULT_DATA_DIR)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(_missing_data_message(candidates))


def _source_kind(path: Path) -> tuple[str, Path]:
    """Classify a source as ``("zip"|"csv"|"folder", path)``; a folder holding a
    ``fer2013.zip`` or ``fer2013.csv`` resolves to that file."""
    if path.is_dir():
        for name in ("fer2013.zip", "fer2013.csv"):
            if (path / name).is_file():
                return _source_kind(path / name)
        return "folder", path
    # The zip magic also catches a renamed zip; the suffix catches a truncated one,
    # which must fail as a bad zip rather than as a garbled CSV.
    with open(path, "rb") as handle:
        is_zip = handle.read(2) == b"PK" or path.suffix.lower() == ".zip"
    return ("zip" if is_zip else "csv"), path


# --------------------------------------------------------------------------- problems


class _Problems:
    """Raise on the first bad row/image, or (``skip_bad``) collect the reasons."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.reasons: list[str] = []

    def report(self, message: str) -> None:
        if not self.skip_bad:
            raise FER2013Error(message)
        self.reasons.append(message)


def _warn_skipped(reasons: list[str], source: str) -> None:
    shown = "; ".join(reasons[:_REASONS_SHOWN])
    more = f" (and {len(reasons) - _REASONS_SHOWN} more)" if len(reasons) > _REASONS_SHOWN else ""
    warnings.warn(
        f"skipped {len(reasons)} bad images/rows in {source}: {shown}{more}",
        FER2013Warning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------- image folders


def _is_image_member(name: str) -> bool:
    """True for image files; folders, macOS debris and hidden files are not data."""
    parts = name.split("/")
    if not parts[-1] or "__MACOSX" in parts or parts[-1].startswith("."):
        return False
    return parts[-1].lower().endswith(IMAGE_SUFFIXES)


def _parse_member(name: str) -> tuple[int, int, int]:
    """``"train/happy/Training_123.jpg"`` -> ``(split index, id, label)``."""
    parts = name.split("/")
    if len(parts) < 2:
        raise FER2013Error(f"{name}: image is not inside a class folder")
    folder = parts[-2].lower()
    if folder not in FOLDER_LABELS:
        raise FER2013Error(
            f"{name}: unknown class folder {parts[-2]!r}; expected one of {sorted(FOLDER_LABELS)}"
        )
    match = _MEMBER_RE.match(parts[-1].rsplit(".", 1)[0])
    if match is None or match["split"] not in SPLITS:
        raise FER2013Error(
            f"{name}: file name must be <split>_<numeric id> with split one of {SPLITS}"
        )
    return SPLITS.index(match["split"]), int(match["id"]), FOLDER_LABELS[folder]


def _decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode one image file to uint8 (48, 48); anything but 48x48 grey is an error."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode != "L" or image.size != (IMAGE_SIZE, IMAGE_SIZE):
                # Converting would hide a different release (RGB crops, other sizes).
                raise FER2013Error(
                    f"{name}: expected a 48x48 greyscale (mode L) image, "
                    f"got {image.size[0]}x{image.size[1]} mode {image.mode}"
                )
            return np.asarray(image, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise FER2013Error(f"{name}: cannot decode image ({error})") from error


def _decode_members(
    names: Iterable[str], read: Callable[[str], bytes], problems: _Problems
) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Decode image members in canonical order -> (images, labels, split indices)."""
    keyed = []
    for name in names:
        try:
            split, number, label = _parse_member(name)
        except FER2013Error as error:
            problems.report(str(error))
            continue
        keyed.append((split, number, name, label))
    images, labels, splits = [], [], []
    for split, _, name, label in sorted(keyed):
        try:
            images.append(_decode_image(read(name), name))
        except FER2013Error as error:
            problems.report(str(error))
            continue
        labels.append(label)
        splits.append(split)
    return images, labels, splits


def _load_zip(path: Path, problems: _Problems) -> tuple[list, list, list]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if _is_image_member(n)]
            if not names:
                return _load_csv_in_zip(archive, path, problems)

            def read(name: str) -> bytes:
                return archive.read(name)

            return _decode_members(names, read, problems)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise FER2013Error(f"{path}: corrupt or truncated zip ({error})") from error


def _load_csv_in_zip(archive: zipfile.ZipFile, path: Path, problems: _Problems):
    """Some mirrors ship the challenge CSV zipped; accept a zip holding one CSV."""
    csvs = [n for n in archive.namelist() if n.lower().endswith(".csv") and "__MACOSX" not in n]
    if len(csvs) != 1:
        raise FER2013Error(
            f"{path}: zip holds no images under <class>/<split>_<id>.jpg "
            f"and {len(csvs)} CSV files (expected one)"
        )
    with archive.open(csvs[0]) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        return _parse_csv(text, f"{path}:{csvs[0]}", problems)


def _folder_members(root: Path) -> list[Path]:
    """Every file under ``root``, sorted, so hashes and errors are reproducible."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def _load_folder(root: Path, problems: _Problems) -> tuple[list, list, list]:
    names = [
        p.relative_to(root).as_posix()
        for p in _folder_members(root)
        if _is_image_member(p.relative_to(root).as_posix())
    ]
    if not names:
        raise FER2013Error(
            f"{root}: no images found; expected train/<class>/Training_<id>.jpg and "
            "test/<class>/PublicTest_<id>.jpg, or fer2013.zip / fer2013.csv in the folder"
        )
    return _decode_members(names, lambda name: (root / name).read_bytes(), problems)


# --------------------------------------------------------------------------- CSV


def _csv_columns(first: list[str], source: str) -> tuple[dict[str, int], bool]:
    """Column positions and whether ``first`` is a header (the real file has one)."""
    cells = [cell.strip().lstrip("\ufeff").lower() for cell in first]
    if cells and cells[0].isascii() and cells[0].isdigit():
        return {name: i for i, name in enumerate(CSV_COLUMNS)}, False
    missing = [name for name in CSV_COLUMNS if name not in cells]
    if missing:
        raise FER2013Error(
            f"{source}: missing CSV column(s) {missing}; header is {first}, "
            "expected emotion,pixels,Usage"
        )
    return {name: cells.index(name) for name in CSV_COLUMNS}, True


def _parse_label(text: str, where: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) >= len(CLASS_NAMES):
        raise FER2013Error(f"{where}: emotion {text!r} is not an integer 0..6")
    return int(text)


def _parse_pixels(text: str, where: str) -> np.ndarray:
    """Space-separated grey levels -> uint8 (48, 48)."""
    tokens = text.split()
    if len(tokens) != NUM_PIXELS:
        raise FER2013Error(f"{where}: {len(tokens)} pixels, expected {NUM_PIXELS}")
    try:
        values = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError) as error:
        raise FER2013Error(f"{where}: non-integer pixel ({error})") from error
    if values.min() < 0 or values.max() > 255:
        raise FER2013Error(f"{where}: pixel outside 0..255 ({values.min()}..{values.max()})")
    return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def _parse_usage(text: str, where: str) -> int:
    by_lower = {split.lower(): i for i, split in enumerate(SPLITS)}
    if text.strip().lower() not in by_lower:
        raise FER2013Error(f"{where}: unknown Usage {text.strip()!r}; expected one of {SPLITS}")
    return by_lower[text.strip().lower()]


def _csv_rows(text: io.TextIOBase, source: str) -> Iterator[tuple[str, list[str], dict]]:
    """Yield ``(where, row, columns)`` for each non-blank data row."""
    reader = csv.reader(text)
    columns = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank lines (e.g. a doubled trailing newline) carry no data
        if columns is None:
            columns, is_header = _csv_columns(row, source)
            if is_header:
                continue
        yield f"{source} line {reader.line_num}", row, columns
    if columns is None:
        raise FER2013Error(f"{source}: the CSV is empty")


def _parse_csv(text: io.TextIOBase, source: str, problems: _Problems):
    """CSV text -> (images, labels, split indices), rows grouped by split in order."""
    rows: list[tuple[int, np.ndarray, int]] = []
    for where, row, columns in _csv_rows(text, source):
        try:
            if len(row) < len(columns):
                raise FER2013Error(f"{where}: {len(row)} fields, expected {len(columns)}")
            label = _parse_label(row[columns["emotion"]], where)
            image = _parse_pixels(row[columns["pixels"]], where)
            split = _parse_usage(row[columns["usage"]], where)
        except FER2013Error as error:
            problems.report(str(error))
            continue
        rows.append((split, image, label))
    # A stable sort keeps CSV row order within each split.
    rows.sort(key=lambda r: r[0])
    return [r[1] for r in rows], [r[2] for r in rows], [r[0] for r in rows]


def _load_csv(path: Path, problems: _Problems):
    try:
        # utf-8-sig drops a BOM; newline="" lets csv handle CRLF line endings.
        with open(path, encoding="utf-8-sig", newline="") as text:
            return _parse_csv(text, str(path), problems)
    except UnicodeDecodeError as error:
        raise FER2013Error(f"{path}: neither a zip nor a UTF-8 CSV ({error})") from error


# --------------------------------------------------------------------------- cache


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("FER_CACHE_DIR", "").strip()
    return Path(env) if env else Path.home() / ".cache" / "fer_lib"


def _digest(parts: Iterable[str]) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part.encode())
        sha.update(b"\0")
    return sha.hexdigest()


def _cache_path(kind: str, path: Path, cache_dir: Path) -> Path:
    """Cache file named by the source's identity: ``fer2013-<where>-<state>.npz``.

    ``where`` hashes the resolved path, ``state`` the size and mtime of the file (or of
    every file in a folder), so any change to the source gives a new name.
    """
    resolved = path.resolve()
    if kind == "folder":
        members = _folder_members(resolved)
        state = [
            f"{p.relative_to(resolved).as_posix()}|{p.stat().st_size}|{p.stat().st_mtime_ns}"
            for p in members
        ]
    else:
        stat = resolved.stat()
        state = [f"{stat.st_size}|{stat.st_mtime_ns}"]
    where = _digest([str(resolved)])[:12]
    state_hash = _digest([f"v{_CACHE_VERSION}", kind, str(resolved), *state])[:20]
    return cache_dir / f"fer2013-{where}-{state_hash}.npz"


def _read_cache(cache_file: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when missing or unreadable (then it is rewritten)."""
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ("images", "labels", "usage", "skipped")}
    except Exception:  # any unreadable cache (truncated, garbage, old format) is a miss
        return None
    n = len(arrays["labels"])
    if arrays["images"].shape != (n, IMAGE_SIZE, IMAGE_SIZE) or arrays["usage"].shape != (n,):
        return None
    return arrays


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (tmp file + rename), then drop stale caches of the same source."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=cache_file.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, cache_file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    where = cache_file.name.rsplit("-", 1)[0]
    for stale in cache_file.parent.glob(f"{where}-*.npz"):
        if stale != cache_file:
            stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------- loading

_LOADERS = {"zip": _load_zip, "folder": _load_folder, "csv": _load_csv}


def _decode_source(kind: str, path: Path, skip_bad: bool) -> dict[str, np.ndarray]:
    problems = _Problems(skip_bad)
    images, labels, splits = _LOADERS[kind](path, problems)
    empty = [s for i, s in enumerate(SPLITS) if i not in set(splits)]
    if empty:
        raise FER2013Error(f"{path}: split(s) {empty} have no images")
    return {
        "images": np.stack(images).astype(np.uint8, copy=False),
        "labels": np.asarray(labels, dtype=np.int64),
        "usage": np.asarray(SPLITS)[np.asarray(splits)],
        "skipped": np.asarray(problems.reasons, dtype=str),
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


def split_statistics(data: FER2013) -> dict[str, SplitStats]:
    """Per split pixel mean and std (pooled over all pixels) with standard errors."""
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


def _disagree(a: SplitStats, b: SplitStats) -> bool:
    """Differ by more than the tolerance and by more than 4 standard errors."""
    mean_margin = max(_MEAN_TOLERANCE, 4 * np.hypot(a.mean_se, b.mean_se))
    std_margin = max(_STD_TOLERANCE * min(a.std, b.std), 4 * np.hypot(a.std_se, b.std_se))
    return abs(a.mean - b.mean) > mean_margin or abs(a.std - b.std) > std_margin


def check_statistics(data: FER2013) -> None:
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


def load_fer2013(
    path: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    skip_bad: bool = False,
) -> FER2013:
    """Load FER2013 from a zip, folder or CSV (see :func:`resolve_path`).

    Args:
        path: the source; None means ``$FER2013_PATH``, then ``data/`` in the repo.
        cache_dir: where decoded arrays are cached; default ``$FER_CACHE_DIR``, else
            ``~/.cache/fer_lib``.
        use_cache: read and write the cache; False always decodes the source.
        skip_bad: skip bad images/rows with a warning instead of raising.

    Returns:
        A :class:`FER2013` in canonical order (split, then CSV row or numeric id).

    Raises:
        FileNotFoundError: no source found.
        FER2013Error: a bad source; the message names the file and row or image.
    """
    kind, source = _source_kind(resolve_path(path))
    cache_file = _cache_path(kind, source, _cache_dir(cache_dir)) if use_cache else None
    arrays = _read_cache(cache_file) if cache_file else None
    if arrays is None:
        arrays = _decode_source(kind, source, skip_bad)
        if cache_file:
            _write_cache(cache_file, arrays)
    skipped = [str(reason) for reason in arrays["skipped"]]
    if skipped and not skip_bad:
        # The cache was written by a skip_bad load; without skip_bad the source is an error.
        raise FER2013Error(skipped[0])
    if skipped:
        _warn_skipped(skipped, str(source))
    data = FER2013(arrays["images"], arrays["labels"], arrays["usage"], source=str(source))
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
    """
    stats = split_statistics(data)
    _, train_labels = data.split("Training")
    train_rows, val_rows = train_val_split(train_labels, val_fraction, split_seed)
    n_classes = len(data.class_names)

    def per_class(labels: np.ndarray) -> list[int]:
        return np.bincount(labels, minlength=n_classes).tolist()

    return {
        "image_size": list(data.images.shape[1:]),
        "class_names": list(data.class_names),
        "splits": {
            split: {"count": counts.tolist(), "mean": round(stats[split].mean, 2),
                    "std": round(stats[split].std, 2)}
            for split, counts in data.class_counts().items()
        },
        "validation": {"val_fraction": val_fraction, "split_seed": split_seed,
                       "train": per_class(train_labels[train_rows]),
                       "val": per_class(train_labels[val_rows])},
    }
