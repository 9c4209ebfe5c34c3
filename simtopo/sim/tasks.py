"""Plans to task programs: what each pipeline stage does in one pass, as compute and collectives.

A stage's devices run its ops in order, in lock step (tensor slicing synchronises them at every
collective): a compute task lasts as long as its slowest device's shard of the op (the cost
function of :mod:`simtopo.workload.cost`), and a collective runs over the stage's devices
wherever the plan's layouts need one, P2P or host-routed as the plan's connections say.

A decoder stage is a head (ops before its first layer), identical layers, and a tail; the
program keeps one layer and a count, so that a simulation can run a layer once and repeat it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from ..constants import DEFAULT_SOC_MODEL, SocModel
from ..plan.layouts import Comm, Shard, Stage
from ..plan.onchip import OnChip, shard_work, stage_footprint, stage_onchip
from ..plan.stages import PartitionPlan
from ..topology.graph import Topology
from ..workload.cost import OpCost, op_cost


@dataclass(frozen=True)
class ComputeTask:
    """One op on every device of a stage, as long as its slowest device takes."""

    op: str
    cost: OpCost
    """The slowest device's cost of its shard (roofline terms, launch, expansion)."""
    bytes: float = 0.0
    """Bytes each device moves to and from its DRAM for its shard."""

    @property
    def seconds(self) -> float:
        """How long the op holds the stage."""
        return self.cost.time_s


@dataclass(frozen=True)
class CommTask:
    """A collective over the stage's devices (P2P or host-routed)."""

    op: str
    kind: str
    size_bytes: float
    mode: str


Task = ComputeTask | CommTask


@dataclass(frozen=True)
class StageProgram:
    """One pass of one stage: ``head``, then ``layer`` repeated ``repeat`` times, then
    ``tail`` (a stage without identical layers keeps everything in ``head``)."""

    stage: Stage
    head: tuple[Task, ...]
    layer: tuple[Task, ...]
    repeat: int
    tail: tuple[Task, ...]
    mode: str

    @property
    def blocks(self) -> tuple[tuple[str, tuple[Task, ...], int], ...]:
        """(name, tasks, times run) of each part of the pass."""
        return (("head", self.head, 1), ("layer", self.layer, self.repeat),
                ("tail", self.tail, 1))

    def compute_seconds(self) -> float:
        """Compute time of the whole pass (no communication)."""
        return sum(sum(t.seconds for t in tasks if isinstance(t, ComputeTask)) * times
                   for _, tasks, times in self.blocks)


def _tasks(names: Sequence[str], graph: nx.DiGraph, shards: dict[str, Shard],
           comms: dict[str, list[Comm]], stage: Stage, socs: Sequence[dict],
           onchip: Sequence[OnChip], mode: str, soc_model: SocModel,
           tenants: int = 1) -> tuple[Task, ...]:
    out: list[Task] = []
    here = set(stage.ops)
    for name in names:
        shard = shards[name]
        op = graph.nodes[name]["op"]
        # fused only into a producer in this stage (an input from another SoC lands in DRAM)
        produced = any(p in here for p in graph.predecessors(name))
        found = {chip: shard_work(op, shard, produced, chip) for chip in set(onchip)}
        works = [found[chip] for chip in onchip]  # the devices of a stage are alike
        costs = [op_cost(work, soc, cores, soc_model, tenants)
                 for work, soc, cores in zip(works, socs, stage.cores, strict=True)]
        slowest = max(range(len(costs)), key=lambda i: costs[i].time_s)
        out.append(ComputeTask(name, costs[slowest], works[slowest].bytes))
        for comm in comms.get(name, []):
            out.append(CommTask(name, comm.kind, comm.bytes, mode))
    return tuple(out)


def lower_stage(plan: PartitionPlan, stage: Stage, graph: nx.DiGraph, topo: Topology,
                soc_model: SocModel = DEFAULT_SOC_MODEL,
                shards: dict[str, Shard] | None = None,
                comms: Sequence[Comm] | None = None) -> StageProgram:
    """The program of ``stage`` for the pass ``graph`` (resharded if it is not the plan's)."""
    if shards is None or comms is None:
        shards, all_comms, _ = plan.layout(graph)
        comms = all_comms
    by_op: dict[str, list[Comm]] = {}
    for comm in comms:
        if comm.stage == stage.index:
            by_op.setdefault(comm.after, []).append(comm)
    mode = plan.group_connection(stage.logical)
    layers: dict[int, list[str]] = {}
    head: list[str] = []
    tail: list[str] = []
    for name in stage.ops:
        layer = graph.nodes[name]["op"].layer
        if layer is None:
            (tail if layers else head).append(name)
        else:
            layers.setdefault(layer, []).append(name)

    socs = [topo.node(d) for d in stage.devices]
    footprint = stage_footprint(stage, graph, shards)
    onchip = [stage_onchip(footprint, soc, cores, soc_model.onchip_fraction)
              for soc, cores in zip(socs, stage.cores, strict=True)]

    def build(names: Sequence[str]) -> tuple[Task, ...]:
        return _tasks(names, graph, shards, by_op, stage, socs, onchip, mode, soc_model,
                      plan.per_soc)

    ordered = [layers[k] for k in sorted(layers)]
    if ordered:
        first = _layer_key(ordered[0], graph, shards, by_op)
        if all(_layer_key(group, graph, shards, by_op) == first for group in ordered[1:]):
            return StageProgram(stage, build(head), build(ordered[0]), len(ordered),
                                build(tail), mode)
    return StageProgram(stage, build(list(stage.ops)), (), 0, (), mode)


def _layer_key(names: Sequence[str], graph: nx.DiGraph, shards: dict[str, Shard],
               comms: dict[str, list[Comm]]) -> tuple[object, ...]:
    """What makes two layers run the same (names aside): each op's kind, precision and shard
    work, and the collectives after it. Equal keys give equal tasks on the same devices."""
    out = []
    for name in names:
        op, shard = graph.nodes[name]["op"], shards[name]
        out.append((op.kind, op.precision, shard.flops, shard.bytes, shard.mxfp6_weights,
                    tuple((c.kind, c.bytes) for c in comms.get(name, []))))
    return tuple(out)


def lower(plan: PartitionPlan, graph: nx.DiGraph, topo: Topology,
          soc_model: SocModel = DEFAULT_SOC_MODEL) -> list[StageProgram]:
    """Programs of every stage of one replica for the pass ``graph``."""
    shards, comms, _ = plan.layout(graph)
    return [lower_stage(plan, stage, graph, topo, soc_model, shards, comms)
            for stage in plan.stages]
