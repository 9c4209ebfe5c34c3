"""The cost of an op on a SoC: a roofline plus fixed costs, as a pure function.

    time = max(bytes / (DRAM bandwidth the cores can draw x DRAM efficiency),
               FLOPs / (cores x per-core peak x compute efficiency)
               + mxfp6 weights x expansion work / (cores x per-core fp16 peak))
           + per-op launch

Cores reach DRAM over the SoC's network-on-chip, so a partition compiled for ``cores`` of the
SoC's cores draws at most ``noc_bw x cores / total cores`` (assumption: the NoC divides evenly
over the cores), and never more than the DRAM's own bandwidth: a 1-core partition cannot
decode as fast as a 16-core one. mxfp6 weights are expanded to fp16 by the cores that read
them: the expansion work per weight divides over those cores and runs at their clock (taken as
proportional to their fp16 peak), and overlaps the DRAM stream: an AI 100 core is a Neural
Signal Processor whose DMA moves the next tile of weights from DRAM into its VTCM while its
vector unit expands the one before (``SocModel.mxfp6_overlap``; ``False`` puts the expansion
in series with the stream, the form ``simtopo whatif`` shows beside it).

Which of an op's bytes reach DRAM at all (activations kept in the cores' on-chip memory,
weights resident across passes) is the plan's business (:mod:`simtopo.plan.onchip`);
``Work.bytes`` is what is left. A fused op (an elementwise op run inside its producer) pays
no launch of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..constants import DEFAULT_SOC_MODEL, SocModel


@dataclass(frozen=True)
class Work:
    """What one device does for (its shard of) an op."""

    flops: float
    bytes: float
    precision: str = "fp16"
    mxfp6_weights: float = 0.0
    fused: bool = False
    """Run inside its producer's kernel: no launch of its own."""
    kind: str = "gemm"
    """The op's kind (convolutions have an efficiency of their own)."""


@dataclass(frozen=True)
class OpCost:
    """The time of one op on one device and what bounds it."""

    time_s: float
    """The whole: the larger roofline side, plus launch and expansion."""
    compute_s: float
    memory_s: float
    """The roofline's two sides: FLOPs at the cores' peak, bytes at the DRAM they draw."""
    launch_s: float
    expand_s: float
    """mxfp6 weights expanded to fp16 by the cores."""

    @property
    def bound(self) -> str:
        """``compute`` or ``memory``: the larger side of the roofline (expansion is work on
        the cores)."""
        return "compute" if self.compute_s + self.expand_s >= self.memory_s else "memory"


def dram_bandwidth(soc: Mapping[str, Any], cores: int, tenants: int = 1) -> float:
    """Bytes/s a partition of ``cores`` cores can draw from the SoC's DRAM, when ``tenants``
    such partitions run side by side on the SoC (each then gets at most an equal share of
    the DRAM)."""
    total = soc["cores"]
    if not 1 <= cores <= total:
        raise ValueError(f"cores must be between 1 and {total} (got {cores})")
    noc = soc.get("noc_bw_Bps")
    share = noc * cores / total if noc else soc["dram_bw_Bps"] * cores / total
    return min(soc["dram_bw_Bps"] / tenants, share)


def onchip_bytes(soc: Mapping[str, Any], cores: int) -> float:
    """On-chip memory a partition of ``cores`` cores can keep tensors in: its cores' VTCM
    (the AI 100's per-core scratchpad, where the compiler places activations), else its share
    of the SoC's SRAM; 0 for a SoC that lists neither (every tensor then goes through DRAM)."""
    vtcm = soc.get("vtcm_per_core_bytes")
    if vtcm:
        return vtcm * cores
    return soc.get("sram_bytes", 0.0) * cores / soc["cores"]


def peak_flops(soc: Mapping[str, Any], cores: int, precision: str) -> float:
    """Peak operations/s of ``cores`` cores at ``precision`` (fp16 if the SoC lists no such
    precision: bf16 runs as fp16 on the AI 100)."""
    per_core = soc["peak_flops_per_core"]
    rate = per_core.get(precision, per_core.get("fp16"))
    if rate is None:
        rate = max(per_core.values())
    return rate * cores


def rate_fallbacks(soc: Mapping[str, Any], precisions: Iterable[str]) -> list[str]:
    """The precisions among ``precisions`` that ``soc`` lists no rate for, with the rate
    :func:`peak_flops` runs them at instead (a warning, not an error: the AI 100 lists no
    bf16 rate, and bf16 then runs at the fp16 one)."""
    per_core = soc["peak_flops_per_core"]
    fallback = "fp16" if "fp16" in per_core else max(per_core, key=per_core.get)
    return [f"{p} runs at the {fallback} rate" for p in sorted(set(precisions))
            if p not in per_core]


def op_cost(work: Work, soc: Mapping[str, Any], cores: int,
            model: SocModel = DEFAULT_SOC_MODEL, tenants: int = 1) -> OpCost:
    """Time of ``work`` on ``cores`` cores of ``soc`` (the SoC's node attributes), one of
    ``tenants`` partitions side by side on it. Convolutions reach their own share of the peak
    (``SocModel.conv_efficiency``), every other op the GEMMs' (``compute_efficiency``)."""
    efficiency = model.conv_efficiency if work.kind == "conv" else model.compute_efficiency
    compute = work.flops / (peak_flops(soc, cores, work.precision) * efficiency)
    memory = work.bytes / (dram_bandwidth(soc, cores, tenants) * model.dram_efficiency)
    expand = work.mxfp6_weights * model.mxfp6_expand_ops_per_weight / peak_flops(soc, cores, "fp16")
    launch = 0.0 if work.fused else model.op_launch_s
    if model.mxfp6_overlap:  # the cores expand one tile while the DMA streams the next
        time = max(memory, compute + expand) + launch
    else:  # the expansion in series with the stream (the other form, for what-if)
        time = max(compute, memory) + launch + expand
    return OpCost(time_s=time, compute_s=compute, memory_s=memory, launch_s=launch,
                  expand_s=expand)
