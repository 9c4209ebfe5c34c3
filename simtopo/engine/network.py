"""Flow-level contention inside SimPy: max-min fair sharing of links, host memory, DMA engines.

A :class:`Network` turns a route into a set of resources and runs each transfer as a flow whose
rate is re-solved (progressive filling, :mod:`simtopo.engine.maxmin`) whenever a flow starts or
ends. Resources:

- every directed link with a finite bandwidth (the two directions of a link are independent);
- the memory of each socket (host-routed and host-to-device traffic, reads and writes alike),
  with the concurrency efficiency below;
- each endpoint's transmit and receive side, with the device's DMA-engine cap (default: its own
  link), for a SoC below a switch scaled by the concurrency efficiency e(k) = c + (1 - c) / k
  when k flows share it (max-min alone over-predicts many-to-one and all-to-all traffic
  through one switch);
- a device's engine writing to and reading from host memory together (``ce:``), at most h x
  (tx + rx) with the host duplex efficiency h < 1 (reads of host memory are non-posted);
- each link's two directions together (``dx:``), at most d x (up + down) with the duplex
  efficiency d < 1: the reverse direction carries the acknowledgements of the forward one;
- each cross-socket P2P stream (``xs:``), at the socket P2P efficiency times its slowest link.

A transfer pays the DMA set-up, then moves its bytes at the fluid rate, then its route latency.

Efficiency: flows with the same resources form one class (one variable in the solve); a start
or an end re-solves only the classes connected to it through shared resources; all flows that
start at one instant are solved together, after every other event at that instant.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy
from simpy.events import Event

from ..spec.topology import TransferSpec
from ..topology.routing import Route
from .maxmin import max_min_rates

if TYPE_CHECKING:
    from ..topology.graph import Topology

LATE = 2
"""Event priority after SimPy's URGENT (0) and NORMAL (1): rate solves run last at an instant."""

SMALL_SOLVE = 48
"""With at most this many active flow classes, re-solve them all: cheaper than searching for
the component that changed."""

FINISH_TOLERANCE = 1e-9
"""A flow whose remaining bytes are below this fraction of its size has finished."""


class _At(Event):
    """An event that fires at ``now + delay`` with a given priority."""

    def __init__(self, env: simpy.Environment, delay: float, priority: int) -> None:
        self.env = env
        self.callbacks = []
        self._ok = True
        self._value = None
        env.schedule(self, priority, delay)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FlowRecord:
    """One finished flow: what moved, over which resources, when."""

    label: str
    size_bytes: float
    start_s: float
    end_s: float
    resources: tuple[str, ...]


class Network:
    """Max-min fair fluid sharing of a topology's links, memory and DMA engines in SimPy."""

    def __init__(self, env: simpy.Environment, topo: Topology,
                 params: TransferSpec | None = None, record: bool = False) -> None:
        self.env = env
        self.topo = topo
        self.params = params if params is not None else topo.transfer
        self.record = record
        self.records: list[FlowRecord] = []
        names: list[str] = []
        capacity: list[float] = []
        endpoint: list[bool] = []
        graph = topo.graph

        def add(name: str, cap: float, is_endpoint: bool = False) -> None:
            names.append(name)
            capacity.append(cap)
            endpoint.append(is_endpoint)

        for u, v, data in graph.edges(data=True):
            if np.isfinite(data["bw_Bps"]):
                add(f"{u}->{v}", data["bw_Bps"])
        duplex = self.params.duplex_efficiency
        if duplex is not None and duplex < 1:
            for u, v, data in graph.edges(data=True):
                back = graph.edges[v, u]["bw_Bps"] if graph.has_edge(v, u) else np.inf
                if u < v and np.isfinite(data["bw_Bps"]) and np.isfinite(back):
                    add(f"dx:{u}|{v}", duplex * (data["bw_Bps"] + back))
        for socket in topo.sockets:
            # many concurrent DMA streams into one DRAM lose efficiency as an endpoint does
            add(f"mem:{socket}", graph.nodes[socket]["memory_bw_Bps"], True)
        for node, data in graph.nodes(data=True):
            if data["kind"] not in ("soc", "storage"):
                continue
            parent = data["parent"]
            tx_cap = graph.edges[node, parent]["bw_Bps"]
            rx_cap = graph.edges[parent, node]["bw_Bps"]
            if data["kind"] == "soc" and data["dma_bw_Bps"] is not None:
                cap = data["dma_bw_Bps"]
                tx_cap, rx_cap = min(tx_cap, cap), min(rx_cap, cap)
            if data["kind"] == "storage":
                tx_cap, rx_cap = min(tx_cap, data["read_bw_Bps"]), min(rx_cap,
                                                                        data["write_bw_Bps"])
            # the concurrency efficiency is measured on accelerators behind a switch (its port
            # arbitration among many streams); a device on a root port reads from seven peers
            # at its link rate (calibration/rtx6kpro-epyc9124), and a drive reaches its
            # bandwidth with many requests in flight, so neither has it
            penalised = data["kind"] == "soc" and graph.nodes[parent]["kind"] == "switch"
            add(f"tx:{node}", tx_cap, penalised)
            add(f"rx:{node}", rx_cap, penalised)
            host_duplex = self.params.host_duplex_efficiency
            if data["kind"] == "soc" and host_duplex is not None and host_duplex < 1:
                add(f"ce:{node}", host_duplex * (tx_cap + rx_cap))
        self.resource_names = tuple(names)
        self.index = {name: i for i, name in enumerate(names)}
        self.capacity = np.array(capacity, dtype=float)
        self._endpoint = np.array(endpoint, dtype=bool)
        self._route_cache: dict[tuple[Any, ...], tuple[int, ...]] = {}

        # flow classes: a class is a set of resources; its members share one rate
        self._class_of_key: dict[tuple[int, ...], int] = {}
        self._class_res: list[np.ndarray] = []
        self._class_res_tuple: list[tuple[int, ...]] = []
        self._class_members: list[set[int]] = []
        self._active_classes: set[int] = set()
        self._class_rate = np.zeros(16)
        self._res_classes: list[set[int]] = [set() for _ in names]
        # flows, in slots
        self._remaining = np.zeros(64)
        self._size = np.zeros(64)
        self._start = np.zeros(64)
        self._class = np.zeros(64, dtype=np.int64)
        self._active = np.zeros(64, dtype=bool)
        self._events: list[Event | None] = [None] * 64
        self._labels: list[str] = [""] * 64
        self._free = list(range(63, -1, -1))
        self._last = env.now
        self._dirty: set[int] = set()
        self._solve_pending = False
        self._token = 0
        self.solves = 0

    # -- resources of a route ---------------------------------------------------------------
    def resources(self, route: Route) -> tuple[int, ...]:
        """Resource indices a direct route loads: its links, memory and endpoint sides."""
        key = (route.src, route.dst, route.nodes)
        cached = self._route_cache.get(key)
        if cached is not None:
            return cached
        out = [self.index[f"{u}->{v}"] for u, v in route.links if f"{u}->{v}" in self.index]
        out += [self.index[name] for u, v in route.links
                if (name := f"dx:{min(u, v)}|{max(u, v)}") in self.index]
        share = self.params.socket_p2p_efficiency
        if route.path_class == "socket" and share is not None and share < 1:
            name = f"xs:{route.src}|{route.dst}"
            if name not in self.index:
                self._add_resource(name, share * min(route.link_bw_Bps))
            out.append(self.index[name])
        if route.memory is not None:
            out.append(self.index[f"mem:{route.memory}"])
            device = route.dst if route.path_class == "h2d" else route.src
            if f"ce:{device}" in self.index:
                out.append(self.index[f"ce:{device}"])
        for name in (f"tx:{route.src}", f"rx:{route.dst}"):
            if name in self.index:
                out.append(self.index[name])
        result = tuple(sorted(set(out)))
        self._route_cache[key] = result
        return result

    def _add_resource(self, name: str, capacity: float) -> None:
        """A resource found on first use (a cross-socket P2P stream's share of its links)."""
        self.index[name] = len(self.resource_names)
        self.resource_names = (*self.resource_names, name)
        self.capacity = np.append(self.capacity, capacity)
        self._endpoint = np.append(self._endpoint, False)
        self._res_classes.append(set())

    # -- flows ------------------------------------------------------------------------------
    def flow(self, resources: Sequence[int], size_bytes: float, label: str = "") -> Event:
        """Start moving ``size_bytes`` over ``resources``; the event fires at the last byte."""
        if size_bytes < 0:
            raise ValueError(f"negative transfer size {size_bytes}")
        done = self.env.event()
        if size_bytes == 0:
            return done.succeed()
        self._advance()
        key = tuple(resources)
        cls = self._class_of_key.get(key)
        if cls is None:
            cls = len(self._class_res)
            self._class_of_key[key] = cls
            self._class_res.append(np.array(key, dtype=np.int64))
            self._class_res_tuple.append(key)
            self._class_members.append(set())
            if cls == len(self._class_rate):
                self._class_rate = np.concatenate([self._class_rate, self._class_rate])
        slot = self._slot()
        self._remaining[slot] = size_bytes
        self._size[slot] = size_bytes
        self._start[slot] = self.env.now
        self._class[slot] = cls
        self._active[slot] = True
        self._events[slot] = done
        self._labels[slot] = label
        members = self._class_members[cls]
        if not members:
            self._active_classes.add(cls)
            for r in key:
                self._res_classes[r].add(cls)
        members.add(slot)
        self._touch(cls)
        return done

    def setup_s(self, route: Route) -> float:
        """DMA set-up of a copy on ``route``: its engine's, else the transfer setting's."""
        return self.params.dma_setup if route.setup_s is None else route.setup_s

    def transfer(self, route: Route, size_bytes: float, label: str = "",
                 setup: bool = True) -> Event:
        """A direct transfer as a process: DMA set-up, the flow, then the route latency."""
        return self.env.process(self._transfer(route, size_bytes, label, setup))

    def _transfer(self, route: Route, size_bytes: float, label: str,
                  setup: bool) -> Generator[Event, Any, None]:
        if setup and self.setup_s(route) > 0:
            yield self.env.timeout(self.setup_s(route))
        yield self.flow(self.resources(route), size_bytes, label)
        if route.latency_s > 0:
            yield self.env.timeout(route.latency_s)

    # -- the engine -------------------------------------------------------------------------
    def _slot(self) -> int:
        if not self._free:
            n = len(self._remaining)
            for name in ("_remaining", "_size", "_start", "_class"):
                array = getattr(self, name)
                setattr(self, name, np.concatenate([array, np.zeros_like(array)]))
            self._active = np.concatenate([self._active, np.zeros(n, dtype=bool)])
            self._events += [None] * n
            self._labels += [""] * n
            self._free = list(range(2 * n - 1, n - 1, -1))
        return self._free.pop()

    def _advance(self) -> None:
        """Move every active flow forward to now at its class's current rate."""
        dt = self.env.now - self._last
        if dt > 0:
            active = self._active
            self._remaining[active] -= self._class_rate[self._class[active]] * dt
        self._last = self.env.now

    def _touch(self, cls: int) -> None:
        self._dirty.add(cls)
        if not self._solve_pending:
            self._solve_pending = True
            _At(self.env, 0, LATE).callbacks.append(self._solve)

    def _component(self, seeds: set[int]) -> list[int]:
        """Active classes connected to the resources of ``seeds`` (which may have emptied).

        The search has a budget: in a dense fabric every uplink is shared by most classes, the
        component is everything, and solving all active classes (max-min decomposes over
        components, so the extra ones keep their rates) is cheaper than proving it.
        """
        active = self._active_classes
        total = len(active)
        if total <= SMALL_SOLVE:
            return sorted(active)
        budget = 4 * total
        seen: set[int] = set()
        seen_res = {r for c in seeds for r in self._class_res_tuple[c]}
        stack = list(seen_res)
        while stack:
            classes = self._res_classes[stack.pop()]
            budget -= len(classes)
            if budget < 0 or len(seen) == total:
                return sorted(active)
            for cls in classes:
                if cls in seen:
                    continue
                seen.add(cls)
                for r in self._class_res_tuple[cls]:
                    if r not in seen_res:
                        seen_res.add(r)
                        stack.append(r)
        return sorted(seen)

    def _endpoint_scale(self, load: np.ndarray) -> np.ndarray:
        """e(k) = c + (1 - c) / k on endpoint resources carrying k > 1 flows, else 1."""
        c = self.params.concurrency_efficiency
        scale = np.ones(len(self.capacity))
        shared = self._endpoint & (load > 1)
        scale[shared] = c + (1 - c) / load[shared]
        return scale

    def _solve(self, _event: Event | None = None) -> None:
        self._solve_pending = False
        self._advance()
        classes = self._component(self._dirty)
        self._dirty.clear()
        if classes:
            self.solves += 1
            counts = np.array([len(self._class_members[c]) for c in classes], dtype=float)
            res_lists = [self._class_res[c] for c in classes]
            flow_of = np.repeat(np.arange(len(classes)), [len(r) for r in res_lists])
            resource_of = np.concatenate(res_lists)
            load = np.bincount(resource_of, weights=counts[flow_of],
                               minlength=len(self.capacity))
            capacity = self.capacity * self._endpoint_scale(load)
            rates = max_min_rates(capacity, flow_of, resource_of, len(classes), counts)
            self._class_rate[np.array(classes)] = rates
        self._schedule_next()

    def _schedule_next(self) -> None:
        self._token += 1
        active = self._active
        if not active.any():
            return
        ttf = self._remaining[active] / self._class_rate[self._class[active]]
        delay = max(float(ttf.min()), 0.0)
        token = self._token
        self.env.timeout(delay).callbacks.append(lambda _e: self._wake(token))

    def _wake(self, token: int) -> None:
        if token != self._token:
            return  # rates changed since this wake-up was planned
        self._advance()
        active = np.flatnonzero(self._active)
        remaining = self._remaining[active]
        done = active[remaining <= FINISH_TOLERANCE * self._size[active]]
        if len(done) == 0:
            # floating-point rounding left the planned flow a sliver short: it is done now
            rate = self._class_rate[self._class[active]]
            done = active[[int(np.argmin(remaining / rate))]]
        for slot in done.tolist():
            self._finish(slot)

    def _finish(self, slot: int) -> None:
        cls = int(self._class[slot])
        members = self._class_members[cls]
        members.discard(slot)
        if not members:
            self._active_classes.discard(cls)
            for r in self._class_res_tuple[cls]:
                self._res_classes[r].discard(cls)
        self._touch(cls)
        self._active[slot] = False
        self._remaining[slot] = 0.0
        event, self._events[slot] = self._events[slot], None
        if self.record:
            self.records.append(FlowRecord(
                label=self._labels[slot], size_bytes=float(self._size[slot]),
                start_s=float(self._start[slot]), end_s=self.env.now,
                resources=tuple(self.resource_names[r] for r in self._class_res[cls].tolist())))
        self._free.append(slot)
        assert event is not None
        event.succeed()

    # -- inspection -------------------------------------------------------------------------
    def _counts(self) -> np.ndarray:
        counts = np.zeros(len(self.capacity))
        for cls, members in enumerate(self._class_members):
            if members:
                counts[self._class_res[cls]] += len(members)
        return counts

    def load(self) -> np.ndarray:
        """Current rate through each resource (bytes/s), for checks and plots."""
        out = np.zeros(len(self.capacity))
        for cls, members in enumerate(self._class_members):
            if members:
                out[self._class_res[cls]] += self._class_rate[cls] * len(members)
        return out

    def effective_capacity(self) -> np.ndarray:
        """Capacities with the concurrency efficiency of the current endpoint loads applied."""
        return self.capacity * self._endpoint_scale(self._counts())
