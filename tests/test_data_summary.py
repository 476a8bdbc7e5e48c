"""The data summary: the numbers the book shows about FER2013 without its pixels.

`results/data_summary.json` lets a clone without the data set build the data chapter
with the same tables; these tests check how it is computed (on synthetic arrays), that
the committed file is whole and consistent, and, with the data at hand, that it is
not stale.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_lib import experiments as ex
from fer_lib.data import CLASS_NAMES, FER2013, SPLITS, data_summary, train_val_split


@pytest.fixture(scope="module")
def synthetic() -> FER2013:
    """70 Training, 21 PublicTest, 14 PrivateTest random images; every class present."""
    rng = np.random.default_rng(3)
    sizes = {"Training": 70, "PublicTest": 21, "PrivateTest": 14}
    usage = np.concatenate([[split] * n for split, n in sizes.items()])
    labels = np.concatenate([rng.permutation(np.arange(n) % 7) for n in sizes.values()])
    images = rng.integers(0, 256, size=(len(usage), 48, 48), dtype=np.uint8)
    return FER2013(images, labels.astype(np.int64), usage)


def test_counts_and_pixel_statistics(synthetic):
    summary = data_summary(synthetic)
    assert summary["image_size"] == [48, 48]
    assert summary["class_names"] == list(CLASS_NAMES)
    for split in SPLITS:
        images, labels = synthetic.split(split)
        entry = summary["splits"][split]
        assert entry["count"] == np.bincount(labels, minlength=7).tolist()
        assert entry["mean"] == pytest.approx(images.mean(), abs=0.006)
        assert entry["std"] == pytest.approx(images.std(), abs=0.006)


def test_validation_counts_follow_the_protocol_split(synthetic):
    summary = data_summary(synthetic, val_fraction=0.2, split_seed=5)
    protocol = summary["validation"]
    _, labels = synthetic.split("Training")
    train_rows, val_rows = train_val_split(labels, 0.2, 5)
    assert protocol["val_fraction"] == 0.2 and protocol["split_seed"] == 5
    assert protocol["val"] == np.bincount(labels[val_rows], minlength=7).tolist()
    assert protocol["train"] == np.bincount(labels[train_rows], minlength=7).tolist()


def test_summary_is_json_and_round_trips(synthetic, tmp_path):
    path = ex.write_data_summary(synthetic, tmp_path)
    assert path == tmp_path / ex.DATA_SUMMARY
    assert ex.load_data_summary(tmp_path) == json.loads(json.dumps(data_summary(synthetic)))


def _no_nan(constant: str):
    raise ValueError(f"{constant} is not JSON")


def test_train_csv_alone_gives_strict_json(small_fer, tmp_path, capsys):
    """The course's train.csv has no test rows: its empty splits' statistics are null."""
    import fer_lib.cli as cli
    from fer_lib.homework import write_course_csvs

    train_csv = write_course_csvs(small_fer, tmp_path, which=("train",))["train"]
    cli.main(["data-summary", "--data", str(train_csv)])
    summary = json.loads(capsys.readouterr().out, parse_constant=_no_nan)
    for split in ("PublicTest", "PrivateTest"):
        assert summary["splits"][split] == {"count": [0] * 7, "mean": None, "std": None}
    assert 0 < summary["splits"]["Training"]["mean"] < 255
    assert sum(summary["splits"]["Training"]["count"]) == len(small_fer.split("Training")[1])


def test_missing_summary_says_how_to_make_it(tmp_path):
    with pytest.raises(ex.MissingResultError, match="fer data-summary --write"):
        ex.load_data_summary(tmp_path)


def test_committed_summary_is_whole_and_consistent():
    summary = ex.load_data_summary()
    assert set(summary["splits"]) == set(SPLITS)
    for entry in summary["splits"].values():
        assert len(entry["count"]) == len(CLASS_NAMES) and min(entry["count"]) > 0
        assert 0 < entry["mean"] < 255 and 0 < entry["std"] < 128
    protocol = summary["validation"]
    together = np.add(protocol["train"], protocol["val"]).tolist()
    assert together == summary["splits"]["Training"]["count"]


@pytest.mark.slow
def test_committed_summary_matches_the_data(fer_zip_path):
    from fer_lib.data import load_fer2013

    fresh = data_summary(load_fer2013(fer_zip_path))
    committed = ex.load_data_summary()
    for split in SPLITS:
        assert fresh["splits"][split]["count"] == committed["splits"][split]["count"]
        for stat in ("mean", "std"):
            assert fresh["splits"][split][stat] == pytest.approx(
                committed["splits"][split][stat], abs=0.05)
    assert fresh["validation"] == committed["validation"]
