"""Collectives decomposed into transfers on the fabric, so shared uplinks show their contention.

Algorithms (``size`` is the per-device buffer, as in nccl-tests):

- all-reduce, P2P: ``ring`` (reduce-scatter then all-gather, 2(n-1) steps of size/n), ``tree``
  (binomial reduce then broadcast, 2 ceil(log2 n) steps of size) or ``direct`` (one shot: every
  device sends its buffer to every other); on a ring over cards a device fabric joins, each
  holding k of the group (the logical cores of chips), also ``hierarchical``: a reduce-scatter
  inside each card, k rings across the cards at once (one per core position, size/k each,
  sharing the links), an all-gather inside each card, 2(k-1) + 2(cards-1) steps instead of
  2(n-1). ``auto`` picks the one an alpha-beta estimate of this group on this fabric says is
  fastest, as real libraries choose by size.
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
- reduce-scatter: ring; broadcast: a pipelined chain from the root; send/recv (a copy).
- all-to-all (``size`` is each device's send buffer, ``size / n`` to every device): ``direct``,
  every pair at once (P2P, or bounces); host-routed also ``host-staged`` (every buffer in,
  every device reads its pieces back: two hand-off rounds, no sum), chosen as above.

Software costs: every collective pays a launch cost per call and a synchronisation cost per
algorithm step (kernel launch, flag write and wait), by protocol: ``LL`` (cheap, a quarter of
the bandwidth) or ``simple`` (:mod:`simtopo.engine.protocols`); each call takes the one an
alpha-beta estimate says is faster for its size, and P2P ``auto`` chooses algorithm and
protocol together.
Host-routed steps synchronise by a host hand-off per staged chunk (``host_collectives:
handoff``, a runtime relaying through the host, protocol ``simple``) or by the devices polling
a flag in host memory (``polled``, NCCL's shared-memory transport: no host thread involved).

Rings follow the topology depth first (the order of ``topology.socs``), so that a ring crosses
each uplink as few times as possible. Reductions cost ``reduction_traffic`` bytes of memory
traffic per reduced byte, over the reducing SoC's DRAM (or the host's memory) bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import Any

from simpy.events import AllOf, Event

from ..errors import RouteError
from ..topology import routing
from ..topology.fabric import group_ring, port_runs
from ..topology.graph import Topology
from . import memo as idle
from . import protocols
from .collective_result import CollectiveResult
from .transfers import Fabric

OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send", "all_to_all")
ALL_REDUCE_ALGORITHMS = ("auto", "ring", "tree", "direct", "hierarchical")
HOST_ALGORITHMS = {"all_reduce": ("ring", "tree", "host-staged"),
                   "all_gather": ("ring", "host-staged"),
                   "all_to_all": ("direct", "host-staged")}
"""Host-routed algorithms ``auto`` chooses from (a direct all-reduce of bounces never wins)."""

def ring_order(topo: Topology, group: Sequence[str]) -> list[str]:
    """``group`` in depth-first topology order (a ring that crosses each uplink least), or a
    ring over device fabric links where they join the whole group in one."""
    position = {dev: i for i, dev in enumerate((*topo.socs, *topo.storage))}
    for dev in group:
        topo.node(dev)
        if dev not in position:
            raise RouteError(f"{dev} is not a SoC or storage device; collectives run on devices")
    if len(set(group)) != len(group):
        raise RouteError(f"a collective group lists a device twice: {', '.join(group)}")
    return group_ring(topo, group) or sorted(group, key=position.__getitem__)


class Collectives:
    """Collective operations on one :class:`Fabric` (so several can contend)."""

    def __init__(self, fabric: Fabric, memo: dict[Any, Any] | None = None,
                 label: str = "", solo: bool = False) -> None:
        self.fab = fabric
        self.env = fabric.env
        self.topo = fabric.topo
        self.params = fabric.params
        self.memo = {} if memo is None else memo
        """What was found so far: host-routed algorithms chosen, by (op, ring, size), and runs
        on an idle fabric (:mod:`simtopo.engine.memo`); pass one dict to several instances on
        the same topology and settings to find each once (another topology or setting is
        refused: :func:`simtopo.sim.setup.memo_for` keeps one dict for each)."""
        settings = (self.topo.fingerprint, self.params.model_dump_json())
        if self.memo.setdefault(("settings",), settings) != settings:
            raise ValueError("this collective memo belongs to another topology or transfer "
                             "setting (simtopo.sim.setup.memo_for keeps one for each)")
        self.label = label
        """Label of every flow these collectives start (the network records it)."""
        self.solo = solo
        """Each collective started here has the fabric to itself (idle when it starts, and
        nothing else starts until it ends): runs are remembered and replayed."""

    # -- building blocks --------------------------------------------------------------------
    def _reduce_time(self, device: str, size_bytes: float) -> float:
        node = self.topo.node(device)
        if node["kind"] == "socket":
            # a host sum: the host's threads each stream host_thread_bw, capped by the memory
            bw = min(node["memory_bw_Bps"],
                     self.topo.handoff_threads * self.params.host_thread_bw)
        else:
            bw = node.get("dram_bw_Bps")
        if not bw or self.params.reduction_traffic == 0:
            return 0.0
        return self.params.reduction_traffic * size_bytes / bw

    def _send(self, src: str, dst: str, size: float, mode: str,
              reduce_bytes: float = 0.0) -> Event:
        return self.env.process(self._send_then_reduce(src, dst, size, mode, reduce_bytes))

    def _copy(self, src: str, dst: str, size: float, mode: str) -> Event:
        # the step cost stands for the copies' set-up (NCCL's kernels move the data); two
        # ranks no P2P route joins (a fabric ring's non-neighbours) pass through host memory,
        # as NCCL picks a transport per peer
        if mode == "p2p" and not routing.p2p_possible(self.topo, src, dst):
            mode = "host"
        return self.fab.copy(src, dst, size, mode=mode, label=self.label, setup=False,
                             poll=mode == "host" and self.params.host_collectives == "polled")

    def _send_then_reduce(self, src: str, dst: str, size: float, mode: str,
                          reduce_bytes: float) -> Generator[Event, Any, None]:
        yield self._copy(src, dst, size, mode)
        delay = self._reduce_time(dst, reduce_bytes)
        if delay > 0:
            yield self.env.timeout(delay)

    def _step(self, sends: list[Event]) -> Event:
        return AllOf(self.env, sends)

    def _sync(self, seconds: float) -> Generator[Event, Any, None]:
        if seconds > 0:
            yield self.env.timeout(seconds)

    # -- algorithms (``wire`` scales bytes on the wire: 1 / the protocol's bandwidth share) ---
    def _ring_steps(self, rings: list[list[str]], piece: float, mode: str, steps: int,
                    reducing_steps: int, step_s: float,
                    wire: float) -> Generator[Event, Any, None]:
        """``steps`` ring steps of ``rings`` (of one length) in lockstep: every device sends
        ``piece`` to its successor, the first ``reducing_steps`` summing what arrives."""
        n = len(rings[0])
        seen: dict[bool, idle.IdleRun] = {}  # a step run so far, by whether it reduces
        for step in range(steps):
            reduce = piece if step < reducing_steps else 0.0
            if (reduce > 0) in seen:  # the same sends from an idle fabric: the same step
                yield from idle.replay(self.fab.net, seen[reduce > 0], self.label)
                continue
            start, first = self.env.now, len(self.fab.net.records)
            yield from self._sync(step_s)
            yield self._step([self._send(ring[i], ring[(i + 1) % n], piece * wire, mode, reduce)
                              for ring in rings for i in range(n)])
            if self.solo and self.fab.net.record:
                seen[reduce > 0] = idle.since(self.fab.net, start, first)

    def _hierarchical(self, ring: list[str], size: float, mode: str, step_s: float,
                      wire: float) -> Generator[Event, Any, None]:
        runs = port_runs(self.topo.graph, ring)
        assert runs is not None  # chosen only where the ring has the shape
        k, ports = len(runs[0]), len(runs)
        across = [[run[j] for run in runs] for j in range(k)]
        yield from self._ring_steps(runs, size / k, mode, k - 1, k - 1, step_s, wire)
        yield from self._ring_steps(across, size / (k * ports), mode, 2 * (ports - 1),
                                    ports - 1, step_s, wire)
        yield from self._ring_steps(runs, size / k, mode, k - 1, 0, step_s, wire)

    def _tree_all_reduce(self, ring: list[str], size: float, mode: str, step_s: float,
                         wire: float) -> Generator[Event, Any, None]:
        n = len(ring)
        span = 1
        while span < n:  # binomial reduce towards ring[0]
            yield from self._sync(step_s)
            yield self._step([self._send(ring[i + span], ring[i], size * wire, mode, size)
                              for i in range(0, n - span, 2 * span)])
            span *= 2
        while span > 1:  # and broadcast back down the same tree
            span //= 2
            yield from self._sync(step_s)
            yield self._step([self._send(ring[i], ring[i + span], size * wire, mode)
                              for i in range(0, n - span, 2 * span)])

    def _direct(self, ring: list[str], size: float, mode: str, step_s: float, wire: float,
                reduce: bool = True) -> Generator[Event, Any, None]:
        """Every device sends ``size`` to every other at once (then sums what it got)."""
        yield from self._sync(step_s)
        yield self._step([self._send(a, b, size * wire, mode) for a in ring for b in ring
                          if a != b])
        delay = max(self._reduce_time(d, size * (len(ring) - 1)) for d in ring) if reduce \
            else 0.0
        if delay > 0:
            yield self.env.timeout(delay)

    def _host_staged(self, ring: list[str], size: float, op: str) -> Generator[Event, Any, None]:
        """Through host memory: every device copies its buffer (all-reduce), its slice
        (all-gather) or the pieces for the others (all-to-all) in, the host sees them arrive
        (one hand-off each), sums them (all-reduce, on the hand-off threads), releases the
        result (one hand-off each), and every device copies back the buffer (the pieces from
        the others, for an all-to-all)."""
        socket = self.topo.node(ring[0])["socket"]
        handoff = self.topo.handoff_latency_s
        n = len(ring)
        reduce = op == "all_reduce"
        into = {"all_reduce": size, "all_gather": size / n}.get(op, size * (n - 1) / n)
        back = size * (n - 1) / n if op == "all_to_all" else size
        yield self._step([self.fab.copy(d, socket, into, label=self.label, setup=False)
                          for d in ring])
        yield self._step([self.fab.handoff_once(handoff) for _ in ring])
        delay = self._reduce_time(socket, size * (n - 1)) if reduce else 0.0
        if delay > 0:
            yield self.env.timeout(delay)
        yield self._step([self.fab.handoff_once(handoff) for _ in ring])
        yield self._step([self.fab.copy(socket, d, back, label=self.label, setup=False)
                          for d in ring])

    def _broadcast(self, chain: list[str], size: float, mode: str,
                   step_s: float, wire: float) -> Generator[Event, Any, None]:
        chunks = max(1, math.ceil(size / self.params.chunk - 1e-12))
        piece = size / chunks
        received = [[self.env.event() for _ in range(chunks)] for _ in chain]
        for event in received[0]:
            event.succeed()

        def hop(i: int) -> Generator[Event, Any, None]:
            for j in range(chunks):
                yield received[i][j]
                yield from self._sync(step_s)
                yield self._copy(chain[i], chain[i + 1], piece * wire, mode)
                received[i + 1][j].succeed()

        yield self._step([self.env.process(hop(i)) for i in range(len(chain) - 1)])

    # -- algorithm and protocol choice ------------------------------------------------------
    def choose(self, ring: list[str], size: float, algorithm: str = "auto",
               mode: str = "p2p") -> tuple[str, str]:
        """(algorithm, protocol) the estimates (:func:`protocols.estimates`) say is
        fastest; a ring (flat or hierarchical) where some pair of the group has no P2P route
        (a fabric ring's: a tree or one-shot would bounce those pairs through host memory)."""
        allowed: str | tuple[str, ...] = algorithm
        if mode == "p2p" and algorithm == "auto" and not all(
                routing.p2p_possible(self.topo, a, b) for a in ring for b in ring if a != b):
            allowed = ("ring", "hierarchical")
        runs = port_runs(self.topo.graph, ring) \
            if mode == "p2p" and algorithm in ("auto", "hierarchical") else None
        table = protocols.estimates(self.topo, self.params, ring, size,
                                    lambda d: self._reduce_time(d, 1.0), mode, runs)
        return protocols.fastest(table, allowed)

    def protocol(self, op: str, ring: list[str], size: float, name: str, mode: str) -> str:
        """The protocol of one call: by estimate, except where host hand-offs synchronise the
        steps (host-staged, or relays with ``host_collectives: handoff``): ``handoff``."""
        if len(ring) < 2 or size <= 0:
            return "simple"
        if name == "host-staged" or (mode == "host"
                                     and self.params.host_collectives != "polled"):
            return "handoff"
        if op == "all_to_all":  # priced as a direct exchange of its pieces
            return self.choose(ring, size / len(ring), "direct", mode)[1]
        per_device = size if op in ("all_reduce", "broadcast", "send") else size * len(ring)
        return self.choose(ring, per_device, name if name in ALL_REDUCE_ALGORITHMS[1:]
                           else "ring", mode)[1]

    def choose_host(self, op: str, ring: list[str], size: float) -> str:
        """The host-routed algorithm for ``op`` that runs fastest on an idle fabric (see the
        module docstring); remembered in :attr:`memo`, as are the trials' runs."""
        key = (op, tuple(ring), size)
        candidates = HOST_ALGORITHMS[op]
        if key not in self.memo:
            best, best_time = candidates[0], math.inf
            # the usual winner first, so that slower trials can stop at the best time so far
            for name in sorted(candidates, key=lambda a: a != "host-staged"):
                protocol = self.protocol(op, ring, size, name, "host")
                trial = self._idle(op, name, ring, size, "host", protocol, best_time)
                took = math.inf if trial is None else trial.elapsed_s
                if took < best_time * (1 - 1e-12) or (
                        took <= best_time * (1 + 1e-12)
                        and candidates.index(name) < candidates.index(best)):
                    best, best_time = name, took
            self.memo[key] = best
        return self.memo[key]

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
        protocol = self.protocol(op, ring, size_bytes, name, mode)
        return self._start(op, name, ring, size_bytes, mode, protocol)

    def _start(self, op: str, name: str, ring: list[str], size: float, mode: str,
               protocol: str) -> Event:
        if self.solo:
            known = self._idle(op, name, ring, size, mode, protocol)
            assert known is not None
            return self.env.process(idle.replay(self.fab.net, known, self.label))
        return self.env.process(self._run(op, name, ring, size, mode, protocol))

    def _idle(self, op: str, name: str, ring: list[str], size: float, mode: str,
              protocol: str, until: float = math.inf) -> idle.IdleRun | None:
        """The collective alone on a fresh fabric from time zero, remembered in :attr:`memo`
        (so that what a run gives never depends on what ran before it); ``None`` for a run
        still going at ``until`` (abandoned)."""
        key = ("idle", op, tuple(ring), float(size), mode, name, protocol)
        if key not in self.memo:
            fab = Fabric.create(self.topo, self.params, record=True)
            alone = Collectives(fab, self.memo, solo=True)
            done = fab.env.process(alone._run(op, name, ring, size, mode, protocol))
            fab.env.run(until=None if math.isinf(until) else until * 1.000001)
            if not done.triggered:
                return None
            self.memo[key] = idle.IdleRun(done.value, done.value.time_s, tuple(fab.net.records))
        known = self.memo[key]
        assert isinstance(known, idle.IdleRun)
        return known

    def _algorithm(self, op: str, ring: list[str], size: float, mode: str,
                   algorithm: str) -> str:
        if mode == "host" and op in HOST_ALGORITHMS:
            if len(ring) < 2 or size <= 0:
                return "ring"
            setting = self.params.host_allreduce
            if setting == "auto":
                return self.choose_host(op, ring, size)
            return setting if setting in HOST_ALGORITHMS[op] else HOST_ALGORITHMS[op][0]
        if op != "all_reduce":
            return {"send": "direct", "broadcast": "chain", "all_to_all": "direct"}.get(op,
                                                                                     "ring")
        if algorithm not in ALL_REDUCE_ALGORITHMS:
            raise ValueError(f"unknown all-reduce algorithm {algorithm!r} (expected one of: "
                             f"{', '.join(ALL_REDUCE_ALGORITHMS)})")
        if len(ring) < 2:
            return "ring"
        if algorithm == "hierarchical" and (mode != "p2p"
                                            or port_runs(self.topo.graph, ring) is None):
            raise ValueError("a hierarchical all-reduce needs a P2P ring over two or more "
                             "cards a device fabric joins, each holding two or more of the "
                             f"group, as many on each ({', '.join(ring)} is not)")
        return self.choose(ring, size)[0] if algorithm == "auto" else algorithm

    def _run(self, op: str, name: str, ring: list[str], size: float, mode: str,
             protocol: str = "simple") -> Generator[Event, Any, CollectiveResult]:
        start = self.env.now
        n = len(ring)
        if n >= 2 and size > 0:
            launch, step, share = protocols.costs(self.params, protocol)
            wire = 1 / share
            if op == "send":  # a point-to-point copy: no collective launch, no steps
                launch, step = 0.0, 0.0
            yield from self._sync(launch)
            if op == "all_reduce" and name == "ring":
                yield from self._ring_steps([ring], size / n, mode, 2 * (n - 1), n - 1, step,
                                            wire)
            elif op == "all_reduce" and name == "hierarchical":
                yield from self._hierarchical(ring, size, mode, step, wire)
            elif op == "all_reduce" and name == "tree":
                yield from self._tree_all_reduce(ring, size, mode, step, wire)
            elif op == "all_reduce" and name == "direct":
                yield from self._direct(ring, size, mode, step, wire)
            elif name == "host-staged":
                yield from self._host_staged(ring, size, op)
            elif op == "all_to_all":
                yield from self._direct(ring, size / n, mode, step, wire, reduce=False)
            elif op == "all_gather":
                yield from self._ring_steps([ring], size / n, mode, n - 1, 0, step, wire)
            elif op == "reduce_scatter":
                yield from self._ring_steps([ring], size / n, mode, n - 1, n - 1, step, wire)
            elif op == "broadcast":
                yield from self._broadcast(ring, size, mode, step, wire)
            else:  # a send is a plain copy, set-up included
                yield self.fab.copy(ring[0], ring[1], size, mode=mode, label=self.label)
        return CollectiveResult(op=op, algorithm=name, mode=mode, group=tuple(ring),
                                size_bytes=size, time_s=self.env.now - start,
                                protocol=protocol)
