"""The peers' shipped models, measured on FER2013's halves: counts with their provenance."""

import json
import re

from fer_lib import paths
from fer_lib.peer_models import LABELS, MEASURED, reports_measured


def test_every_measurement_names_its_repository_commit_command_and_files():
    models = json.loads((paths.results_dir() / MEASURED).read_text())["models"]
    assert set(models) == set(LABELS)
    for key, model in models.items():
        assert re.fullmatch(r"[0-9a-f]{40}", model["commit"]), key
        assert model["repository"] and model["command"] and model["files_sha256"], key
        for half in ("public", "private"):
            assert model[half]["images"] == 3589 and 0 < model[half]["correct"] <= 3589


def test_accuracies_are_the_counts_over_the_images(tmp_path):
    record = {"models": {"report-a": {"public": {"correct": 2000, "images": 4000},
                                      "private": {"correct": 3000, "images": 4000}}}}
    (tmp_path / MEASURED).write_text(json.dumps(record))
    assert reports_measured(tmp_path) == {LABELS["report-a"]: {"public": 0.5,
                                                               "private": 0.75}}
