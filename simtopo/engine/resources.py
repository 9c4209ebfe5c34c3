"""The shared resources of a fabric, by name, and the resources each route loads.

- ``u->v``: every directed link with a finite bandwidth (the two directions are independent);
- ``mem:<socket>``: the memory of each socket (host-routed and host-to-device traffic, reads
  and writes alike), an endpoint for the concurrency efficiency;
- ``tx:<device>``, ``rx:<device>``: each endpoint's transmit and receive side, capped by the
  device's DMA engine (default: its own link); for a SoC below a switch also an endpoint for
  the concurrency efficiency;
- ``ce:<soc>``: a SoC's engine writing to and reading from host memory together, at most
  h x (tx + rx) with the host duplex efficiency h < 1;
- ``dx:<u>|<v>``: a link's two directions together, at most d x (up + down) with the duplex
  efficiency d < 1;
- ``xs:<src>|<dst>``: a cross-socket P2P stream's share of its slowest link (the socket P2P
  efficiency), added on first use.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..spec.topology import TransferSpec
from ..topology import routing
from ..topology.fabric import fabric_port
from ..topology.routing import Route

if TYPE_CHECKING:
    from ..topology.graph import Topology


def endpoint_efficiency(c: Any, k: Any) -> Any:
    """e(k) = c + (1 - c) / k: the share of its capacity an endpoint carrying ``k`` flows
    delivers (``c`` the concurrency efficiency; scalars or arrays)."""
    return c + (1 - c) / k


def shares_switch_port(topo: Topology, device: str) -> bool:
    """Whether ``device``'s endpoint sides lose the concurrency efficiency: a SoC below a
    switch. The efficiency is measured on accelerators behind a switch (its port arbitration
    among many streams); a device on a root port reads from seven peers at its link rate
    (calibration/rtx6kpro-epyc9124), and a drive reaches its bandwidth with many requests in
    flight, so neither has it. Only behind a PCIe link: the logical cores of a chip reach
    their chip's network (an on-card "switch" over explicit links), not a switch port."""
    nodes = topo.graph.nodes
    if nodes[device]["kind"] != "soc":
        return False
    parent = nodes[device]["parent"]
    return nodes[parent]["kind"] == "switch" and not on_chip(topo.graph, device, parent)


def on_chip(graph: Any, u: str, v: str) -> bool:
    """Whether link ``u``-``v`` joins a SoC to its card's switch over an explicit bandwidth:
    a logical core on its chip's network, not a PCIe link (no DLLP loss, no port
    arbitration)."""
    ends = sorted((graph.nodes[u]["kind"], graph.nodes[v]["kind"]))
    switch = u if graph.nodes[u]["kind"] == "switch" else v
    return ends == ["soc", "switch"] and bool(graph.nodes[switch].get("card")) \
        and graph.edges[u, v].get("gen") is None


class Resources:
    """Names, capacities and endpoint flags of a topology's resources under ``params``."""

    def __init__(self, topo: Topology, params: TransferSpec) -> None:
        self.params = params
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
        duplex = params.duplex_efficiency
        if duplex is not None and duplex < 1:
            for u, v, data in graph.edges(data=True):
                back = graph.edges[v, u]["bw_Bps"] if graph.has_edge(v, u) else np.inf
                if u < v and np.isfinite(data["bw_Bps"]) and np.isfinite(back) \
                        and data["direction"] != "fabric" and not on_chip(graph, u, v):
                    # a PCIe link's DLLP loss
                    add(f"dx:{u}|{v}", duplex * (data["bw_Bps"] + back))
        for socket in topo.sockets:
            # many concurrent DMA streams into one DRAM lose efficiency as an endpoint does
            add(f"mem:{socket}", graph.nodes[socket]["memory_bw_Bps"], True)
        host_duplex = params.host_duplex_efficiency
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
            add(f"tx:{node}", tx_cap, shares_switch_port(topo, node))
            add(f"rx:{node}", rx_cap, shares_switch_port(topo, node))
            if data["kind"] == "soc" and host_duplex is not None and host_duplex < 1:
                add(f"ce:{node}", host_duplex * (tx_cap + rx_cap))
            fabric = data["kind"] == "soc" and fabric_port(graph, node) is not None
            if fabric and data.get("dma_bw_Bps") is not None:  # its DMA engines drive the fabric
                add(f"ftx:{node}", data["dma_bw_Bps"])
                add(f"frx:{node}", data["dma_bw_Bps"])
        self.names = tuple(names)
        self.index = {name: i for i, name in enumerate(names)}
        self.capacity = np.array(capacity, dtype=float)
        self.endpoint = np.array(endpoint, dtype=bool)
        self._route_cache: dict[tuple[Any, ...], tuple[int, ...]] = {}
        self._names_cache: dict[tuple[int, ...], tuple[str, ...]] = {}

    @classmethod
    def of(cls, topo: Topology, params: TransferSpec) -> Resources:
        """The resources of ``topo`` under ``params``, built once per topology and settings:
        each network gets its own copy (it adds cross-socket shares as it finds them)."""
        built = _BUILT.setdefault(topo, {})
        key = params.model_dump_json()
        if key not in built:
            built[key] = cls(topo, params)
        own = copy.copy(built[key])
        own.index = dict(own.index)
        own._route_cache = dict(own._route_cache)
        own._names_cache = dict(own._names_cache)
        return own

    def names_of(self, indices: tuple[int, ...]) -> tuple[str, ...]:
        """The names of resources ``indices`` (a flow's, for its record)."""
        found = self._names_cache.get(indices)
        if found is None:
            found = self._names_cache[indices] = tuple(self.names[i] for i in indices)
        return found

    def of_route(self, route: Route) -> tuple[int, ...]:
        """Resource indices a direct route loads: its links, memory and endpoint sides."""
        key = (route.src, route.dst, route.nodes)
        cached = self._route_cache.get(key)
        if cached is not None:
            return cached
        index = self.index
        out = [index[f"{u}->{v}"] for u, v in route.links if f"{u}->{v}" in index]
        out += [index[name] for u, v in route.links
                if (name := f"dx:{min(u, v)}|{max(u, v)}") in index]
        share = self.params.socket_p2p_efficiency
        if route.path_class == "socket" and share is not None and share < 1:
            name = f"xs:{route.src}|{route.dst}"
            if name not in index:
                self._add(name, share * min(route.link_bw_Bps))
            out.append(index[name])
        if route.memory is not None:
            out.append(index[f"mem:{route.memory}"])
            device = route.dst if route.path_class == "h2d" else route.src
            if f"ce:{device}" in index:
                out.append(index[f"ce:{device}"])
        sides = ("ftx", "frx") if route.path_class == "fabric" else ("tx", "rx")  # not PCIe
        for name in (f"{sides[0]}:{route.src}", f"{sides[1]}:{route.dst}"):
            if name in index:
                out.append(index[name])
        result = tuple(sorted(set(out)))
        self._route_cache[key] = result
        return result

    def _add(self, name: str, capacity: float) -> None:
        """A resource found on first use (a cross-socket P2P stream's share of its links)."""
        self.index[name] = len(self.names)
        self.names = (*self.names, name)
        self.capacity = np.append(self.capacity, capacity)
        self.endpoint = np.append(self.endpoint, False)


_BUILT: weakref.WeakKeyDictionary[Any, dict[str, Resources]] = weakref.WeakKeyDictionary()
"""The resources built so far, by topology (while it lives) and settings."""

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
