"""Device fabrics: links between devices outside the PCIe tree (NeuronLink between Trainium
chips, an RDU's peer links, NVLink bridges between GPU pairs).

A topology's ``fabric:`` lists links, each between two SoCs (or cards of one SoC), full duplex
at ``bandwidth`` each way with a ``latency``. Each becomes a pair of directed edges of the
topology graph (``direction: fabric``): the engine makes them resources like any finite link,
and tree walks never follow them (they follow ``parent``). A P2P route between two devices a
fabric link joins takes it first, as NCCL prefers NVLink to PCIe (:mod:`simtopo.topology.
routing`); other pairs keep the tree's routes, and host-routed transfers never use the fabric.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from ..errors import TopologyError
from ..spec.topology import TopologySpec
from .graph import Card, Topology


def _device(spec_id: str, graph: nx.DiGraph, cards: dict[str, Card], where: tuple) -> str:
    """The SoC a fabric end names: a SoC id, or a card of one SoC."""
    if spec_id in cards:
        card = cards[spec_id]
        if len(card.socs) != 1:
            raise TopologyError(f"fabric link end {spec_id!r} is a card of {len(card.socs)} "
                                f"SoCs: name one of them ({', '.join(card.socs)})", path=where)
        return card.socs[0]
    if spec_id in graph and graph.nodes[spec_id].get("kind") == "soc":
        return spec_id
    raise TopologyError(f"fabric link end {spec_id!r} is not a SoC or a card of this topology "
                        f"(expected ids like {next(iter(cards), 'card0')}.soc0)", path=where)


def add_fabric(spec: TopologySpec, graph: nx.DiGraph, cards: dict[str, Card]) -> None:
    """Add the spec's fabric links to ``graph`` (module docstring), refusing a link from a
    device to itself or a second link between the same two devices."""
    seen: dict[frozenset[str], int] = {}
    for i, link in enumerate(spec.fabric):
        where = ("fabric", i, "between")
        a, b = (_device(end, graph, cards, (*where, k)) for k, end in enumerate(link.between))
        if a == b:
            raise TopologyError(f"fabric link {i} joins {a} to itself", path=where)
        pair = frozenset((a, b))
        if pair in seen:
            raise TopologyError(f"fabric link {i} joins {a} and {b} again (fabric[{seen[pair]}]"
                                " already does: give one link its total bandwidth)", path=where)
        seen[pair] = i
        common = {"bw_Bps": link.bandwidth, "latency_s": link.latency, "direction": "fabric",
                  "link": link.kind, "link_id": f"{a}~{b}", "gen": None, "lanes": None}
        graph.add_edge(a, b, **common)
        graph.add_edge(b, a, **common)


def fabric_link(graph: nx.DiGraph, a: str, b: str) -> dict | None:
    """The fabric edge from ``a`` to ``b``, if a fabric link joins them."""
    data = graph.get_edge_data(a, b)
    return data if data is not None and data.get("direction") == "fabric" else None


RING_SEARCH_LIMIT = 200_000
"""Partial rings a search for a ring over the fabric may extend before it gives up."""


def fabric_ring(graph: nx.DiGraph, ordered: list[str]) -> list[str] | None:
    """A ring through every device of ``ordered`` whose every step is a fabric link (as NCCL
    builds its rings over NVLink), or None. Depth first from the first device, trying
    neighbours in ``ordered``'s order, so a ring the order already is comes back unchanged;
    it gives up after :data:`RING_SEARCH_LIMIT` extensions (fabrics are rings, tori and
    hypercubes, where one is found at once)."""
    if len(ordered) < 3:
        return None
    rank = {d: k for k, d in enumerate(ordered)}
    near = {d: sorted((v for v in graph.successors(d) if v in rank and v != d
                       and graph.edges[d, v]["direction"] == "fabric"), key=rank.__getitem__)
            for d in ordered}
    if any(len(n) < 2 for n in near.values()):
        return None
    path, used = [ordered[0]], {ordered[0]}
    tried = [0]  # per depth: the next neighbour of path[depth] to try
    budget = RING_SEARCH_LIMIT
    while path:
        if len(path) == len(ordered) and ordered[0] in near[path[-1]]:
            return path
        options = near[path[-1]] if len(path) < len(ordered) else []
        k = tried[-1]
        while k < len(options) and options[k] in used:
            k += 1
        if k == len(options) or budget == 0:
            if budget == 0:
                return None
            used.discard(path.pop())  # back up
            tried.pop()
            continue
        tried[-1] = k + 1
        budget -= 1
        path.append(options[k])
        used.add(options[k])
        tried.append(0)
    return None


def group_ring(topo: Topology, group: Sequence[str]) -> list[str] | None:
    """A ring over the fabric through ``group`` (taken in the topology's depth-first order,
    SoCs then storage), or None: collectives of such a group step between fabric neighbours
    only. Memoized on the topology."""
    position = {dev: i for i, dev in enumerate((*topo.socs, *topo.storage))}
    if len(set(group)) != len(group) or any(d not in position for d in group):
        return None
    ordered = tuple(sorted(group, key=position.__getitem__))
    if ordered not in topo.rings:
        topo.rings[ordered] = fabric_ring(topo.graph, list(ordered))
    return topo.rings[ordered]
