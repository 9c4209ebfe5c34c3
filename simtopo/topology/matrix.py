"""Device-by-device path class, bottleneck bandwidth and latency, for all pairs at once.

The spirit of ``nvidia-smi topo -m``, computed from the tree with arrays rather than one route
object per pair, so that a 1,024-SoC topology stays cheap. For every device and every depth we
hold its ancestor there and the bottleneck and latency of the way up (and down) to it; a pair's
lowest common ancestor and the platform's rules then pick where the route turns.

The rules are those of :mod:`simtopo.topology.routing`; pairs that cannot use P2P (refused by a
root complex, the socket link, a card type or a switch without P2P) get class ``host`` and the
figures of a bounce through the source socket's memory. A partitioned chip is found per chip:
the depth at which each device's chain meets one of its partitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from .. import limits
from ..errors import RouteError
from .fabric import fabric_port, port_neighbours
from .graph import Topology
from .routing import ENDPOINT_KINDS, p2p_route

if TYPE_CHECKING:
    import pandas as pd

PATH_CLASSES = ("self", "fabric", "card", "switch", "chip", "acs", "rc", "socket", "host")
"""Path classes, from nearest to farthest."""

CODES = {"self": "X", "fabric": "FAB", "card": "CARD", "switch": "SW", "chip": "CHIP",
         "acs": "ACS", "rc": "RC", "socket": "XS", "host": "HOST"}
"""Short codes used in matrix tables."""

MEANING = {
    "self": "the device itself",
    "fabric": "a device fabric link joins them (NeuronLink, NVLink bridge, ...)",
    "card": "same card: through the on-card switch",
    "switch": "same server switch (ACS off)",
    "chip": "across partitions of one switch chip, inside the chip",
    "acs": "ACS on at the common switch: hairpin through the root port",
    "rc": "through the root complex (between root ports or switches)",
    "socket": "across sockets over the socket link (cross-socket P2P on)",
    "host": "no P2P path: bounced through host memory",
}

_SELF, _FABRIC, _CARD, _SWITCH, _CHIP, _ACS, _RC, _SOCKET, _HOST = range(len(PATH_CLASSES))


@dataclass(frozen=True, eq=False)
class PathMatrix:
    """All-pairs path class, bottleneck bandwidth and latency between ``devices``.

    ``path_class[i, j]`` indexes :data:`PATH_CLASSES`; ``bottleneck_Bps`` and ``latency_s`` are
    those of the P2P route, or of the host bounce for class ``host`` (diagonal: inf and 0).
    """

    devices: tuple[str, ...]
    path_class: np.ndarray
    bottleneck_Bps: np.ndarray
    latency_s: np.ndarray

    def index(self, device: str) -> int:
        """Row of ``device``."""
        try:
            return self.devices.index(device)
        except ValueError:
            raise RouteError(f"{device!r} is not in this matrix") from None

    def class_of(self, a: str, b: str) -> str:
        """Path class between two devices."""
        return PATH_CLASSES[self.path_class[self.index(a), self.index(b)]]

    def counts(self) -> dict[str, int]:
        """Ordered pairs per path class (excluding the diagonal)."""
        values, counts = np.unique(self.path_class, return_counts=True)
        found = dict(zip(values.tolist(), counts.tolist(), strict=True))
        return {PATH_CLASSES[v]: found[v] for v in sorted(found) if v != _SELF}

    def to_dataframe(self, value: str = "class") -> pd.DataFrame:
        """A device-by-device table of ``"class"`` codes, ``"bandwidth"`` (B/s) or ``"latency"``
        (s)."""
        import pandas as pd

        if value == "class":
            data = np.array([CODES[c] for c in PATH_CLASSES], dtype=object)[self.path_class]
        elif value == "bandwidth":
            data = self.bottleneck_Bps
        elif value == "latency":
            data = self.latency_s
        else:
            raise ValueError(f"value must be 'class', 'bandwidth' or 'latency' (got {value!r})")
        return pd.DataFrame(data, index=list(self.devices), columns=list(self.devices))

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return f"<PathMatrix {len(self.devices)} devices: {counts}>"

    def _repr_html_(self) -> str:
        return self.to_dataframe("class")._repr_html_()


def _socket_paths(topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """Bottleneck and latency (links plus intermediate hops) between every pair of sockets."""
    sockets = topo.sockets
    n = len(sockets)
    bw = np.full((n, n), np.inf)
    lat = np.zeros((n, n))
    graph = topo.graph
    sub = graph.subgraph(sockets)
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            path = nx.shortest_path(sub, sockets[a], sockets[b])
            edges = [graph.edges[u, v] for u, v in pairwise(path)]
            bw[a, b] = min(e["bw_Bps"] for e in edges)
            lat[a, b] = sum(e["latency_s"] for e in edges) + sum(
                graph.nodes[s]["hop_latency_s"] for s in path[1:-1])
    return bw, lat


def _chip_crossings(graph: nx.DiGraph, nodes: list[str], anc: np.ndarray, acs: np.ndarray,
                    devices: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Pairs that cross a partitioned chip, and the depths of the source's and destination's
    partitions, as :func:`simtopo.topology.routing.chip_crossing` picks them (the crossing
    nearest the devices, ties to the chip named first); ``None`` without chips."""
    chips = sorted({c for n in nodes if (c := graph.nodes[n].get("chip")) is not None})
    if not chips:
        return None
    n = len(devices)
    code = np.array([chips.index(c) if (c := graph.nodes[v].get("chip")) is not None else -1
                     for v in nodes])
    chip_at = np.where(anc >= 0, code[np.maximum(anc, 0)], -1)
    own = np.array([graph.nodes[dv]["depth"] for dv in devices])
    best = np.full((n, n), np.iinfo(np.int16).max, dtype=np.int16)
    chip_up = np.zeros((n, n), dtype=np.int8)
    chip_down = np.zeros((n, n), dtype=np.int8)
    rows = np.arange(n)
    for c in range(len(chips)):
        on = chip_at == c
        at = on.argmax(axis=1)  # a chain meets at most one partition of a chip
        part = np.where(on.any(axis=1), anc[rows, at], -1)
        ok = (part >= 0) & ~acs[np.maximum(part, 0)]
        up = (own - at).astype(np.int16)  # links from each device up to its partition
        cost = up[:, None] + up[None, :]
        better = ok[:, None] & ok[None, :] & (part[:, None] != part[None, :]) & (cost < best)
        np.copyto(best, cost, where=better)
        np.copyto(chip_up, np.broadcast_to(at[:, None], (n, n)), where=better)
        np.copyto(chip_down, np.broadcast_to(at[None, :], (n, n)), where=better)
    return best < np.iinfo(np.int16).max, chip_up, chip_down


def path_matrix(topo: Topology, devices: Sequence[str] | None = None) -> PathMatrix:
    """Compute the :class:`PathMatrix` of ``devices`` (default: every SoC)."""
    devices = tuple(topo.socs if devices is None else devices)
    if len(devices) > limits.MAX_MATRIX_DEVICES:
        raise RouteError(f"a path matrix of {len(devices)} devices; at most "
                         f"{limits.MAX_MATRIX_DEVICES} (its arrays grow with the square)")
    graph = topo.graph
    for device in devices:
        if topo.node(device)["kind"] not in ENDPOINT_KINDS:
            raise RouteError(f"{device} is a {topo.node(device)['kind']}; the matrix is over "
                             "SoCs and storage devices")
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    attrs = [graph.nodes[n] for n in nodes]
    kind = np.array([a["kind"] for a in attrs], dtype=object)
    is_switch = kind == "switch"
    acs = np.array([bool(a.get("acs")) for a in attrs])
    on_card = np.array([a.get("card") is not None for a in attrs]) & is_switch
    p2p = np.array([bool(a.get("p2p", True)) for a in attrs])
    no_p2p_switch = is_switch & ~p2p
    hop = np.array([a["hop_latency_s"] for a in attrs])
    socket_index = {s: k for k, s in enumerate(topo.sockets)}
    memory_bw = np.array([graph.nodes[s]["memory_bw_Bps"] for s in topo.sockets])

    n, depth = len(devices), 1 + max(a["depth"] for a in attrs)
    anc = np.full((n, depth), -1, dtype=np.int32)
    up_bw = np.full((n, depth), np.inf)
    down_bw = np.full((n, depth), np.inf)
    up_lat = np.zeros((n, depth))
    down_lat = np.zeros((n, depth))
    # blocked[e, d]: a switch without P2P from device e up to its ancestor at depth d, included
    blocked = np.zeros((n, depth), dtype=bool)
    for e, device in enumerate(devices):
        node, d = device, graph.nodes[device]["depth"]
        anc[e, d] = index[node]
        while (parent := graph.nodes[node]["parent"]) is not None:
            blocked[e, d - 1] = blocked[e, d] | no_p2p_switch[index[parent]]
            up, down = graph.edges[node, parent], graph.edges[parent, node]
            between = hop[index[node]] if node != device else 0.0
            up_bw[e, d - 1] = min(up_bw[e, d], up["bw_Bps"])
            down_bw[e, d - 1] = min(down_bw[e, d], down["bw_Bps"])
            up_lat[e, d - 1] = up_lat[e, d] + up["latency_s"] + between
            down_lat[e, d - 1] = down_lat[e, d] + down["latency_s"] + between
            node, d = parent, d - 1
            anc[e, d] = index[node]

    # n x n arrays in small types, filled in place: a 2,048-device matrix stays ~200 MB
    # depth of the lowest common ancestor; -1 when the devices hang off different sockets
    lca_depth = np.full((n, n), -1, dtype=np.int8)
    for d in range(depth):
        col = anc[:, d]
        np.copyto(lca_depth, d, where=(col[:, None] == col[None, :]) & (col[:, None] >= 0))
    rows = np.arange(n)[:, None]
    lca = anc[rows, np.maximum(lca_depth, 0)]
    same_socket = lca_depth >= 0
    rc = anc[:, 1]
    rc_p2p = p2p[rc][:, None] & p2p[rc][None, :]

    cls = np.full((n, n), _HOST, dtype=np.int8)
    turn = np.zeros((n, n), dtype=np.int8)
    lca_switch = same_socket & is_switch[lca]
    direct = lca_switch & ~acs[lca]
    np.copyto(cls, _SWITCH, where=direct)
    np.copyto(cls, _CARD, where=direct & on_card[lca])
    np.copyto(turn, lca_depth, where=direct)
    hairpin = lca_switch & acs[lca]
    np.copyto(cls, _ACS, where=hairpin)
    np.copyto(turn, 1, where=hairpin)
    via_rc = same_socket & ~is_switch[lca] & rc_p2p
    np.copyto(cls, _RC, where=via_rc)
    np.copyto(turn, lca_depth, where=via_rc)
    np.copyto(cls, _SOCKET, where=~same_socket & rc_p2p & topo.platform.cross_socket_p2p)
    del lca, lca_switch, direct, hairpin, via_rc, rc_p2p
    # switches without P2P on the route (hairpins to the root complex included), then the
    # partitioned chips (their routes are checked on their own chains), then the endpoints
    if no_p2p_switch.any():
        refused = blocked[rows, turn]
        refused |= blocked[np.arange(n)[None, :], turn]
        np.copyto(cls, _HOST, where=refused)
        del refused
    crossing = _chip_crossings(graph, nodes, anc, acs, devices)
    if crossing is not None:
        chip_pair, chip_up, chip_down = crossing
        np.copyto(cls, _CHIP, where=chip_pair)
        i, j = np.nonzero(chip_pair)
        cls[i, j] = np.where(blocked[i, chip_up[i, j]] | blocked[j, chip_down[i, j]], _HOST,
                             _CHIP)
    endpoint = np.array([p2p[index[dv]] for dv in devices])
    if not endpoint.all():
        cls[~endpoint, :] = _HOST
        cls[:, ~endpoint] = _HOST

    sock = np.array([socket_index[graph.nodes[dv]["socket"]] for dv in devices])
    sock_bw, sock_lat = _socket_paths(topo)
    sock_hop = hop[[index[s] for s in topo.sockets]][sock]
    cols = np.arange(n)[None, :]

    # P2P turning inside one socket's tree
    bw = up_bw[rows, turn]
    np.minimum(bw, down_bw[cols, turn], out=bw)
    lat = up_lat[rows, turn]
    lat += down_lat[cols, turn]
    lat += hop[anc[rows, turn]]
    del turn
    if crossing is not None:  # up to the source's partition, across the chip (one hop), down
        i, j = np.nonzero(cls == _CHIP)
        a, b = chip_up[i, j], chip_down[i, j]
        bw[i, j] = np.minimum(up_bw[i, a], down_bw[j, b])
        lat[i, j] = up_lat[i, a] + down_lat[j, b] + hop[anc[i, a]]
        del crossing, chip_pair, chip_up, chip_down

    def cross(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Across sockets, turning at neither: up to the socket, over the socket link(s),
        down (for the pairs ``i``, ``j``)."""
        a, b = sock[i], sock[j]
        return (np.minimum(np.minimum(up_bw[i, 0], down_bw[j, 0]), sock_bw[a, b]),
                up_lat[i, 0] + down_lat[j, 0] + sock_lat[a, b] + sock_hop[i] + sock_hop[j])

    i, j = np.nonzero(cls == _SOCKET)
    bw[i, j], lat[i, j] = cross(i, j)
    # host bounce through the source socket's memory, then its hand-off
    i, j = np.nonzero(cls == _HOST)
    here = same_socket[i, j]
    far_bw, _ = cross(i, j)
    leg2_bw = np.where(here, down_bw[j, 0], far_bw)
    leg2_lat = np.where(here, down_lat[j, 0], sock_lat[sock[i], sock[j]] + down_lat[j, 0]
                        + sock_hop[j])
    bw[i, j] = np.minimum(np.minimum(up_bw[i, 0], leg2_bw), memory_bw[sock[i]] / 2)
    lat[i, j] = up_lat[i, 0] + topo.handoff_latency_s + leg2_lat

    # a fabric link before any route of the tree: between the devices or the cards they are on
    behind: dict[str, list[int]] = {}  # fabric port -> the devices whose links leave there
    for k, dv in enumerate(devices):
        if (port := fabric_port(graph, dv)) is not None:
            behind.setdefault(port, []).append(k)
    for u in behind:
        for v in port_neighbours(graph, u) & behind.keys():  # by a link, or through a switch
            for i in behind[u]:
                for j in behind[v]:
                    fabric = p2p_route(topo, devices[i], devices[j])
                    cls[i, j], bw[i, j], lat[i, j] = (_FABRIC, fabric.bottleneck_Bps,
                                                      fabric.latency_s)
    diagonal = np.arange(n)
    cls[diagonal, diagonal] = _SELF
    bw[diagonal, diagonal] = np.inf
    lat[diagonal, diagonal] = 0.0
    return PathMatrix(devices=devices, path_class=cls, bottleneck_Bps=bw, latency_s=lat)
