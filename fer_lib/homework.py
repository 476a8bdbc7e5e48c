"""The homework's own formats: submissions, their Kaggle scores, and the graded folder.

NTU ML2019 HW8 gave its students ``train.csv`` (``label,feature``) and ``test.csv``
(``id,feature``: PublicTest then PrivateTest in Kaggle's order, ids 0..7177, no labels;
both read by :func:`fer_lib.data.load_fer2013`). They handed in

- a submission: ``id,label`` for every id, which Kaggle scored on the first 3,589 ids
  (public) and on the rest (private): :func:`make_submission`, :func:`read_submission`,
  :func:`score_submission` (`fer predict`, `fer score`);
- a folder ``hw8/`` whose ``hw8_test.sh test.csv out.csv`` wrote that file in under 10
  minutes, at most 225,000 bytes in all (650,000 for the simple baseline) as
  ``du --apparent-size`` counts them, code included: :func:`package` (`fer package`),
  measured by :func:`apparent_size` / :func:`du_size`; :func:`folder_size` measures the
  submission's folder without the data set, for the book.

What the folder holds, and how it is measured, is `fer_lib.hw8_folder` (its names are
re-exported here). Every prediction, here and in the folder, is the arg-max of the mean
logits of each image and its mirror image, as the book's accuracies are measured.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch import nn

from . import catalogue, paths
from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import FER2013, load_fer2013
from .errors import FER2013Error
from .evaluate import accuracy, predict_logits
from .hw8_folder import (  # noqa: F401  (re-exported: the folder's public names)
    PREDICTOR,
    TEST_SCRIPT,
    WEIGHTS_FILE,
    Package,
    apparent_size,
    du_size,
    fitting_precision,
    folder_sizes,
    measure_folder,
    plan_of,
    write_folder,
)
from .quantize import (
    META_KEY,
    PRECISIONS,
    STRONG_BUDGET,
    BudgetExceeded,
    export_npz,
    load_model,
    quantized_copy,
)
from .readers import UNLABELLED, csv_rows, order_by_id, parse_id, parse_label
from .store import MissingResultError, load_result, replacing_folder, result_at

SUBMISSION_COLUMNS = ("id", "label")


class SubmissionError(ValueError):
    """A submission file that is not Kaggle's ``id,label`` for ids 0..N-1."""


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSource:
    """What a submission is made with: `name` (a run or a file), the `precision` of its
    weights, and either the stored run's `trained` model (fp16 weights, BN unfolded) or
    the exported `file` it is read from."""

    name: str
    precision: str
    trained: nn.Module | None = None
    file: Path | None = None

    def model(self) -> nn.Module:
        """The model in eval mode with its weights at `precision` (BN folded unless fp32):
        the one whose flip-TTA logits the book's accuracies at `precision` are."""
        if self.file is not None:
            return load_model(self.file)
        return self.trained if self.precision == "fp32" else \
            quantized_copy(self.trained, self.precision)

    def export(self, path: Path) -> int:
        """Write the exported model (`export_npz`) to `path`; return its bytes."""
        if self.file is not None:
            shutil.copyfile(self.file, path)
            return path.stat().st_size
        return export_npz(self.trained, path, self.precision)


def _export_precision(path: Path) -> str:
    load_model(path)  # a damaged or foreign file fails here, with its reason
    with np.load(path) as z:
        return json.loads(z[META_KEY].tobytes())["precision"]


def training_checkpoint(target: str | os.PathLike) -> Path | None:
    """The checkpoint `target` names when it is one of your own training runs: a ``.pt``
    file, or a folder `fer train` wrote (``checkpoint.pt`` inside, no ``config.json``,
    which marks a stored result instead); None for anything else."""
    path = Path(target)
    if path.suffix == ".pt" and path.is_file():
        return path
    if path.is_dir() and (path / "checkpoint.pt").is_file() and not (path / "config.json").exists():
        return path / "checkpoint.pt"
    return None


def model_source(target: str | os.PathLike | None = None, precision: str | None = None,
                 budget: int | None = STRONG_BUDGET) -> ModelSource:
    """Resolve `target`: a catalogue run name, a result folder (``results/<run>-<hash>``),
    an exported model (``.npz``), or your own training run (a `fer train` folder or its
    ``checkpoint.pt``: the best validation epoch's weights); None is the homework
    submission, ``fer_lib.submission(225_000)``. `precision` defaults to the run's
    reported one; for your own run, to the most precise whose folder fits `budget`
    (`fitting_precision`); a file's weights are at the precision it was exported at,
    and no other."""
    if target is None:
        from .report import submission

        try:  # without a results folder: FileNotFoundError; no run fits: a missing result
            chosen = submission(STRONG_BUDGET)
        except LookupError as error:
            raise MissingResultError(f"{paths.results_dir()}: {error}") from None
        target, precision = chosen.run, precision or chosen.precision
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    path = Path(target)
    checkpoint = training_checkpoint(path)
    if checkpoint is not None:
        model = model_from_checkpoint(load_checkpoint(checkpoint))
        return ModelSource((path if path.is_dir() else path.parent).name,
                           precision or fitting_precision(model, budget), trained=model)
    if path.suffix == ".npz" and path.is_file():
        stored = _export_precision(path)
        if precision not in (None, stored):
            raise ValueError(f"{path} holds {stored} weights, not {precision}: export the run "
                             f"at {precision} or name the run instead")
        return ModelSource(str(path), stored, file=path)
    if path.is_dir():
        result = result_at(path)
    elif str(target) in catalogue.experiments():
        result = load_result(str(target))
    else:
        raise FileNotFoundError(f"{target}: not a catalogue run name, a result folder, an "
                                "exported model (.npz), a training folder (fer train --out) "
                                "or its checkpoint (.pt)")
    return ModelSource(result.experiment.name, precision or result.experiment.precision,
                       trained=result.model())


# ----------------------------------------------------------------------------- submissions
def predict(model: nn.Module, images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """int64 (N,): the class of each uint8 image (N, 48, 48), the arg-max of its flip-TTA
    logits (`evaluate.predict_logits(..., tta=True)`, as every accuracy in the book)."""
    return predict_logits(model, images, tta=True, device=device).argmax(axis=1)


def _write_atomically(path: Path, text: str) -> None:
    """Write the whole file or nothing: a temporary file beside it, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_submission(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Kaggle's format: the header ``id,label``, then ``i,label[i]`` for i = 0..N-1."""
    path = Path(path)
    rows = "".join(f"{i},{int(label)}\n" for i, label in enumerate(labels))
    _write_atomically(path, "id,label\n" + rows)
    return path


def make_submission(target, source, out, precision: str | None = None,
                    device: str = "cpu") -> tuple[ModelSource, int]:
    """Predict every test image of `source` (the course's test.csv, or any FER2013 form:
    its PublicTest then PrivateTest, `FER2013.test_images`) and write `out` as
    ``id,label``. Bad input fails before anything is written. Returns (model, rows)."""
    chosen = model_source(target, precision)  # a bad name fails before a long load
    images = load_fer2013(source).test_images()
    if len(images) == 0:
        raise FER2013Error(f"{source}: no test images to predict (a train.csv alone?)")
    write_submission(out, predict(chosen.model(), images, device))
    return chosen, len(images)


def read_submission(path: str | os.PathLike) -> np.ndarray:
    """An ``id,label`` CSV -> int64 (N,), the label of each id 0..N-1.

    SubmissionError names the file and row: a missing or duplicated id, a label outside
    0..6, a row with other than two fields.
    """
    ids, labels, wheres = [], [], []
    try:
        with open(path, encoding="utf-8-sig", newline="") as text:
            for where, row, columns in csv_rows(text, str(path), SUBMISSION_COLUMNS):
                if len(row) != len(columns):
                    raise FER2013Error(f"{where}: {len(row)} fields, expected 2 (id,label)")
                ids.append(parse_id(row[columns["id"]], where))
                labels.append(parse_label(row[columns["label"]], where, "label"))
                wheres.append(where)
        order = order_by_id(ids, wheres, str(path))
    except (FER2013Error, UnicodeDecodeError) as error:
        raise SubmissionError(str(error)) from None
    return np.asarray(labels, dtype=np.int64)[order]


def score_submission(labels: np.ndarray, data: FER2013, name: str | os.PathLike = "") -> dict:
    """Kaggle's two scores of submission `name` (`labels`: int (N,), by id) against a
    labelled FER2013: ``{"public", "private"}`` accuracies (fractions) and their image
    counts ``n_public``, ``n_private``. Public = the first len(PublicTest) ids (3,589)."""
    if (data.labels[data.usage != "Training"] == UNLABELLED).any():
        raise SubmissionError(f"{data.source} has no test labels (the course's test.csv "
                              "never had them): score against FER2013 itself, e.g. --data "
                              "fer2013.zip or fer2013.csv")
    public, private = data.split("PublicTest")[1], data.split("PrivateTest")[1]
    if len(labels) != len(public) + len(private):
        raise SubmissionError(f"{name or 'the submission'}: {len(labels):,} predictions, but "
                              f"the test set of {data.source} has {len(public) + len(private):,} "
                              "images")
    return {"public": accuracy(labels[:len(public)], public),
            "private": accuracy(labels[len(public):], private),
            "n_public": len(public), "n_private": len(private)}


def _pixel_rows(keys: np.ndarray, images: np.ndarray) -> str:
    return "".join(f"{key},{' '.join(map(str, image.ravel()))}\n"
                   for key, image in zip(keys, images, strict=True))


def write_test_csv(path: str | os.PathLike, images: np.ndarray) -> Path:
    """The course's ``test.csv`` of `images` (uint8 (N, 48, 48)): ``id,feature``, ids
    0..N-1 in order, no labels. For local use: FER2013's pixels are never committed."""
    _write_atomically(Path(path), "id,feature\n" + _pixel_rows(np.arange(len(images)), images))
    return Path(path)


def write_course_csvs(data: FER2013, folder: str | os.PathLike,
                      which: tuple[str, ...] = ("train", "test")) -> dict[str, Path]:
    """Write the course's files of `data` into `folder`: ``train.csv`` (``label,feature``,
    the Training rows in order) and ``test.csv`` (``id,feature``, `FER2013.test_images`,
    no labels), those in `which` that `data` has rows for. Returns ``{role: path}``.
    For local use: FER2013's pixels must never be committed."""
    written = {}
    for role in which:
        if role == "train":
            header, (images, keys) = "label,feature\n", data.split("Training")
        else:
            images = data.test_images()
            header, keys = "id,feature\n", np.arange(len(images))
        if len(images):
            written[role] = Path(folder) / f"{role}.csv"
            _write_atomically(written[role], header + _pixel_rows(keys, images))
    return written


def package(target=None, out: str | os.PathLike = "hw8", precision: str | None = None,
            budget: int | None = STRONG_BUDGET, force: bool = False) -> Package:
    """Write the graded folder `out` for `target` (see :func:`model_source`; None: the
    homework submission) and measure it. Over `budget` bytes (None: no limit) it raises
    BudgetExceeded with the breakdown and leaves nothing behind; an `out` that is not
    empty is replaced only with `force`."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise FileExistsError(f"{out} exists and is not an empty folder"
                              + ("" if not out.is_dir() else ": pass --force to replace it"))
    source = model_source(target, precision, budget)
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    try:
        # Built beside `out` (same filesystem, so the folder's own size is the same) and
        # renamed into place only once it fits.
        with replacing_folder(out.parent, out.name) as tmp:
            tmp.chmod(0o755)  # mkdtemp makes it private; graders must read it
            write_folder(tmp, source)
            built = measure_folder(tmp, source.name, source.precision, budget)
            if budget is not None and built.size > budget:
                raise BudgetExceeded(f"{out}: {built.size:,} B (weights {built.weights:,} + "
                                     f"code {built.code:,} + folders {built.directories:,}) is "
                                     f"over the budget of {budget:,} B by "
                                     f"{built.size - budget:,} B; nothing written")
    except BudgetExceeded:
        for parent in made:  # folders made for `out` alone go too
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        raise
    return replace(built, folder=out)


def folder_size(run: str | None = None, precision: str | None = None) -> dict:
    """The graded folder of `run` (None: the homework submission) at `precision` (None:
    the run's reported one), packaged into a temporary folder and measured; no data set
    needed. Returns :meth:`Package.to_dict`: ``weights``, ``code``, ``directories``,
    ``total`` (bytes, du's rule computed in Python), ``du`` (GNU du's own figure, None
    without it), ``files``, ``run``, ``precision``; ``budget`` is None (compare with
    `quantize.STRONG_BUDGET` / `SIMPLE_BUDGET`). The folder's own entry is the
    filesystem's (4,096 B on ext4, where the course measured)."""
    with tempfile.TemporaryDirectory(prefix="fer-hw8-") as tmp:
        return package(run, Path(tmp) / "hw8", precision, budget=None).to_dict()
