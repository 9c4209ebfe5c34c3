"""Weight loading: from storage through the host to each rank's device, by strategy.

Three strategies (the AWS Neuron guide, ``../shared/seeds/aws-neuron-sharding-load.txt``):

- ``shard-on-compile-first``: read the checkpoint, shard it per rank, serialise the sharded
  files back to storage, and only then load them (the first run of a pre-sharded deployment);
- ``shard-on-compile``: read the pre-sharded files and load them (every later run);
- ``shard-on-load``: read and shard while transferring, every rank in parallel, nothing
  serialised (every run).

Each rank's bytes (the checkpoint / the tensor-parallel degree) move in ``chunks`` equal
pieces through a pipeline of stages; a chunk enters a stage when it has left the previous
stage and the chunk before it has left this one, so stages overlap. Stages:

- *storage read*: a flow from the storage device to the memory of the rank's socket (the
  device's read bandwidth, its link and every link up to the host, host memory bandwidth;
  shared max-min with every other flow), after the device's per-request latency;
- *page-cache read*: the same bytes found in host memory (warm), copied by a host worker;
- *sharding* (and conversion): a host worker at ``shard_rate``;
- *serialisation*: a host worker at ``serialize_rate``, then a flow to the storage device;
- *pageable copy*: with pageable buffers, a host worker copies each chunk into a pinned
  staging buffer first;
- *host to device*: a flow from the socket's memory to the rank's device.

Host workers are a pool (a queue): ``workers`` for shard on load, ``compile_workers`` for the
pre-sharding pass. The page cache holds what fits in host memory less ``cache_reserve``: warm
reads find at most that much; files just serialised are warm for the load that follows if they
fit, else the rest streams from storage again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy
from simpy.events import Event

from ..engine.transfers import Fabric
from ..errors import ConfigError, RouteError
from ..spec.load import PHASES, LoadSpec
from ..spec.topology import TransferSpec
from ..topology import routing
from ..topology.graph import Topology


@dataclass(frozen=True)
class Rank:
    """One tensor-parallel rank: its device and the socket whose memory stages it."""

    index: int
    device: str
    socket: str


@dataclass
class LoadOutcome:
    """One strategy from one source: the total, each phase, the bottleneck."""

    source: str
    strategy: str
    total_s: float
    phases: dict[str, dict[str, float]]
    """Per phase: ``busy_s`` (time any chunk was in it), ``bytes``, ``start_s``, ``end_s``."""
    bottleneck: str
    notes: list[str] = field(default_factory=list)
    spans: list[tuple[str, float, float]] = field(default_factory=list, repr=False)
    """(phase, start, end) of every stage of every chunk (for the timeline figure)."""

    def summary(self) -> dict[str, Any]:
        """Plain data for summaries."""
        return {"source": self.source, "strategy": self.strategy, "total_s": self.total_s,
                "bottleneck": self.bottleneck, "notes": list(self.notes),
                "phases": {k: dict(sorted(v.items())) for k, v in sorted(self.phases.items())}}


def socket_of(topo: Topology, node: str) -> str:
    """The socket above ``node`` (the memory a load stages it through)."""
    for up in topo.ancestors(node):
        if topo.node(up)["kind"] == "socket":
            return up
    raise ConfigError(f"{node} has no socket above it")


def ranks_per_device(topo: Topology, virtual_core_size: int | None) -> int:
    """``cores // virtual_core_size`` ranks on each device (one without a core size); the
    logical core size must divide a device's cores."""
    if virtual_core_size is None or not topo.socs:
        return 1
    cores = topo.node(topo.socs[0])["cores"]
    if virtual_core_size > cores or cores % virtual_core_size:
        raise ConfigError(f"load.virtual_core_size: {virtual_core_size} does not divide the "
                          f"{cores} cores of a {topo.name} device")
    return cores // virtual_core_size


def map_ranks(topo: Topology, tp: int, virtual_core_size: int | None,
              devices: Sequence[str]) -> list[Rank]:
    """Ranks in order onto ``devices`` (the plan's order): one per device, or
    ``cores // virtual_core_size`` per device (a logical core of ``virtual_core_size``
    physical cores per rank)."""
    per_device = ranks_per_device(topo, virtual_core_size)
    needed = math.ceil(tp / per_device)
    if needed > len(devices):
        each = (f"{per_device} ranks of {virtual_core_size} cores each" if virtual_core_size
                else "one rank each")
        raise ConfigError(f"load: {tp} ranks need {needed} devices ({each}); the plan has "
                          f"{len(devices)}")
    return [Rank(r, devices[r // per_device], socket_of(topo, devices[r // per_device]))
            for r in range(tp)]


class _Run:
    """One strategy from one source on a fresh fabric.

    Work is organised per device: a device's ranks move their pieces together (one flow per
    piece and device, the ranks' sharding in parallel), so that splitting a device into more
    logical ranks does not change what its links carry.
    """

    def __init__(self, topo: Topology, params: TransferSpec, spec: LoadSpec, source: str,
                 ranks: list[Rank], rank_bytes: float, memory_bytes: float) -> None:
        self.fabric = Fabric.create(topo, params)
        self.env = self.fabric.env
        self.net = self.fabric.net
        self.spec, self.source = spec, source
        self.latency_s = float(topo.node(source).get("latency_s", 0.0))
        self.groups: dict[str, list[Rank]] = {}
        for rank in ranks:
            self.groups.setdefault(rank.device, []).append(rank)
        self.rank_bytes = rank_bytes
        self.spans: list[tuple[str, float, float]] = []
        self.moved: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        # pieces in flight per device (read, not yet on the device) fit in host memory
        piece = rank_bytes / spec.chunks * max(len(g) for g in self.groups.values())
        self.in_flight = max(2, math.floor(memory_bytes / (piece * len(self.groups))))

    def _span(self, phase: str, start: float, nbytes: float) -> None:
        self.spans.append((phase, start, self.env.now))
        self.moved[phase] += nbytes

    def _memory(self, socket: str, nbytes: float) -> Event:
        """A host-side copy's traffic on the socket's memory: read and write, max-min shared."""
        return self.net.flow((self.net.index[f"mem:{socket}"],), 2 * nbytes)

    def cpu(self, pool: simpy.Resource, phase: str, rate: float, nbytes: float,
            socket: str, counted: float | None = None) -> Generator[Event, Any, None]:
        """A host thread's work on ``nbytes``: ``nbytes / rate``, or longer if the socket's
        memory bandwidth cannot feed it."""
        with pool.request() as turn:
            yield turn
            start = self.env.now
            yield self.env.all_of([self.env.timeout(nbytes / rate),
                                   self._memory(socket, nbytes)])
            self._span(phase, start, nbytes if counted is None else counted)

    def cpu_ranks(self, pool: simpy.Resource, phase: str, rate: float, nbytes: float,
                  group: list[Rank]) -> Generator[Event, Any, None]:
        """The same work for each rank of a device, in parallel (threads permitting)."""
        yield self.env.all_of([self.env.process(self.cpu(pool, phase, rate, nbytes,
                                                         r.socket)) for r in group])

    def read(self, group: list[Rank], nbytes: float, warm: bool,
             pool: simpy.Resource) -> Generator[Event, Any, None]:
        """A device's piece from storage (cold) or from the page cache (warm: a copy by one
        of the I/O threads ``pool``)."""
        socket = group[0].socket
        if warm:
            yield from self.cpu(pool, "page-cache read", self.spec.host.copy_rate, nbytes,
                                socket)
            return
        start = self.env.now
        if self.latency_s > 0:
            yield self.env.timeout(self.latency_s)
        yield self.fabric.copy(self.source, socket, nbytes)
        self._span("storage read", start, nbytes)

    def write(self, group: list[Rank], nbytes: float,
              pool: simpy.Resource) -> Generator[Event, Any, None]:
        """Serialise a piece (threads) and write it to the storage device."""
        yield from self.cpu_ranks(pool, "serialization", self.spec.host.serialize_rate,
                                  nbytes / len(group), group)
        self.moved["serialization"] -= nbytes  # counted once, with the write below
        start = self.env.now
        yield self.fabric.copy(group[0].socket, self.source, nbytes)
        self._span("serialization", start, nbytes)

    def to_device(self, group: list[Rank], nbytes: float) -> Generator[Event, Any, None]:
        """A piece from host memory into the device."""
        start = self.env.now
        yield self.fabric.copy(group[0].socket, group[0].device, nbytes)
        self._span("host to device", start, nbytes)

    def pipeline(self, stages: Sequence[Callable[[int], Generator]]) -> Event:
        """``chunks`` pieces through ``stages`` (each a function of the piece index), at
        most ``in_flight`` of them between entering the first stage and leaving the last."""
        env, k = self.env, self.spec.chunks
        left = [[env.event() for _ in range(k)] for _ in stages]
        slots = simpy.Resource(env, capacity=self.in_flight)

        def chunk(i: int) -> Generator[Event, Any, None]:
            with slots.request() as slot:
                if i > 0:
                    yield left[0][i - 1]
                yield slot
                for j, stage in enumerate(stages):
                    if i > 0 and j > 0:
                        yield left[j][i - 1]
                    yield env.process(stage(i))
                    left[j][i].succeed()

        return env.all_of([env.process(chunk(i)) for i in range(k)])


def _warm_chunks(spec: LoadSpec, read_bytes: float, cache_bytes: float) -> int:
    """How many of each rank's chunks a warm read finds in the page cache."""
    if read_bytes <= 0:
        return spec.chunks
    return min(spec.chunks, math.floor(spec.chunks * min(1.0, cache_bytes / read_bytes)))


def simulate_load(topo: Topology, params: TransferSpec, spec: LoadSpec, source: str,
                  strategy: str, ranks: list[Rank], rank_bytes: float,
                  cache_bytes: float, memory_bytes: float | None = None) -> LoadOutcome:
    """Simulate one strategy from one storage device: each rank gets ``rank_bytes``; the page
    cache holds ``cache_bytes``; pieces in flight fit in ``memory_bytes`` (default the
    cache)."""
    run = _Run(topo, params, spec, source, ranks, rank_bytes,
               cache_bytes if memory_bytes is None else memory_bytes)
    env, host = run.env, spec.host
    workers = simpy.Resource(env, capacity=host.workers)
    compile_pool = simpy.Resource(env, capacity=host.compile_workers)
    notes: list[str] = []
    total = rank_bytes * len(ranks)
    warm = _warm_chunks(spec, total, cache_bytes) if spec.cache == "warm" else 0
    if spec.cache == "warm" and warm < spec.chunks:
        notes.append(f"the page cache holds {cache_bytes / 1e9:.0f} GB of the "
                     f"{total / 1e9:.0f} GB read: the rest streams from storage")
    if run.in_flight < spec.chunks:
        notes.append(f"host memory holds {run.in_flight} of each device's {spec.chunks} "
                     "pieces at a time: reading waits for the slower stages")
    piece = rank_bytes / spec.chunks

    def load(group: list[Rank], warm_chunks: int, shard: bool) -> Event:
        c = piece * len(group)
        stages: list[Callable[[int], Generator]] = [
            lambda i: run.read(group, c, i < warm_chunks, workers)]
        if shard:
            stages.append(lambda i: run.cpu_ranks(workers, "sharding", host.shard_rate, piece,
                                                  group))
        if host.buffers == "pageable":  # into a pinned staging buffer, while the last one DMAs
            stages.append(lambda i: run.cpu(workers, "pageable copy", host.copy_rate, c,
                                            group[0].socket))
        stages.append(lambda i: run.to_device(group, c))
        return run.pipeline(stages)

    def first_pass(group: list[Rank]) -> Event:
        c = piece * len(group)
        return run.pipeline([
            lambda i: run.read(group, c, i < warm, workers),
            lambda i: run.cpu_ranks(compile_pool, "sharding", host.shard_rate, piece, group),
            lambda i: run.write(group, c, compile_pool)])

    groups = list(run.groups.values())

    def main() -> Generator[Event, Any, None]:
        if strategy == "shard-on-compile-first":
            yield env.all_of([first_pass(g) for g in groups])
            fresh = _warm_chunks(spec, total, cache_bytes)
            if fresh < spec.chunks:
                notes.append("the sharded files do not all fit in the page cache: part of "
                             "the load after serialising reads storage again")
            yield env.all_of([load(g, fresh, False) for g in groups])
        elif strategy == "shard-on-compile":
            yield env.all_of([load(g, warm, False) for g in groups])
        else:
            yield env.all_of([load(g, warm, True) for g in groups])

    try:
        env.run(env.process(main()))
    except RouteError as err:
        raise ConfigError(f"load.sources: {source}: {err}") from None
    phases = {}
    for phase in PHASES:
        spans = sorted((s, e) for p, s, e in run.spans if p == phase)
        if not spans:
            continue
        busy, end = 0.0, -math.inf
        for s, e in spans:  # the union of the intervals
            busy += max(0.0, e - max(s, end))
            end = max(end, e)
        phases[phase] = {"busy_s": busy, "bytes": run.moved[phase],
                         "start_s": spans[0][0], "end_s": max(e for _, e in spans)}
    bottleneck = max(phases, key=lambda p: (phases[p]["busy_s"], p))
    return LoadOutcome(source, strategy, env.now, phases, bottleneck, notes, run.spans)


def check_sources(topo: Topology, spec: LoadSpec, ranks: list[Rank]) -> None:
    """Refuse a source of ``spec`` that is not a storage device of ``topo``, or that no route
    joins to the host memory of a rank's socket."""
    for i, source in enumerate(spec.sources):
        if source not in topo.graph or topo.node(source)["kind"] != "storage":
            known = ", ".join(topo.storage) or "none"
            raise ConfigError(f"load.sources[{i}]: {source!r} is not a storage device of "
                              f"{topo.name} (storage devices: {known})")
        for rank in {r.socket for r in ranks}:
            try:
                routing.route(topo, source, rank)
            except RouteError as err:
                raise ConfigError(f"load.sources[{i}]: {source} has no route to the host "
                                  f"memory of {rank} ({err})") from None


def simulate_loads(topo: Topology, params: TransferSpec, spec: LoadSpec, ranks: list[Rank],
                   rank_bytes: float) -> list[LoadOutcome]:
    """Every strategy from every source of ``spec`` (each rank gets ``rank_bytes``)."""
    check_sources(topo, spec, ranks)
    memory = sum(topo.node(s)["memory_bytes"] for s in topo.sockets) \
        if all("memory_bytes" in topo.node(s) for s in topo.sockets) else 0.0
    cache = max(0.0, memory - spec.cache_reserve)
    return [simulate_load(topo, params, spec, source, strategy, ranks, rank_bytes, cache)
            for source in spec.sources for strategy in spec.strategies]
