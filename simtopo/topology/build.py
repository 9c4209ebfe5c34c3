"""Topology specs to a networkx graph: ids checked, links turned into directed edges."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import networkx as nx

from .. import limits
from ..constants import DEFAULT_MODEL, LinkModel
from ..errors import KeyPath, TopologyError, format_key_path
from ..spec.topology import (
    CardTypeSpec,
    LinkSpec,
    PcieSpec,
    RootComplexSpec,
    TopologySpec,
)
from ..units import format_time
from . import pcie
from .fabric import add_fabric
from .graph import PARENT_KINDS, Card, Topology, some_ids


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


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


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
        self.switch_level: dict[str, int] = {}

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
        self.check_chips()
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

    def check_size(self) -> None:
        """The cards ask for at most :data:`limits.MAX_SOCS` SoCs and the whole topology for
        at most :data:`limits.MAX_NODES` nodes (checked before any id is made)."""
        nodes = len(self.spec.switches) + len(self.spec.storage)
        socs = 0
        for i, placement in enumerate(self.spec.cards):
            card_type = self.card_types.get(placement.type)
            per_card = 1 if card_type is None else card_type.socs
            socs += placement.count * per_card
            nodes += placement.count * (per_card + (per_card > 1))
            if socs > limits.MAX_SOCS:
                raise TopologyError(
                    f"the cards up to here hold {socs} SoCs; a topology may have at most "
                    f"{limits.MAX_SOCS}", path=("cards", i, "count"))
            if nodes > limits.MAX_NODES:
                raise TopologyError(
                    f"the topology up to here has {nodes} switches, SoCs and devices; at most "
                    f"{limits.MAX_NODES} are allowed", path=("cards", i, "count"))

    def claim_devices(self) -> Iterator[tuple[int, CardTypeSpec, list[str]]]:
        self.check_size()
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
                        f"{some_ids(parent_ids)})", path=(section, i, "parent"))
                if kind not in PARENT_KINDS:
                    raise TopologyError(
                        f"parent {item.parent!r} is {_article(kind.replace('_', ' '))}; expected "
                        f"a root complex or switch: {some_ids(parent_ids)}",
                        path=(section, i, "parent"))
        self.check_switch_cycles()

    def check_switch_cycles(self) -> None:
        """Switch parents form a forest at most :data:`limits.MAX_DEPTH` deep; records each
        switch's level below its root complex (linear time, no recursion)."""
        parent_of = {sw.id: sw.parent for sw in self.spec.switches}
        index_of = {sw.id: i for i, sw in enumerate(self.spec.switches)}
        level: dict[str, int] = {}
        for sw in self.spec.switches:
            chain: list[str] = []
            on_chain: set[str] = set()
            node = sw.id
            while node in parent_of and node not in level:
                if node in on_chain:
                    cycle = [*chain[chain.index(node):], node]
                    stranded = self.devices_below(set(cycle))
                    tail = f"; unreachable from the host: {some_ids(stranded)}" if stranded else ""
                    raise TopologyError(
                        f"cycle of switch parents {' -> '.join(cycle)}{tail}",
                        path=("switches", index_of[node], "parent"))
                chain.append(node)
                on_chain.add(node)
                node = parent_of[node]
            depth = level.get(node, 0)
            for below in reversed(chain):
                depth += 1
                level[below] = depth
                if depth > limits.MAX_DEPTH:
                    raise TopologyError(
                        f"switch {below!r} is {depth} switches below its root complex; at most "
                        f"{limits.MAX_DEPTH} levels are allowed (PCIe trees are a few deep)",
                        path=("switches", index_of[below], "parent"))
        self.switch_level = level

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

    def check_chips(self) -> None:
        """The partitions of one chip share its hop latency and none lies below another (a
        chip's partitions sit side by side, each with its own uplink)."""
        chip_of = {sw.id: sw.chip for sw in self.spec.switches}
        parent_of = {sw.id: sw.parent for sw in self.spec.switches}
        first: dict[str, tuple[str, float]] = {}
        for i, sw in enumerate(self.spec.switches):
            if sw.chip is None:
                continue
            hop = self.hop(sw.hop_latency, self.model.switch_hop_s)
            other, other_hop = first.setdefault(sw.chip, (sw.id, hop))
            if hop != other_hop:
                raise TopologyError(
                    f"switch {sw.id!r} has hop latency {format_time(hop)} but {other!r}, a "
                    f"partition of the same chip {sw.chip!r}, has {format_time(other_hop)}; a "
                    "chip is one switch: give its partitions one hop_latency",
                    path=("switches", i, "hop_latency"))
            node = sw.parent
            while node in parent_of:  # switch parents are acyclic (checked before)
                if chip_of[node] == sw.chip:
                    raise TopologyError(
                        f"switch {sw.id!r} is below {node!r}, a partition of the same chip "
                        f"{sw.chip!r}; a chip's partitions sit side by side, each with its own "
                        "uplink", path=("switches", i, "chip"))
                node = parent_of[node]

    def add_switches(self) -> None:
        # parents before children, level by level in the order given, so that the graph's
        # node order is the tree's order
        index = {sw.id: i for i, sw in enumerate(self.spec.switches)}
        ordered = sorted(self.spec.switches, key=lambda sw: self.switch_level[sw.id])
        for sw in ordered:
            acs = self.spec.platform.acs if sw.acs is None else sw.acs
            self.graph.add_node(sw.id, kind="switch", parent=sw.parent, acs=acs,
                                hop_latency_s=self.hop(sw.hop_latency, self.model.switch_hop_s),
                                card=None, model=sw.model, chip=sw.chip, p2p=sw.p2p,
                                p2p_key=f"switches[{index[sw.id]}].p2p")
            self.add_link(sw.parent, sw.id, sw.uplink)
        self.add_chip_crossings()

    def add_chip_crossings(self) -> None:
        """Join every two partitions of a chip both ways by an unbounded ``chip`` edge: the
        crossing inside the chip, which loads no link (the engine makes resources of finite
        edges only) and is no parent link (tree walks follow ``parent``)."""
        chips: dict[str, list[str]] = {}
        for sw in self.spec.switches:
            if sw.chip is not None:
                chips.setdefault(sw.chip, []).append(sw.id)
        for chip, parts in chips.items():
            for k, a in enumerate(parts):
                for b in parts[k + 1:]:
                    common = {"bw_Bps": math.inf, "latency_s": 0.0, "direction": "chip",
                              "link": "chip", "link_id": f"{a}-{b}", "chip": chip,
                              "gen": None, "lanes": None}
                    self.graph.add_edge(a, b, **common)
                    self.graph.add_edge(b, a, **common)

    def add_cards(self, index: int, card_type: CardTypeSpec, card_ids: list[str]) -> None:
        placement = self.spec.cards[index]
        soc = card_type.soc
        soc_attrs = {
            "kind": "soc", "card_type": placement.type, "cores": soc.cores,
            "peak_flops_per_core": soc.flops_per_core(), "dram_bytes": soc.dram,
            "dram_bw_Bps": soc.dram_bw, "noc_bw_Bps": soc.noc_bw, "sram_bytes": soc.sram,
            "vtcm_per_core_bytes": soc.vtcm_per_core, "bar_bytes": soc.bar_size,
            "dma_bw_Bps": soc.dma_bw, "dma_setup_s": soc.dma_setup,
            "hop_latency_s": 0.0, "p2p": card_type.p2p,
            "p2p_key": f"card_types.{placement.type}.p2p",
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
                                    card=card_id, model=card_type.switch.model, chip=None,
                                    p2p=True, p2p_key=None)
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
                                hop_latency_s=0.0, p2p=True, p2p_key=None)
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
    add_fabric(spec, graph, cards)
    return Topology(spec, graph, cards, source, model)
