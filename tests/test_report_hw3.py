"""The reports' HW3 models: the parameters behind the accuracy each report compares."""

from __future__ import annotations

import pytest

from fer_lib.report import REPORT_HW3_MEMBERS, REPORTS, report_hw3_params


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_every_report_says_how_many_models_scored_its_hw3_accuracy(report):
    counted = report_hw3_params(report)
    assert counted["members"] == REPORT_HW3_MEMBERS[report] >= 1
    assert counted["each"] == REPORTS[report]["hw3_params"]
    assert counted["total"] == counted["members"] * counted["each"]


def test_report_a_compares_an_ensemble_and_gives_one_members_parameters():
    assert "ensemble" in REPORTS["report-a"]["hw3_model"]
    assert report_hw3_params("report-a")["members"] > 1
    assert "ensemble" not in REPORTS["report-b"]["hw3_model"]
    assert report_hw3_params("report-b")["members"] == 1
