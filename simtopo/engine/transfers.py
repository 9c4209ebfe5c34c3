"""Transfers as SimPy processes: P2P copies, host-routed bounces, host <-> device copies.

A host-routed copy is a pipeline of chunks. The source DMA-writes chunk i into a free staging
buffer in host memory; a host thread hands it off (the host's pool of hand-off threads is a
queue shared by every bounce in flight); the destination DMA-reads it and frees the buffer.
With nothing else running, k chunks take::

    s + a + h + b + (k - 1) x max(a, b, h, (a + h + b) / B)

(s the DMA set-up, a and b one chunk on each leg including its latency, h one hand-off, B
staging buffers): the last term is the buffer ring running dry when the legs are balanced.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import simpy
from simpy.events import Event

from ..topology import routing
from ..topology.routing import BounceRoute, Route
from .network import Network


class Fabric:
    """A :class:`Network` plus the host's hand-off service: everything a transfer needs."""

    def __init__(self, env: simpy.Environment, network: Network) -> None:
        self.env = env
        self.net = network
        self.topo = network.topo
        self.params = network.params
        self.handoff = simpy.Resource(env, capacity=self.topo.handoff_threads)

    @classmethod
    def create(cls, topo: Any, params: Any = None, record: bool = False) -> Fabric:
        """A fresh environment, network and host service for ``topo``."""
        env = simpy.Environment()
        return cls(env, Network(env, topo, params, record=record))

    # -- one transfer -------------------------------------------------------------------------
    def copy(self, src: str, dst: str, size_bytes: float, mode: str = "p2p",
             label: str = "", staging: str | None = None, poll: bool = False,
             setup: bool = True) -> Event:
        """Copy ``size_bytes`` from ``src`` to ``dst`` as a process.

        ``mode="p2p"`` uses the direct route (a P2P route the platform refuses raises
        :class:`~simtopo.errors.RouteError`, it is never silently rerouted); ``"host"`` bounces
        through host memory, each chunk handed off by a host thread, or with ``poll`` noticed
        by the destination polling a flag in host memory (one read round trip, no host
        thread). Either end may be ``"host"`` or a socket id (host memory). ``setup=False``
        leaves out the DMA set-up (a collective's step cost stands for it).
        """
        route = routing.route(self.topo, src, dst, mode=mode, staging=staging)
        if isinstance(route, BounceRoute):
            return self.env.process(self._bounce(route, size_bytes, label, poll, setup))
        return self.net.transfer(route, size_bytes, label, setup)

    def queue(self, src: str, dst: str, size_bytes: float, count: int,
              mode: str = "p2p") -> Event:
        """``count`` copies issued back to back on one DMA queue, as a process.

        A direct copy frees the queue when its last byte leaves, so the next copy's set-up
        overlaps the route latency of the one before; a host-routed copy holds the queue until
        its hand-off and second leg are done. This is how latency tests time small copies.
        """
        route = routing.route(self.topo, src, dst, mode=mode)
        return self.env.process(self._queue(route, size_bytes, count))

    def _queue(self, route: Route | BounceRoute, size_bytes: float,
               count: int) -> Generator[Event, Any, None]:
        if isinstance(route, BounceRoute):
            for _ in range(count):
                yield self.env.process(self._bounce(route, size_bytes, ""))
            return
        resources = self.net.resources(route)
        setup = self.net.setup_s(route)
        for _ in range(count):
            if setup > 0:
                yield self.env.timeout(setup)
            yield self.net.flow(resources, size_bytes)
        if route.latency_s > 0:
            yield self.env.timeout(route.latency_s)

    def handoff_once(self, duration_s: float) -> Event:
        """One hand-off through the host's thread pool, as a process."""
        return self.env.process(self._handoff(duration_s))

    def _handoff(self, duration_s: float) -> Generator[Event, Any, None]:
        with self.handoff.request() as turn:
            yield turn
            yield self.env.timeout(duration_s)

    def _bounce(self, route: BounceRoute, size_bytes: float, label: str,
                poll: bool = False, setup: bool = True) -> Generator[Event, Any, None]:
        env, net, params = self.env, self.net, self.params
        if setup and net.setup_s(route.to_host) > 0:
            yield env.timeout(net.setup_s(route.to_host))
        if size_bytes <= 0:
            return
        chunk = min(params.chunk, size_bytes)
        count = math.ceil(size_bytes / chunk - 1e-12)
        sizes = [chunk] * (count - 1) + [size_bytes - chunk * (count - 1)]
        buffers = params.staging_buffers
        # chunk i's staging buffer is free again once chunk i - buffers has been read: one
        # writer and one reader, both in chunk order, use the ring of buffers in turn
        read = [env.event() for _ in range(count)]
        ready = [env.event() for _ in range(count)]
        to_host, from_host = net.resources(route.to_host), net.resources(route.from_host)
        up_s, down_s = route.to_host.latency_s, route.from_host.latency_s

        def hand_off(i: int) -> None:  # callbacks: no process per chunk
            if poll:  # the destination reads the chunk's flag across its link and back
                env.timeout(2 * down_s).callbacks.append(ready[i].succeed)
                return
            turn = self.handoff.request()

            def done(_event: Event) -> None:
                self.handoff.release(turn)
                ready[i].succeed()

            turn.callbacks.append(lambda _e: env.timeout(route.handoff_s).callbacks.append(done))

        def writer() -> Generator[Event, Any, None]:
            for i, size in enumerate(sizes):
                if i >= buffers:
                    yield read[i - buffers]
                yield net.flow(to_host, size, label, up_s)
                hand_off(i)

        def reader() -> Generator[Event, Any, None]:
            for i, size in enumerate(sizes):
                yield ready[i]
                yield net.flow(from_host, size, label, down_s)
                read[i].succeed()

        env.process(writer())
        yield env.process(reader())
