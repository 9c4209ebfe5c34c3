"""The SoC model's calibration: GPT-J-6B decode on one AI 100 Standard, fp16 and mxfp6.

The measurement (``simtopo/calibration/data/qualcomm-ai100-standard-gptj-decode.yaml``) gives decode
throughput on one SoC, so nothing but the SoC and the host round trip is involved. A decode
step there is

    step = sum over ops of (bytes / (DRAM bw x e) + launch
                            + mxfp6 weights x x / (cores x per-core fp16 peak))
           + host round trip (logits out, sampling, next token in)

(no op is compute-bound at batch 1). Two measurements fit two parameters: the DRAM efficiency
``e`` (at most 1) on fp16, then the mxfp6 expansion cost ``x`` per weight on mxfp6. The per-op
launch and the host's sampling time stay documented assumptions. Both fitted terms carry over to
sliced SoCs: bytes and expanded weights are per shard, so they divide across SoCs and cores, and
expansion runs at the core's clock; only the launches and the host round trip stay fixed per
step.

The experiment is ``experiments/standard-gptj.yaml``; its variants name their precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ..constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL, SocModel
from ..results.run import run_variant
from ..sim.setup import setup_variant
from ..sim.tasks import ComputeTask, lower
from ..spec.experiment import Variant, load_experiment
from .points import DATA

MEASUREMENT = DATA / "qualcomm-ai100-standard-gptj-decode.yaml"
EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "standard-gptj.yaml"
TOLERANCE = 1e-9
"""Relative mismatch at which a one-parameter solve stops."""


def measured_tokens_per_s(path: Path = MEASUREMENT) -> dict[str, float]:
    """The measured decode tok/s by weight precision (``fp16``, ``mxfp6``)."""
    data = yaml.safe_load(path.read_text())
    table = next(m for m in data["measurements"] if m["name"] == "standard_card_throughput")
    (row,) = table["rows"]
    return {"fp16": float(row["fp16"]), "mxfp6": float(row["mxfp6"])}


def variants(path: Path = EXPERIMENT) -> dict[str, Variant]:
    """The calibration experiment's variants by weight precision."""
    return {v.workload.precision: v for v in load_experiment(path).variants}


@dataclass(frozen=True)
class StepBreakdown:
    """What one simulated decode step on the calibration SoC is made of (seconds)."""

    memory_s: float
    """DRAM time: every op's DRAM bytes at the cores' DRAM bandwidth."""
    onchip_s: float
    """The vector work of ops whose bytes stay on chip (their compute beyond their DRAM time:
    fused norms and elementwise ops)."""
    launch_s: float
    expand_s: float
    host_s: float
    """The rest of the measured step: the host's round trip and sampling."""
    ops: int
    """Ops that launch a kernel (fused ones run inside their producer's)."""
    bytes: float
    """Bytes to and from DRAM (activations stay on chip)."""
    weight_bytes: float
    kv_bytes: float

    @property
    def total_s(self) -> float:
        """The step: the parts add up."""
        return self.memory_s + self.onchip_s + self.launch_s + self.expand_s + self.host_s


def predict_soc(model: SocModel = DEFAULT_SOC_MODEL) -> dict[str, dict[str, float]]:
    """Predicted decode and whole-run tok/s of each calibration variant."""
    out = {}
    for precision, variant in variants().items():
        metrics = run_variant(variant, DEFAULT_MODEL, model).metrics
        out[precision] = {"decode_tokens_per_s": metrics["decode_tokens_per_s"],
                          "tokens_per_s": metrics["tokens_per_s"],
                          "tpot_mean_s": metrics["tpot_mean_s"]}
    return out


def breakdown(precision: str, model: SocModel = DEFAULT_SOC_MODEL) -> StepBreakdown:
    """The decode step of the ``precision`` variant, term by term."""
    variant = variants()[precision]
    setup = setup_variant(variant, DEFAULT_MODEL, model)
    graph = setup.decode_graph(variant.workload.context_length)
    (program,) = lower(setup.plan, graph, setup.topo, model)
    memory = onchip = launch = expand = moved = 0.0
    ops = 0
    for _, tasks, times in program.blocks:
        for task in tasks:
            if isinstance(task, ComputeTask):
                memory += task.cost.memory_s * times
                onchip += max(0.0, task.cost.compute_s - task.cost.memory_s) * times
                launch += task.cost.launch_s * times
                expand += task.cost.expand_s * times
                ops += times if task.cost.launch_s > 0 else 0  # fused ops launch nothing
                moved += task.bytes * times
    metrics = run_variant(variant, DEFAULT_MODEL, model).metrics
    host = metrics["tpot_mean_s"] - (memory + onchip + launch + expand)
    op_list = [graph.nodes[n]["op"] for n in graph.nodes]
    return StepBreakdown(memory, onchip, launch, expand, host, ops, moved,
                         sum(o.weights_read_bytes for o in op_list),
                         sum(o.kv_read_bytes + o.kv_write_bytes for o in op_list))


def _solve(tpot: Callable[[float], float], target: float, a: float, b: float) -> float:
    """The root of ``tpot(p) = target`` by secant steps from ``a`` and ``b`` (tpot is affine
    in the parameters solved for here, so this converges in one or two steps)."""
    fa, fb = tpot(a) - target, tpot(b) - target
    for _ in range(20):
        if fb == fa:
            break
        a, fa, b = b, fb, b - fb * (b - a) / (fb - fa)
        fb = tpot(b) - target
        if abs(fb) <= TOLERANCE * target:
            break
    return b


@dataclass(frozen=True)
class SocFit:
    """A fitted SoC model and the tok/s it predicts next to the measurements."""

    model: SocModel
    measured: dict[str, float]
    predicted: dict[str, dict[str, float]]
    capped: bool
    """True if the fp16 fit wanted a DRAM efficiency above 1 (then held at 1)."""


def fit_soc(start: SocModel = DEFAULT_SOC_MODEL) -> SocFit:
    """Fit DRAM efficiency on fp16 decode, then the mxfp6 expansion cost on mxfp6 decode."""
    measured = measured_tokens_per_s()
    chosen = variants()

    def tpot_of(precision: str, model: SocModel) -> float:
        return run_variant(chosen[precision], DEFAULT_MODEL, model).metrics["tpot_mean_s"]

    # fp16 decode is affine in 1 / e; mxfp6 weights are not in the fp16 step.
    inverse = _solve(lambda u: tpot_of("fp16", replace(start, dram_efficiency=1.0 / u)),
                     1.0 / measured["fp16"], 1.0, 1.0 / start.dram_efficiency)
    capped = inverse < 1.0
    model = replace(start, dram_efficiency=min(1.0, 1.0 / inverse))
    # mxfp6 decode is affine in x.
    x = _solve(lambda v: tpot_of("mxfp6", replace(model, mxfp6_expand_ops_per_weight=v)),
               1.0 / measured["mxfp6"], 0.0, 100.0)
    model = replace(model, mxfp6_expand_ops_per_weight=max(0.0, x))
    return SocFit(model, measured, predict_soc(model), capped)


def fit_record(result: SocFit) -> dict[str, Any]:
    """The SoC fit as JSON-ready data (stored in reports/calibration/fit.json)."""
    return {"model": asdict(result.model), "measured": result.measured,
            "predicted": result.predicted, "dram_efficiency_capped": result.capped}
