"""`fer rescore`: measure a stored run again from what it stores, in float32.

Runs scored before every accuracy was float32 (bf16 autocast on a GPU) are re-measured
here from their committed weights; a run whose numbers do not change is left untouched,
so a committed result shows no diff.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .catalogue import Experiment
from .data import FER2013
from .experiments import measure
from .quantize import PRECISIONS, export_npz
from .store import MissingResultError, find_result, write_metrics, write_outputs


def _same_numbers(new: dict, old: dict) -> bool:
    """Whether two metrics dicts agree on everything but the ``scoring`` note, as stored
    (JSON: tuples are lists, numpy floats are floats)."""
    def numbers(metrics):
        return json.loads(json.dumps({k: v for k, v in metrics.items() if k != "scoring"}))
    return numbers(new) == numbers(old)


def rescore(exp: Experiment, data: FER2013, *, results_dir: str | os.PathLike | None = None,
            device: str = "cpu") -> str:
    """Re-measure a stored run from what it stores; returns what was done.

    A run whose weights are committed is scored again by `measure` from those (fp16)
    weights: every accuracy, byte count and file hash then describes the files that are
    exported from them. A run without weights keeps its accuracies (nothing stored can
    reproduce them); its byte counts are re-measured on its architecture, since a file's
    size depends on the tensors' shapes only. Training facts, the earlier bf16-autocast
    check (``acc_bf16_autocast``) and an averaged run's ``without_average`` are kept.
    """
    result = find_result(exp, results_dir)
    if result is None:
        raise MissingResultError(f"no stored result for {exp.name!r}")
    old = result.metrics
    if exp.kind == "ensemble":
        return old.setdefault("scoring", "members' stored logits")
    with tempfile.TemporaryDirectory() as work:
        if not result.has_weights():
            model = result.architecture()
            sizes = {p: export_npz(model, Path(work) / f"{p}.npz", p) for p in PRECISIONS}
            if sizes == old.get("bytes"):
                return f"{old.get('scoring', 'fp32')} (no weights stored: bytes unchanged)"
            write_metrics(result.path, old | {"bytes": sizes})
            return f"{old.get('scoring', 'fp32')} (no weights stored: bytes re-measured)"
        metrics, logits = measure(result.model(), data, exp.train, Path(work), device)
    # Kept as measured: training facts, the old bf16 check, and the variant without
    # weight averaging (its weights are not stored, so it cannot be re-measured).
    metrics.update({k: old[k] for k in ("best_epoch", "epochs", "device", "train_seconds",
                                        "acc_bf16_autocast", "without_average", "soft_labels")
                     if k in old})
    if old.get("scoring", "").startswith("fp32") and _same_numbers(metrics, old):
        # Measured in float32 on these weights before (a trained run is scored on the
        # weights it stores): nothing to rewrite, so a committed result shows no diff.
        return f"{old['scoring']} (unchanged: nothing rewritten)"
    metrics["scoring"] = "fp32, from the stored fp16 weights"
    write_metrics(result.path, metrics)
    write_outputs(result.path, logits, exp.keep_logits)
    return metrics["scoring"]
