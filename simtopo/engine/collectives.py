"""Collectives decomposed into transfers on the fabric, so shared uplinks show their contention.

Algorithms (``size`` is the per-device buffer, as in nccl-tests):

- all-reduce, P2P: ``ring`` (reduce-scatter then all-gather, 2(n-1) steps of size/n), ``tree``
  (binomial reduce then broadcast, 2 ceil(log2 n) steps of size) or ``direct`` (one shot: every
  device sends its buffer to every other); ``auto`` picks the one an alpha-beta estimate of this
  group on this fabric says is fastest, as real libraries choose by size.
- all-reduce, host-routed: a ``ring`` or a ``tree`` of bounces, or ``host-staged`` (every
  device copies to host memory, the host sums, every device copies the result back: two
  hand-off rounds). The transfer setting ``host_allreduce`` names one, or ``auto`` (the
  default) runs each on an idle fabric once per group and size and keeps the fastest: the
  bounces' shared uplinks and hand-off threads defeat a closed-form estimate, and a runtime
  that routes through the host is assumed to pick its algorithm as well as P2P libraries do.
  Every result names the algorithm it ran.
- all-gather: a ring (P2P, or of bounces); host-routed also ``host-staged`` (every device
  copies its slice to host memory, every device reads the whole back: the same two hand-off
  rounds, no sum), chosen by the same setting (``tree`` has no all-gather: a ring runs).
- reduce-scatter: ring; broadcast: a pipelined chain from the root; send/recv.

Rings follow the topology depth first (the order of ``topology.socs``), so that a ring crosses
each uplink as few times as possible. Reductions cost ``reduction_traffic`` bytes of memory
traffic per reduced byte, over the reducing SoC's DRAM (or the host's memory) bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from simpy.events import AllOf, Event

from ..errors import RouteError
from ..topology import routing
from ..topology.graph import Topology
from ..topology.routing import BounceRoute, Route
from .transfers import Fabric

OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send")
ALL_REDUCE_ALGORITHMS = ("auto", "ring", "tree", "direct")
HOST_ALGORITHMS = {"all_reduce": ("ring", "tree", "host-staged"),
                   "all_gather": ("ring", "host-staged")}
"""Host-routed algorithms ``auto`` chooses from, by collective (a direct all-reduce of bounces,
n (n - 1) hand-offs, never wins on a host with a few hand-off threads)."""

BUS_FACTOR = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "send": lambda n: 1.0,
}
"""nccl-tests' bus-bandwidth factors: busbw = algbw x factor(n)."""


@dataclass(frozen=True)
class CollectiveResult:
    """One collective: what ran, with which algorithm, and how long it took."""

    op: str
    algorithm: str
    """``ring``, ``tree``, ``direct``, ``host-staged``, ``chain`` (broadcast)."""
    mode: str
    group: tuple[str, ...]
    """The devices in the order the algorithm visits them."""
    size_bytes: float
    """The per-device buffer, as nccl-tests counts it."""
    time_s: float

    @property
    def algbw_Bps(self) -> float:
        """Algorithm bandwidth: size / time."""
        return self.size_bytes / self.time_s if self.time_s > 0 else math.inf

    @property
    def busbw_Bps(self) -> float:
        """Bus bandwidth: algbw times the op's factor (2(n-1)/n for all-reduce)."""
        return self.algbw_Bps * BUS_FACTOR[self.op](len(self.group))


def ring_order(topo: Topology, group: Sequence[str]) -> list[str]:
    """``group`` in depth-first topology order (a ring that crosses each uplink least)."""
    position = {dev: i for i, dev in enumerate((*topo.socs, *topo.storage))}
    for dev in group:
        topo.node(dev)
        if dev not in position:
            raise RouteError(f"{dev} is not a SoC or storage device; collectives run on devices")
    if len(set(group)) != len(group):
        raise RouteError(f"a collective group lists a device twice: {', '.join(group)}")
    return sorted(group, key=position.__getitem__)


class Collectives:
    """Collective operations on one :class:`Fabric` (so several can contend)."""

    def __init__(self, fabric: Fabric, choices: dict[Any, str] | None = None,
                 label: str = "") -> None:
        self.fab = fabric
        self.env = fabric.env
        self.topo = fabric.topo
        self.params = fabric.params
        self.choices = {} if choices is None else choices
        """Host-routed algorithms chosen so far, by (op, ring, size); pass one dict to several
        instances on the same topology and settings to choose once."""
        self.label = label
        """Label of every flow these collectives start (the network records it)."""

    # -- building blocks --------------------------------------------------------------------
    def _reduce_time(self, device: str, size_bytes: float) -> float:
        node = self.topo.node(device)
        bw = node["memory_bw_Bps"] if node["kind"] == "socket" else node.get("dram_bw_Bps")
        if not bw or self.params.reduction_traffic == 0:
            return 0.0
        return self.params.reduction_traffic * size_bytes / bw

    def _send(self, src: str, dst: str, size: float, mode: str,
              reduce_bytes: float = 0.0) -> Event:
        return self.env.process(self._send_then_reduce(src, dst, size, mode, reduce_bytes))

    def _send_then_reduce(self, src: str, dst: str, size: float, mode: str,
                          reduce_bytes: float) -> Generator[Event, Any, None]:
        yield self.fab.copy(src, dst, size, mode=mode, label=self.label)
        delay = self._reduce_time(dst, reduce_bytes)
        if delay > 0:
            yield self.env.timeout(delay)

    def _step(self, sends: list[Event]) -> Event:
        return AllOf(self.env, sends)

    # -- algorithms -------------------------------------------------------------------------
    def _ring_steps(self, ring: list[str], piece: float, mode: str, steps: int,
                    reducing_steps: int) -> Generator[Event, Any, None]:
        n = len(ring)
        for step in range(steps):
            reduce = piece if step < reducing_steps else 0.0
            yield self._step([self._send(ring[i], ring[(i + 1) % n], piece, mode, reduce)
                              for i in range(n)])

    def _tree_all_reduce(self, ring: list[str], size: float,
                         mode: str) -> Generator[Event, Any, None]:
        n = len(ring)
        span = 1
        while span < n:  # binomial reduce towards ring[0]
            yield self._step([self._send(ring[i + span], ring[i], size, mode, size)
                              for i in range(0, n - span, 2 * span)])
            span *= 2
        while span > 1:  # and broadcast back down the same tree
            span //= 2
            yield self._step([self._send(ring[i], ring[i + span], size, mode)
                              for i in range(0, n - span, 2 * span)])

    def _direct_all_reduce(self, ring: list[str], size: float,
                           mode: str) -> Generator[Event, Any, None]:
        yield self._step([self._send(a, b, size, mode) for a in ring for b in ring if a != b])
        delay = max(self._reduce_time(d, size * (len(ring) - 1)) for d in ring)
        if delay > 0:
            yield self.env.timeout(delay)

    def _host_staged(self, ring: list[str], size: float,
                     reduce: bool) -> Generator[Event, Any, None]:
        """Through host memory: every device copies its buffer (all-reduce) or its slice
        (all-gather) in, the host sees them arrive (one hand-off each), sums them (all-reduce),
        releases the result (one hand-off each), and every device copies the whole back."""
        socket = self.topo.node(ring[0])["socket"]
        handoff = self.topo.handoff_latency_s
        n = len(ring)
        yield self._step([self.fab.copy(d, socket, size if reduce else size / n,
                                                       label=self.label) for d in ring])
        yield self._step([self.fab.handoff_once(handoff) for _ in ring])
        delay = self._reduce_time(socket, size * (n - 1)) if reduce else 0.0
        if delay > 0:
            yield self.env.timeout(delay)
        yield self._step([self.fab.handoff_once(handoff) for _ in ring])
        yield self._step([self.fab.copy(socket, d, size, label=self.label) for d in ring])

    def _broadcast(self, chain: list[str], size: float, mode: str) -> Generator[Event, Any,
                                                                                 None]:
        chunks = max(1, math.ceil(size / self.params.chunk - 1e-12))
        piece = size / chunks
        received = [[self.env.event() for _ in range(chunks)] for _ in chain]
        for event in received[0]:
            event.succeed()

        def hop(i: int) -> Generator[Event, Any, None]:
            for j in range(chunks):
                yield received[i][j]
                yield self.fab.copy(chain[i], chain[i + 1], piece, mode=mode,
                                    label=self.label)
                received[i + 1][j].succeed()

        yield self._step([self.env.process(hop(i)) for i in range(len(chain) - 1)])

    # -- estimates for algorithm choice -----------------------------------------------------
    def _alpha_beta(self, ring: list[str]) -> tuple[float, float]:
        """Per-message cost and bandwidth of the ring's neighbour routes (P2P)."""
        routes = [routing.route(self.topo, a, b) for a, b in zip(ring, ring[1:] + ring[:1],
                                                                 strict=True)]
        assert not any(isinstance(r, BounceRoute) for r in routes)
        alpha = self.params.dma_setup + max(r.latency_s for r in routes)
        beta = min(r.bottleneck_Bps for r in routes)
        return alpha, beta

    def choose_all_reduce(self, ring: list[str], size: float) -> str:
        """The P2P all-reduce algorithm an alpha-beta estimate says is fastest for ``size``."""
        n = len(ring)
        alpha, bw = self._alpha_beta(ring)
        c = self.params.concurrency_efficiency
        fan = (n - 1) if n > 1 else 1
        levels = math.ceil(math.log2(n))
        per_byte = max(self._reduce_time(d, 1.0) for d in ring)  # reduction, s per byte
        estimates = {
            "ring": 2 * (n - 1) * (alpha + size / (n * bw)) + (n - 1) * size / n * per_byte,
            "tree": 2 * levels * (alpha + size / bw) + levels * size * per_byte,
            "direct": alpha + fan * size / (bw * (c + (1 - c) / fan)) + fan * size * per_byte,
        }
        return min(estimates, key=lambda k: (estimates[k], k != "ring"))

    def choose_host(self, op: str, ring: list[str], size: float) -> str:
        """The host-routed algorithm for ``op`` that runs fastest on an idle fabric (see the
        module docstring); remembered in :attr:`choices`."""
        key = (op, tuple(ring), size)
        candidates = HOST_ALGORITHMS[op]
        if key not in self.choices:
            best, best_time = candidates[0], math.inf
            # the usual winner first, so that slower trials can stop at the best time so far
            for name in sorted(candidates, key=lambda a: a != "host-staged"):
                trial = Collectives(Fabric.create(self.topo, self.params))
                done = trial.env.process(trial._run(op, name, ring, size, "host"))
                trial.env.run(until=None if math.isinf(best_time) else best_time * 1.000001)
                if not done.triggered:  # still running at the best time: slower
                    continue
                took = done.value.time_s
                if took < best_time * (1 - 1e-12) or (
                        took <= best_time * (1 + 1e-12)
                        and candidates.index(name) < candidates.index(best)):
                    best, best_time = name, took
            self.choices[key] = best
        return self.choices[key]

    # -- the public operations --------------------------------------------------------------
    def run(self, op: str, group: Sequence[str], size_bytes: float, mode: str = "p2p",
            algorithm: str = "auto", root: str | None = None) -> Event:
        """Start a collective as a process whose value is a :class:`CollectiveResult`."""
        if op not in OPS:
            raise ValueError(f"unknown collective {op!r} (expected one of: {', '.join(OPS)})")
        if mode not in ("p2p", "host"):
            raise ValueError(f"mode must be 'p2p' or 'host' (got {mode!r})")
        if size_bytes < 0:
            raise ValueError(f"negative collective size {size_bytes}")
        ring = ring_order(self.topo, group)
        if op == "send" and len(ring) != 2:
            raise ValueError("send needs exactly two devices (source first)")
        if op == "send":
            ring = list(group)
        if op == "broadcast" and root is not None:
            k = ring.index(root)
            ring = ring[k:] + ring[:k]
        name = self._algorithm(op, ring, size_bytes, mode, algorithm)
        return self.env.process(self._run(op, name, ring, size_bytes, mode))

    def _algorithm(self, op: str, ring: list[str], size: float, mode: str,
                   algorithm: str) -> str:
        if mode == "host" and op in HOST_ALGORITHMS:
            if len(ring) < 2 or size <= 0:
                return "ring"
            setting = self.params.host_allreduce
            if setting == "auto":
                return self.choose_host(op, ring, size)
            return setting if setting in HOST_ALGORITHMS[op] else "ring"
        if op != "all_reduce":
            return {"send": "direct", "broadcast": "chain"}.get(op, "ring")
        if algorithm not in ALL_REDUCE_ALGORITHMS:
            raise ValueError(f"unknown all-reduce algorithm {algorithm!r} (expected one of: "
                             f"{', '.join(ALL_REDUCE_ALGORITHMS)})")
        if len(ring) < 2:
            return "ring"
        return self.choose_all_reduce(ring, size) if algorithm == "auto" else algorithm

    def _run(self, op: str, name: str, ring: list[str], size: float,
             mode: str) -> Generator[Event, Any, CollectiveResult]:
        start = self.env.now
        n = len(ring)
        if n >= 2 and size > 0:
            if op == "all_reduce" and name == "ring":
                yield from self._ring_steps(ring, size / n, mode, 2 * (n - 1), n - 1)
            elif op == "all_reduce" and name == "tree":
                yield from self._tree_all_reduce(ring, size, mode)
            elif op == "all_reduce" and name == "direct":
                yield from self._direct_all_reduce(ring, size, mode)
            elif name == "host-staged":
                yield from self._host_staged(ring, size, reduce=op == "all_reduce")
            elif op == "all_gather":
                yield from self._ring_steps(ring, size / n, mode, n - 1, 0)
            elif op == "reduce_scatter":
                yield from self._ring_steps(ring, size / n, mode, n - 1, n - 1)
            elif op == "broadcast":
                yield from self._broadcast(ring, size, mode)
            else:
                yield self.fab.copy(ring[0], ring[1], size, mode=mode, label=self.label)
        return CollectiveResult(op=op, algorithm=name, mode=mode, group=tuple(ring),
                                size_bytes=size, time_s=self.env.now - start)


HANDOFF = "handoff"
"""The name :func:`footprint` gives the host's hand-off threads (a shared resource)."""


def footprint(topo: Topology, group: Sequence[str], mode: str) -> frozenset[str]:
    """Every resource a collective over ``group`` may load, named as the network names them
    (directed links of finite bandwidth, ``mem:`` socket memory, ``tx:``/``rx:`` endpoint
    engines) plus :data:`HANDOFF` for host-routed groups: a superset of what any algorithm
    uses, so two groups whose footprints are disjoint cannot contend."""
    out: set[str] = set()

    def add(route: Route) -> None:
        out.update(f"{u}->{v}" for (u, v), bw in zip(route.links, route.link_bw_Bps,
                                                     strict=True) if math.isfinite(bw))
        if route.memory is not None:
            out.add(f"mem:{route.memory}")
        out.update((f"tx:{route.src}", f"rx:{route.dst}"))

    if len(group) < 2:
        return frozenset()
    if mode == "p2p":
        for a in group:
            for b in group:
                if a != b:
                    found = routing.route(topo, a, b)
                    assert isinstance(found, Route)
                    add(found)
        return frozenset(out)
    for socket in sorted({topo.node(d)["socket"] for d in group}):
        for device in group:
            for src, dst in ((device, socket), (socket, device)):
                found = routing.route(topo, src, dst)
                assert isinstance(found, Route)
                add(found)
    out.add(HANDOFF)
    return frozenset(out)


def run_collective(topo: Topology, op: str, group: Sequence[str], size_bytes: float,
                   mode: str = "p2p", algorithm: str = "auto", params: Any = None,
                   root: str | None = None) -> CollectiveResult:
    """Run one collective alone on an idle fabric and return its result. A P2P collective
    over more SoCs than the platform's ``max_p2p_group`` is refused, as plans refuse it."""
    limit = topo.platform.max_p2p_group
    if mode == "p2p" and op != "send" and limit is not None and len(group) > limit:
        raise RouteError(f"a P2P {op} over {len(group)} SoCs exceeds {topo.name}'s P2P limit "
                         f"of {limit} (platform.max_p2p_group): use fewer SoCs, or "
                         f"{routing.HOST_HINT}")
    fab = Fabric.create(topo, params)
    process = Collectives(fab).run(op, group, size_bytes, mode, algorithm, root)
    fab.env.run()
    result = process.value
    assert isinstance(result, CollectiveResult)
    return result
