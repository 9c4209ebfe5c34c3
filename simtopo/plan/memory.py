"""Memory fit: what each SoC of a plan must hold, against its DRAM.

Per SoC: its weight shard (replicated KV projections included), its KV cache for ``batch``
sequences of ``context`` positions, the largest activation working set of its ops, and a
runtime reserve (program, I/O buffers, runtime state; an assumption, overridable). A plan
that does not fit is refused with the numbers and the smallest layouts of each family that
would fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from ..errors import PlanError
from ..spec.experiment import PlanSpec
from ..spec.model import DecoderSpec
from ..topology.graph import Topology
from ..workload.opgraph import Precision, ops
from .layouts import Stage, check_tp, shard_stages
from .stages import PartitionPlan, make_plan

RUNTIME_RESERVE_BYTES = 1e9
"""DRAM each SoC keeps for the compiled program, I/O buffers and runtime (assumption)."""


@dataclass(frozen=True)
class MemoryUse:
    """What one SoC holds, in bytes."""

    device: str
    capacity: float
    """The SoC's DRAM."""
    weights: float
    kv_cache: float
    activations: float
    """The largest working set of one op (activations in and out)."""
    reserve: float

    @property
    def total(self) -> float:
        """Everything together."""
        return self.weights + self.kv_cache + self.activations + self.reserve

    @property
    def fits(self) -> bool:
        """Does it fit the SoC's DRAM?"""
        return self.total <= self.capacity

    def __str__(self) -> str:
        gb = 1e9
        return (f"{self.device} needs {self.total / gb:.1f} GB of {self.capacity / gb:.1f} GB: "
                f"weights {self.weights / gb:.1f}, KV {self.kv_cache / gb:.1f}, activations "
                f"{self.activations / gb:.1f}, reserve {self.reserve / gb:.1f}")


def memory_use(plan: PartitionPlan, topo: Topology, graphs: Sequence[nx.DiGraph],
               batch: int, context: int, reserve: float = RUNTIME_RESERVE_BYTES
               ) -> list[MemoryUse]:
    """Memory of every SoC of every replica. ``graphs`` are the passes the plan will run
    (activations take the largest); the KV cache holds ``batch`` x ``context`` positions."""
    per_pass = [plan.reshard(graph) for graph in graphs]  # each pass at its own sizes
    window = plan.decoder.sliding_window if plan.decoder is not None else None
    context = min(context, window) if window else context  # a rolling buffer of the window
    out = []
    for stages in plan.replicas:
        for stage in stages:
            weights = sum(plan.shards[n].stored_bytes for n in stage.ops)
            kv = sum(plan.shards[n].kv_bytes_per_position for n in stage.ops) * batch * context
            working = max((shards[n].activation_bytes for shards in per_pass
                           for n in stage.ops), default=0.0)
            k = plan.per_soc  # instances side by side each hold their own
            for device in stage.devices:
                out.append(MemoryUse(device, topo.node(device)["dram_bytes"], weights * k,
                                     kv * k, working * k, reserve))
    return out


def kv_positions(plan: PartitionPlan, topo: Topology, graphs: Sequence[nx.DiGraph],
                 reserve: float = RUNTIME_RESERVE_BYTES) -> int:
    """KV-cache positions (tokens of all sequences together) one replica can hold in what its
    SoCs' DRAM leaves beside the weights, the largest working set of ``graphs`` and the
    reserve: the pool a dynamic-shape server allocates, as vLLM sizes its block pool. The
    fullest SoC sets it; 0 when nothing is left."""
    use = memory_use(plan, topo, graphs, 1, 1, reserve)  # the KV per position
    free = [(u.capacity - u.weights - u.activations - u.reserve, u.kv_cache) for u in use]
    per_position = [(room, kv) for room, kv in free if kv > 0]
    if not per_position:
        raise PlanError("the plan keeps no KV cache: no positions to pool")
    return max(0, min(int(room // kv) for room, kv in per_position))


def minimum_socs(graph: nx.DiGraph, model: DecoderSpec, topo: Topology, family: str,
                 batch: int, context: int, reserve: float = RUNTIME_RESERVE_BYTES,
                 spec: PlanSpec | None = None, graphs: Sequence[nx.DiGraph] = ()
                 ) -> int | None:
    """Smallest SoC count of a plan family that fits: ``tp`` (weight-mode tensor parallel,
    the size must divide the heads) or ``pp`` (a pipeline of one SoC per stage), with the
    activations of ``graphs`` (the other passes it runs) as :func:`check_fit` counts them.
    Found once per process for each model, topology, family, passes and plan options (a
    sweep or the advisor asks it for every layout that does not fit)."""
    base = spec or PlanSpec()
    passes = [_pass_key(g) for g in (graph, *graphs)]
    if any(p[1] is None for p in passes):  # not a built decoder pass: nothing to key it by
        return _minimum_socs(graph, model, topo, family, batch, context, reserve, base, graphs)
    key = (model, topo.fingerprint, family, batch, context, reserve, base.model_dump_json(),
           *passes)
    if key not in _MINIMUM:
        _MINIMUM[key] = _minimum_socs(graph, model, topo, family, batch, context, reserve,
                                      base, graphs)
    return _MINIMUM[key]


_MINIMUM: dict[tuple[Any, ...], int | None] = {}
""":func:`minimum_socs` found so far in this process."""


def _pass_key(graph: nx.DiGraph) -> tuple[Any, ...]:
    """What a decoder's pass graph is built from (its model, shape and precision)."""
    return (graph.graph.get("model"), graph.graph.get("shape"), graph.graph.get("precision"))


def _minimum_socs(graph: nx.DiGraph, model: DecoderSpec, topo: Topology, family: str,
                  batch: int, context: int, reserve: float, base: PlanSpec,
                  graphs: Sequence[nx.DiGraph]) -> int | None:
    limit = len(topo.socs)
    # every plan holds every weight at least once over its SoCs: fewer than ``first`` SoCs
    # cannot hold the weights, so the search starts there
    room = max(topo.node(d)["dram_bytes"] for d in topo.socs) - reserve
    if room <= 0:
        return None
    total = float(sum(op.stored_bytes for op in ops(graph)))
    first = max(1, math.ceil(total / room * (1 - 1e-12)))
    for n in range(first, limit + 1):
        if family == "tp":
            try:
                check_tp(model, n)
            except PlanError:
                continue
            candidate = PlanSpec(tp=n, mode="weight", cores=base.cores,
                                 connection=base.connection, rules=base.rules)
        else:
            if n > model.layers:
                return None
            candidate = PlanSpec(pp=n, cores=base.cores, connection=base.connection)
        try:
            plan = make_plan(graph, model, topo, candidate)
        except PlanError:
            continue
        if all(u.fits for u in memory_use(plan, topo, [graph, *graphs], batch, context,
                                          reserve)):
            return n
    return None


def rank_weights(graph: nx.DiGraph, model: DecoderSpec | None, tp: int,
                 rules: Sequence[tuple[str, str]] = ()) -> float:
    """Weight bytes each of ``tp`` weight-mode tensor-parallel ranks holds, which is what a
    rank loads: the plan's own shards of ``graph``, so a K/V projection stays whole per KV
    head when ``tp`` exceeds the KV heads, and norms are replicated on every rank."""
    ranks = Stage(index=0, name="ranks", devices=tuple(f"rank{i}" for i in range(tp)),
                  logical=tuple(range(tp)), cores=(1,) * tp, ops=tuple(nx.topological_sort(graph)))
    precision = graph.graph.get("precision") or Precision()
    shards, _, _ = shard_stages(graph, model, [ranks], precision, rules)
    return float(sum(s.stored_bytes for s in shards.values()))


def check_fit(plan: PartitionPlan, graph: nx.DiGraph, model: DecoderSpec | None,
              topo: Topology, batch: int, context: int, graphs: Sequence[nx.DiGraph] = (),
              reserve: float = RUNTIME_RESERVE_BYTES) -> list[MemoryUse]:
    """Memory per SoC, or a :class:`PlanError` naming the fullest SoC and, for decoders, the
    smallest plans of each family (with the plan's connection and cores) that would fit."""
    use = memory_use(plan, topo, [graph, *graphs], batch, context, reserve)
    worst = max(use, key=lambda u: u.total - u.capacity)
    if worst.fits:
        return use
    socs = sum(s.tp for s in plan.stages)
    name = model.name if model is not None else plan.model
    message = f"{name} does not fit on {socs} SoC{'s' if socs > 1 else ''} per replica: {worst}"
    if model is None:
        raise PlanError(message)
    base = PlanSpec(connection=plan.talks,
                    cores=min(plan.stages[0].cores), rules=dict(plan.rules))
    options = []
    for family, label in (("tp", "tensor parallel (weight mode) on {}"),
                          ("pp", "a pipeline of {}")):
        n = minimum_socs(graph, model, topo, family, batch, context, reserve, base, graphs)
        if n:
            options.append(label.format(f"{n} SoC{'s' if n > 1 else ''}"))
    found = ", ".join(options) if options else f"none on {topo.name}"
    raise PlanError(f"{message}; smallest layouts that fit: {found}")


# -- the host's side ---------------------------------------------------------------------------

HOST_RUNTIME_BYTES = 8e9
"""Host memory the OS, the device runtime and the serving process take besides the programs and
buffers below (assumption)."""

MAX_MAP_COUNT = 65530
"""Linux's default ``vm.max_map_count``, the "default value of 65k" memory mappings per process
that Qualcomm's Model Sharding page tells host-routed deployments to raise."""


@dataclass(frozen=True)
class HostMemory:
    """What the host must hold for a plan, in bytes, against its memory.

    ``programs``: every SoC's program with its weights, read into host memory to load it
    (assumption: the runtime keeps the images resident). ``staging``: a host buffer per device
    for every host-routed collective and hand-off of every compiled pass (assumption: buffers
    are allocated per op when the programs load, which is what makes host-routed models need
    the large host memory and the many memory mappings the vendor recommends for them).
    """

    capacity: float
    programs: float
    staging: float
    runtime: float
    mappings: int

    @property
    def total(self) -> float:
        """Everything together."""
        return self.programs + self.staging + self.runtime

    @property
    def fits(self) -> bool:
        """Does it fit the host's memory (all sockets together)?"""
        return self.total <= self.capacity

    def warnings(self) -> list[str]:
        """What the platform check reports (empty when the host has room)."""
        out = []
        gb = 1e9
        if not self.fits:
            out.append(f"host memory: {self.total / gb:.0f} GB needed, the host has "
                       f"{self.capacity / gb:.0f} GB (programs {self.programs / gb:.0f}, "
                       f"host-routed staging {self.staging / gb:.1f}, runtime "
                       f"{self.runtime / gb:.0f}); the vendor recommends up to 1 TB for very "
                       "large host-routed models")
        if self.mappings > MAX_MAP_COUNT:
            out.append(f"{self.mappings} host buffers for host-routed traffic exceed Linux's "
                       f"default vm.max_map_count ({MAX_MAP_COUNT}); raise it as the vendor "
                       "recommends")
        return out

    def __str__(self) -> str:
        gb = 1e9
        return (f"host needs {self.total / gb:.1f} GB of {self.capacity / gb:.0f} GB: programs "
                f"{self.programs / gb:.1f}, host-routed staging {self.staging / gb:.2f} "
                f"({self.mappings} buffers), runtime {self.runtime / gb:.0f}")


def host_memory(plan: PartitionPlan, graphs: Sequence[nx.DiGraph], memory: Sequence[MemoryUse],
                topo: Topology, runtime: float = HOST_RUNTIME_BYTES) -> HostMemory:
    """The host's memory for ``plan`` running the passes ``graphs`` (each compiled separately,
    all loaded at once) with the per-SoC ``memory`` of :func:`memory_use`."""
    staging = 0.0
    buffers = 0
    for graph in graphs:
        _, comms, handoffs = plan.layout(graph)
        for stages in plan.replicas:
            for comm in comms:
                stage = stages[comm.stage]
                if stage.tp > 1 and plan.group_connection(stage.logical) == "host":
                    staging += comm.bytes * stage.tp
                    buffers += stage.tp
            for handoff in handoffs:
                src, dst = stages[handoff.stage - 1], stages[handoff.stage]
                for i, b in enumerate(dst.logical):
                    if plan.connection(src.logical[i % src.tp], b) == "host":
                        staging += handoff.bytes
                        buffers += 1
    capacity = sum(d["memory_bytes"] for _, d in topo.graph.nodes(data=True)
                   if d["kind"] == "socket")
    return HostMemory(capacity, sum(u.weights for u in memory), staging, runtime, buffers)
