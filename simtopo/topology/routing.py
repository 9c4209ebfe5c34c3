"""Routes through the PCIe tree: peer-to-peer, host-routed bounces, host <-> device.

Peer-to-peer (DESIGN.md, routing semantics):

- over a device fabric link when one joins the two devices, or the cards they sit on
  (``fabric``, tried first, as NCCL prefers NVLink to PCIe; :mod:`simtopo.topology.fabric`):
  the link itself (and the on-card links to it), none of the tree's refusals;
- up from the source to the lowest common switch and down to the destination when ACS is off
  there (path class ``card`` for an on-card switch, ``switch`` for a server switch);
- with ACS on at that switch, redirected up to the root complex and back down (``acs``): the
  hairpin loads every link between the switch and the root complex in both directions;
- between switches or root ports, through the root complex only if it carries P2P (``rc``);
- across sockets over the socket link only if ``platform.cross_socket_p2p`` is on (``socket``);
- across a partitioned switch chip (``chip``, tried first): when two devices hang below different
  partitions of one chip (switches naming one ``chip``) under their lowest common ancestor, up
  to the source's partition, across the chip (an unbounded ``chip`` edge of the graph) and down
  from the destination's partition, with ACS off on both partitions: no uplink, no root
  complex, none of the root complex's refusals. The chip is one switch, so the crossing costs
  one hop latency, the entry partition's (a chip's partitions share it). With ACS on at either
  partition the chip redirects peer traffic to its upstream port, and the route is the one the
  tree gives without the chip (the rules above, refusals included). When the chains cross
  several chips, the crossing nearest the devices is taken (ties: the chip named first).

A refused P2P route raises :class:`RouteError` naming the root complex or socket link, a device
whose card type cannot do P2P (``card_types.<name>.p2p: false``), or a switch the route passes
(hairpins included) that does not carry P2P (``switches[i].p2p: false``).

Host-routed (``mode="host"``): two legs through a staging buffer in one socket's memory, plus
the host hand-off; both legs use host memory bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import networkx as nx

from ..errors import RouteError
from .fabric import fabric_path
from .graph import Topology

ENDPOINT_KINDS = ("soc", "storage")
P2P_CLASSES = ("fabric", "card", "switch", "chip", "acs", "rc", "socket")


@dataclass(frozen=True)
class Route:
    """A direct path: P2P between devices, or between a device and one socket's memory.

    ``links`` are directed edges ``(u, v)`` of the topology graph in travel order.
    ``memory`` is the socket whose DRAM the route reads or writes (``None`` for P2P).
    """

    src: str
    dst: str
    path_class: str
    """``fabric``, ``card``, ``switch``, ``chip``, ``acs``, ``rc``, ``socket`` (P2P), ``h2d`` or
    ``d2h``."""
    nodes: tuple[str, ...]
    link_bw_Bps: tuple[float, ...]
    link_latency_s: tuple[float, ...]
    hop_latency_s: tuple[float, ...]
    """Of every switch and root complex between the ends (0 for the partition a chip crossing
    leaves by: the chip is one switch, counted once)."""
    memory: str | None = None
    memory_bw_Bps: float = float("inf")
    setup_s: float | None = None
    """DMA set-up of the engine that runs a copy on this route (the source device's; from host
    memory, the destination's) where its SoC states one; ``None``: the transfer setting's. A
    host-routed copy pays its first leg's once."""

    @cached_property
    def links(self) -> tuple[tuple[str, str], ...]:
        """Directed edges in travel order."""
        return tuple(pairwise(self.nodes))

    @property
    def bottleneck_Bps(self) -> float:
        """The slowest link on the route (or the memory bandwidth, if lower)."""
        return min((*self.link_bw_Bps, self.memory_bw_Bps))

    @property
    def latency_s(self) -> float:
        """Link latencies plus the hop latency of every switch and root complex traversed."""
        return sum(self.link_latency_s) + sum(self.hop_latency_s)

    def __str__(self) -> str:
        return " -> ".join(self.nodes)


@dataclass(frozen=True)
class BounceRoute:
    """A host-routed device-to-device copy: two legs through a staging buffer in host memory.

    The source writes chunks into ``staging``'s memory (``to_host``), a host thread hands each
    chunk off (``handoff_s``), and the destination reads it (``from_host``). Both legs consume
    the staging socket's memory bandwidth.
    """

    src: str
    dst: str
    to_host: Route
    from_host: Route
    staging: str
    handoff_s: float
    handoff_threads: int
    path_class: str = "host"

    @property
    def links(self) -> tuple[tuple[str, str], ...]:
        """Directed edges of both legs."""
        return self.to_host.links + self.from_host.links

    @property
    def memory_bw_Bps(self) -> float:
        """Bandwidth of the staging socket's memory."""
        return self.to_host.memory_bw_Bps

    @property
    def bottleneck_Bps(self) -> float:
        """Steady rate of one bounce: the slower leg, or half the memory (written and read)."""
        return min(self.to_host.bottleneck_Bps, self.from_host.bottleneck_Bps,
                   self.memory_bw_Bps / 2)

    @property
    def latency_s(self) -> float:
        """Latency of the first byte: one leg, one hand-off, the other leg."""
        return self.to_host.latency_s + self.handoff_s + self.from_host.latency_s


def _path(topo: Topology, src: str, dst: str, path_class: str, nodes: list[str],
          memory: str | None = None) -> Route:
    graph = topo.graph
    edges = [graph.edges[u, v] for u, v in pairwise(nodes)]
    return Route(
        src=src, dst=dst, path_class=path_class, nodes=tuple(nodes),
        link_bw_Bps=tuple(e["bw_Bps"] for e in edges),
        link_latency_s=tuple(e["latency_s"] for e in edges),
        hop_latency_s=tuple(0.0 if graph.edges[u, n]["direction"] == "chip"
                            else graph.nodes[n]["hop_latency_s"]
                            for u, n in pairwise(nodes[:-1])),
        memory=memory,
        memory_bw_Bps=graph.nodes[memory]["memory_bw_Bps"] if memory else float("inf"),
        setup_s=graph.nodes[src if graph.nodes[src]["kind"] in ENDPOINT_KINDS
                            else dst].get("dma_setup_s"),
    )


def _socket_path(topo: Topology, a: str, b: str) -> list[str]:
    sockets = topo.graph.subgraph(topo.sockets)
    return list(nx.shortest_path(sockets, a, b))


HOST_HINT = ("route it through host memory instead (connection: host in a plan, --mode host "
             "on the command line, mode='host' in Python)")
"""What a refused P2P route suggests, in the words of each way of asking for one."""


def _refuse_rc(topo: Topology, rc: str, a: str, b: str) -> None:
    node = topo.graph.nodes[rc]
    if not node["p2p"]:
        raise RouteError(
            f"no P2P route from {a} to {b}: it must pass through root complex {rc}, which does "
            f"not carry peer-to-peer traffic between root ports ({node['p2p_key']} is off); "
            f"{HOST_HINT}"
        )


def _refuse_device(topo: Topology, device: str, a: str, b: str) -> None:
    node = topo.graph.nodes[device]
    if not node.get("p2p", True):
        raise RouteError(
            f"no P2P route from {a} to {b}: {device} cannot be a peer-to-peer endpoint "
            f"({node['p2p_key']} is off); {HOST_HINT}"
        )


def _refuse_switches(topo: Topology, route: Route) -> None:
    nodes = topo.graph.nodes
    for sw in route.nodes[1:-1]:
        if nodes[sw]["kind"] == "switch" and not nodes[sw]["p2p"]:
            raise RouteError(
                f"no P2P route from {route.src} to {route.dst}: it must pass through switch "
                f"{sw}, which does not carry peer-to-peer traffic ({nodes[sw]['p2p_key']} is "
                f"off); {HOST_HINT}"
            )


def chip_crossing(topo: Topology, up: list[str], down: list[str]) -> tuple[int, int] | None:
    """Where a P2P route crosses a partitioned chip: the positions in ``up`` and ``down`` (the
    two devices' chains below their lowest common ancestor) of two partitions of one chip,
    both with ACS off, nearest the devices (ties: the chip named first); ``None`` if none."""
    nodes = topo.graph.nodes
    below = {chip: j for j, n in enumerate(down) if (chip := nodes[n].get("chip")) is not None}
    best: tuple[int, str, int, int] | None = None
    for i, n in enumerate(up):
        chip = nodes[n].get("chip")
        j = below.get(chip)
        if j is None or nodes[n]["acs"] or nodes[down[j]]["acs"]:
            continue
        if best is None or (i + j, chip) < best[:2]:
            best = (i + j, chip, i, j)
    return None if best is None else (best[2], best[3])


def p2p_possible(topo: Topology, a: str, b: str) -> bool:
    """Whether a P2P route joins devices ``a`` and ``b`` (memoized on the topology)."""
    known = topo.p2p_pairs.get((a, b))
    if known is None:
        try:
            route(topo, a, b)
            known = True
        except RouteError:
            known = False
        topo.p2p_pairs[(a, b)] = known
    return known


def p2p_route(topo: Topology, a: str, b: str) -> Route:
    """The peer-to-peer route from device ``a`` to device ``b`` (rules in the module doc)."""
    over_fabric = fabric_path(topo.graph, a, b)
    if over_fabric is not None:  # beside the tree: none of its refusals
        return _path(topo, a, b, "fabric", over_fabric)
    for device in (a, b):
        _refuse_device(topo, device, a, b)
    route = _tree_route(topo, a, b)
    _refuse_switches(topo, route)
    return route


def _tree_route(topo: Topology, a: str, b: str) -> Route:
    up = topo.ancestors(a)  # a, ..., root complex, socket
    down = topo.ancestors(b)
    nodes = topo.graph.nodes
    in_down = set(down)
    lca = next((n for n in up if n in in_down), None)
    i, j = (up.index(lca), down.index(lca)) if lca is not None else (len(up), len(down))
    crossing = chip_crossing(topo, up[:i], down[:j])
    if crossing is not None:
        k, m = crossing
        return _path(topo, a, b, "chip", up[: k + 1] + down[: m + 1][::-1])
    if lca is None:
        link = f"{up[-1]}-{down[-1]}"
        if not topo.platform.cross_socket_p2p:
            raise RouteError(
                f"no P2P route from {a} to {b}: it would cross the socket link {link}, and "
                f"cross-socket P2P is off (platform.cross_socket_p2p); {HOST_HINT}"
            )
        _refuse_rc(topo, up[-2], a, b)
        _refuse_rc(topo, down[-2], a, b)
        middle = _socket_path(topo, up[-1], down[-1])[1:-1]
        return _path(topo, a, b, "socket", up + middle + down[::-1])
    kind = nodes[lca]["kind"]
    if kind == "switch" and nodes[lca]["acs"]:
        turn, path_class = up[-2], "acs"  # redirected to the root complex and back down
    elif kind == "switch":
        turn, path_class = lca, ("card" if nodes[lca]["card"] else "switch")
    else:
        turn, path_class = lca, "rc"
        for rc in dict.fromkeys((up[-2], down[-2])):
            _refuse_rc(topo, rc, a, b)
    i, j = up.index(turn), down.index(turn)
    return _path(topo, a, b, path_class, up[: i + 1] + down[:j][::-1])


def memory_route(topo: Topology, socket: str, device: str, to_device: bool) -> Route:
    """Host memory of ``socket`` to ``device`` (``to_device``) or back, over the socket link
    when the device hangs off another socket."""
    chain = topo.ancestors(device)[::-1]  # socket, root complex, ..., device
    nodes = _socket_path(topo, socket, chain[0])[:-1] + chain
    if to_device:
        return _path(topo, socket, device, "h2d", nodes, memory=socket)
    return _path(topo, device, socket, "d2h", nodes[::-1], memory=socket)


def _endpoint(topo: Topology, node: str, other: str) -> tuple[str, str]:
    """(node id, kind); ``"host"`` means the other endpoint's socket."""
    if node == "host":
        if other == "host":
            raise RouteError("a route needs at least one device, not host to host")
        return topo.node(other)["socket"], "socket"
    kind = topo.node(node)["kind"]
    if kind not in (*ENDPOINT_KINDS, "socket"):
        raise RouteError(f"{node} is a {kind.replace('_', ' ')}, not an endpoint: routes join "
                         "SoCs, storage devices and host memory (a socket id or 'host')")
    return node, kind


def route(topo: Topology, src: str, dst: str, mode: str = "p2p",
          staging: str | None = None) -> Route | BounceRoute:
    """Route a transfer from ``src`` to ``dst``.

    Parameters
    ----------
    topo
        The topology.
    src, dst
        SoC or storage ids, a socket id (its memory), or ``"host"`` (the memory of the other
        endpoint's socket).
    mode
        ``"p2p"``: a direct route (device to device under the P2P rules, or host memory to a
        device). ``"host"``: device to device bounced through host memory.
    staging
        For ``mode="host"``: the socket holding the staging buffer, or ``"src"`` / ``"dst"``;
        default the source's socket.

    Raises
    ------
    RouteError
        If the platform forbids the route (naming the root complex or socket link), or the
        endpoints or mode make no sense.

    Routes are memoized on the topology (its graph does not change once built).
    """
    key = (src, dst, mode, staging)
    found = topo.routes.get(key)
    if found is None:
        found = topo.routes[key] = _route(topo, src, dst, mode, staging)
    return found


def _route(topo: Topology, src: str, dst: str, mode: str,
           staging: str | None) -> Route | BounceRoute:
    if mode not in ("p2p", "host"):
        raise RouteError(f"unknown route mode {mode!r} (expected 'p2p' or 'host')")
    a, a_kind = _endpoint(topo, src, dst)
    b, b_kind = _endpoint(topo, dst, src)
    if a == b:
        raise RouteError(f"a route needs two different endpoints (got {a} twice)")
    if staging is not None and mode != "host":
        raise RouteError("staging applies only to mode='host' (a bounce through host memory)")
    if a_kind == "socket" or b_kind == "socket":
        if mode == "host":
            raise RouteError("mode='host' bounces between two devices; a transfer to or from "
                             "host memory is direct (use mode='p2p')")
        if a_kind == b_kind:
            raise RouteError(f"{a} to {b} is memory to memory, not a PCIe transfer")
        if a_kind == "socket":
            return memory_route(topo, a, b, to_device=True)
        return memory_route(topo, b, a, to_device=False)
    if mode == "p2p":
        return p2p_route(topo, a, b)
    socket = {None: topo.node(a)["socket"], "src": topo.node(a)["socket"],
              "dst": topo.node(b)["socket"]}.get(staging, staging)
    if socket not in topo.sockets:
        raise RouteError(f"staging must be 'src', 'dst' or a socket id "
                         f"({', '.join(topo.sockets)}); got {staging!r}")
    return BounceRoute(
        src=a, dst=b,
        to_host=memory_route(topo, socket, a, to_device=False),
        from_host=memory_route(topo, socket, b, to_device=True),
        staging=socket, handoff_s=topo.handoff_latency_s, handoff_threads=topo.handoff_threads,
    )
