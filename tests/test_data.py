"""fer_lib.data: sources agree, bad input is refused clearly, the cache is safe."""

from __future__ import annotations

import io
import os
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from fer_lib import data, readers
from fer_lib.data import (
    CLASS_NAMES,
    FER2013,
    SPLITS,
    FER2013Error,
    FER2013Warning,
    load_fer2013,
    resolve_path,
    stratified_subset,
    train_val_split,
)

# Per-split class counts from /work/shared/data/README.md (the data set's own table).
README_COUNTS = {
    "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "PublicTest": [467, 56, 496, 895, 653, 415, 607],
    "PrivateTest": [491, 55, 528, 879, 594, 416, 626],
}


def encode_image(image: np.ndarray, fmt: str = "JPEG") -> bytes:
    """Encode a uint8 array (grey (H, W) or RGB (H, W, 3)) as an image file."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def assert_same(loaded: FER2013, sample) -> None:
    np.testing.assert_array_equal(loaded.images, sample.images)
    np.testing.assert_array_equal(loaded.labels, sample.labels)
    np.testing.assert_array_equal(loaded.usage, sample.usage)


def load_quietly(path, **kwargs) -> FER2013:
    """Load with every warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_fer2013(path, **kwargs)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


# --------------------------------------------------------------------------- the real zip


def test_shared_zip_has_the_documented_class_counts(fer_zip_path, fer_cache_dir):
    fer = load_quietly(fer_zip_path, cache_dir=fer_cache_dir)
    assert fer.images.dtype == np.uint8 and fer.images.shape == (len(fer), 48, 48)
    assert fer.labels.dtype == np.int64 and fer.class_names == CLASS_NAMES
    counts = fer.class_counts()
    assert {s: c.tolist() for s, c in counts.items()} == README_COUNTS
    # Canonical order: the splits come as contiguous blocks in SPLITS order.
    first = [int(np.argmax(fer.usage == s)) for s in SPLITS]
    assert first == sorted(first) and first[0] == 0


def test_second_load_of_shared_zip_reads_the_cache(fer_zip_path, fer_cache_dir, monkeypatch):
    # What makes a second load take well under a second (benchmarks/bench_data_load.py
    # times it): it never decodes the JPEGs again. Checked by behaviour, not by a clock.
    first = load_fer2013(fer_zip_path, cache_dir=fer_cache_dir)  # decodes unless cached

    def no_decoding(*args, **kwargs):
        raise AssertionError("the second load decoded the images again")

    monkeypatch.setattr(data, "decode_source", no_decoding)
    again = load_fer2013(fer_zip_path, cache_dir=fer_cache_dir)
    assert np.array_equal(again.labels, first.labels) and len(again.images) == len(first.images)


def test_real_images_agree_in_every_source_kind(real_fer_sample, tmp_path, cache):
    """Real JPEGs (not our encoder's) decode as PIL decodes them, from the zip, the folder
    and the CSV, and a real class-stratified sample passes the statistics check."""
    sources = (real_fer_sample.write_zip(tmp_path / "real.zip"),
               real_fer_sample.write_folder(tmp_path / "real"),
               real_fer_sample.write_csv(tmp_path / "real.csv"))
    for source in sources:
        assert_same(load_quietly(source, cache_dir=cache), real_fer_sample)


# --------------------------------------------------------------------------- the sample


def test_synthetic_sample_is_a_fair_stand_in(fer_sample):
    """What the other tests rely on: every class in every split, non-contiguous ids of
    several lengths (so text order is not numeric order), equal statistics in every
    split, and reference pixels that are the decode of the stored JPEG bytes."""
    assert len(fer_sample.names) == len(set(fer_sample.names)) == len(fer_sample.labels)
    for split in SPLITS:
        mask = fer_sample.usage == split
        assert np.bincount(fer_sample.labels[mask], minlength=7).min() >= 3, split
        names = [n for n, m in zip(fer_sample.names, mask, strict=True) if m]
        ids = [int(n.rsplit("_", 1)[1].split(".")[0]) for n in names]
        assert ids == sorted(ids)  # canonical order: by numeric id within a split
        assert np.diff(ids).max() > 1 and {9, 10} <= set(ids)
        assert len({len(str(i)) for i in ids}) >= 4
        assert sorted(ids, key=str) != ids
        images = fer_sample.images[mask].astype(np.float64)
        assert images.mean() == pytest.approx(129.5, abs=2)
        assert images.std() == pytest.approx(65, abs=2)
    # Splits are blocks in SPLITS order, and the zip's (path) order is not canonical.
    assert list(dict.fromkeys(fer_sample.usage)) == list(SPLITS)
    assert sorted(fer_sample.names) != list(fer_sample.names)
    for i in (0, len(fer_sample.names) // 2, -1):
        decoded = np.asarray(Image.open(io.BytesIO(fer_sample.jpegs[i])))
        np.testing.assert_array_equal(decoded, fer_sample.images[i])
    assert (fer_sample.labels == np.array(
        [data.FOLDER_LABELS[n.split("/")[-2]] for n in fer_sample.names])).all()


# --------------------------------------------------------------------------- sources


def test_zip_matches_independent_decode(sample_zip, fer_sample, cache):
    fer = load_quietly(sample_zip, cache_dir=cache)
    assert_same(fer, fer_sample)
    assert fer.source == str(sample_zip)


def test_every_source_kind_gives_identical_arrays(
    sample_zip, sample_folder, sample_csv, fer_sample, tmp_path, cache
):
    holding_zip = tmp_path / "holds_zip"
    holding_zip.mkdir()
    (holding_zip / "fer2013.zip").write_bytes(sample_zip.read_bytes())
    holding_csv = tmp_path / "holds_csv"
    holding_csv.mkdir()
    (holding_csv / "fer2013.csv").write_bytes(sample_csv.read_bytes())
    nested = fer_sample.write_folder(tmp_path / "outer" / "fer2013")
    for source in (sample_zip, sample_folder, sample_csv, holding_zip, holding_csv, nested.parent):
        assert_same(load_quietly(source, cache_dir=cache), fer_sample)


def test_small_fer_fixture(small_fer):
    sizes = {s: len(small_fer.split(s)[1]) for s in SPLITS}
    assert sizes["Training"] >= 300 and sizes["PublicTest"] >= 100
    assert all((c > 0).all() for c in small_fer.class_counts().values())


@pytest.mark.parametrize(
    "variant",
    [
        dict(header=None),
        dict(header="EMOTION,PIXELS,USAGE"),
        dict(header=" emotion , pixels ,Usage "),
        dict(header="emotion,Usage,pixels", reorder=True),
        dict(newline="\r\n"),
        dict(bom=True),
        dict(bom=True, header=None),
        dict(trailing="\n\n"),
        dict(trailing=""),
        dict(spaces=True),
    ],
    ids=lambda v: "-".join(f"{k}={v[k]!r}" for k in v),
)
def test_csv_variants_of_real_downloads(fer_sample, tmp_path, cache, variant):
    lines = fer_sample.csv_lines()
    if variant.pop("reorder", False):
        lines = [",".join(line.split(",")[i] for i in (0, 2, 1)) for line in lines]
    if variant.pop("spaces", False):
        lines = [" , ".join(f" {f} " for f in line.split(",")) for line in lines]
    trailing = variant.pop("trailing", None)
    path = fer_sample.write_csv(tmp_path / "fer.csv", lines, **variant)
    if trailing is not None:
        path.write_bytes(path.read_bytes().rstrip(b"\r\n") + trailing.encode())
    assert_same(load_quietly(path, cache_dir=cache), fer_sample)


def test_csv_rows_are_grouped_by_split_keeping_row_order(fer_sample, tmp_path, cache):
    lines = fer_sample.csv_lines()
    shuffled = lines[::-1]  # PrivateTest rows first, every split reversed
    fer = load_quietly(fer_sample.write_csv(tmp_path / "f.csv", shuffled), cache_dir=cache)
    for split in SPLITS:
        mask = fer_sample.usage == split
        np.testing.assert_array_equal(fer.split(split)[0], fer_sample.images[mask][::-1])


def test_zip_debris_is_not_data(fer_sample, tmp_path, cache):
    extra = {
        "__MACOSX/train/angry/._Training_1.jpg": b"mac",
        "train/.DS_Store": b"finder",
        "README.txt": b"hello",
    }
    fer = load_quietly(fer_sample.write_zip(tmp_path / "f.zip", extra=extra), cache_dir=cache)
    assert_same(fer, fer_sample)


def test_zip_holding_the_challenge_csv(sample_csv, fer_sample, tmp_path, cache):
    path = tmp_path / "kaggle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(sample_csv, "fer2013/fer2013.csv")
    assert_same(load_quietly(path, cache_dir=cache), fer_sample)


def test_split_and_counts(small_fer):
    images, labels = small_fer.split("PublicTest")
    assert images.shape == (len(labels), 48, 48) and labels.dtype == np.int64
    assert sum(int(c.sum()) for c in small_fer.class_counts().values()) == len(small_fer)
    with pytest.raises(FER2013Error, match="Validation"):
        small_fer.split("Validation")


def test_dataclass_refuses_wrong_arrays():
    with pytest.raises(FER2013Error, match="uint8"):
        FER2013(np.zeros((2, 48, 48), np.float32), np.zeros(2, np.int64), np.array(SPLITS[:2]))
    with pytest.raises(FER2013Error, match="labels"):
        FER2013(np.zeros((2, 48, 48), np.uint8), np.zeros(3, np.int64), np.array(SPLITS[:2]))


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="FER2013_PATH"):
        load_fer2013(tmp_path / "nope.zip")


def test_corrupt_zip(tmp_path, cache):
    path = tmp_path / "fer2013.zip"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(FER2013Error, match="fer2013.zip.*corrupt"):
        load_fer2013(path, cache_dir=cache)


def test_truncated_zip(sample_zip, tmp_path, cache):
    path = tmp_path / "half.zip"
    path.write_bytes(sample_zip.read_bytes()[: sample_zip.stat().st_size // 2])
    with pytest.raises(FER2013Error, match="half.zip.*corrupt or truncated"):
        load_fer2013(path, cache_dir=cache)


GREY_64 = np.full((64, 64), 128, np.uint8)
RGB_48 = np.full((48, 48, 3), 128, np.uint8)


@pytest.mark.parametrize(
    ("name", "blob", "match"),
    [
        ("train/happy/Training_1.jpg", encode_image(GREY_64), "Training_1.jpg.*64x64"),
        ("train/happy/Training_2.jpg", encode_image(RGB_48), "Training_2.jpg.*mode RGB"),
        ("train/happy/Training_3.png", encode_image(RGB_48, "PNG"), "Training_3.png.*mode RGB"),
        ("train/happy/Training_4.jpg", b"\xff\xd8 not a jpeg", "Training_4.jpg.*cannot decode"),
        ("train/joy/Training_5.jpg", encode_image(GREY_64[:48, :48]), "joy.*unknown class"),
        ("test/happy/Validation_6.jpg", encode_image(GREY_64[:48, :48]), "Validation_6.jpg"),
        ("test/happy/PublicTest_x7.jpg", encode_image(GREY_64[:48, :48]), "PublicTest_x7.jpg"),
        ("Training_8.jpg", encode_image(GREY_64[:48, :48]), "Training_8.jpg.*class folder"),
    ],
)
def test_bad_images_are_named(fer_sample, tmp_path, cache, name, blob, match):
    archive = fer_sample.write_zip(tmp_path / "f.zip", extra={name: blob})
    folder = fer_sample.write_folder(tmp_path / "folder", extra={name: blob})
    for source in (archive, folder):
        with pytest.raises(FER2013Error, match=match):
            load_fer2013(source, cache_dir=cache)


@pytest.mark.parametrize("missing", SPLITS)
def test_empty_split_is_named(fer_sample, tmp_path, cache, missing):
    drop = [n for n, u in zip(fer_sample.names, fer_sample.usage, strict=True) if u == missing]
    archive = fer_sample.write_zip(tmp_path / "f.zip", drop=drop)
    with pytest.raises(FER2013Error, match=missing):
        load_fer2013(archive, cache_dir=cache)
    lines = [line for line in fer_sample.csv_lines() if not line.endswith(missing)]
    with pytest.raises(FER2013Error, match=missing):
        load_fer2013(fer_sample.write_csv(tmp_path / "f.csv", lines), cache_dir=cache)


def _pixels(values) -> str:
    return " ".join(map(str, values))


BAD_ROWS = [
    (f"3,{_pixels([0] * 2303)},Training", "2303 pixels"),
    (f"3,{_pixels([0] * 2305)},Training", "2305 pixels"),
    (f"3,{_pixels([0] * 2303 + ['1.5'])},Training", "non-integer pixel"),
    (f"3,{_pixels([0] * 2303 + ['x'])},Training", "non-integer pixel"),
    (f"3,{_pixels([0] * 2303 + [256])},Training", "pixel outside 0..255"),
    (f"3,{_pixels([-1] + [0] * 2303)},Training", "pixel outside 0..255"),
    (f"7,{_pixels([0] * 2304)},Training", "emotion '7'"),
    (f"-1,{_pixels([0] * 2304)},Training", "emotion '-1'"),
    (f"2.0,{_pixels([0] * 2304)},Training", "emotion '2.0'"),
    (f"happy,{_pixels([0] * 2304)},Training", "emotion 'happy'"),
    (f"3,{_pixels([0] * 2304)},Validation", "unknown Usage 'Validation'"),
    (f"3,{_pixels([0] * 2304)}", "2 fields"),
]


@pytest.mark.parametrize(("row", "match"), BAD_ROWS, ids=[m for _, m in BAD_ROWS])
def test_bad_csv_rows_are_named(fer_sample, tmp_path, cache, row, match):
    lines = fer_sample.csv_lines()
    lines.insert(5, row)
    path = fer_sample.write_csv(tmp_path / "bad.csv", lines)
    # Line 7: the header is line 1 and the bad row follows five good ones.
    with pytest.raises(FER2013Error, match=f"bad.csv line 7: {match}"):
        load_fer2013(path, cache_dir=cache)


def test_missing_csv_column_is_named(fer_sample, tmp_path, cache):
    lines = [line.rsplit(",", 1)[0] for line in fer_sample.csv_lines()]
    path = fer_sample.write_csv(tmp_path / "train.csv", lines, header="emotion,pixels")
    with pytest.raises(FER2013Error, match=r"train.csv: missing CSV column.*usage"):
        load_fer2013(path, cache_dir=cache)


def test_empty_csv(tmp_path, cache):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(FER2013Error, match="empty.csv.*empty"):
        load_fer2013(tmp_path / "empty.csv", cache_dir=cache)


def test_skip_bad_skips_and_says_so(fer_sample, tmp_path, cache):
    lines = fer_sample.csv_lines()
    lines[3:3] = [BAD_ROWS[0][0], BAD_ROWS[6][0], BAD_ROWS[10][0]]
    path = fer_sample.write_csv(tmp_path / "bad.csv", lines)
    with pytest.warns(FER2013Warning, match=r"skipped 3 .*line 5: 2303 pixels"):
        fer = load_fer2013(path, cache_dir=cache, skip_bad=True)
    assert_same(fer, fer_sample)
    # From the cache: the warning comes again, and without skip_bad it is still an error.
    with pytest.warns(FER2013Warning, match="skipped 3"):
        load_fer2013(path, cache_dir=cache, skip_bad=True)
    with pytest.raises(FER2013Error, match="line 5"):
        load_fer2013(path, cache_dir=cache)


def test_skip_bad_images(fer_sample, tmp_path, cache):
    extra = {"train/joy/Training_1.jpg": b"x", "train/happy/Training_2.jpg": b"y"}
    archive = fer_sample.write_zip(tmp_path / "f.zip", extra=extra)
    with pytest.warns(FER2013Warning, match="skipped 2"):
        assert_same(load_fer2013(archive, cache_dir=cache, skip_bad=True), fer_sample)


# --------------------------------------------------------------------------- cache


@pytest.fixture
def count_decodes(monkeypatch):
    """Count calls to the JPEG decoder; ``calls[0]`` is the running total."""
    calls = [0]
    decode = readers._decode_image

    def counting(blob, name):
        calls[0] += 1
        return decode(blob, name)

    monkeypatch.setattr(readers, "_decode_image", counting)
    return calls


def _refuse_decoding(blob, name):
    raise AssertionError(f"decoded {name} although the cache is fresh")


def test_cache_hit_does_not_decode(sample_zip, fer_sample, cache, monkeypatch):
    load_fer2013(sample_zip, cache_dir=cache)
    monkeypatch.setattr(readers, "_decode_image", _refuse_decoding)
    assert_same(load_fer2013(sample_zip, cache_dir=cache), fer_sample)


def test_cache_miss_decodes_once_and_writes_one_file(sample_zip, cache, count_decodes):
    fer = load_fer2013(sample_zip, cache_dir=cache)
    assert count_decodes[0] == len(fer)
    assert len(list(cache.glob("*.npz"))) == 1 and not list(cache.glob("*.tmp"))


def test_use_cache_false_neither_reads_nor_writes(sample_zip, cache, count_decodes):
    load_fer2013(sample_zip, cache_dir=cache, use_cache=False)
    load_fer2013(sample_zip, cache_dir=cache, use_cache=False)
    assert count_decodes[0] == 2 * len(load_fer2013(sample_zip, cache_dir=cache, use_cache=False))
    assert not cache.exists()


def test_cache_dir_from_environment(sample_zip, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "env_cache"))
    load_fer2013(sample_zip)
    assert len(list((tmp_path / "env_cache").glob("*.npz"))) == 1


def test_changed_zip_is_decoded_again(fer_sample, tmp_path, cache, count_decodes):
    path = fer_sample.write_zip(tmp_path / "f.zip")
    load_fer2013(path, cache_dir=cache)
    first = count_decodes[0]
    # New content under the same name: the cache key must notice.
    inverted = encode_image(255 - fer_sample.images[0])
    path = fer_sample.write_zip(path, extra={fer_sample.names[0]: inverted})
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fer = load_fer2013(path, cache_dir=cache)
    assert count_decodes[0] == 2 * first
    np.testing.assert_array_equal(fer.images[0], np.asarray(Image.open(io.BytesIO(inverted))))
    assert len(list(cache.glob("*.npz"))) == 1  # the stale cache is gone


def test_same_size_same_mtime_edit_is_decoded_again(fer_sample, tmp_path, cache):
    """The cache is keyed on content: an edit that keeps size and mtime is still seen."""
    path = fer_sample.write_csv(tmp_path / "f.csv")
    before = load_fer2013(path, cache_dir=cache)
    stat, text = path.stat(), path.read_text()
    first_row = text.index("\n") + 1  # after the header
    label = text[first_row]
    path.write_text(text[:first_row] + str((int(label) + 1) % 7) + text[first_row + 1:])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    after = load_fer2013(path, cache_dir=cache)
    changed = np.flatnonzero(after.labels != before.labels)
    assert len(changed) == 1 and after.labels[changed[0]] == (int(label) + 1) % 7


def test_touched_but_unchanged_folder_is_served_from_the_cache(fer_sample, tmp_path, cache,
                                                               count_decodes):
    folder = fer_sample.write_folder(tmp_path / "folder")
    load_fer2013(folder, cache_dir=cache)
    member = folder / fer_sample.names[-1]
    stat = member.stat()
    os.utime(member, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_fer2013(folder, cache_dir=cache)
    assert count_decodes[0] == len(fer_sample.names)


def test_changed_folder_member_is_decoded_again(fer_sample, tmp_path, cache, count_decodes):
    folder = fer_sample.write_folder(tmp_path / "folder")
    load_fer2013(folder, cache_dir=cache)
    (folder / fer_sample.names[-1]).write_bytes(encode_image(255 - fer_sample.images[-1]))
    fer = load_fer2013(folder, cache_dir=cache)
    assert count_decodes[0] == 2 * len(fer_sample.names)
    assert not np.array_equal(fer.images[-1], fer_sample.images[-1])


def test_corrupt_cache_is_rewritten(sample_zip, fer_sample, cache, count_decodes):
    load_fer2013(sample_zip, cache_dir=cache)
    (cache_file,) = cache.glob("*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:1000])
    assert_same(load_fer2013(sample_zip, cache_dir=cache), fer_sample)
    assert count_decodes[0] == 2 * len(fer_sample.names)
    with np.load(cache_file) as npz:  # rewritten whole
        assert npz["images"].shape == fer_sample.images.shape


# --------------------------------------------------------------------------- resolve_path


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty project's data/ folder (the project root set by FER_PROJECT_DIR), with
    FER2013_PATH unset."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("FER_PROJECT_DIR", str(tmp_path))
    monkeypatch.delenv("FER2013_PATH", raising=False)
    return folder


def test_resolve_precedence(data_dir, sample_zip, sample_csv, monkeypatch):
    (data_dir / "fer2013").mkdir()
    assert resolve_path() == data_dir / "fer2013"
    (data_dir / "fer2013.csv").touch()
    assert resolve_path() == data_dir / "fer2013.csv"
    (data_dir / "fer2013.zip").touch()
    assert resolve_path() == data_dir / "fer2013.zip"
    monkeypatch.setenv("FER2013_PATH", str(sample_csv))
    assert resolve_path() == sample_csv
    assert resolve_path(sample_zip) == sample_zip


def test_load_without_argument_uses_environment(data_dir, sample_csv, fer_sample, monkeypatch):
    monkeypatch.setenv("FER2013_PATH", str(sample_csv))
    assert_same(load_fer2013(), fer_sample)


def test_missing_data_message_says_where_to_put_it(data_dir):
    with pytest.raises(FileNotFoundError) as info:
        resolve_path()
    message = str(info.value)
    assert str(data_dir / "fer2013.zip") in message and "FER2013_PATH" in message


def test_missing_environment_path_is_named(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FER2013_PATH", str(tmp_path / "gone.zip"))
    with pytest.raises(FileNotFoundError, match="FER2013_PATH=.*gone.zip"):
        resolve_path()


# --------------------------------------------------------------------------- statistics


def _equalize(images: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(ImageOps.equalize(Image.fromarray(im))) for im in images])


def _blur(images: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(1)))
                     for im in images])


def test_no_statistics_warning_on_a_clean_sample(sample_zip, cache):
    load_quietly(sample_zip, cache_dir=cache)


@pytest.mark.parametrize("tamper", [_equalize, _blur], ids=["equalized", "blurred"])
def test_statistics_warning_on_tampered_training(fer_sample, tmp_path, cache, tamper):
    lines = fer_sample.csv_lines()
    training = fer_sample.usage == "Training"
    tampered = tamper(fer_sample.images[training])
    # The tampering is of the size the check is for (README: std ~78 or ~52, not ~65).
    assert abs(tampered.std() - fer_sample.images[training].std()) > 8
    for i, image in zip(np.flatnonzero(training), tampered, strict=True):
        lines[i] = f"{fer_sample.labels[i]},{_pixels(image.ravel())},Training"
    path = fer_sample.write_csv(tmp_path / "tampered.csv", lines)
    with pytest.warns(FER2013Warning, match="disagree in pixel statistics"):
        fer = load_fer2013(path, cache_dir=cache)
    np.testing.assert_array_equal(fer.split("Training")[0], tampered)  # loaded, not refused


def test_statistics_check_skips_small_splits(fer_sample):
    keep = np.concatenate([np.flatnonzero(fer_sample.usage == s)[:40] for s in SPLITS])
    images = fer_sample.images[keep].copy()
    images[fer_sample.usage[keep] == "Training"] //= 2  # would fail loudly if judged
    fer = FER2013(images, fer_sample.labels[keep], fer_sample.usage[keep])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.check_statistics(fer)


# --------------------------------------------------------------------------- splits

# Class sizes of the real Training split (README), as synthetic labels.
TRAIN_LABELS = np.repeat(np.arange(7), README_COUNTS["Training"])


@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_train_val_split_is_stratified_disjoint_and_covering(fraction):
    train, val = train_val_split(TRAIN_LABELS, fraction, seed=0)
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.union1d(train, val), np.arange(len(TRAIN_LABELS)))
    for label, size in enumerate(README_COUNTS["Training"]):
        assert abs(np.sum(TRAIN_LABELS[val] == label) - fraction * size) <= 1


def test_train_val_split_seeds():
    first = train_val_split(TRAIN_LABELS, 0.1, seed=0)[1]
    assert np.array_equal(first, train_val_split(TRAIN_LABELS, 0.1, seed=0)[1])
    assert not np.array_equal(first, train_val_split(TRAIN_LABELS, 0.1, seed=1)[1])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_train_val_split_refuses_bad_fraction(fraction):
    with pytest.raises(FER2013Error, match="val_fraction"):
        train_val_split(TRAIN_LABELS, fraction)


def test_stratified_subset():
    subset = stratified_subset(TRAIN_LABELS, 300, seed=0)
    assert len(subset) == 300 and subset.dtype == np.int64
    assert np.all(np.diff(subset) > 0)
    shares = np.bincount(TRAIN_LABELS[subset], minlength=7)
    expected = 300 * np.bincount(TRAIN_LABELS) / len(TRAIN_LABELS)
    assert np.all(np.abs(shares - expected) < 1)
    assert np.array_equal(subset, stratified_subset(TRAIN_LABELS, 300, seed=0))
    assert not np.array_equal(subset, stratified_subset(TRAIN_LABELS, 300, seed=1))


@pytest.mark.parametrize("n", [-1, len(TRAIN_LABELS) + 1])
def test_stratified_subset_refuses_bad_size(n):
    with pytest.raises(FER2013Error, match="n must be"):
        stratified_subset(TRAIN_LABELS, n)


def test_split_helpers_refuse_non_integer_labels():
    with pytest.raises(FER2013Error, match="labels"):
        train_val_split(np.zeros((3, 2), np.int64))
    with pytest.raises(FER2013Error, match="labels"):
        stratified_subset(np.zeros(3), 1)
