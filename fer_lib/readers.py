"""Reading FER2013's source kinds into arrays: image-folder zip, folder, challenge CSV,
and the course's own ``train.csv`` / ``test.csv``.

Each reader returns the images, labels and split indices in the source's canonical
order (split, then CSV row, numeric image id or test.csv id). Every problem is reported
with the file and the row or member at fault: raised at once, or (``skip_bad``)
collected and skipped.

The course (NTU ML2019 HW8) gave its students two CSVs of its own: ``train.csv``
(``label,feature``: the Training images, labelled) and ``test.csv`` (``id,feature``: the
PublicTest then the PrivateTest images, in the order Kaggle scored them, ids 0..7177,
*without labels*). Kaggle's public score was on the first 3,589 ids, the private on the
rest; test.csv images get the label :data:`UNLABELLED` and the split their id implies.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import FER2013Error, FER2013RowError, FER2013Warning

CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
SPLITS = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
# Image-folder class names -> challenge numbering (0=Angry ... 6=Neutral).
FOLDER_LABELS = {name.lower(): label for label, name in enumerate(CLASS_NAMES)}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CSV_COLUMNS = ("emotion", "pixels", "usage")
# The course's CSVs, told apart by their header: role -> columns.
COURSE_COLUMNS = {"train": ("label", "feature"), "test": ("id", "feature")}
COURSE_FILES = ("train.csv", "test.csv")
# test.csv's images: the course never gave out their labels. Never a class index.
UNLABELLED = -1
# Kaggle scored test.csv's first 3,589 ids (the PublicTest images) as "public".
PUBLIC_TEST_SIZE = 3589
_MEMBER_RE = re.compile(r"^(?P<split>[A-Za-z]+)_(?P<id>\d+)$")
_REASONS_SHOWN = 5


def source_kind(path: Path) -> tuple[str, Path]:
    """Classify a source as ``("zip"|"csv"|"course"|"folder", path)``.

    A folder holding a ``fer2013.zip`` or ``fer2013.csv`` resolves to that file; else a
    folder holding the course's ``train.csv`` and/or ``test.csv`` is ``"course"`` (see
    :func:`course_files`). A CSV whose header is the course's is ``"course"`` too.
    """
    if path.is_dir():
        for name in ("fer2013.zip", "fer2013.csv"):
            if (path / name).is_file():
                return source_kind(path / name)
        return ("course" if course_files(path) else "folder"), path
    # The zip magic also catches a renamed zip; the suffix catches a truncated one,
    # which must fail as a bad zip rather than as a garbled CSV.
    with open(path, "rb") as handle:
        is_zip = handle.read(2) == b"PK" or path.suffix.lower() == ".zip"
    if is_zip:
        return "zip", path
    return ("course" if course_role(path) else "csv"), path


def course_role(path: Path) -> str | None:
    """``"train"`` or ``"test"`` when the CSV at `path` has the course's header, else None."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as text:
            first = next((row for row in csv.reader(text) if any(c.strip() for c in row)), [])
    except (UnicodeDecodeError, csv.Error):
        return None  # not a readable CSV: the challenge-CSV reader says why
    cells = tuple(cell.strip().lower() for cell in first)
    return next((role for role, columns in COURSE_COLUMNS.items() if cells == columns), None)


def course_files(path: Path) -> list[Path]:
    """The course CSVs a ``"course"`` source stands for: the file itself, or the
    ``train.csv`` then ``test.csv`` that a folder holds."""
    if not path.is_dir():
        return [path]
    return [path / name for name in COURSE_FILES if (path / name).is_file()]


# --------------------------------------------------------------------------- problems


class _Problems:
    """Raise on the first bad row/image, or (``skip_bad``) collect the reasons.

    What is reported here is one row or image of a readable file: a FER2013RowError.
    """

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.reasons: list[str] = []

    def report(self, message: str) -> None:
        if not self.skip_bad:
            raise FER2013RowError(message)
        self.reasons.append(message)


def warn_skipped(reasons: list[str], source: str) -> None:
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


def folder_members(root: Path) -> list[Path]:
    """Every file under ``root``, sorted, so hashes and errors are reproducible."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def _load_folder(root: Path, problems: _Problems) -> tuple[list, list, list]:
    names = [
        p.relative_to(root).as_posix()
        for p in folder_members(root)
        if _is_image_member(p.relative_to(root).as_posix())
    ]
    if not names:
        raise FER2013Error(
            f"{root}: no images found; expected train/<class>/Training_<id>.jpg and "
            "test/<class>/PublicTest_<id>.jpg, or fer2013.zip / fer2013.csv in the folder"
        )
    return _decode_members(names, lambda name: (root / name).read_bytes(), problems)


# --------------------------------------------------------------------------- CSV


def _csv_columns(first: list[str], source: str,
                 expected: tuple[str, ...]) -> tuple[dict[str, int], bool]:
    """Column positions and whether ``first`` is a header (the real files have one)."""
    cells = [cell.strip().lstrip("\ufeff").lower() for cell in first]
    if cells and cells[0].isascii() and cells[0].isdigit():
        if expected == CSV_COLUMNS and len(cells) == 2:
            raise FER2013Error(f"{source}: 2 columns and no header; the course's CSVs start "
                               "with the header label,feature (train.csv) or id,feature (test.csv)")
        return {name: i for i, name in enumerate(expected)}, False
    missing = [name for name in expected if name not in cells]
    if missing:
        wanted = ("emotion,pixels,Usage (the challenge CSV), label,feature (the course's "
                  "train.csv) or id,feature (its test.csv)") if expected == CSV_COLUMNS \
            else ",".join(expected)
        raise FER2013Error(
            f"{source}: missing CSV column(s) {missing}; header is {first}, expected {wanted}"
        )
    return {name: cells.index(name) for name in expected}, True


def parse_label(text: str, where: str, column: str = "emotion") -> int:
    """A class index 0..6 in the cell of `column`; anything else names `where`."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) >= len(CLASS_NAMES):
        raise FER2013Error(f"{where}: {column} {text!r} is not an integer 0..6")
    return int(text)


def parse_id(text: str, where: str) -> int:
    """A test.csv or submission id: a whole number >= 0."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise FER2013Error(f"{where}: id {text!r} is not a whole number >= 0")
    return int(text)


def _parse_pixels(text: str, where: str) -> np.ndarray:
    """Space-separated grey levels -> uint8 (48, 48)."""
    tokens = text.split()
    if len(tokens) != NUM_PIXELS:
        raise FER2013Error(f"{where}: {len(tokens)} pixels, expected {NUM_PIXELS}")
    try:
        values = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError) as error:
        # Name the token, not numpy's message: a row error must stay one short line.
        bad = next((t for t in tokens if not t.lstrip("+-").isdigit()), None)
        if bad is None:  # digits only, too many of them for int64
            raise FER2013Error(f"{where}: pixel outside 0..255") from error
        raise FER2013Error(f"{where}: non-integer pixel {bad[:20]!r}; expected whole numbers "
                           "0..255") from error
    if values.min() < 0 or values.max() > 255:
        raise FER2013Error(f"{where}: pixel outside 0..255 ({values.min()}..{values.max()})")
    return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def _parse_usage(text: str, where: str) -> int:
    by_lower = {split.lower(): i for i, split in enumerate(SPLITS)}
    if text.strip().lower() not in by_lower:
        raise FER2013Error(f"{where}: unknown Usage {text.strip()!r}; expected one of {SPLITS}")
    return by_lower[text.strip().lower()]


def csv_rows(text: io.TextIOBase, source: str, expected: tuple[str, ...] = CSV_COLUMNS
             ) -> Iterator[tuple[str, list[str], dict]]:
    """Yield ``(where, row, columns)`` for each non-blank data row; `columns` maps each
    `expected` column name to its position (from the header, or in `expected` order)."""
    reader = csv.reader(text)
    columns = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank lines (e.g. a doubled trailing newline) carry no data
        if columns is None:
            columns, is_header = _csv_columns(row, source, expected)
            if is_header:
                continue
        yield f"{source} line {reader.line_num}", row, columns
    if columns is None:
        raise FER2013Error(f"{source}: the CSV is empty")


def _parse_csv(text: io.TextIOBase, source: str, problems: _Problems):
    """CSV text -> (images, labels, split indices), rows grouped by split in order."""
    rows: list[tuple[int, np.ndarray, int]] = []
    for where, row, columns in csv_rows(text, source):
        try:
            if len(row) < len(columns):
                raise FER2013Error(f"{where}: {len(row)} fields, expected {len(columns)}")
            label = parse_label(row[columns["emotion"]], where)
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


# --------------------------------------------------------------------------- the course's CSVs


def order_by_id(ids: list[int], wheres: list[str], source: str) -> np.ndarray:
    """Row positions (int64 (n,)) sorted by id, once the n ids are known to be 0..n-1,
    each once, as Kaggle's were; a duplicated id names both rows, a missing one itself
    (FER2013RowError: the file is of the right form, its rows are not)."""
    first: dict[int, str] = {}
    for number, where in zip(ids, wheres, strict=True):
        if number in first:
            # Both rows are in `source`: naming its path once keeps the line short.
            also = first[number].removeprefix(f"{source} ")
            raise FER2013RowError(f"{where}: duplicate id {number} (also at {also})")
        first[number] = where
    missing = sorted(set(range(len(ids))) - first.keys())
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FER2013RowError(f"{source}: id {missing[0]} is missing{more}; {len(ids)} rows "
                              f"must have the ids 0..{len(ids) - 1}, one each (largest here: "
                              f"{max(ids)})")
    return np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")


def _course_row(row: list[str], columns: dict[str, int], where: str) -> tuple[int, np.ndarray]:
    """One row of train.csv or test.csv -> (label or id, uint8 (48, 48) image)."""
    if len(row) != len(columns):
        raise FER2013Error(f"{where}: {len(row)} fields, expected {len(columns)} "
                           f"({','.join(columns)})")
    image = _parse_pixels(row[columns["feature"]], where)
    if "label" in columns:
        return parse_label(row[columns["label"]], where, "label"), image
    return parse_id(row[columns["id"]], where), image


def _load_course(path: Path, problems: _Problems):
    """train.csv -> labelled Training rows, in file order; test.csv -> its images by id,
    unlabelled, ids below PUBLIC_TEST_SIZE in PublicTest and the rest in PrivateTest.

    A bad test.csv row is always an error, even with ``skip_bad``: every id needs an image.
    """
    role = course_role(path)
    problems = problems if role == "train" else _Problems(skip_bad=False)
    parsed = []
    with open(path, encoding="utf-8-sig", newline="") as text:
        for where, row, columns in csv_rows(text, str(path), COURSE_COLUMNS[role]):
            try:
                parsed.append((*_course_row(row, columns, where), where))
            except FER2013Error as error:
                problems.report(str(error))
    if not parsed and not problems.reasons:
        raise FER2013Error(f"{path}: a header and no rows")
    if role == "train":
        return [p[1] for p in parsed], [p[0] for p in parsed], [0] * len(parsed)
    order = order_by_id([p[0] for p in parsed], [p[2] for p in parsed], str(path))
    public, private = SPLITS.index("PublicTest"), SPLITS.index("PrivateTest")
    return ([parsed[i][1] for i in order], [UNLABELLED] * len(order),
            [public if i < PUBLIC_TEST_SIZE else private for i in range(len(order))])


# --------------------------------------------------------------------------- loading

_LOADERS = {"zip": _load_zip, "folder": _load_folder, "csv": _load_csv, "course": _load_course}


def decode_source(kind: str, path: Path, skip_bad: bool) -> dict[str, np.ndarray]:
    """Decode one source file or folder (a ``"course"`` source: one of its CSVs) to the
    arrays ``images``, ``labels``, ``usage`` and ``skipped`` (why rows were skipped)."""
    problems = _Problems(skip_bad)
    images, labels, splits = _LOADERS[kind](path, problems)
    # The release forms hold every split, so an empty one is a damaged copy; each of the
    # course's files holds only its own splits.
    empty = [s for i, s in enumerate(SPLITS) if i not in set(splits)]
    if empty and kind != "course":
        raise FER2013Error(f"{path}: split(s) {empty} have no images")
    if not images:
        raise FER2013Error(f"{path}: every row was skipped")
    return {
        "images": np.stack(images).astype(np.uint8, copy=False),
        "labels": np.asarray(labels, dtype=np.int64),
        "usage": np.asarray(SPLITS)[np.asarray(splits)],
        "skipped": np.asarray(problems.reasons, dtype=str),
    }
