"""Topology specs to a networkx graph of sockets, root complexes, switches, SoCs and storage.

The PCIe hierarchy is a tree: every device has one parent (a switch or a root complex), every
root complex belongs to a socket, and sockets are joined by the inter-socket link. Each link is
full duplex, so it becomes two directed edges with independent capacities:

- ``up`` (child to parent) and ``down`` (parent to child) edges carry ``bw_Bps`` and ``latency_s``;
- ``socket`` edges join sockets; ``internal`` edges join a root complex to its socket (unbounded:
  host memory bandwidth is a resource of the socket, not of this edge).

Node attributes are plain data (``kind``, ``parent``, ``depth``, ``socket`` and the numbers of
the device) so that later stages and notebooks can read them directly from ``topology.graph``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx

from . import pcie
from .calibrated import DEFAULT_MODEL, LinkModel
from .errors import KeyPath, TopologyError, format_key_path
from .spec import (
    CardTypeSpec,
    LinkSpec,
    PcieSpec,
    PlatformSpec,
    RootComplexSpec,
    SwitchSpec,
    TopologySpec,
    TransferSpec,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .checks import Finding
    from .matrix import PathMatrix
    from .routing import BounceRoute, Route

PARENT_KINDS = ("root_complex", "switch")


@dataclass(frozen=True)
class Card:
    """One placed card: its type, where it sits, its on-card switch and its SoCs."""

    id: str
    type: str
    name: str
    parent: str
    switch: str | None
    socs: tuple[str, ...]


def link_rates(link: LinkSpec, pcie_spec: PcieSpec,
               model: LinkModel = DEFAULT_MODEL) -> tuple[float, float]:
    """(up, down) payload bandwidth in bytes/s of one link."""
    if link.gen is not None and link.lanes is not None:
        overhead = pcie_spec.tlp_overhead
        if overhead is None:
            overhead = model.tlp_overhead_bytes
        if link.gen >= 6:
            overhead = pcie.FLIT_TLP_OVERHEAD_BYTES
        mps = link.max_payload if link.max_payload is not None else pcie_spec.max_payload
        bw = pcie.link_bandwidth(link.gen, link.lanes, mps, overhead)
        return bw, bw
    if link.bandwidth is not None:
        return link.bandwidth, link.bandwidth
    assert link.bandwidth_up is not None and link.bandwidth_down is not None  # spec guarantees
    return link.bandwidth_up, link.bandwidth_down


class Topology:
    """A built topology: a directed graph plus the platform facts that govern routing.

    Build one with :func:`load_topology` (from a file) or :func:`build_topology` (from a spec).
    """

    def __init__(self, spec: TopologySpec, graph: nx.DiGraph, cards: dict[str, Card],
                 source: str | None = None, model: LinkModel = DEFAULT_MODEL) -> None:
        self.spec = spec
        self.graph = graph
        self.cards = cards
        self.source = source
        self.model = model
        given = spec.transfer
        self.transfer: TransferSpec = given.model_copy(update={
            "dma_setup": model.dma_setup_s if given.dma_setup is None else given.dma_setup,
            "concurrency_efficiency": (model.concurrency_efficiency
                                       if given.concurrency_efficiency is None
                                       else given.concurrency_efficiency)})
        """Transfer parameters with the link model's values where the file says nothing."""
        self._routes: dict[tuple[str, str, str, str | None], Route | BounceRoute] = {}

    # -- plain facts ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The topology's name from its file."""
        return self.spec.name

    @property
    def platform(self) -> PlatformSpec:
        """Platform attributes: P2P limits, root-complex and cross-socket P2P, BAR space."""
        return self.spec.platform

    @property
    def handoff_latency_s(self) -> float:
        """Cost of one host-mediated hand-off of a staged chunk."""
        given = self.spec.host.handoff_latency
        return self.model.handoff_s if given is None else given

    @property
    def handoff_threads(self) -> int:
        """Host threads serving hand-offs (a queue when more bounces are in flight)."""
        return self.spec.host.handoff_threads

    def _of_kind(self, kind: str) -> tuple[str, ...]:
        return tuple(n for n, data in self.graph.nodes(data=True) if data["kind"] == kind)

    @property
    def socs(self) -> tuple[str, ...]:
        """SoC ids in topology order (card by card)."""
        return self._of_kind("soc")

    @property
    def switches(self) -> tuple[str, ...]:
        """Switch ids, server switches and on-card switches."""
        return self._of_kind("switch")

    @property
    def sockets(self) -> tuple[str, ...]:
        """CPU socket ids."""
        return self._of_kind("socket")

    @property
    def root_complexes(self) -> tuple[str, ...]:
        """Root complex ids."""
        return self._of_kind("root_complex")

    @property
    def storage(self) -> tuple[str, ...]:
        """Storage device ids."""
        return self._of_kind("storage")

    def node(self, node_id: str) -> dict[str, Any]:
        """Attributes of one node; a clear error for an unknown id."""
        if node_id not in self.graph:
            raise TopologyError(f"unknown device {node_id!r} in topology {self.name!r}"
                                f" (expected one of: {_some(self.graph.nodes)})")
        return self.graph.nodes[node_id]

    def children(self, node_id: str) -> list[str]:
        """Nodes whose parent is ``node_id``, in topology order."""
        return [v for v in self.graph.successors(node_id)
                if self.graph.nodes[v].get("parent") == node_id]

    def ancestors(self, node_id: str) -> list[str]:
        """``node_id`` and its parents up to (and including) its socket."""
        chain = [node_id]
        while (parent := self.graph.nodes[chain[-1]]["parent"]) is not None:
            chain.append(parent)
        return chain

    # -- stages that read the topology ------------------------------------------------------
    def route(self, src: str, dst: str, mode: str = "p2p",
              staging: str | None = None) -> Route | BounceRoute:
        """Route a transfer; see :func:`simtopo.routing.route`. Routes are immutable and the
        graph does not change once built, so each is computed once."""
        key = (src, dst, mode, staging)
        found = self._routes.get(key)
        if found is None:
            from .routing import route

            found = self._routes[key] = route(self, src, dst, mode=mode, staging=staging)
        return found

    def path_matrix(self, devices: Sequence[str] | None = None) -> PathMatrix:
        """All-pairs path class, bottleneck and latency; see :func:`simtopo.matrix.path_matrix`."""
        from .matrix import path_matrix

        return path_matrix(self, devices)

    def checks(self) -> list[Finding]:
        """Platform checks before compiling; see :func:`simtopo.checks.check_platform`."""
        from .checks import check_platform

        return check_platform(self)

    def draw(self) -> Figure:
        """A hierarchical drawing; see :func:`simtopo.draw.draw_topology`."""
        from .draw import draw_topology

        return draw_topology(self)

    def show(self, brief: bool = False) -> str:
        """The tree as text with link bandwidths; see :func:`simtopo.render.render_tree`."""
        from .render import render_tree

        return render_tree(self, brief=brief)

    # -- notebook display -------------------------------------------------------------------
    def summary(self) -> str:
        """One line: sockets, switches, cards, SoCs, storage."""
        parts = [
            _count(len(self.sockets), "socket"),
            _count(len(self.switches), "switch", "switches"),
            _count(len(self.cards), "card"),
            _count(len(self.socs), "SoC"),
        ]
        if self.storage:
            parts.append(_count(len(self.storage), "storage device"))
        return f"{self.name}: " + ", ".join(parts)

    def __repr__(self) -> str:
        return f"<Topology {self.summary()}>"

    def _repr_html_(self) -> str:
        from html import escape

        return f"<pre>{escape(self.show(brief=True))}</pre>"


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _some(ids: Iterable[str], limit: int = 8) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


# -- building -------------------------------------------------------------------------------

class _Builder:
    """Turns a validated spec into the graph, checking ids and wiring as it goes."""

    def __init__(self, spec: TopologySpec, card_types: dict[str, CardTypeSpec],
                 model: LinkModel) -> None:
        self.spec = spec
        self.card_types = card_types
        self.model = model
        self.graph = nx.DiGraph(name=spec.name)
        self.where: dict[str, KeyPath] = {}
        self.kinds: dict[str, str] = {}
        self.cards: dict[str, Card] = {}

    @staticmethod
    def hop(given: float | None, default: float) -> float:
        return default if given is None else given

    def claim(self, node_id: str, kind: str, path: KeyPath) -> None:
        if node_id in self.where:
            raise TopologyError(f"duplicate id {node_id!r} (already used at "
                                f"{format_key_path(self.where[node_id])})", path=path)
        self.where[node_id] = path
        self.kinds[node_id] = kind

    def add_link(self, parent: str, child: str, link: LinkSpec) -> None:
        up, down = link_rates(link, self.spec.pcie, self.model)
        label = link.label()
        common = {"latency_s": link.latency, "link": label, "link_id": f"{parent}-{child}",
                  "gen": link.gen, "lanes": link.lanes}
        self.graph.add_edge(child, parent, bw_Bps=up, direction="up", **common)
        self.graph.add_edge(parent, child, bw_Bps=down, direction="down", **common)

    def build(self) -> tuple[nx.DiGraph, dict[str, Card]]:
        self.add_host()
        placements = list(self.claim_devices())
        self.check_parents()
        self.add_switches()
        for index, card_type, card_ids in placements:
            self.add_cards(index, card_type, card_ids)
        self.add_storage()
        self.set_depths()
        if not self.cards:
            raise TopologyError("a topology needs at least one SoC: place a card under a switch "
                                "or root complex", path=("cards",))
        return self.graph, self.cards

    def add_host(self) -> None:
        host = self.spec.host
        rc_p2p_default = self.spec.platform.root_complex_p2p
        for i, sock in enumerate(host.sockets):
            self.claim(sock.id, "socket", ("host", "sockets", i, "id"))
            self.graph.add_node(sock.id, kind="socket", parent=None, socket=sock.id,
                                cores=sock.cores, memory_bytes=sock.memory,
                                memory_bw_Bps=sock.memory_bw, hop_latency_s=0.0)
        for i, sock in enumerate(host.sockets):
            rcs = sock.root_complexes
            if rcs is None:
                rcs = [RootComplexSpec(id=f"rc{i}")]
                paths: list[KeyPath] = [("host", "sockets", i)]
            else:
                paths = [("host", "sockets", i, "root_complexes", j, "id")
                         for j in range(len(rcs))]
            for j, (rc, path) in enumerate(zip(rcs, paths, strict=True)):
                self.claim(rc.id, "root_complex", path)
                key = ("platform.root_complex_p2p" if rc.p2p is None
                       else f"host.sockets[{i}].root_complexes[{j}].p2p")
                self.graph.add_node(rc.id, kind="root_complex", parent=sock.id, socket=sock.id,
                                    p2p=rc_p2p_default if rc.p2p is None else rc.p2p,
                                    p2p_key=key,
                                    hop_latency_s=self.hop(rc.hop_latency, self.model.rc_hop_s))
                common = {"bw_Bps": math.inf, "latency_s": 0.0, "direction": "internal",
                          "link": "internal", "link_id": f"{sock.id}-{rc.id}", "gen": None,
                          "lanes": None}
                self.graph.add_edge(rc.id, sock.id, **common)
                self.graph.add_edge(sock.id, rc.id, **common)
        if len(host.sockets) > 1:
            if host.socket_link is None:
                raise TopologyError(f"{len(host.sockets)} sockets need a 'socket_link' "
                                    "(the inter-socket link)", path=("host",))
            up, down = link_rates(host.socket_link, self.spec.pcie, self.model)
            ids = [s.id for s in host.sockets]
            # every pair of sockets is joined directly (true of 2-socket hosts; an assumption
            # for larger ones); 'up' is the rate from the lower-numbered socket
            for a_index, a in enumerate(ids):
                for b in ids[a_index + 1:]:
                    common = {"latency_s": host.socket_link.latency, "direction": "socket",
                              "link": "socket link", "link_id": f"{a}-{b}", "gen": None,
                              "lanes": None}
                    self.graph.add_edge(a, b, bw_Bps=up, **common)
                    self.graph.add_edge(b, a, bw_Bps=down, **common)

    def claim_devices(self) -> Iterator[tuple[int, CardTypeSpec, list[str]]]:
        for i, sw in enumerate(self.spec.switches):
            self.claim(sw.id, "switch", ("switches", i, "id"))
        numbering: dict[str, int] = {}
        placements = []
        for i, placement in enumerate(self.spec.cards):
            card_type = self.card_types.get(placement.type)
            if card_type is None:
                known = ", ".join(sorted(self.card_types)) or "none defined or included"
                raise TopologyError(f"unknown card type {placement.type!r} (expected one of: "
                                    f"{known})", path=("cards", i, "type"))
            start = numbering.get(placement.prefix, 0)
            numbering[placement.prefix] = start + placement.count
            card_ids = [f"{placement.prefix}{n}" for n in range(start, start + placement.count)]
            for card_id in card_ids:
                self.claim(card_id, "card", ("cards", i))
                if card_type.switch is not None:
                    self.claim(f"{card_id}.sw", "on-card switch", ("cards", i))
                for k in range(card_type.socs):
                    self.claim(f"{card_id}.soc{k}", "SoC", ("cards", i))
            placements.append((i, card_type, card_ids))
        for i, st in enumerate(self.spec.storage):
            self.claim(st.id, "storage device", ("storage", i, "id"))
        return iter(placements)

    def check_parents(self) -> None:
        parent_ids = [n for n, kind in self.kinds.items() if kind in PARENT_KINDS]
        sections: list[tuple[str, Sequence[Any]]] = [
            ("switches", self.spec.switches), ("cards", self.spec.cards),
            ("storage", self.spec.storage)]
        for section, items in sections:
            for i, item in enumerate(items):
                kind = self.kinds.get(item.parent)
                if kind is None:
                    raise TopologyError(
                        f"unknown parent {item.parent!r} (expected a root complex or switch: "
                        f"{_some(parent_ids)})", path=(section, i, "parent"))
                if kind not in PARENT_KINDS:
                    raise TopologyError(
                        f"parent {item.parent!r} is {_article(kind.replace('_', ' '))}; expected "
                        f"a root complex or switch: {_some(parent_ids)}",
                        path=(section, i, "parent"))
        self.check_switch_cycles()

    def check_switch_cycles(self) -> None:
        parent_of = {sw.id: sw.parent for sw in self.spec.switches}
        index_of = {sw.id: i for i, sw in enumerate(self.spec.switches)}
        for sw in self.spec.switches:
            chain = [sw.id]
            while chain[-1] in parent_of:
                nxt = parent_of[chain[-1]]
                if nxt in chain:
                    cycle = [*chain[chain.index(nxt):], nxt]
                    stranded = self.devices_below(set(cycle))
                    tail = f"; unreachable from the host: {_some(stranded)}" if stranded else ""
                    raise TopologyError(
                        f"cycle of switch parents {' -> '.join(cycle)}{tail}",
                        path=("switches", index_of[nxt], "parent"))
                chain.append(nxt)

    def devices_below(self, switch_ids: set[str]) -> list[str]:
        """SoCs and storage under ``switch_ids`` (used to name what a cycle cuts off)."""
        below = set(switch_ids)
        changed = True
        while changed:
            changed = False
            for sw in self.spec.switches:
                if sw.parent in below and sw.id not in below:
                    below.add(sw.id)
                    changed = True
        out = []
        numbering: dict[str, int] = {}
        for placement in self.spec.cards:
            start = numbering.get(placement.prefix, 0)
            numbering[placement.prefix] = start + placement.count
            if placement.parent in below:
                socs = self.card_types[placement.type].socs
                out += [f"{placement.prefix}{n}.soc{k}"
                        for n in range(start, start + placement.count) for k in range(socs)]
        out += [st.id for st in self.spec.storage if st.parent in below]
        return out

    def add_switches(self) -> None:
        pending: list[SwitchSpec] = list(self.spec.switches)
        # add parents before children so that the graph's node order is the tree's order
        while pending:
            ready = [sw for sw in pending if sw.parent in self.graph]
            for sw in ready:
                acs = self.spec.platform.acs if sw.acs is None else sw.acs
                self.graph.add_node(sw.id, kind="switch", parent=sw.parent, acs=acs,
                                    hop_latency_s=self.hop(sw.hop_latency,
                                                           self.model.switch_hop_s),
                                    card=None, model=sw.model)
                self.add_link(sw.parent, sw.id, sw.uplink)
            pending = [sw for sw in pending if sw not in ready]

    def add_cards(self, index: int, card_type: CardTypeSpec, card_ids: list[str]) -> None:
        placement = self.spec.cards[index]
        soc = card_type.soc
        soc_attrs = {
            "kind": "soc", "card_type": placement.type, "cores": soc.cores,
            "peak_flops_per_core": soc.flops_per_core(), "dram_bytes": soc.dram,
            "dram_bw_Bps": soc.dram_bw, "noc_bw_Bps": soc.noc_bw, "sram_bytes": soc.sram,
            "vtcm_per_core_bytes": soc.vtcm_per_core, "bar_bytes": soc.bar_size,
            "dma_bw_Bps": soc.dma_bw,
            "hop_latency_s": 0.0,
        }
        for card_id in card_ids:
            soc_ids = tuple(f"{card_id}.soc{k}" for k in range(card_type.socs))
            if card_type.switch is not None:
                assert card_type.soc_link is not None  # spec guarantees
                switch_id = f"{card_id}.sw"
                acs = next(a for a in (placement.acs, card_type.switch.acs,
                                       self.spec.platform.acs) if a is not None)
                self.graph.add_node(switch_id, kind="switch", parent=placement.parent, acs=acs,
                                    hop_latency_s=self.hop(card_type.switch.hop_latency,
                                                           self.model.switch_hop_s),
                                    card=card_id,
                                    model=card_type.switch.model)
                self.add_link(placement.parent, switch_id, card_type.host_link)
                for soc_id in soc_ids:
                    self.graph.add_node(soc_id, parent=switch_id, card=card_id, **soc_attrs)
                    self.add_link(switch_id, soc_id, card_type.soc_link)
            else:
                switch_id = None
                (soc_id,) = soc_ids
                self.graph.add_node(soc_id, parent=placement.parent, card=card_id, **soc_attrs)
                self.add_link(placement.parent, soc_id, card_type.host_link)
            self.cards[card_id] = Card(id=card_id, type=placement.type, name=card_type.name,
                                       parent=placement.parent, switch=switch_id, socs=soc_ids)

    def add_storage(self) -> None:
        for st in self.spec.storage:
            self.graph.add_node(st.id, kind="storage", parent=st.parent, storage_kind=st.kind,
                                read_bw_Bps=st.read_bw, write_bw_Bps=st.write_bw,
                                latency_s=st.latency, capacity_bytes=st.capacity,
                                hop_latency_s=0.0)
            self.add_link(st.parent, st.id, st.link)

    def set_depths(self) -> None:
        nodes = self.graph.nodes
        for node_id in nodes:  # parents precede children in node order
            parent = nodes[node_id]["parent"]
            if parent is None:
                nodes[node_id]["depth"] = 0
            else:
                nodes[node_id]["depth"] = nodes[parent]["depth"] + 1
                nodes[node_id]["socket"] = nodes[parent]["socket"]


def build_topology(spec: TopologySpec, card_types: dict[str, CardTypeSpec] | None = None,
                   source: str | None = None, model: LinkModel = DEFAULT_MODEL) -> Topology:
    """Build a :class:`Topology` from a validated spec and the card types it may use.

    ``card_types`` adds definitions from included files to those in ``spec.card_types``;
    ``model`` supplies every link-model value the spec leaves out (hop latencies, TLP
    overhead, hand-off, DMA set-up, concurrency efficiency).
    """
    types = dict(card_types or {})
    types.update(spec.card_types)
    graph, cards = _Builder(spec, types, model).build()
    return Topology(spec, graph, cards, source, model)
