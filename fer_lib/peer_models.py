"""Peer homework models measured on FER2013's own test halves.

The reports quote the course's Kaggle boards, whose halves are FER2013's swapped (see
`../shared/reference/hw8_reports.md`, "Measured"). So the book compares with the peers'
*shipped* models, run with their own ``hw8_test.sh`` on FER2013's PublicTest and
PrivateTest: ``results/reports_measured.json`` holds the counts, with the repository,
commit, command and file hashes of each measurement (no peer code or weights).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import paths

MEASURED = "reports_measured.json"
# How the book names each measured model.
LABELS = {"report-a": "report A (shipped)", "hhccode": "a peer without distillation (shipped)"}


def reports_measured(results_dir: str | os.PathLike | None = None) -> dict[str, dict]:
    """``{label: {"public": accuracy, "private": accuracy}}`` of each measured peer model
    (accuracies as fractions of the 3,589 images of each half), in `LABELS` order."""
    path = Path(results_dir or paths.results_dir()) / MEASURED
    models = json.loads(path.read_text())["models"]
    return {label: {half: models[key][half]["correct"] / models[key][half]["images"]
                    for half in ("public", "private")}
            for key, label in LABELS.items() if key in models}
