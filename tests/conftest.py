"""Shared fixtures: a few hundred real FER2013 images, written out as every source kind.

The sample is read straight from the shared zip with :mod:`zipfile` and PIL, not
through ``fer_lib.data``, so it is an independent reference for the loader. Every test
caches into a temporary folder (``FER_CACHE_DIR``), never into the user's cache.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ZIP = REPO_ROOT.parent / "shared" / "data" / "fer2013.zip"
SPLITS = ("Training", "PublicTest", "PrivateTest")
# Folder name -> challenge label (0=Angry 1=Disgust 2=Fear 3=Happy 4=Sad 5=Surprise 6=Neutral).
FOLDER_LABELS = {
    "angry": 0,
    "disgust": 1,
    "fear": 2,
    "happy": 3,
    "sad": 4,
    "surprise": 5,
    "neutral": 6,
}
# Images per split in the sample, and the least per class so rare Disgust shows up.
SAMPLE_SIZES = {"Training": 300, "PublicTest": 100, "PrivateTest": 100}
MIN_PER_CLASS = 3


def _sort_key(name: str) -> tuple[int, int]:
    split, number = name.rsplit("/", 1)[1].rsplit(".", 1)[0].split("_")
    return SPLITS.index(split), int(number)


@dataclass(frozen=True)
class FERSample:
    """A few hundred FER2013 images in canonical order (split, then numeric id).

    ``images`` uint8 (N, 48, 48), ``labels`` int64 (N,), ``usage`` str (N,);
    ``names`` are the zip member names and ``jpegs`` their untouched bytes.
    """

    names: tuple[str, ...]
    jpegs: tuple[bytes, ...]
    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray

    def members(self, extra: dict[str, bytes] | None = None, drop: Iterable[str] = ()):
        """``{name: bytes}`` of the sample, minus ``drop``, plus ``extra``."""
        dropped = set(drop)
        members = {n: b for n, b in zip(self.names, self.jpegs, strict=True) if n not in dropped}
        return members | (extra or {})

    def write_zip(self, path: Path, **changes) -> Path:
        """The image-folder release layout, stored like the shared zip."""
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for name, blob in sorted(self.members(**changes).items()):
                archive.writestr(name, blob)
        return path

    def write_folder(self, root: Path, **changes) -> Path:
        for name, blob in self.members(**changes).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(blob)
        return root

    def csv_lines(self) -> list[str]:
        """Data lines ``emotion,pixels,Usage`` of the challenge CSV, no header."""
        return [
            f"{label},{' '.join(map(str, image.ravel()))},{usage}"
            for image, label, usage in zip(self.images, self.labels, self.usage, strict=True)
        ]

    def write_csv(
        self,
        path: Path,
        lines: list[str] | None = None,
        header: str | None = "emotion,pixels,Usage",
        newline: str = "\n",
        bom: bool = False,
    ) -> Path:
        rows = ([header] if header is not None else []) + (lines or self.csv_lines())
        text = ("\ufeff" if bom else "") + newline.join(rows) + newline
        path.write_bytes(text.encode())
        return path


def _pick(names: list[str], rng: np.random.Generator) -> list[str]:
    """A class-stratified sample per split with at least MIN_PER_CLASS per class."""
    chosen = []
    for split, size in SAMPLE_SIZES.items():
        by_class: dict[str, list[str]] = {}
        for name in names:
            if f"/{split}_" in name:
                by_class.setdefault(name.split("/")[-2], []).append(name)
        total = sum(len(v) for v in by_class.values())
        for members in by_class.values():
            k = max(MIN_PER_CLASS, round(size * len(members) / total))
            chosen += [str(n) for n in rng.choice(sorted(members), size=k, replace=False)]
    return sorted(chosen, key=_sort_key)


@pytest.fixture(scope="session")
def fer_zip_path() -> Path:
    """The shared FER2013 zip: ``$FER2013_PATH``, else ``../shared/data/fer2013.zip``."""
    path = Path(os.environ.get("FER2013_PATH") or SHARED_ZIP)
    if not path.exists():
        pytest.skip(f"FER2013 not available at {path} (set FER2013_PATH)")
    return path


@pytest.fixture(scope="session", autouse=True)
def fer_cache_dir(tmp_path_factory) -> Path:
    """A session cache folder set as ``$FER_CACHE_DIR`` so tests never touch ~/.cache."""
    path = tmp_path_factory.mktemp("fer_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def fer_sample(fer_zip_path) -> FERSample:
    """~500 real images (300 Training, 100 per test split, every class in each)."""
    if not zipfile.is_zipfile(fer_zip_path):
        pytest.skip(f"{fer_zip_path} is not the image-folder zip")
    with zipfile.ZipFile(fer_zip_path) as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
        picked = _pick(names, np.random.default_rng(0))
        jpegs = tuple(archive.read(name) for name in picked)
    images = np.stack([np.asarray(Image.open(io.BytesIO(blob))) for blob in jpegs])
    return FERSample(
        names=tuple(picked),
        jpegs=jpegs,
        images=images.astype(np.uint8),
        labels=np.array([FOLDER_LABELS[n.split("/")[-2]] for n in picked], dtype=np.int64),
        usage=np.array([SPLITS[_sort_key(n)[0]] for n in picked]),
    )


@pytest.fixture(scope="session")
def sample_zip(fer_sample, tmp_path_factory) -> Path:
    """The sample as a zip with the release's layout."""
    return fer_sample.write_zip(tmp_path_factory.mktemp("zip") / "fer2013.zip")


@pytest.fixture(scope="session")
def sample_folder(fer_sample, tmp_path_factory) -> Path:
    """The sample extracted: a folder holding ``train/`` and ``test/``."""
    return fer_sample.write_folder(tmp_path_factory.mktemp("folder"))


@pytest.fixture(scope="session")
def sample_csv(fer_sample, tmp_path_factory) -> Path:
    """The sample as the challenge CSV (header, rows in canonical order)."""
    return fer_sample.write_csv(tmp_path_factory.mktemp("csv") / "fer2013.csv")


@pytest.fixture(scope="session")
def small_fer(sample_zip, tmp_path_factory):
    """A ``FER2013`` of the sample (300 Training, 100 PublicTest, 100 PrivateTest)."""
    from fer_lib.data import load_fer2013

    return load_fer2013(sample_zip, cache_dir=tmp_path_factory.mktemp("small_fer_cache"))
