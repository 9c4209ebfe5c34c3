"""Partition plans from a layout spec: pipeline stages balanced by the cost function, devices
mapped onto the topology, declared P2P connections checked against it."""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from ..constants import DEFAULT_SOC_MODEL, SocModel
from ..errors import PlanError, RouteError
from ..spec.experiment import PlanSpec
from ..spec.model import DecoderSpec
from ..topology import routing
from ..topology.fabric import group_ring
from ..topology.graph import Topology
from ..topology.routing import BounceRoute
from ..workload.cost import op_cost
from ..workload.opgraph import Precision
from .layouts import Comm, Handoff, Shard, Stage, check_tp, shard_stages
from .onchip import shard_work, stage_footprint, stage_onchip

Layout = tuple[dict[str, Shard], tuple[Comm, ...], tuple[Handoff, ...]]

LAYOUTS_KEPT = 128
"""Layouts :func:`laid_out` keeps (the most recently used; one of llama-2-70b is about
250 KB)."""

_LAID_OUT: OrderedDict[tuple[Any, ...], tuple[weakref.ref[nx.DiGraph], Layout]] = OrderedDict()
_LAID_OUT_LOCK = threading.Lock()  # dask workers run points in threads


def laid_out(graph: nx.DiGraph, model: DecoderSpec | None, stages: Sequence[Stage],
             precision: Precision, rules: Sequence[tuple[str, str]] = (),
             imbalance: float = 1.0) -> Layout:
    """:func:`~simtopo.plan.layouts.shard_stages`, found once per process for each graph,
    model, stage shapes (not devices: a P2P plan and its host-routed twin share it),
    precision, rules and expert imbalance. Shared: read, do not change, what this returns."""
    key = (id(graph), model, tuple((s.index, s.name, s.tp, s.mode, s.ops) for s in stages),
           precision, tuple(rules), imbalance)
    with _LAID_OUT_LOCK:
        known = _LAID_OUT.get(key)
        if known is not None and known[0]() is graph:  # not another graph at a reused id
            _LAID_OUT.move_to_end(key)
            return known[1]
    shards, comms, handoffs = shard_stages(graph, model, stages, precision, rules, imbalance)
    layout = (shards, tuple(comms), tuple(handoffs))
    with _LAID_OUT_LOCK:
        _LAID_OUT[key] = (weakref.ref(graph), layout)
        while len(_LAID_OUT) > LAYOUTS_KEPT:
            _LAID_OUT.popitem(last=False)
    return layout


@dataclass(frozen=True)
class PartitionPlan:
    """A laid-out model: stages (per replica), shards, collectives and stage hand-offs."""

    model: str
    stages: tuple[Stage, ...]
    replicas: tuple[tuple[Stage, ...], ...]
    shards: dict[str, Shard]
    comms: tuple[Comm, ...]
    handoffs: tuple[Handoff, ...]
    p2p_pairs: frozenset[frozenset[int]] = field(default_factory=frozenset)
    """Pairs of logical devices declared peer-to-peer; every other pair goes through the host."""
    decoder: DecoderSpec | None = field(default=None, compare=False)
    rules: tuple[tuple[str, str], ...] = ()
    mode: str = "weight"
    per_soc: int = 1
    """Instances of this (one-SoC) plan side by side on each SoC, sharing its DRAM."""
    expert_imbalance: float = 1.0
    """Routed tokens on the busiest expert-parallel device over the mean."""
    # what layout() and group_connection() found (fresh in a copy made with replace())
    _layouts: dict[int, tuple[nx.DiGraph, Any]] = field(default_factory=dict, init=False,
                                                        compare=False, repr=False)
    _groups: dict[tuple[int, ...], str] = field(default_factory=dict, init=False,
                                                compare=False, repr=False)

    def layout(self, graph: nx.DiGraph) -> Layout:
        """Shards, collectives and hand-offs of the same layout applied to another pass of the
        model (a prefill chunk, a decode step at another context), at that pass's sizes;
        computed once per graph (graphs are not changed once built; read, do not change,
        what this returns)."""
        known = self._layouts.get(id(graph))
        if known is None or known[0] is not graph:
            precision = graph.graph.get("precision") or Precision()
            known = (graph, laid_out(graph, self.decoder, self.stages, precision, self.rules,
                                     self.expert_imbalance))
            self._layouts[id(graph)] = known
        return known[1]

    def reshard(self, graph: nx.DiGraph) -> dict[str, Shard]:
        """The shards of :meth:`layout`."""
        return self.layout(graph)[0]

    def stage_of(self, op: str) -> int:
        """Index of the stage that runs ``op``."""
        for stage in self.stages:
            if op in stage.ops:
                return stage.index
        raise KeyError(op)

    @property
    def talks(self) -> str:
        """``p2p`` when some pair is declared peer-to-peer, else ``host``: how the plan's
        devices talk, as results name it."""
        return "p2p" if self.p2p_pairs else "host"

    def connection(self, a: int, b: int) -> str:
        """``p2p`` or ``host`` between two logical devices."""
        return "p2p" if frozenset((a, b)) in self.p2p_pairs else "host"

    def group_connection(self, logical: Sequence[int]) -> str:
        """``p2p`` if every pair of the group is declared P2P (or it has one device), else
        ``host``: a collective over the group goes through the host if any pair does."""
        key = tuple(logical)
        if key not in self._groups:
            pairs = [(a, b) for i, a in enumerate(key) for b in key[i + 1:]]
            self._groups[key] = "host" if any(self.connection(a, b) == "host"
                                              for a, b in pairs) else "p2p"
        return self._groups[key]


def layer_groups(graph: nx.DiGraph) -> tuple[list[str], list[list[str]], list[str]]:
    """(ops before the first layer, ops of each layer, ops after the last) in order."""
    order = list(nx.topological_sort(graph))
    head: list[str] = []
    tail: list[str] = []
    layers: dict[int, list[str]] = {}
    seen_layer = False
    for name in order:
        layer = graph.nodes[name]["op"].layer
        if layer is None:
            (tail if seen_layer else head).append(name)
        else:
            seen_layer = True
            layers.setdefault(layer, []).append(name)
    return head, [layers[k] for k in sorted(layers)], tail


def split_layers(weights: Sequence[float], stages: int, first: float = 0.0,
                 last: float = 0.0) -> list[int]:
    """Contiguous layer counts per stage minimising the heaviest stage (first and last carry
    extra weight: the embedding and the head). Exact dynamic programme."""
    n = len(weights)
    if not 1 <= stages <= n:
        raise PlanError(f"a pipeline of {stages} stages needs at least {stages} layers "
                        f"(the model has {n})")
    prefix = [0.0]
    for w in weights:
        prefix.append(prefix[-1] + w)

    def cost(i: int, j: int, s: int) -> float:  # layers i..j-1 as stage s
        return prefix[j] - prefix[i] + (first if s == 0 else 0) + (last if s == stages - 1
                                                                     else 0)

    best = [[math.inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0.0
    for s in range(1, stages + 1):
        for j in range(s, n + 1):
            for i in range(s - 1, j):
                value = max(best[s - 1][i], cost(i, j, s - 1))
                if value < best[s][j] - 1e-15:
                    best[s][j], cut[s][j] = value, i
    counts, j = [], n
    for s in range(stages, 0, -1):
        i = cut[s][j]
        counts.append(j - i)
        j = i
    return counts[::-1]


def map_devices(topo: Topology, spec: PlanSpec) -> list[str]:
    """Physical SoCs in logical order: explicit, or filling a card, then a switch, then the
    next switch (the topology's depth-first order), so that tensor-parallel groups stay local."""
    return device_pool(topo, spec, spec.socs_needed, f"(tp {spec.tp} x pp {spec.pp} x "
                                                     f"replicas {spec.replicas})")


def device_pool(topo: Topology, spec: PlanSpec, need: int, why: str) -> list[str]:
    """The first ``need`` SoCs of the plan's device list (default: the topology's, in
    order), checked: SoCs only, enough of them, none twice."""
    pool = list(spec.devices) if spec.devices else list(topo.socs)
    for dev in pool:
        if topo.node(dev)["kind"] != "soc":
            raise PlanError(f"device {dev} is a {topo.node(dev)['kind']}, not a SoC")
    if need > len(pool):
        source = "the device list gives" if spec.devices else f"{topo.name} has"
        raise PlanError(f"the plan needs {need} SoCs {why}; {source} {len(pool)}")
    if len(set(pool[:need])) != need:
        raise PlanError("a device is listed twice")
    return pool[:need]


def fabric_ring_pairs(topo: Topology, groups: Iterable[tuple[Sequence[int], Sequence[str]]]
                      ) -> frozenset[frozenset[int]]:
    """Pairs of logical devices inside a group (logical ids, their SoCs: a stage, an MDP
    partition) that a device fabric joins in one ring: its collectives step between fabric
    neighbours, and any other pair's copy (a tree or direct algorithm's) is bounced through
    host memory where the tree has no P2P route."""
    out: set[frozenset[int]] = set()
    for logical, devices in groups:
        if len(devices) > 2 and group_ring(topo, devices) is not None:
            out.update(frozenset((a, b)) for a in logical for b in logical if a < b)
    return frozenset(out)


def check_connections(topo: Topology, devices: Sequence[str] | Mapping[int, str],
                      p2p_pairs: frozenset[frozenset[int]], where: str = "") -> None:
    """Every pair declared P2P must have a P2P route with ACS off on its common switch.
    ``devices`` maps logical ids (indices or keys) to SoCs."""
    for pair in sorted(p2p_pairs, key=sorted):
        a, b = sorted(pair)
        src, dst = devices[a], devices[b]
        try:
            route = routing.route(topo, src, dst)
        except RouteError as err:
            raise PlanError(f"{where}p2p between devices {a} ({src}) and {b} ({dst}) is "
                            f"impossible: {err}") from None
        assert not isinstance(route, BounceRoute)
        if route.path_class == "acs":
            up, down = topo.ancestors(src), topo.ancestors(dst)
            common = next(n for n in up if n in set(down))
            raise PlanError(f"{where}p2p between devices {a} ({src}) and {b} ({dst}) crosses "
                            f"switch {common} with ACS on; Qualcomm MDP P2P needs ACS off "
                            "(host-routed is the alternative)")


def op_times(graph: nx.DiGraph, model: DecoderSpec | None, stage: Stage,
             precision: Precision, rules: Sequence[tuple[str, str]] = (),
             soc_model: SocModel = DEFAULT_SOC_MODEL, soc: dict | None = None,
             imbalance: float = 1.0) -> dict[str, float]:
    """Seconds each op's shard takes on one device of ``stage`` (the cost function; an op is
    priced as in one stage holding the whole graph)."""
    shards, _, _ = laid_out(graph, model, [stage], precision, rules, imbalance)
    attrs = soc if soc is not None else {}
    onchip = stage_onchip(stage_footprint(stage, graph, shards), attrs, stage.cores[0],
                          soc_model.onchip_fraction)
    return {name: op_cost(shard_work(graph.nodes[name]["op"], s, graph.in_degree(name) > 0,
                                     onchip), attrs, stage.cores[0], soc_model).time_s
            for name, s in shards.items()}


def file_order(graph: nx.DiGraph) -> list[str]:
    """A graph's ops in topological order, ties broken by their order in the file (so that a
    pipeline's stages follow the file, as an MDP node list would)."""
    position = {name: i for i, name in enumerate(graph)}
    return list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))


def _check_graph_spec(spec: PlanSpec) -> None:
    """A fixed graph's pass has its own batch: batch mode cannot split it."""
    if spec.mode == "batch" and spec.tp > 1:
        raise PlanError("batch mode splits the batch, but a graph's pass has a fixed batch "
                        "(give the graph that batch and use replicas)")


def make_plan(graph: nx.DiGraph, model: DecoderSpec | None, topo: Topology, spec: PlanSpec,
              precision: Precision | None = None, soc_model: SocModel = DEFAULT_SOC_MODEL
              ) -> PartitionPlan:
    """Lay ``graph`` out by ``spec`` on ``topo``; pipeline stages hold contiguous layers,
    balanced by the cost function (each op's shard priced on the stage's SoC and cores). A
    fixed graph (``model`` None) is split between stages op by op, in topological order, and
    tensor-sliced only where the plan's rules split its GEMMs."""
    precision = precision or graph.graph.get("precision") or Precision()
    if model is None:
        _check_graph_spec(spec)
        # a graph is already at the workload's precision (workload.precision.at_precision)
        precision = graph.graph.get("precision") or Precision()
    elif spec.mode == "weight" and spec.tp > 1:
        check_tp(model, spec.tp)
    shape = graph.graph.get("shape")
    if spec.mode == "batch" and shape is not None and shape.batch % spec.tp:
        raise PlanError(f"batch mode splits the batch: a batch of {shape.batch} does not "
                        f"divide over {spec.tp} devices")
    devices = map_devices(topo, spec)
    cores_total = topo.node(devices[0])["cores"]
    cores = spec.cores if spec.cores is not None else cores_total // spec.per_soc
    if not 1 <= cores <= cores_total:
        raise PlanError(f"cores must be between 1 and {cores_total} (got {cores})")
    if cores * spec.per_soc > cores_total:
        raise PlanError(f"per_soc {spec.per_soc} instances of {cores} cores need "
                        f"{cores * spec.per_soc} cores; a SoC of {topo.name} has {cores_total}")
    head, layers, tail = layer_groups(graph) if model is not None else (
        [], [[name] for name in file_order(graph)], [])
    name = model.name if model is not None else str(graph.graph.get("model", "the graph"))
    if spec.pp > len(layers):
        unit = "layers" if model is not None else "ops"
        raise PlanError(f"a pipeline of {spec.pp} stages needs at least {spec.pp} {unit} "
                        f"({name} has {len(layers)})")
    whole = Stage(index=0, name="all", devices=tuple(devices[:spec.tp]),
                  logical=tuple(range(spec.tp)), cores=(cores,) * spec.tp,
                  ops=tuple(nx.topological_sort(graph)), mode=spec.mode)
    if spec.pp == 1:  # one stage holds every layer: nothing to balance
        counts = [len(layers)]
    else:
        times = op_times(graph, model, whole, precision, spec.split_rules, soc_model,
                         topo.node(devices[0]), spec.expert_imbalance)
        weight = [sum(times[n] for n in group) for group in layers]
        counts = split_layers(weight, spec.pp, sum(times[n] for n in head),
                              sum(times[n] for n in tail))
    groups, start = [], 0
    for s, count in enumerate(counts):
        ops = [n for group in layers[start:start + count] for n in group]
        if s == 0:
            ops = head + ops
        if s == spec.pp - 1:
            ops = ops + tail
        groups.append(tuple(ops))
        start += count
    replicas = []
    for r in range(spec.replicas):
        stages = []
        for s in range(spec.pp):
            lo = (r * spec.pp + s) * spec.tp
            stages.append(Stage(index=s, name=f"Partition{s}",
                                devices=tuple(devices[lo:lo + spec.tp]),
                                logical=tuple(range(s * spec.tp, (s + 1) * spec.tp)),
                                cores=(cores,) * spec.tp, ops=groups[s], mode=spec.mode))
        replicas.append(tuple(stages))
    n_logical = spec.tp * spec.pp
    pairs = frozenset(frozenset((a, b)) for a in range(n_logical) for b in range(a + 1,
                                                                                n_logical)
                      ) if spec.connection == "p2p" else frozenset()
    limit = topo.platform.max_p2p_group
    if spec.connection == "p2p" and limit is not None and spec.mode == "weight" \
            and spec.tp > limit:
        raise PlanError(f"tensor slicing over {spec.tp} SoCs exceeds {topo.name}'s P2P limit "
                        f"of {limit} (platform.max_p2p_group)")
    for stages in replicas:
        check_connections(topo, [d for s in stages for d in s.devices],
                          pairs - fabric_ring_pairs(topo, ((s.logical, s.devices)
                                                           for s in stages)))
    layout = laid_out(graph, model, replicas[0], precision, spec.split_rules,
                      spec.expert_imbalance)
    shards, comms, handoffs = layout
    if model is None and spec.tp > 1 and not any(s.split in ("M", "K")
                                                 for s in shards.values()):
        raise PlanError(f"tensor slicing a graph over {spec.tp} devices needs rules that split "
                        "some of its GEMMs (plan: {rules: {'MatMul_*': M}}); as it is, every "
                        "device would compute every op")
    plan = PartitionPlan(model=name, stages=replicas[0], replicas=tuple(replicas),
                         shards=dict(shards), comms=comms, handoffs=handoffs,
                         p2p_pairs=pairs, decoder=model, rules=spec.split_rules,
                         mode=spec.mode, per_soc=spec.per_soc,
                         expert_imbalance=spec.expert_imbalance)
    if precision == (graph.graph.get("precision") or Precision()):
        # what plan.layout(graph) would find, with the plan's own shards
        plan._layouts[id(graph)] = (graph, (plan.shards, comms, handoffs))
    return plan
