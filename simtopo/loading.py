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
from typing import Any, Literal

import simpy
from pydantic import Field
from simpy.events import Event

from .errors import ConfigError, RouteError
from .spec import Bandwidth, Count, Size, Spec, TransferSpec
from .topology import Topology
from .transfers import Fabric

STRATEGIES = ("shard-on-compile-first", "shard-on-compile", "shard-on-load")
Strategy = Literal["shard-on-compile-first", "shard-on-compile", "shard-on-load"]
PHASES = ("storage read", "page-cache read", "sharding", "serialization", "pageable copy",
          "host to device")


class HostLoadSpec(Spec):
    """The host's side of loading (every rate is per worker thread)."""

    workers: Count = 16
    compile_workers: Count = 1
    shard_rate: Bandwidth = "2GB/s"
    serialize_rate: Bandwidth = "2GB/s"
    buffers: Literal["pinned", "pageable"] = "pinned"
    copy_rate: Bandwidth = "8GB/s"


class LoadSpec(Spec):
    """An experiment's ``load:`` section."""

    sources: list[str] = Field(min_length=1)
    strategies: list[Strategy] = Field(default_factory=lambda: list(STRATEGIES), min_length=1)
    cache: Literal["cold", "warm"] = "cold"
    precision: Literal["fp32", "fp16", "bf16", "int8", "mxfp6"] | None = None
    tp: Count | None = None
    virtual_core_size: Count | None = None
    """Physical cores per rank (a logical core, like Neuron's LNC); default a whole device."""
    chunks: Count = 16
    cache_reserve: Size = "32GB"
    host: HostLoadSpec = HostLoadSpec()


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
    """``cores // virtual_core_size`` ranks on each device (one without a core size)."""
    if virtual_core_size is None or not topo.socs:
        return 1
    return topo.node(topo.socs[0])["cores"] // virtual_core_size


def map_ranks(topo: Topology, tp: int, virtual_core_size: int | None,
              devices: Sequence[str]) -> list[Rank]:
    """Ranks in order onto ``devices`` (the plan's order): one per device, or
    ``cores // virtual_core_size`` per device (a logical core of ``virtual_core_size``
    physical cores per rank)."""
    cores = topo.node(devices[0])["cores"] if devices else 0
    per_device = ranks_per_device(topo, virtual_core_size)
    if per_device < 1:
        raise ConfigError(f"load.virtual_core_size {virtual_core_size} exceeds the "
                          f"{cores} cores of a {topo.name} SoC")
    needed = math.ceil(tp / per_device)
    if needed > len(devices):
        raise ConfigError(f"load.tp: {tp} ranks of {virtual_core_size} cores need {needed} "
                          f"devices ({per_device} ranks each); the plan has {len(devices)}")
    return [Rank(r, devices[r // per_device], socket_of(topo, devices[r // per_device]))
            for r in range(tp)]


class _Run:
    """One strategy from one source on a fresh fabric."""

    def __init__(self, topo: Topology, params: TransferSpec, spec: LoadSpec, source: str,
                 ranks: list[Rank], checkpoint_bytes: float, cache_bytes: float) -> None:
        self.fabric = Fabric.create(topo, params)
        self.env = self.fabric.env
        self.spec, self.source, self.ranks = spec, source, ranks
        self.latency_s = float(topo.node(source).get("latency_s", 0.0))
        self.rank_bytes = checkpoint_bytes / len(ranks)
        self.chunk_bytes = self.rank_bytes / spec.chunks
        self.checkpoint_bytes = checkpoint_bytes
        self.cache_bytes = cache_bytes
        self.spans: list[tuple[str, float, float]] = []
        self.moved: dict[str, float] = dict.fromkeys(PHASES, 0.0)

    def _span(self, phase: str, start: float, nbytes: float) -> None:
        self.spans.append((phase, start, self.env.now))
        self.moved[phase] += nbytes

    def _cpu(self, pool: simpy.Resource, phase: str, rate: float,
             nbytes: float) -> Generator[Event, Any, None]:
        with pool.request() as turn:
            yield turn
            start = self.env.now
            yield self.env.timeout(nbytes / rate)
            self._span(phase, start, nbytes)

    def read(self, rank: Rank, nbytes: float, warm: bool,
             pool: simpy.Resource) -> Generator[Event, Any, None]:
        """A chunk from storage (cold) or from the page cache (warm: a copy by one of the
        I/O workers ``pool``)."""
        if warm:
            yield from self._cpu(pool, "page-cache read", self.spec.host.copy_rate, nbytes)
            return
        start = self.env.now
        if self.latency_s > 0:
            yield self.env.timeout(self.latency_s)
        yield self.fabric.copy(self.source, rank.socket, nbytes)
        self._span("storage read", start, nbytes)

    def write(self, rank: Rank, nbytes: float,
              pool: simpy.Resource) -> Generator[Event, Any, None]:
        """Serialise a chunk (a worker) and write it to the storage device."""
        yield from self._cpu(pool, "serialization", self.spec.host.serialize_rate, nbytes)
        start = self.env.now
        yield self.fabric.copy(rank.socket, self.source, nbytes)
        self._span("serialization", start, nbytes)

    def to_device(self, rank: Rank, nbytes: float) -> Generator[Event, Any, None]:
        """A chunk from host memory into the device."""
        start = self.env.now
        yield self.fabric.copy(rank.socket, rank.device, nbytes)
        self._span("host to device", start, nbytes)

    def pipeline(self, rank: Rank, stages: Sequence[Callable[[int], Generator]]) -> Event:
        """``chunks`` pieces through ``stages`` (each a function of the chunk index)."""
        env, k = self.env, self.spec.chunks
        left = [[env.event() for _ in range(k)] for _ in stages]

        def chunk(i: int) -> Generator[Event, Any, None]:
            for j, stage in enumerate(stages):
                if i > 0:
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
                  strategy: str, ranks: list[Rank], checkpoint_bytes: float,
                  cache_bytes: float) -> LoadOutcome:
    """Simulate one strategy from one storage device."""
    run = _Run(topo, params, spec, source, ranks, checkpoint_bytes, cache_bytes)
    env, host = run.env, spec.host
    workers = simpy.Resource(env, capacity=host.workers)
    compile_pool = simpy.Resource(env, capacity=host.compile_workers)
    notes: list[str] = []
    warm = _warm_chunks(spec, checkpoint_bytes, cache_bytes) if spec.cache == "warm" else 0
    if spec.cache == "warm" and warm < spec.chunks:
        notes.append(f"the page cache holds {cache_bytes / 1e9:.0f} GB of the "
                     f"{checkpoint_bytes / 1e9:.0f} GB read: the rest streams from storage")
    c = run.chunk_bytes

    def load(rank: Rank, warm_chunks: int, shard: bool, pool: simpy.Resource) -> Event:
        stages: list[Callable[[int], Generator]] = [
            lambda i: run.read(rank, c, i < warm_chunks, pool)]
        if shard:
            stages.append(lambda i: run._cpu(pool, "sharding", host.shard_rate, c))
        if host.buffers == "pageable":  # into a pinned staging buffer, while the last one DMAs
            stages.append(lambda i: run._cpu(pool, "pageable copy", host.copy_rate, c))
        stages.append(lambda i: run.to_device(rank, c))
        return run.pipeline(rank, stages)

    def main() -> Generator[Event, Any, None]:
        if strategy == "shard-on-compile-first":
            yield env.all_of([run.pipeline(r, [
                lambda i, r=r: run.read(r, c, i < warm, workers),
                lambda i: run._cpu(compile_pool, "sharding", host.shard_rate, c),
                lambda i, r=r: run.write(r, c, compile_pool)]) for r in ranks])
            fresh = _warm_chunks(spec, checkpoint_bytes, cache_bytes)
            if fresh < spec.chunks:
                notes.append("the sharded files do not all fit in the page cache: part of "
                             "the load after serialising reads storage again")
            yield env.all_of([load(r, fresh, False, workers) for r in ranks])
        elif strategy == "shard-on-compile":
            yield env.all_of([load(r, warm, False, workers) for r in ranks])
        else:
            yield env.all_of([load(r, warm, True, workers) for r in ranks])

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


def simulate_loads(topo: Topology, params: TransferSpec, spec: LoadSpec, ranks: list[Rank],
                   checkpoint_bytes: float) -> list[LoadOutcome]:
    """Every strategy from every source of ``spec``."""
    for i, source in enumerate(spec.sources):
        if source not in topo.graph or topo.node(source)["kind"] != "storage":
            known = ", ".join(topo.storage) or "none"
            raise ConfigError(f"load.sources[{i}]: {source!r} is not a storage device of "
                              f"{topo.name} (storage devices: {known})")
        for rank in {r.socket for r in ranks}:
            try:
                topo.route(source, rank)
            except RouteError as err:
                raise ConfigError(f"load.sources[{i}]: {source} has no route to the host "
                                  f"memory of {rank} ({err})") from None
    memory = sum(topo.node(s)["memory_bytes"] for s in topo.sockets) \
        if all("memory_bytes" in topo.node(s) for s in topo.sockets) else 0.0
    cache = max(0.0, memory - spec.cache_reserve)
    return [simulate_load(topo, params, spec, source, strategy, ranks, checkpoint_bytes, cache)
            for source in spec.sources for strategy in spec.strategies]
