"""docs/validation.md is produced by the tool and stays current; the defaults are the fit."""

from __future__ import annotations

from statistics import median

import pytest
import yaml

from simtopo.calibrated import DEFAULT_MODEL
from simtopo.calibration import BOUNDS, DATA, all_points, base_machine
from simtopo.calibration_report import read_fit_record, validation_document

from .conftest import ROOT


@pytest.fixture(scope="module")
def points():
    return all_points()


def test_validation_document_is_regenerated_exactly(points):
    committed = (ROOT / "docs" / "validation.md").read_text()
    assert committed == validation_document(points), (
        "docs/validation.md is stale: run `simtopo calibrate -o docs/validation.md`")


def test_defaults_are_the_stored_fit():
    fitted = read_fit_record()["model"]
    for name in BOUNDS:
        assert getattr(DEFAULT_MODEL, name) == pytest.approx(fitted[name], rel=5e-3), name


def test_every_link_calibration_file_is_used(points):
    used = {p.source for p in points}
    link_files = {p.stem for p in DATA.glob("*.yaml")} - {"qualcomm-ai100-standard-gptj-decode"}
    assert used == link_files


def test_measured_values_are_read_from_the_files(points):
    raw = yaml.safe_load((DATA / "v100pcie-2x-gen3-p2p-vs-hostrouted.yaml").read_text())
    item = next(m for m in raw["measurements"] if m["name"] == "bidirectional_p2p_disabled")
    point = next(p for p in points if p.name == "bidirectional_p2p_disabled 0->1")
    assert point.measured == item["parsed"]["rows"]["0"][1] * 1e9
    assert point.measured == pytest.approx(16.6e9)


def test_leave_one_out_bandwidth_meets_the_target():
    record = read_fit_record()
    errors = [e for r in record["leave_one_out"] for e in r["bandwidth_errors"]]
    assert median(errors) <= 0.10
    machines = {r["machine"] for r in record["leave_one_out"]}
    assert machines == {base_machine(p.machine) for p in all_points()}
