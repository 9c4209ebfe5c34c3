"""On-chip memory: which of a shard's bytes reach DRAM, and which ops fuse into their producer.

An AI 100 core has 8 MB of VTCM, a scratchpad the compiler places tensors in (the SoC's 144 MB
of SRAM is 16 cores x (8 MB VTCM + 1 MB L2); Qualcomm Cloud AI SDK, "Architecture"). The
compiler keeps activations there, runs elementwise ops inside the kernel of the op that
produces their input, and keeps a small model's weights on chip across inferences. Per
device, for one op's shard (:class:`~simtopo.plan.layouts.Shard`):

- **capacity** ``C``: the VTCM of the partition's cores (``vtcm_per_core x cores``), else
  its share of the SoC's SRAM (:func:`simtopo.workload.cost.onchip_bytes`);
- **working set** ``A``: the activations the shard reads and writes;
- **DRAM bytes** = weights read + KV-cache traffic and table lookups + ``max(0, A - C)``:
  activations stay on chip as far as they fit and exactly the overflow spills (written and
  read back once);
- **resident weights**: when a stage's weights per device (embedding tables aside: a lookup
  gathers a few rows from DRAM) and its largest working set fit in ``C`` together, a pass
  reads no weights from DRAM (they were placed with the program);
- **fused**: an elementwise op or a norm that has a producer and whose working set fits runs
  inside its producer's kernel and pays no launch of its own (its vector work still counts).

A SoC that lists no on-chip memory (the built-in GPU cards) has ``C = 0``: every activation is
a DRAM round trip and nothing fuses, the plain roofline.

Assumptions (no measurement pins them down): a tensor held for a later op (a residual) does not
count against the ops in between; an input handed over from another stage or the host is read
from on-chip memory like any other once it fits; the KV cache always lives in DRAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from ..workload.cost import Work, onchip_bytes
from ..workload.opgraph import Op
from .layouts import Shard, Stage

FUSED_KINDS = ("elementwise", "norm")
"""Op kinds the compiler runs inside their producer's kernel."""


@dataclass(frozen=True)
class OnChip:
    """What one device of a stage keeps on chip in a pass."""

    capacity_bytes: float
    resident: bool = False
    """The stage's weights stay on chip: passes read none from DRAM."""


def spill_bytes(activation_bytes: float, capacity_bytes: float) -> float:
    """Activation bytes that do not fit on chip and go through DRAM: exactly the overflow."""
    return max(0.0, activation_bytes - capacity_bytes)


def stage_footprint(stage: Stage, graph: nx.DiGraph,
                    shards: Mapping[str, Shard]) -> tuple[float, float]:
    """(weights, largest working set) of one device of ``stage`` in a pass (embedding tables
    aside: a lookup gathers a few rows from DRAM)."""
    weights = sum(shards[n].stored_bytes for n in stage.ops
                  if graph.nodes[n]["op"].kind != "embedding")
    working = max((shards[n].activation_bytes for n in stage.ops), default=0.0)
    return weights, working


def stage_onchip(footprint: tuple[float, float], soc: Mapping[str, Any], cores: int,
                 fraction: float = 1.0) -> OnChip:
    """On-chip memory of one device of a stage with ``footprint``
    (:func:`stage_footprint`), on ``cores`` cores of ``soc`` with ``fraction`` of their
    on-chip memory usable for tensors."""
    capacity = onchip_bytes(soc, cores) * fraction if soc else 0.0
    if capacity <= 0:
        return OnChip(0.0)
    weights, working = footprint
    return OnChip(capacity, resident=weights > 0 and weights + working <= capacity)


def shard_work(op: Op, shard: Shard, has_producer: bool, onchip: OnChip) -> Work:
    """The work one device does for ``shard`` of ``op``: its DRAM bytes under the on-chip
    rules (module docstring) and whether it runs fused into its producer."""
    if onchip.capacity_bytes <= 0:
        return Work(shard.flops, shard.bytes, op.precision, shard.mxfp6_weights, kind=op.kind)
    spill = spill_bytes(shard.activation_bytes, onchip.capacity_bytes)
    weights = 0.0 if onchip.resident and op.kind != "embedding" else shard.weights_read_bytes
    fused = spill == 0.0 and has_producer and op.kind in FUSED_KINDS
    return Work(shard.flops, shard.dram_bytes + weights + spill, op.precision,
                shard.mxfp6_weights, fused, op.kind)
