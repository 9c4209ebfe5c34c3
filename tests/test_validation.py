"""docs/validation.md is produced by the tool and stays current; the defaults are the fit."""

from __future__ import annotations

from statistics import median

import pytest
import yaml

from simtopo.calibration.links import BOUNDS, base_machine
from simtopo.calibration.points import DATA, all_points
from simtopo.calibration.soc import breakdown, measured_tokens_per_s
from simtopo.calibration.validation import TARGETS, read_fit_record, validation_document
from simtopo.constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL
from simtopo.results.run import run

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
    link_files = {p.stem for p in DATA.glob("*.yaml")} - {
        "qualcomm-ai100-standard-gptj-decode", "qualcomm-mlperf-v4.0-r282-2x-ultra-resnet50"}
    assert used == link_files


def test_measured_values_are_read_from_the_files(points):
    raw = yaml.safe_load((DATA / "v100pcie-2x-gen3-p2p-vs-hostrouted.yaml").read_text())
    item = next(m for m in raw["measurements"] if m["name"] == "bidirectional_p2p_disabled")
    point = next(p for p in points if p.name == "bidirectional_p2p_disabled 0->1")
    assert point.measured == item["parsed"]["rows"]["0"][1] * 1e9
    assert point.measured == pytest.approx(16.6e9)


MET = ("bandwidth", "latency-gpu", "busbw")
"""Issue 14's leave-one-out targets met so far; the others hold their current level."""
CEILINGS = {"collective": 0.17}
"""Where a target is not met yet (docs/validation.md says so): the level reached, a little up."""


def test_leave_one_out_meets_the_targets():
    """Every machine left out once, every fit from the neutral start; the pooled medians of the
    left-out machines' errors, category by category, against issue 14's targets."""
    record = read_fit_record()
    machines = {r["machine"] for r in record["leave_one_out"]}
    assert machines == {base_machine(p.machine) for p in all_points()}
    for kind, target in TARGETS.items():
        errors = [e for r in record["leave_one_out"] for e in r["errors"].get(kind, [])]
        assert errors, kind
        limit = target if kind in MET else CEILINGS[kind]
        assert median(errors) <= limit, (kind, median(errors))
        assert (median(errors) <= target) == (kind in MET), kind  # MET says what is met


def test_soc_defaults_are_the_stored_fit():
    fitted = read_fit_record()["soc"]["model"]
    assert DEFAULT_SOC_MODEL.dram_efficiency == pytest.approx(fitted["dram_efficiency"],
                                                              rel=1e-3)
    assert DEFAULT_SOC_MODEL.mxfp6_expand_ops_per_weight == pytest.approx(
        fitted["mxfp6_expand_ops_per_weight"], rel=1e-3)
    assert fitted["dram_efficiency"] <= 1.0


def test_standard_gptj_predicts_the_measured_decode_within_10_percent():
    measured = measured_tokens_per_s()
    assert measured == {"fp16": 8.08, "mxfp6": 13.9}  # read from the calibration file
    result = run(ROOT / "experiments" / "standard-gptj.yaml")
    for precision, tok_s in measured.items():
        metrics = result.variant(precision).metrics
        assert metrics["decode_tokens_per_s"] == pytest.approx(tok_s, rel=0.10), precision
        assert metrics["tokens_per_s"] == pytest.approx(tok_s, rel=0.10), precision


def test_soc_fit_recovers_a_known_model():
    """Fit against the model's own predictions for other parameters: the fit must find them."""
    from dataclasses import replace

    from simtopo.calibration import soc as soc_calibration

    # overlapped with the DRAM stream, an expansion shows only where it outlasts the stream:
    # 2000 operations per weight at the Standard SoC's 110 TFLOP/s is 18.2 ps per weight,
    # against 0.78 bytes at 0.6 x 137 GB/s, 9.5 ps (500 would hide behind the stream)
    truth = replace(DEFAULT_SOC_MODEL, dram_efficiency=0.6, mxfp6_expand_ops_per_weight=2000.0)
    predicted = soc_calibration.predict_soc(truth)
    fake = {p: v["decode_tokens_per_s"] for p, v in predicted.items()}
    original = soc_calibration.measured_tokens_per_s
    soc_calibration.measured_tokens_per_s = lambda path=None: fake
    try:
        found = soc_calibration.fit_soc().model
    finally:
        soc_calibration.measured_tokens_per_s = original
    assert found.dram_efficiency == pytest.approx(0.6, rel=1e-6)
    assert found.mxfp6_expand_ops_per_weight == pytest.approx(2000.0, rel=1e-6)


def test_step_breakdown_adds_up_from_first_principles():
    """fp16 decode on one Standard: bytes / (137 GB/s x e) is the DRAM term."""
    step = breakdown("fp16")
    assert step.memory_s == pytest.approx(step.bytes / (137e9 * DEFAULT_SOC_MODEL.dram_efficiency),
                                          rel=1e-9)
    assert step.launch_s == pytest.approx(step.ops * DEFAULT_SOC_MODEL.op_launch_s)
    # batch-1 activations stay on chip: DRAM moves the weights, the KV cache and the one row
    # the embedding lookup gathers (4096 fp16 values, and the token id's 4 bytes)
    assert step.bytes == pytest.approx(step.weight_bytes + step.kv_bytes + 4096 * 2 + 4,
                                       rel=1e-12)
    # GPT-J: 28 layers x 8 ops, of which the norm, the GELU and the residual add fuse, plus
    # the embedding, the final norm (fused) and the LM head launch: 28 x 5 + 2
    assert step.ops == 28 * 5 + 2
    assert step.expand_s == 0.0


def test_conv_default_is_the_stored_fit_and_meets_the_measurement():
    """The fit is exact by construction (one parameter, one measurement): this fails when
    the default drifts from the fit or the prediction stops being compute-bound, which would
    make the fit absorb the host feed. No held-out CNN measurement exists to test against."""
    from simtopo.calibration.mlperf import measured_samples_per_s, predict_offline

    fitted = read_fit_record()["cnn"]
    assert DEFAULT_SOC_MODEL.conv_efficiency == pytest.approx(fitted["conv_efficiency"],
                                                              rel=1e-3)
    got = predict_offline()
    # the acceptance: ResNet-50 offline on 2 Ultra cards within 10% of the measurement, and
    # bound by compute (the host feed is not what the fit absorbs)
    assert got["offline_samples_per_s"] == pytest.approx(measured_samples_per_s(), rel=0.10)
    assert got["compute_bound"] == 1.0
