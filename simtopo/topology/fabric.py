"""Device fabrics: links between devices outside the PCIe tree (NeuronLink between Trainium
chips, an RDU's peer links, NVLink bridges between GPU pairs, NVLink through NVSwitches).

A topology's ``fabric:`` lists links, each between two SoCs or two cards, full duplex at
``bandwidth`` each way with a ``latency``. Each becomes a pair of directed edges of the
topology graph (``direction: fabric``) between the SoCs, or between the on-card switches of
cards of several SoCs (a chip whose logical cores share its links: a Trainium2 chip split into
logical NeuronCores): the engine makes them resources like any finite link, and tree walks
never follow them (they follow ``parent``). A device's *fabric port* is the node its fabric
links leave from: the SoC, or its card's switch. A P2P route between two devices whose ports a
fabric link joins takes it first, as NCCL prefers NVLink to PCIe (:mod:`simtopo.topology.
routing`): ``[a, b]``, or through the ports ``[a, port(a), port(b), b]``; other pairs keep
the tree's routes, and host-routed transfers never use the fabric.

``fabric_switches:`` adds switches (kind ``fabric_switch``, outside the tree) that links may
name as an end: two ports linked to one switch are joined through it, non-blocking, as an
NVSwitch joins GPUs (``[a, (port(a)), switch, (port(b)), b]``, its hop latency counted once).
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from ..errors import TopologyError
from ..spec.topology import TopologySpec
from .graph import Card, Topology


def _port(spec_id: str, graph: nx.DiGraph, cards: dict[str, Card], where: tuple) -> str:
    """The node a fabric end names: a fabric switch; a SoC; a card of one SoC (its SoC); a card
    of several SoCs (its on-card switch, which all its SoCs reach), refusing a SoC of such a
    card once another end named the card (its SoCs would reach the fabric two ways)."""
    kind = graph.nodes[spec_id].get("kind") if spec_id in graph else None
    if kind == "fabric_switch":
        return spec_id
    if spec_id in cards:
        card = cards[spec_id]
        port = card.socs[0] if len(card.socs) == 1 else card.switch
        assert port is not None  # a card of several SoCs has a switch (spec)
    elif kind == "soc":
        port = spec_id
    else:
        raise TopologyError(f"fabric link end {spec_id!r} is not a SoC, a card or a fabric "
                            f"switch of this topology (expected ids like "
                            f"{next(iter(cards), 'card0')} or "
                            f"{next(iter(cards), 'card0')}.soc0)", path=where)
    parent = graph.nodes[port]["parent"]
    if graph.nodes[port]["kind"] == "soc" and graph.nodes[parent].get("card") \
            and fabric_neighbours(graph, parent):
        raise TopologyError(f"fabric link end {spec_id!r} is a SoC of card "
                            f"{graph.nodes[parent]['card']!r}, which other fabric links join "
                            "as a whole: name the card in both", path=where)
    if graph.nodes[port]["kind"] == "switch" and any(
            fabric_neighbours(graph, soc) for soc in graph.successors(port)
            if graph.nodes[soc]["kind"] == "soc"):
        raise TopologyError(f"fabric link end {spec_id!r} is a card one of whose SoCs other "
                            "fabric links join: name the card in both", path=where)
    return port


def add_fabric(spec: TopologySpec, graph: nx.DiGraph, cards: dict[str, Card]) -> None:
    """Add the spec's fabric switches and links to ``graph`` (module docstring), refusing a
    link from a device to itself, a second link between the same two, a link between two
    switches, and a switch fewer than two links reach."""
    depth = 1 + max(d["depth"] for _, d in graph.nodes(data=True))  # drawn below the devices
    for i, switch in enumerate(spec.fabric_switches):
        if switch.id in graph or switch.id in cards:
            raise TopologyError(f"fabric switch id {switch.id!r} is already a node of this "
                                "topology", path=("fabric_switches", i, "id"))
        graph.add_node(switch.id, kind="fabric_switch", parent=None, depth=depth, card=None,
                       hop_latency_s=switch.hop_latency, link=switch.kind)
    seen: dict[frozenset[str], int] = {}
    for i, link in enumerate(spec.fabric):
        where = ("fabric", i, "between")
        a, b = (_port(end, graph, cards, (*where, k)) for k, end in enumerate(link.between))
        if a == b:
            raise TopologyError(f"fabric link {i} joins {a} to itself", path=where)
        if graph.nodes[a]["kind"] == graph.nodes[b]["kind"] == "fabric_switch":
            raise TopologyError(f"fabric link {i} joins two fabric switches ({a}, {b}): join "
                                "devices to one switch", path=where)
        if graph.has_edge(a, b) and graph.edges[a, b]["direction"] != "fabric":
            raise TopologyError(f"fabric link {i} joins {a} and {b}, which the tree already "
                                "joins (a card and its own SoC)", path=where)
        pair = frozenset((a, b))
        if pair in seen:
            raise TopologyError(f"fabric link {i} joins {a} and {b} again (fabric[{seen[pair]}]"
                                " already does: give one link its total bandwidth)", path=where)
        seen[pair] = i
        common = {"bw_Bps": link.bandwidth, "latency_s": link.latency, "direction": "fabric",
                  "link": link.kind, "link_id": f"{a}~{b}", "gen": None, "lanes": None}
        graph.add_edge(a, b, **common)
        graph.add_edge(b, a, **common)
    reached: dict[str, set[str]] = {}
    for i, switch in enumerate(spec.fabric_switches):
        ports = reached[switch.id] = set(fabric_neighbours(graph, switch.id))
        twin = next((o for o, seen in reached.items() if o != switch.id
                     and len(seen & ports) > 1), None)
        if twin is not None:
            raise TopologyError(f"fabric switches {twin!r} and {switch.id!r} both join "
                                f"{', '.join(sorted(reached[twin] & ports)[:3])}: a route "
                                "takes one switch, so model parallel planes (a baseboard's "
                                "NVSwitch chips) as one switch with their links' bandwidth "
                                "summed", path=("fabric_switches", i, "id"))
        if len(ports) < 2:
            raise TopologyError(f"fabric switch {switch.id!r} joins {len(ports)} devices: link at "
                                "least two to it (fabric: [{between: [card0, "
                                f"{switch.id}], ...}}])", path=("fabric_switches", i, "id"))


def fabric_link(graph: nx.DiGraph, a: str, b: str) -> dict | None:
    """The fabric edge from node ``a`` to node ``b``, if a fabric link joins them."""
    data = graph.get_edge_data(a, b)
    return data if data is not None and data.get("direction") == "fabric" else None


def fabric_neighbours(graph: nx.DiGraph, node: str) -> list[str]:
    """The nodes fabric links join ``node`` to."""
    return [v for v, d in graph.adj[node].items() if d["direction"] == "fabric"]


def _switch(graph: nx.DiGraph, a: str, b: str) -> str | None:
    """The first (by id) fabric switch that links join both ports ``a`` and ``b`` to."""
    both = set(fabric_neighbours(graph, a)) & set(fabric_neighbours(graph, b))
    return min((s for s in both if graph.nodes[s]["kind"] == "fabric_switch"), default=None)


def joined(graph: nx.DiGraph, a: str, b: str) -> bool:
    """Whether the fabric joins ports ``a`` and ``b``: a link, or one switch both reach."""
    return fabric_link(graph, a, b) is not None or _switch(graph, a, b) is not None


def joined_bw(graph: nx.DiGraph, a: str, b: str) -> float:
    """What the fabric carries from port ``a`` to port ``b`` (joined ones), bytes/s each way:
    their link's bandwidth, or the slower of their links to the switch between them."""
    direct = fabric_link(graph, a, b)
    if direct is not None:
        return float(direct["bw_Bps"])
    switch = _switch(graph, a, b)
    assert switch is not None, (a, b)
    return float(min(graph.edges[a, switch]["bw_Bps"], graph.edges[switch, b]["bw_Bps"]))


def port_neighbours(graph: nx.DiGraph, port: str) -> set[str]:
    """The ports the fabric joins ``port`` to, directly or through a fabric switch."""
    out = set()
    for v in fabric_neighbours(graph, port):
        if graph.nodes[v]["kind"] == "fabric_switch":
            out.update(w for w in fabric_neighbours(graph, v) if w != port)
        else:
            out.add(v)
    return out


def fabric_port(graph: nx.DiGraph, device: str) -> str | None:
    """Where ``device``'s fabric links leave from: itself, its card's switch, or None."""
    if graph.nodes[device].get("kind") != "soc":
        return None
    if fabric_neighbours(graph, device):
        return device
    parent = graph.nodes[device]["parent"]
    if graph.nodes[parent].get("card") and fabric_neighbours(graph, parent):
        return parent
    return None


def fabric_path(graph: nx.DiGraph, a: str, b: str) -> list[str] | None:
    """The nodes of the route from device ``a`` to device ``b`` over the fabric (one link, or
    a switch between their ports), or None when the fabric does not join their ports (module
    docstring)."""
    pa, pb = fabric_port(graph, a), fabric_port(graph, b)
    if pa is None or pb is None or pa == pb:
        return None
    if fabric_link(graph, pa, pb) is not None:
        middle = []
    elif (switch := _switch(graph, pa, pb)) is not None:
        middle = [switch]
    else:
        return None
    return [a, *([pa] if pa != a else []), *middle, *([pb] if pb != b else []), b]


RING_SEARCH_LIMIT = 200_000
"""Partial rings a search for a ring over the fabric may extend before it gives up."""


def fabric_ring(graph: nx.DiGraph, ordered: list[str]) -> list[str] | None:
    """A ring through every device of ``ordered`` over the fabric (as NCCL builds its rings
    over NVLink), or None: a ring of the devices' fabric ports whose every step the fabric
    joins (a link, or a switch), each port's devices taken together where the ring passes it
    (the logical cores of a chip, joined inside it); two ports may make a ring of one link,
    there and back.

    The ring of ports is found depth first from the first device's, trying neighbours in
    ``ordered``'s order, so a ring the order already is comes back unchanged; the search gives
    up after :data:`RING_SEARCH_LIMIT` extensions (fabrics are rings, tori and hypercubes,
    where one is found at once)."""
    if len(ordered) < 3:
        return None
    members: dict[str, list[str]] = {}
    for device in ordered:
        port = fabric_port(graph, device)
        if port is None:
            return None
        members.setdefault(port, []).append(device)
    ports = list(members)
    if len(ports) == 1 or (len(ports) == 2 and not joined(graph, *ports)):
        return None
    ring = ports if len(ports) == 2 else _port_ring(graph, ports)
    return None if ring is None else [device for port in ring for device in members[port]]


def _port_ring(graph: nx.DiGraph, ordered: list[str]) -> list[str] | None:
    """A ring through every port of ``ordered`` whose every step the fabric joins, or None
    (the search of :func:`fabric_ring`)."""
    near = {}
    for port in ordered:
        linked = port_neighbours(graph, port)
        near[port] = [v for v in ordered if v in linked]
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


def port_runs(graph: nx.DiGraph, ring: Sequence[str]) -> list[list[str]] | None:
    """``ring`` cut into its devices by fabric port, when it passes at least two ports, each
    once, with the same number (at least two) of devices at each, and the fabric joins each
    port to the next (and the last to the first): the shape of a hierarchical all-reduce
    (inside each port, then across them). None otherwise."""
    runs: list[list[str]] = []
    order: list[str] = []  # the port of each run
    for device in ring:
        port = fabric_port(graph, device)
        if port is None:
            return None
        if not order or port != order[-1]:
            runs.append([])
            order.append(port)
        runs[-1].append(device)
    if len(runs) < 2 or len(set(order)) != len(runs) or len({len(r) for r in runs}) != 1 \
            or len(runs[0]) < 2 or any(not joined(graph, p, q) for p, q in
                                       zip(order, order[1:] + order[:1], strict=True)):
        return None
    return runs


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
