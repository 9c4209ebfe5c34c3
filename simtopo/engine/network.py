"""Flow-level contention inside SimPy: max-min fair sharing of links, host memory, DMA engines.

A :class:`Network` turns a route into a set of resources and runs each transfer as a flow whose
rate is re-solved (progressive filling, :mod:`simtopo.engine.maxmin`) whenever a flow starts or
ends, over the resources of :mod:`simtopo.engine.resources` (links, each socket's memory, each
endpoint's sides and DMA engine, duplex and cross-socket shares). Endpoints carrying k flows,
for a SoC below a switch and for host memory, deliver e(k) = c + (1 - c) / k of their capacity
(the concurrency efficiency: max-min alone over-predicts many-to-one and all-to-all traffic
through one switch).

A transfer pays the DMA set-up, then moves its bytes at the fluid rate, then its route latency.

Efficiency: flows with the same resources form one class (one variable in the solve); a start
or an end re-solves only the classes connected to it through shared resources (all of them,
without searching, in a dense fabric); after ends alone, only the classes at or above the
lowest rate that ended; all flows that start at one instant are solved together, after every
other event at that instant.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import simpy
from simpy.events import Event

from ..spec.topology import TransferSpec
from ..topology.routing import Route
from .events import LATE, At, succeed_later
from .flow_classes import FlowClasses
from .maxmin import max_min_rates
from .resources import Resources, endpoint_efficiency

if TYPE_CHECKING:
    from ..topology.graph import Topology

LEVEL_MARGIN = 1e-9
"""Classes within this fraction below the lowest finished rate are filled again too (any
threshold at or below that rate gives the same rates)."""

FINISH_TOLERANCE = 1e-9
"""A flow whose remaining bytes are below this fraction of its size has finished."""


class FlowRecord(NamedTuple):
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
        self.res = Resources.of(topo, self.params)

        self.classes = FlowClasses(len(self.res.names))
        # since the last solve: the lowest rate among flows that finished, and whether any
        # flow started (see _solve)
        self._freed_level = math.inf
        self._grew = False
        # flows, in slots
        self._remaining = np.zeros(64)
        self._size = np.zeros(64)
        self._start = np.zeros(64)
        self._class = np.zeros(64, dtype=np.int64)
        self._active = np.zeros(64, dtype=bool)
        self._live: np.ndarray | None = None  # the active slots' indices (None: stale)
        self._events: list[Event | None] = [None] * 64
        self._labels: list[str] = [""] * 64
        self._delays: dict[int, float] = {}
        self._free = list(range(63, -1, -1))
        self._last = env.now
        self._dirty: set[int] = set()
        self._solve_pending = False
        self._token = 0
        self.solves = 0

    # -- resources ------------------------------------------------------------------------
    @property
    def resource_names(self) -> tuple[str, ...]:
        """Every resource's name (:mod:`simtopo.engine.resources`), by index."""
        return self.res.names

    @property
    def index(self) -> dict[str, int]:
        """A resource's index by name."""
        return self.res.index

    @property
    def capacity(self) -> np.ndarray:
        """Every resource's capacity (bytes/s), by index."""
        return self.res.capacity

    @property
    def _endpoint(self) -> np.ndarray:  # resources scaled by the concurrency efficiency
        return self.res.endpoint

    def resources(self, route: Route) -> tuple[int, ...]:
        """Resource indices a direct route loads: its links, memory and endpoint sides."""
        found = self.res.of_route(route)
        self.classes.add_resources(len(self.res.names))  # a resource found on first use
        return found

    # -- flows ------------------------------------------------------------------------------
    def flow(self, resources: Sequence[int], size_bytes: float, label: str = "",
             delay_s: float = 0.0) -> Event:
        """Start moving ``size_bytes`` over ``resources``; the event fires ``delay_s`` (a
        route's latency) after the last byte."""
        if size_bytes < 0:
            raise ValueError(f"negative transfer size {size_bytes}")
        if size_bytes == 0:
            return At(self.env, delay_s)
        done = self.env.event()
        self._advance()
        cls = self.classes.of(tuple(resources))
        slot = self._slot()
        self._remaining[slot] = size_bytes
        self._size[slot] = size_bytes
        self._start[slot] = self.env.now
        self._class[slot] = cls
        self._active[slot] = True
        self._live = None
        self._events[slot] = done
        self._labels[slot] = label
        if delay_s > 0:
            self._delays[slot] = delay_s
        self.classes.join(cls, slot)
        self._grew = True
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
        yield self.flow(self.resources(route), size_bytes, label, route.latency_s)

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

    def _slots(self) -> np.ndarray:
        """The active flows' slots, ascending."""
        if self._live is None:
            self._live = np.flatnonzero(self._active)
        return self._live

    def _advance(self) -> None:
        """Move every active flow forward to now at its class's current rate."""
        dt = self.env.now - self._last
        if dt > 0:
            live = self._slots()
            self._remaining[live] -= self.classes.rate[self._class[live]] * dt
        self._last = self.env.now

    def _touch(self, cls: int) -> None:
        self._dirty.add(cls)
        if not self._solve_pending:
            self._solve_pending = True
            At(self.env, 0, LATE).callbacks.append(self._solve)

    def _endpoint_scale(self, load: np.ndarray) -> np.ndarray:
        """e(k) = c + (1 - c) / k on endpoint resources carrying k > 1 flows, else 1."""
        c = self.params.concurrency_efficiency
        scale = np.ones(len(self.capacity))
        shared = self._endpoint & (load > 1)
        scale[shared] = endpoint_efficiency(c, load[shared])
        return scale

    def _solve(self, _event: Event | None = None) -> None:
        """Re-solve the rates of the classes a start or an end may have changed.

        When flows only ended since the last solve, progressive filling below the lowest rate
        ``r`` among them runs exactly as before (every resource such a flow crossed saturates
        at ``r`` or above, else it would have been frozen lower), so classes below ``r`` keep
        their rates and only the rest are filled again, over what the others leave."""
        self._solve_pending = False
        self._advance()
        component = self.classes.component(self._dirty)
        self._dirty.clear()
        freed, grew = self._freed_level, self._grew
        self._freed_level, self._grew = math.inf, False
        alone = component if component is not None else self.classes.active
        if len(alone) == 1:  # (over half the solves of the main job)
            self.solves += 1
            self._solve_one(next(iter(alone)), freed, grew)
            self._schedule_next()
            return
        if component is None:
            ids, classes, resources, at = self.classes.all_active()
        else:
            ids = np.array(component, dtype=np.int64)
            classes, resources = self.classes.entries(ids)
            at = np.searchsorted(ids, classes)
        if not len(ids):
            self._schedule_next()
            return
        self.solves += 1
        count, rate = self.classes.count, self.classes.rate
        load = np.bincount(resources, weights=count[classes], minlength=len(self.capacity))
        capacity = self.capacity * self._endpoint_scale(load)
        if not grew and math.isfinite(freed):
            below = rate[ids] < freed * (1 - LEVEL_MARGIN)
            if below.any():
                held = below[at]
                fixed = classes[held]
                capacity = capacity - np.bincount(resources[held],
                                                  weights=count[fixed] * rate[fixed],
                                                  minlength=len(capacity))
                ids, classes = ids[~below], classes[~held]
                resources, at = resources[~held], at[~held]
                at = at - np.cumsum(below)[at]  # positions among the classes left
        rate[ids] = max_min_rates(capacity, at, resources, len(ids), count[ids])
        self._schedule_next()

    def _solve_one(self, cls: int, freed: float, grew: bool) -> None:
        """Progressive filling of one class in closed form, with the same arithmetic: the
        lowest of its resources' (scaled) capacities over its flows."""
        rate = self.classes.rate
        if not grew and math.isfinite(freed) and rate[cls] < freed * (1 - LEVEL_MARGIN):
            return  # it kept its rate (see _solve)
        flows = float(self.classes.count[cls])
        c = self.params.concurrency_efficiency
        endpoint, capacity = self._endpoint, self.capacity
        lowest = math.inf
        for r in self.classes.res_tuple[cls]:
            room = float(capacity[r])
            if flows > 1 and endpoint[r]:
                room *= endpoint_efficiency(c, flows)
            lowest = min(lowest, max(room, 0.0) / flows)
        rate[cls] = lowest

    def _schedule_next(self) -> None:
        self._token += 1
        live = self._slots()
        if not len(live):
            return
        ttf = self._remaining[live] / self.classes.rate[self._class[live]]
        delay = max(float(ttf.min()), 0.0)
        token = self._token
        self.env.timeout(delay).callbacks.append(lambda _e: self._wake(token))

    def _wake(self, token: int) -> None:
        if token != self._token:
            return  # rates changed since this wake-up was planned
        self._advance()
        active = self._slots()
        remaining = self._remaining[active]
        done = active[remaining <= FINISH_TOLERANCE * self._size[active]]
        if len(done) == 0:
            # floating-point rounding left the planned flow a sliver short: it is done now
            rate = self.classes.rate[self._class[active]]
            done = active[[int(np.argmin(remaining / rate))]]
        for slot in done.tolist():
            self._finish(slot)

    def _finish(self, slot: int) -> None:
        cls = int(self._class[slot])
        self.classes.leave(cls, slot)
        self._freed_level = min(self._freed_level, float(self.classes.rate[cls]))
        self._touch(cls)
        self._active[slot] = False
        self._live = None
        self._remaining[slot] = 0.0
        event, self._events[slot] = self._events[slot], None
        if self.record:
            self.records.append(FlowRecord(
                label=self._labels[slot], size_bytes=float(self._size[slot]),
                start_s=float(self._start[slot]), end_s=self.env.now,
                resources=self.res.names_of(self.classes.res_tuple[cls])))
        self._free.append(slot)
        assert event is not None
        delay = self._delays.pop(slot, 0.0)
        if delay > 0:  # the route's latency
            succeed_later(self.env, event, delay)
        else:
            event.succeed()

    # -- inspection -------------------------------------------------------------------------
    def _counts(self) -> np.ndarray:
        counts = np.zeros(len(self.capacity))
        for cls, members in enumerate(self.classes.members):
            if members:
                counts[self.classes.res[cls]] += len(members)
        return counts

    def load(self) -> np.ndarray:
        """Current rate through each resource (bytes/s), for checks and plots."""
        out = np.zeros(len(self.capacity))
        for cls, members in enumerate(self.classes.members):
            if members:
                out[self.classes.res[cls]] += self.classes.rate[cls] * len(members)
        return out

    def effective_capacity(self) -> np.ndarray:
        """Capacities with the concurrency efficiency of the current endpoint loads applied."""
        return self.capacity * self._endpoint_scale(self._counts())
