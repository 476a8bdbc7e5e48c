"""Shared fixtures: a synthetic FER2013 of a few hundred images, as every source kind.

``fer_sample`` is made here, from a fixed seed, so the suite runs without the real data
set: 48x48 grey JPEGs in the image-folder release layout, with known labels, the real
class shares and pixel statistics, and ids that are not contiguous and differ in their
number of digits (so canonical order by numeric id is really exercised). Its reference
``images`` are PIL's decode of those JPEG bytes, not through ``fer_lib.data``, so it is an
independent reference for the loader. Each class has its own grating under the noise,
so models can learn it. ``real_fer_sample`` and ``fer_zip_path`` are the real data for the
few tests that need real faces; they skip when it is absent. Every test caches into a
temporary folder (``FER_CACHE_DIR``), never into the user's cache.
"""

from __future__ import annotations

import dataclasses
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
    """A few hundred FER2013-like images in canonical order (split, then numeric id).

    ``images`` uint8 (N, 48, 48), ``labels`` int64 (N,), ``usage`` str (N,);
    ``names`` are the zip member names and ``jpegs`` their bytes; ``images`` are PIL's
    decode of those bytes.
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


def _sample(names: list[str], jpegs: list[bytes]) -> FERSample:
    """A FERSample of image members, put in canonical order; `images` are PIL's decode."""
    order = sorted(range(len(names)), key=lambda i: _sort_key(names[i]))
    names = [names[i] for i in order]
    jpegs = [jpegs[i] for i in order]
    images = np.stack([np.asarray(Image.open(io.BytesIO(blob))) for blob in jpegs])
    return FERSample(
        names=tuple(names),
        jpegs=tuple(jpegs),
        images=images.astype(np.uint8),
        labels=np.array([FOLDER_LABELS[n.split("/")[-2]] for n in names], dtype=np.int64),
        usage=np.array([SPLITS[_sort_key(n)[0]] for n in names]),
    )


# ----------------------------------------------------------------------------- synthetic
# The synthetic sample: class shares of the real Training split (README), so Happy is
# the largest class and Disgust the rarest; every split is drawn the same way.
CLASS_SHARES = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965]) / 28709
SYNTHETIC_SEED = 2013
# Grey levels of every image before clipping and JPEG, which take the std from 66.5 to
# about 65: the real data set's mean 129.5 and std 65 (0..255 scale).
SYNTHETIC_MEAN, SYNTHETIC_STD = 129.5, 66.5
# Ids that sort differently as text and as numbers ("10" < "9"), in every split. Ids
# below 9 are never used: tests add members such as Training_1.jpg to the sample.
FORCED_IDS = (9, 10, 99, 100, 1000)
# What tells the classes apart: a grating, (direction, period in pixels), per class;
# "plaid" is both directions, None no grating. Horizontal flips, +-4 px shifts, +-10 deg
# rotations and +-10% zoom (the trainer's augmentation) keep every class distinguishable.
CLASS_PATTERNS = {
    0: ("rows", 12.0),   # angry: horizontal stripes, coarse
    1: ("cols", 12.0),   # disgust: vertical stripes, coarse
    2: ("rows", 5.0),    # fear: horizontal stripes, fine
    3: ("cols", 5.0),    # happy: vertical stripes, fine
    4: ("plaid", 12.0),  # sad: a coarse plaid
    5: ("plaid", 5.0),   # surprise: a fine plaid
    6: (None, 0.0),      # neutral: noise only
}
SIGNAL_TO_NOISE = 2.0  # standard deviation of the grating over that of the noise


def synthetic_class_counts(size: int) -> list[int]:
    """Images per class in a synthetic split of about `size` images."""
    return [max(MIN_PER_CLASS, round(size * share)) for share in CLASS_SHARES]


def synthetic_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """One 48x48 uint8 image of class `label`: its grating (random phase) plus noise,
    scaled to the data set's mean and standard deviation."""
    direction, period = CLASS_PATTERNS[label]
    y, x = np.mgrid[0:48, 0:48].astype(np.float64)
    wave = np.zeros((48, 48))
    if direction in ("rows", "plaid"):
        wave += np.sin(2 * np.pi * y / period + rng.uniform(0, 2 * np.pi))
    if direction in ("cols", "plaid"):
        wave += np.sin(2 * np.pi * x / period + rng.uniform(0, 2 * np.pi))
    if direction is not None:
        wave *= SIGNAL_TO_NOISE / wave.std()
    z = wave + rng.normal(size=(48, 48))
    z = (z - z.mean()) / z.std()
    return np.clip(np.rint(SYNTHETIC_MEAN + SYNTHETIC_STD * z), 0, 255).astype(np.uint8)


def _encode_jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _synthetic_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct ids of 1 to 8 digits (log-uniform), FORCED_IDS among them, shuffled."""
    ids = set(FORCED_IDS)
    while len(ids) < n:
        ids.add(int(10 ** rng.uniform(1, 8)))
    return rng.permutation(np.array(sorted(ids), dtype=np.int64))


def synthetic_fer(seed: int = SYNTHETIC_SEED) -> FERSample:
    """A synthetic FER2013 in the image-folder layout: SAMPLE_SIZES images per split with
    the real class shares (at least MIN_PER_CLASS of each), learnable from the pixels."""
    rng = np.random.default_rng(seed)
    folders = {label: name for name, label in FOLDER_LABELS.items()}
    names, jpegs = [], []
    for split, size in SAMPLE_SIZES.items():
        labels = np.repeat(np.arange(len(FOLDER_LABELS)), synthetic_class_counts(size))
        labels = rng.permutation(labels)
        ids = _synthetic_ids(len(labels), rng)
        root = "train" if split == "Training" else "test"
        for label, number in zip(labels, ids, strict=True):
            names.append(f"{root}/{folders[label]}/{split}_{number}.jpg")
            jpegs.append(_encode_jpeg(synthetic_image(int(label), rng)))
    return _sample(names, jpegs)


# ----------------------------------------------------------------------------- markers
DATA_MARKER = ("data: needs the real FER2013 (skips without it) or checks what it changes; "
               "CI's second world runs only these (make test-data)")


def pytest_configure(config):
    if not any(line.startswith("data:") for line in config.getini("markers")):
        config.addinivalue_line("markers", DATA_MARKER)


def pytest_collection_modifyitems(config, items):
    """Mark `data` every test that asks for the real data set (``fer_zip_path``, which
    ``real_fer_sample`` needs too): the tests a clone without FER2013 skips."""
    for item in items:
        if "fer_zip_path" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def fer_zip_path() -> Path:
    """The shared FER2013 zip: ``$FER2013_PATH``, else ``../shared/data/fer2013.zip``."""
    path = Path(os.environ.get("FER2013_PATH") or SHARED_ZIP)
    if not path.exists():
        pytest.skip(f"needs the real FER2013, not available at {path} (set FER2013_PATH)")
    return path


def _folder_in_env(tmp_path_factory, variable: str):
    """A session tmp folder named by environment `variable` while the session lasts."""
    path = tmp_path_factory.mktemp(variable.lower())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(variable, str(path))
        yield path


@pytest.fixture(scope="session", autouse=True)
def fer_cache_dir(tmp_path_factory) -> Path:
    """A session cache folder set as ``$FER_CACHE_DIR`` so tests never touch ~/.cache."""
    yield from _folder_in_env(tmp_path_factory, "FER_CACHE_DIR")


@pytest.fixture(scope="session", autouse=True)
def fer_runs_dir(tmp_path_factory) -> Path:
    """``$FER_RUNS_DIR`` in a tmp folder: no test leaves checkpoints in the repo's runs/."""
    yield from _folder_in_env(tmp_path_factory, "FER_RUNS_DIR")


@pytest.fixture(scope="session")
def fer_sample() -> FERSample:
    """A synthetic FER2013 (~300 Training, ~100 per test split), always available."""
    return synthetic_fer()


@pytest.fixture(scope="session")
def real_fer_sample(fer_zip_path) -> FERSample:
    """~500 real images (300 Training, 100 per test split, every class in each), read
    straight from the shared zip with zipfile and PIL: for the few tests about real faces."""
    if not zipfile.is_zipfile(fer_zip_path):
        pytest.skip(f"{fer_zip_path} is not the image-folder zip")
    with zipfile.ZipFile(fer_zip_path) as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
        picked = _pick(names, np.random.default_rng(0))
        jpegs = [archive.read(name) for name in picked]
    return _sample(picked, jpegs)


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


# ----------------------------------------------------------------------------- mini catalogue
TINY = dict(epochs=1, batch_size=64, lr=0.05, warmup_epochs=0.1, channels_last=False)


def mini_catalogue() -> dict:
    """A miniature catalogue: two teachers, their ensemble, a distilled student, a sparse
    student slimmed and fine-tuned, a cut of the student without training, and a student
    averaged and distilled on stored views of its teachers."""
    from fer_lib import experiments as ex
    from fer_lib.train import TrainConfig

    small = dict(family="mobilenet_v2", model_args={"width": 0.15})
    exps = [
        # batch 16: enough steps in one epoch for its logits to tell images apart
        ex.Experiment("t-a", "teacher",
                      TrainConfig(family="cnn", model_args={"width": 0.05},
                                  **dict(TINY, batch_size=16)),
                      keep_logits=True),
        ex.Experiment("t-b", "teacher", TrainConfig(family="mobilenet_v1",
                                                    model_args={"width": 0.05}, seed=1, **TINY),
                      keep_logits=True),
        ex.Experiment("ens", "ensemble", kind="ensemble", members=("t-a", "t-b"),
                      keep_logits=True),
        ex.Experiment("stu", "student", TrainConfig(**small, **TINY), teacher="ens",
                      precision="int8", keep_logits=True),
        ex.Experiment("sparse", "ablation-prune", TrainConfig(**small, bn_l1=1e-3, **TINY)),
    ]
    exps.append(dataclasses.replace(exps[-1], name="slim", slim_from="sparse",
                                    slim_fraction=0.5))
    exps.append(ex.Experiment("cut", "ablation-cut", exps[3].train, kind="cut",
                              slim_from="stu", slim_fraction=0.5, precision="int8"))
    # Distilled on two stored views per image, with a weight average kept.
    exps.append(ex.Experiment("stu-views", "student", TrainConfig(**small, ema=0.9, **TINY),
                              teacher="ens", teacher_views=2, precision="int8"))
    return {e.name: e for e in exps}


@pytest.fixture(scope="session")
def mini_results(small_fer, tmp_path_factory):
    """`mini_catalogue` run once per session into a tmp folder: (catalogue, results dir)."""
    from fer_lib import catalogue as catalogue_module
    from fer_lib import experiments as ex

    root = tmp_path_factory.mktemp("experiments")
    catalogue = mini_catalogue()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalogue_module, "experiments", lambda: catalogue)
        for exp in catalogue.values():  # insertion order respects the dependencies
            ex.load_or_train(exp, small_fer, results_dir=root / "results",
                             runs_dir=root / "runs", device="cpu", quiet=True)
        ex.write_summary(root / "results")
    return catalogue, root / "results"


@pytest.fixture()
def mini(mini_results, monkeypatch):
    """The mini catalogue's results, with the catalogue swapped in for the real one."""
    from fer_lib import catalogue as catalogue_module

    catalogue, results = mini_results
    monkeypatch.setattr(catalogue_module, "experiments", lambda: catalogue)
    return catalogue, results


@pytest.fixture(scope="session")
def smoke_run(sample_zip, tmp_path_factory) -> Path:
    """A folder `fer train smoke` wrote (one epoch on 200 sample images): its
    ``checkpoint.pt`` and ``metrics.json``, shared by the tests that read them."""
    import fer_lib.cli as cli

    out = tmp_path_factory.mktemp("smoke_run") / "run"
    cli.main(["train", "smoke", "--subset", "200", "--epochs", "1", "--out", str(out),
              "--data", str(sample_zip), "--device", "cpu", "--quiet"])
    return out
