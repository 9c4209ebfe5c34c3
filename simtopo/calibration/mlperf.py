"""The convolution efficiency, fitted on MLPerf ResNet-50 offline on two AI 100 Ultra cards.

The measurement (``simtopo/calibration/data/qualcomm-mlperf-v4.0-r282-2x-ultra-resnet50.yaml``)
is Qualcomm's MLPerf Inference v4.0 submission: 122,566 samples/s on 8 SoCs, data-parallel.
``experiments/mlperf-ultra.yaml``'s ``resnet50-2cards`` runs it as the submission compiles it
(batch 8, 8 cores per program, two programs per SoC, int8). Its weights and activations stay
on chip (25.6 MB of int8 weights and a batch's activations fit in 8 cores' 64 MB of VTCM), so a
pass is convolutions at the cores' int8 peak plus per-op launches, and the host feed is far
from full: one parameter, the share of the int8 peak a convolution reaches, is all the
measurement can pin down. It is fitted there alone; BERT, the 16-card server and the stream
scenarios are predicted with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ..constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL, SocModel
from ..results.run import run_variant
from ..spec.experiment import Variant, load_experiment
from .points import DATA
from .soc import secant

MEASUREMENT = DATA / "qualcomm-mlperf-v4.0-r282-2x-ultra-resnet50.yaml"
EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "mlperf-ultra.yaml"
VARIANT = "resnet50-2cards"


def measured_samples_per_s(path: Path = MEASUREMENT) -> float:
    """The measured offline samples/s."""
    data = yaml.safe_load(path.read_text())
    table = next(m for m in data["measurements"] if m["name"] == "offline_samples_per_second")
    (row,) = table["rows"]
    return float(row["samples_per_s"])


def calibration_variant(path: Path = EXPERIMENT) -> Variant:
    """The experiment's variant that runs the measured machine."""
    return next(v for v in load_experiment(path).variants if v.name == VARIANT)


def predict_offline(model: SocModel = DEFAULT_SOC_MODEL) -> dict[str, float]:
    """Predicted offline samples/s of the calibration variant, and what bounds it."""
    result = run_variant(calibration_variant(), DEFAULT_MODEL, model)
    return {"offline_samples_per_s": result.metrics["offline_samples_per_s"],
            "instance_samples_per_s": result.metrics["instance_samples_per_s"],
            "compute_bound": float(result.scenario.get("bound") == "compute")}


@dataclass(frozen=True)
class ConvFit:
    """The fitted convolution efficiency and what it predicts next to the measurement."""

    model: SocModel
    measured: float
    predicted: dict[str, float]


def fit_conv(start: SocModel = DEFAULT_SOC_MODEL) -> ConvFit:
    """Solve for the convolution efficiency that makes the calibration variant's offline
    samples/s the measured one (a pass is launches plus convolution time proportional to
    1 / efficiency, so secant steps in 1 / efficiency converge at once)."""
    measured = measured_samples_per_s()
    variant = calibration_variant()

    def period(inverse: float) -> float:  # seconds per sample, affine in 1 / efficiency
        model = replace(start, conv_efficiency=1.0 / inverse)
        return 1.0 / run_variant(variant, DEFAULT_MODEL, model).metrics["offline_samples_per_s"]

    b = secant(period, 1.0 / measured, 1.0, 1.0 / start.conv_efficiency)
    model = replace(start, conv_efficiency=min(1.0, 1.0 / b))
    return ConvFit(model, measured, predict_offline(model))


def conv_record(result: ConvFit) -> dict[str, Any]:
    """The fit as JSON-ready data (stored in reports/calibration/fit.json under ``cnn``)."""
    return {"conv_efficiency": result.model.conv_efficiency, "measured": result.measured,
            "predicted": result.predicted}


def cnn_section(record: dict[str, Any] | None) -> str:
    """The convolution efficiency's part of docs/validation.md: fitted against predicted now,
    and one pass of the calibration variant term by term."""
    from ..sim.setup import setup_variant
    from ..sim.tasks import ComputeTask, lower

    measured = measured_samples_per_s()
    got = predict_offline(DEFAULT_SOC_MODEL)
    variant = calibration_variant()
    setup = setup_variant(variant, DEFAULT_MODEL, DEFAULT_SOC_MODEL)
    (program,) = lower(setup.plan, setup.forward_graph, setup.topo, DEFAULT_SOC_MODEL)
    tasks = [t for _, block, times in program.blocks for t in block * times
             if isinstance(t, ComputeTask)]
    conv = sum(t.cost.compute_s for t in tasks if t.op.startswith(("conv", "layer"))
               and "relu" not in t.op and not t.op.endswith(".add"))
    launch = sum(t.cost.launch_s for t in tasks)
    fused = sum(1 for t in tasks if t.cost.launch_s == 0.0)
    total = sum(t.seconds for t in tasks)
    fitted = record["conv_efficiency"] if record else float("nan")
    error = got["offline_samples_per_s"] / measured - 1
    return "\n".join([
        "## Convolutions: MLPerf ResNet-50 offline on two AI 100 Ultra cards",
        "",
        "`experiments/mlperf-ultra.yaml`, variant `resnet50-2cards` (8 SoCs of "
        "`topologies/calibration/r282-2ultra.yaml`; batch 8, 8 cores per program, two "
        "programs per SoC, int8) against `qualcomm-mlperf-v4.0-r282-2x-ultra-resnet50.yaml` "
        "(Qualcomm's MLPerf Inference v4.0 submission, offline).",
        "",
        "| measured samples/s | predicted | error | bound |",
        "|---|---|---|---|",
        f"| {measured:,.0f} | {got['offline_samples_per_s']:,.0f} | {100 * error:+.1f}% | "
        f"{'compute' if got['compute_bound'] else 'the host feed'} |",
        "",
        "| parameter | fitted | default in `simtopo/constants.py` | meaning |",
        "|---|---|---|---|",
        f"| `conv_efficiency` | {fitted:.4g} | {DEFAULT_SOC_MODEL.conv_efficiency:.4g} | "
        "share of the cores' peak a convolution reaches; fitted here |",
        "",
        f"One pass of 8 images on one 8-core program: {len(tasks)} ops, {fused} of them fused "
        "into their producer (ReLUs and residual adds); weights and activations on chip, so "
        f"no DRAM traffic. Convolutions {conv * 1e3:.3f} ms at {fitted:.3g} of the int8 peak, "
        f"launches {launch * 1e3:.3f} ms, the pass {total * 1e3:.3f} ms: "
        f"{got['instance_samples_per_s']:,.0f} samples/s per program, 16 programs. One "
        "measurement fits one parameter exactly, so the fit is no evidence by itself. What "
        "it cannot tell apart: a lower convolution efficiency from a higher per-op launch "
        "cost (the launches are an assumption shared with the decoders); and how many "
        "programs per SoC the submission ran (two of 8 cores is an assumption; one of 16 "
        "gives the same rate here, since neither DRAM nor on-chip capacity binds).",
        "",
    ])
