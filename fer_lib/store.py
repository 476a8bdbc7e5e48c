"""Stored results: content-keyed run folders in ``results/``, and ``summary.csv``.

Each catalogue run is stored in ``results/<name>-<hash>/`` (the hash of its whole
description, :attr:`fer_lib.catalogue.Experiment.key`):

- ``config.json``: the experiment and its hash (and the model's family/hyperparameters);
- ``metrics.json``: accuracies on val, public and private (float32, flip TTA; also
  without TTA), per-class accuracy, confusion matrices, params, FLOPs, bytes and
  accuracy at each precision, train seconds, device, and ``scoring``: how the accuracies
  were computed ("fp32", or "bf16 autocast" for GPU runs scored before fp32 scoring);
- ``history.csv``: one row per epoch (an averaged run adds its plain iterate's
  ``plain_val_acc``; its metrics add ``without_average``: that iterate's best epoch and
  accuracies at each precision);
- ``logits.npz`` (float16) or ``predictions.npz`` (uint8) on val, public and private;
- ``weights-bn.npz``: fp16 weights (BatchNorm unfolded) of the students and ablations;
- ``train_logits.npz``: a teacher's or an ensemble's logits on every Training image and
  its mirror, which students distil from offline.

Beside them, ``results/data_summary.json`` holds the data set's numbers (class counts,
pixel statistics, the validation split's class counts; never pixels), so the book shows
them on a clone without FER2013. A result whose config no longer hashes to its folder
is refused, never used.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import catalogue, paths
from .data import EVAL_SETS, FER2013, data_summary
from .experiment_spec import Experiment, config_hash
from .models import build
from .quantize import fold_batchnorm

DATA_SUMMARY = "data_summary.json"  # in the results folder: see `write_data_summary`
SUMMARY_COLUMNS = ("run", "group", "family", "params", "bytes", "precision", "val_acc",
                   "public_acc", "private_acc", "flops", "seed", "width", "teacher")


class StaleResultError(RuntimeError):
    """A stored result whose config no longer hashes to its folder key."""


class MissingResultError(FileNotFoundError):
    """No stored result, and training was not allowed."""


def _results(results_dir: str | os.PathLike | None) -> Path:
    return Path(results_dir) if results_dir is not None else paths.results_dir()


@dataclass
class Result:
    """A stored result: the experiment, its metrics and history, and where it lives."""

    experiment: Experiment
    metrics: dict
    history: list[dict]
    path: Path

    def logits(self) -> dict[str, np.ndarray]:
        """Stored float16 logits (float32 copies) or uint8 predictions, per eval set."""
        for fname in ("logits.npz", "predictions.npz"):
            if (self.path / fname).exists():
                with np.load(self.path / fname) as z:
                    return {k: z[k].astype(np.float32) if z[k].ndim == 2 else z[k] for k in z}
        raise MissingResultError(f"{self.path}: no logits.npz or predictions.npz")

    def has_weights(self) -> bool:
        return (self.path / "weights-bn.npz").exists()

    def architecture(self) -> torch.nn.Module:
        """The network this run trained, freshly initialised (no weights needed).

        Built from the stored model description, so a slimmed run has its own channel
        counts (its config's ``model_args`` describe the network it was cut from), and a
        quantisation-aware run (``folded``) has its BatchNorm folded, as it trained; runs
        stored without one are built from their config.
        """
        meta = json.loads((self.path / "config.json").read_text()).get("model")
        if meta is None:
            cfg = self.experiment.train
            return build(cfg.family, **cfg.model_args)
        model = build(meta["family"], **{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in meta["hparams"].items()})
        return fold_batchnorm(model).train() if meta.get("folded") else model

    def model(self) -> torch.nn.Module:
        """The stored model with its fp16 weights, unfolded (trainable), in eval mode."""
        if not self.has_weights():
            raise MissingResultError(f"{self.path}: weights of large models are not committed")
        with np.load(self.path / "weights-bn.npz") as z:
            state = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z}
        model = self.architecture()
        model.load_state_dict(state)
        return model.eval()


def find_result(exp: Experiment, results_dir: str | os.PathLike | None = None) -> Result | None:
    """The stored result of `exp`, None if absent; StaleResultError if tampered or old."""
    results_dir = _results(results_dir)
    path = results_dir / exp.folder
    if not path.is_dir():
        stale = sorted(p.name for p in results_dir.glob(f"{exp.name}-*") if p.is_dir()
                       and p.name[len(exp.name) + 1:].isalnum() and len(p.name) == len(exp.folder))
        if stale:
            warnings.warn(f"stale result(s) for {exp.name!r} ignored (config changed): "
                          f"{', '.join(stale)}", stacklevel=2)
        return None
    stored = json.loads((path / "config.json").read_text())
    key = config_hash(stored["experiment"])
    if key != exp.key or stored.get("hash") != key:
        raise StaleResultError(f"{path}: its config.json hashes to {key}, not to the folder "
                               f"key {exp.key}; delete the folder and re-run")
    metrics = json.loads((path / "metrics.json").read_text())
    with open(path / "history.csv", newline="") as f:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return Result(exp, metrics, history, path)


def load_result(name: str, results_dir: str | os.PathLike | None = None) -> Result:
    """The stored result of catalogue entry `name`; never trains (what the book calls)."""
    result = find_result(catalogue.get(name), results_dir)
    if result is None:
        raise MissingResultError(f"no stored result for {name!r} in {_results(results_dir)}; "
                                 f"run `fer reproduce --only {name}`")
    return result


def result_at(folder: str | os.PathLike) -> Result:
    """The stored result in a run folder (``results/<name>-<hash>``), checked like any."""
    folder = Path(folder)
    config = folder / "config.json"
    if not config.is_file():
        raise MissingResultError(f"{folder}: not a result folder (no config.json)")
    name = json.loads(config.read_text())["experiment"]["name"]
    result = find_result(catalogue.get(name), folder.parent)
    if result is None or result.path.resolve() != folder.resolve():
        raise StaleResultError(f"{folder}: not the current result of {name!r} (its config "
                               f"changed); re-run `fer reproduce --only {name}`")
    return result


def store_result(exp: Experiment, files: dict, results_dir: str | os.PathLike | None = None
                 ) -> Path:
    """Write a run folder atomically (a temporary folder renamed into place).

    `files`: ``metrics`` (dict), ``history`` (list of dicts), ``logits`` ({set: (N, 7)}),
    optionally ``model`` ({family, hparams}), ``weights`` ({name: fp16 array}) and
    ``train_logits`` ((rows, 2, 7)).
    """
    results_dir = _results(results_dir)
    config = {"experiment": exp.to_dict(), "hash": exp.key}
    if "model" in files:
        config["model"] = json.loads(json.dumps(files["model"]))
    with replacing_folder(results_dir, exp.folder) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        write_metrics(tmp, files["metrics"])
        with open(tmp / "history.csv", "w", newline="") as f:
            # An averaged run's rows also hold its plain iterate's val accuracy.
            extra = ["plain_val_acc"] if any("plain_val_acc" in h for h in files["history"]) \
                else []
            writer = csv.DictWriter(f, fieldnames=["epoch", "loss", "val_acc", *extra, "lr",
                                                   "seconds"])
            writer.writeheader()
            writer.writerows(files["history"])
        write_outputs(tmp, files["logits"], exp.keep_logits)
        if "weights" in files:
            np.savez(tmp / "weights-bn.npz", **files["weights"])
        if "train_logits" in files:
            np.savez_compressed(tmp / "train_logits.npz",
                                logits=files["train_logits"].astype(np.float16))
    return results_dir / exp.folder


@contextmanager
def replacing_folder(results_dir: Path, name: str) -> Iterator[Path]:
    """A temporary folder inside `results_dir` that becomes ``results_dir/name`` (replacing
    it) when the block ends, so a run folder is never seen half written; on an error it
    is removed and the old folder stays."""
    results_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=results_dir))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = results_dir / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def write_metrics(folder: Path, metrics: dict) -> None:
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")


def write_outputs(folder: Path, logits: dict[str, np.ndarray], keep_logits: bool) -> None:
    """float16 logits, or uint8 predictions (arg-max), on each evaluation set."""
    if keep_logits:
        np.savez(folder / "logits.npz", **{k: v.astype(np.float16) for k, v in logits.items()})
    else:
        np.savez(folder / "predictions.npz",
                 **{k: v.argmax(axis=1).astype(np.uint8) for k, v in logits.items()})


# ----------------------------------------------------------------------------- summary
def stored_results(results_dir: str | os.PathLike | None = None):
    """``(experiment, result)`` for every catalogue run with a stored result, in
    catalogue order (what summary.csv and the book's tables iterate over)."""
    for exp in catalogue.experiments().values():
        result = find_result(exp, results_dir)
        if result is not None:
            yield exp, result


def accuracy_by_precision(exp: Experiment, metrics: dict) -> dict[str, dict[str, float]]:
    """``{precision: {"val"|"public"|"private": accuracy}}`` of a stored result; a run
    scored at one precision only (older results, ensembles) has its reported one."""
    found = dict(metrics.get("acc_by_precision") or {})
    found.setdefault(exp.precision, {s: metrics[f"{s}_acc"] for s in EVAL_SETS})
    return found


def summary_rows(results_dir: str | os.PathLike | None = None) -> list[dict]:
    """One row per stored catalogue result, at the precision it is reported at."""
    rows = []
    for exp, result in stored_results(results_dir):
        m = result.metrics
        acc = accuracy_by_precision(exp, m)[exp.precision]
        trained = exp.kind != "ensemble"
        rows.append({"run": exp.name, "group": exp.group,
                     "family": exp.train.family if trained else "ensemble",
                     "params": m["params"], "bytes": m["bytes"][exp.precision],
                     "precision": exp.precision, "val_acc": round(acc["val"], 6),
                     "public_acc": round(acc["public"], 6),
                     "private_acc": round(acc["private"], 6), "flops": m["flops"],
                     "seed": exp.train.seed if trained else "",
                     "width": exp.train.model_args.get("width", 1.0) if trained else "",
                     "teacher": exp.teacher or ""})
    return rows


def write_summary(results_dir: str | os.PathLike | None = None) -> Path:
    """(Re)write ``results/summary.csv`` from the per-run folders."""
    path = _results(results_dir) / "summary.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(summary_rows(results_dir))
    return path


# ----------------------------------------------------------------------------- data summary
def write_data_summary(data: FER2013, results_dir: str | os.PathLike | None = None) -> Path:
    """(Re)write ``results/data_summary.json`` from the data set (`fer data-summary`)."""
    path = _results(results_dir) / DATA_SUMMARY
    path.write_text(json.dumps(data_summary(data), indent=1) + "\n")
    return path


def load_data_summary(results_dir: str | os.PathLike | None = None) -> dict:
    """The committed data summary (see :func:`fer_lib.data.data_summary`): no pixels needed."""
    path = _results(results_dir) / DATA_SUMMARY
    if not path.exists():
        raise MissingResultError(f"{path} is missing; with FER2013 at hand, run "
                                 "`fer data-summary --write`")
    return json.loads(path.read_text())


def bf16_scoring_effect(results_dir: str | os.PathLike | None = None) -> dict:
    """How much bf16-autocast scoring moved accuracies, on the runs measured both ways.

    Runs trained on a GPU before scoring became float32 everywhere were scored under
    bf16 autocast (``metrics["scoring"] == "bf16 autocast"``); those whose weights are
    committed were re-scored in float32 and also under bf16 autocast (`fer rescore`).
    Returns ``{"max_abs": largest |fp32 - bf16| accuracy over those runs and sets (a
    fraction), "runs": how many runs it is measured on, "affected": names of the stored
    runs whose numbers are still bf16-scored}``.
    """
    diffs, measured, affected = [], 0, []
    for exp in catalogue.experiments().values():
        result = find_result(exp, results_dir)
        if result is None:
            continue
        m = result.metrics
        if m.get("scoring") == "bf16 autocast":
            affected.append(exp.name)
        if "acc_bf16_autocast" in m:
            measured += 1
            diffs += [abs(m["acc_bf16_autocast"][s] - m[f"{s}_acc"]) for s in EVAL_SETS]
    return {"max_abs": max(diffs) if diffs else float("nan"), "runs": measured,
            "affected": affected}
