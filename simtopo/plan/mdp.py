"""Qualcomm MDP (multi-device partition) configs: read, validate, write, and turn into plans.

The schema (``../shared/seeds/qualcomm-mdp-partition-config.txt``): ``partitions`` are
pipeline stages, each with ``name``, ``devices`` (``deviceId``, ``numCores``; more than one
device tensor-slices the partition) and ``nodeList`` (graph node names); ``connections``
declare ``p2p`` or ``host`` between logical device ids, and every pair not declared goes
through the host.

Validation against the graph: every ``nodeList`` name exists; with more than one partition
every node belongs to exactly one; data flows from earlier partitions to later ones (a
consumer in an earlier partition than its producer makes a cycle). Against the topology:
logical devices map onto SoCs (``--devices``, or the topology's order), ``numCores`` within the
SoC's cores, ``p2p`` only where the route is P2P with ACS off, and tensor slicing within the
platform's P2P limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import networkx as nx

from ..errors import PlanError
from ..io.atomic import write_text_atomic
from ..io.documents import Document, read_json, validate_document
from ..io.syntax import parse_json
from ..spec.mdp import MdpConfig, MdpConnection, MdpDevice, MdpPartition
from ..spec.model import DecoderSpec
from ..topology.graph import Topology
from ..workload.opgraph import Precision
from .layouts import Stage, check_tp, shard_stages
from .stages import PartitionPlan, check_connections, fabric_ring_pairs


def read_mdp(path: str | Path) -> tuple[MdpConfig, Document]:
    """Read and schema-check an MDP JSON file."""
    doc = read_json(path)
    return validate_document(doc, MdpConfig), doc


def mdp_json(config: MdpConfig) -> str:
    """The config as JSON in the seed files' shape (4-space indent, keys in schema order)."""
    data = config.model_dump(exclude_none=True)
    if not data["connections"]:
        del data["connections"]
    text = json.dumps(data, indent=4)
    # keep device-id lists on one line, as the seed files write them
    return re.sub(r"\[\s*(\d+(?:,\s*\d+)*)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]",
                  text) + "\n"


def write_mdp(config: MdpConfig, path: str | Path) -> Path:
    """Write the config atomically."""
    return write_text_atomic(path, mdp_json(config))


def dump_mdp(graph: nx.DiGraph, cores: int = 16) -> MdpConfig:
    """The compiler's ``-mdp-dump-partition-config`` counterpart: one partition, one device,
    every node listed."""
    return MdpConfig(partitions=[MdpPartition(
        name="Partition0", devices=[MdpDevice(deviceId=0, numCores=cores)],
        nodeList=list(nx.topological_sort(graph)))])


def _error(doc: Document, message: str, path: tuple[str | int, ...]) -> PlanError:
    return PlanError(message, file=doc.file, path=path)


def validate_mdp(config: MdpConfig, doc: Document, graph: nx.DiGraph, topo: Topology,
                 devices: Sequence[str] | None = None) -> list[str]:
    """Check ``config`` against the graph and the topology; returns the physical SoC of each
    logical device id (index = id). Every failure is a :class:`PlanError` with its key path."""
    where: dict[int, tuple[int, int]] = {}
    for i, part in enumerate(config.partitions):
        for j, dev in enumerate(part.devices):
            if dev.deviceId in where:
                pi, _ = where[dev.deviceId]
                raise _error(doc, f"device {dev.deviceId} is already in "
                             f"{config.partitions[pi].name}", ("partitions", i, "devices", j,
                                                               "deviceId"))
            where[dev.deviceId] = (i, j)
    pool = list(devices) if devices is not None else list(topo.socs)
    physical: dict[int, str] = {}
    for logical, (i, j) in sorted(where.items()):
        if logical >= len(pool):
            raise _error(doc, f"device {logical} has no SoC ({len(pool)} available: "
                         f"{pool[0]} .. {pool[-1]})", ("partitions", i, "devices", j,
                                                       "deviceId"))
        soc = pool[logical]
        physical[logical] = soc
        cores = topo.node(soc)["cores"]
        wanted = config.partitions[i].devices[j].numCores
        if wanted > cores:
            raise _error(doc, f"numCores {wanted} exceeds the {cores} cores of {soc} (device "
                         f"{logical})", ("partitions", i, "devices", j, "numCores"))
    for c, conn in enumerate(config.connections):
        for k, dev in enumerate(conn.devices):
            if dev not in where:
                raise _error(doc, f"device {dev} is in no partition",
                             ("connections", c, "devices", k))
        if len(set(conn.devices)) != len(conn.devices):
            raise _error(doc, "a connection lists a device twice", ("connections", c,
                                                                     "devices"))
    owner: dict[str, int] = {}
    single = len(config.partitions) == 1
    for i, part in enumerate(config.partitions):
        if part.nodeList is None:
            if not single:
                raise _error(doc, "with more than one partition every partition needs a "
                             "nodeList", ("partitions", i))
            continue
        for k, name in enumerate(part.nodeList):
            if name not in graph:
                example = next(iter(graph))
                raise _error(doc, f"unknown node {name!r} (not in graph "
                             f"{graph.graph.get('model', '')}; names look like {example!r})",
                             ("partitions", i, "nodeList", k))
            if name in owner:
                raise _error(doc, f"node {name!r} is also in "
                             f"{config.partitions[owner[name]].name}",
                             ("partitions", i, "nodeList", k))
            owner[name] = i
    if not (single and config.partitions[0].nodeList is None):
        missing = [n for n in graph if n not in owner]
        if missing:
            raise _error(doc, f"{len(missing)} node{'s are' if len(missing) > 1 else ' is'} in "
                         f"no partition (first: {missing[0]!r}); every node must belong to "
                         "exactly one", ("partitions",))
        for u, v in graph.edges:
            if owner[v] < owner[u]:
                pu, pv = config.partitions[owner[u]].name, config.partitions[owner[v]].name
                raise _error(doc, f"node {v!r} in {pv} consumes {u!r} from the later {pu}: "
                             f"the partitions form a cycle ({pv} -> {pu} -> {pv}); data must "
                             "flow from earlier partitions to later ones", ("partitions",))
    limit = topo.platform.max_p2p_group
    p2p = p2p_pairs(config)
    for i, part in enumerate(config.partitions):
        ids = [d.deviceId for d in part.devices]
        sliced_p2p = any(frozenset((a, b)) in p2p for a in ids for b in ids if a < b)
        if limit is not None and len(ids) > limit and sliced_p2p:
            raise _error(doc, f"tensor slicing over {len(ids)} devices, some of them P2P, "
                         f"exceeds {topo.name}'s P2P limit of {limit} "
                         "(platform.max_p2p_group)", ("partitions", i, "devices"))
    ringed = fabric_ring_pairs(topo, (([d.deviceId for d in part.devices],
                                        [physical[d.deviceId] for d in part.devices])
                                       for part in config.partitions))
    for c, conn in enumerate(config.connections):
        if conn.type != "p2p":
            continue  # only the pairs that end up P2P (later entries win) are checked
        pairs = frozenset(frozenset((a, b)) for a in conn.devices for b in conn.devices
                          if a < b and frozenset((a, b)) in p2p) - ringed
        try:
            check_connections(topo, physical, pairs, where="")
        except PlanError as err:
            raise _error(doc, err.message, ("connections", c)) from None
    return [physical[k] for k in sorted(physical)]


def p2p_pairs(config: MdpConfig) -> frozenset[frozenset[int]]:
    """Pairs of logical devices a ``p2p`` connection covers (later entries win)."""
    kind: dict[frozenset[int], str] = {}
    for conn in config.connections:
        for a in conn.devices:
            for b in conn.devices:
                if a < b:
                    kind[frozenset((a, b))] = conn.type
    return frozenset(pair for pair, t in kind.items() if t == "p2p")


def plan_from_mdp(config: MdpConfig, doc: Document, graph: nx.DiGraph,
                  model: DecoderSpec | None, topo: Topology,
                  devices: Sequence[str] | None = None,
                  rules: Sequence[tuple[str, str]] = ()) -> PartitionPlan:
    """Validate the config and lay the graph out as it says (tensor slicing by the default
    weight-mode rules within each partition). ``model`` is the decoder behind the graph, or
    ``None`` for a hand-written or ONNX graph."""
    socs = validate_mdp(config, doc, graph, topo, devices)
    ids = sorted(config.logical_devices())
    soc_of = dict(zip(ids, socs, strict=True))
    stages = []
    for i, part in enumerate(config.partitions):
        names = part.nodeList if part.nodeList is not None else list(
            nx.topological_sort(graph))
        order = {n: k for k, n in enumerate(nx.topological_sort(graph))}
        tp = len(part.devices)
        if tp > 1 and model is not None:
            try:
                check_tp(model, tp)
            except PlanError as err:
                raise _error(doc, err.message, ("partitions", i, "devices")) from None
        stages.append(Stage(index=i, name=part.name,
                            devices=tuple(soc_of[d.deviceId] for d in part.devices),
                            logical=tuple(d.deviceId for d in part.devices),
                            cores=tuple(d.numCores for d in part.devices),
                            ops=tuple(sorted(names, key=order.__getitem__))))
    precision = graph.graph.get("precision") or Precision()
    shards, comms, handoffs = shard_stages(graph, model, stages, precision, rules)
    name = model.name if model is not None else str(graph.graph.get("model", "graph"))
    return PartitionPlan(model=name, stages=tuple(stages), replicas=(tuple(stages),),
                         shards=shards, comms=tuple(comms), handoffs=tuple(handoffs),
                         p2p_pairs=p2p_pairs(config), decoder=model, rules=tuple(rules))


def mdp_from_plan(plan: PartitionPlan) -> MdpConfig:
    """The plan (one replica) as an MDP config: partitions, devices and cores, node lists
    (when there is more than one partition), and one ``p2p`` entry per connected group.
    What MDP cannot say (batch mode, custom GEMM splits) is refused, not dropped."""
    if plan.mode != "weight" and any(s.tp > 1 for s in plan.stages):
        raise PlanError("an MDP config cannot express tensor-parallel batch mode (MDP tensor "
                        "slicing is the compiler's weight split)")
    if plan.rules:
        raise PlanError("an MDP config cannot express custom GEMM split rules ("
                        + ", ".join(f"{p}={s}" for p, s in plan.rules) + ")")
    ids = [i for s in plan.stages for i in s.logical]
    pairs = plan.p2p_pairs
    groups: list[list[int]] = []
    if pairs and all(frozenset((a, b)) in pairs for a in ids for b in ids if a < b):
        groups = [ids]
    else:
        groups = [sorted(p) for p in sorted(pairs, key=sorted)]
    multi = len(plan.stages) > 1
    return MdpConfig(
        connections=[MdpConnection(devices=g, type="p2p") for g in groups],
        partitions=[MdpPartition(name=s.name, devices=[
            MdpDevice(deviceId=i, numCores=c) for i, c in zip(s.logical, s.cores, strict=True)],
            nodeList=list(s.ops) if multi else None) for s in plan.stages])


def parse_mdp_text(text: str, name: str = "<mdp>") -> MdpConfig:
    """Parse MDP JSON from a string (tests and notebooks)."""
    return validate_document(Document(data=parse_json(text, name), file=name), MdpConfig)
