"""Topology specs to a networkx graph of sockets, root complexes, switches, SoCs and storage.

The PCIe hierarchy is a tree: every device has one parent (a switch or a root complex), every
root complex belongs to a socket, and sockets are joined by the inter-socket link. Each link is
full duplex, so it becomes two directed edges with independent capacities:

- ``up`` (child to parent) and ``down`` (parent to child) edges carry ``bw_Bps`` and ``latency_s``;
- ``socket`` edges join sockets; ``internal`` edges join a root complex to its socket (unbounded:
  host memory bandwidth is a resource of the socket, not of this edge);
- ``chip`` edges join the partitions of one switch chip (switches naming one ``chip``), both
  ways and unbounded: P2P between partitions crosses the chip, not the tree. Tree walks follow
  ``parent`` and never take them.

Node attributes are plain data (``kind``, ``parent``, ``depth``, ``socket`` and the numbers of
the device) so that later stages and notebooks can read them directly from ``topology.graph``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import networkx as nx

from ..accessors import view
from ..constants import DEFAULT_MODEL, LinkModel
from ..errors import TopologyError
from ..spec.topology import (
    PlatformSpec,
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
        defaults = {"dma_setup": model.dma_setup_s,
                    "concurrency_efficiency": model.concurrency_efficiency,
                    "duplex_efficiency": model.duplex_efficiency,
                    "host_duplex_efficiency": model.host_duplex_efficiency,
                    "socket_p2p_efficiency": model.socket_p2p_efficiency,
                    "collective_launch": model.collective_launch_s,
                    "collective_step": model.collective_step_s}
        self.transfer: TransferSpec = given.model_copy(update={
            key: value for key, value in defaults.items() if getattr(given, key) is None})
        """Transfer parameters with the link model's values where the file says nothing."""
        self.routes: dict[tuple[str, str, str, str | None], Route | BounceRoute] = {}
        """Routes computed so far (:func:`simtopo.topology.routing.route` memoizes here: the
        graph does not change once built, and routes are immutable)."""
        self.p2p_pairs: dict[tuple[str, str], bool] = {}
        """Whether a P2P route joins two devices, found so far
        (:func:`simtopo.topology.routing.p2p_possible`)."""
        self.rings: dict[tuple[str, ...], list[str] | None] = {}
        """Rings over the device fabric found so far, by the group in depth-first order
        (:func:`simtopo.topology.fabric.group_ring`)."""

    def derived(self, spec: TopologySpec | None = None,
                graph: nx.DiGraph | None = None) -> Topology:
        """This topology with another spec or graph: the same cards, source and link model, a
        fresh route cache (what-if changes and the speed-up band build these)."""
        return Topology(self.spec if spec is None else spec,
                        self.graph if graph is None else graph, self.cards, self.source,
                        self.model)

    @cached_property
    def without_fabric(self) -> Topology:
        """This topology without its device fabric (links and switches): P2P over the PCIe
        tree only (a plan's ``fabric: false``); itself when it has none."""
        fabric = [(u, v) for u, v, d in self.graph.edges(data=True) if d["direction"] == "fabric"]
        if not fabric:
            return self
        graph = self.graph.copy()
        graph.remove_edges_from(fabric)
        graph.remove_nodes_from([n for n, d in self.graph.nodes(data=True)
                                 if d["kind"] == "fabric_switch"])
        return self.derived(graph=graph)

    @cached_property
    def fingerprint(self) -> str:
        """A digest of what a simulation on this topology reads: the spec, the link model and
        the built graph (a what-if change of either is another fingerprint). Results
        remembered for a topology are keyed by it (:func:`simtopo.sim.setup.memo_for`)."""
        digest = hashlib.sha256(self.spec.model_dump_json().encode())
        digest.update(repr(self.model).encode())
        for node, data in sorted(self.graph.nodes(data=True)):
            digest.update(repr((node, sorted(data.items()))).encode())
        for u, v, data in sorted(self.graph.edges(data=True)):
            digest.update(repr((u, v, sorted(data.items()))).encode())
        return digest.hexdigest()

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

    def of_kind(self, kind: str) -> tuple[str, ...]:
        """Ids of the nodes of one kind (``soc``, ``switch``, ``socket``, ``root_complex``,
        ``storage``), in topology order (card by card)."""
        return tuple(n for n, data in self.graph.nodes(data=True) if data["kind"] == kind)

    socs = property(lambda self: self.of_kind("soc"), doc="SoC ids, card by card.")
    switches = property(lambda self: self.of_kind("switch"),
                        doc="Switch ids, server switches and on-card switches.")
    sockets = property(lambda self: self.of_kind("socket"), doc="CPU socket ids.")
    root_complexes = property(lambda self: self.of_kind("root_complex"),
                              doc="Root complex ids.")
    storage = property(lambda self: self.of_kind("storage"), doc="Storage device ids.")

    def node(self, node_id: str) -> dict[str, Any]:
        """Attributes of one node; a clear error for an unknown id."""
        if node_id not in self.graph:
            raise TopologyError(f"unknown device {node_id!r} in topology {self.name!r}"
                                f" (expected one of: {some_ids(self.graph.nodes)})")
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

    # -- views for notebooks (functions of later modules, imported on first use) -----------
    def route(self, src: str, dst: str, mode: str = "p2p",
              staging: str | None = None) -> Route | BounceRoute:
        """Route a transfer; see :func:`simtopo.topology.routing.route`."""
        return view("topology.routing:route")(self, src, dst, mode=mode, staging=staging)

    def path_matrix(self, devices: Sequence[str] | None = None) -> PathMatrix:
        """All-pairs path class, bottleneck and latency; see
        :func:`simtopo.topology.matrix.path_matrix`."""
        return view("topology.matrix:path_matrix")(self, devices)

    def checks(self) -> list[Finding]:
        """Platform checks before compiling; see
        :func:`simtopo.topology.checks.check_platform`."""
        return view("topology.checks:check_platform")(self)

    def draw(self) -> Figure:
        """A hierarchical drawing; see :func:`simtopo.report.draw.draw_topology`."""
        return view("report.draw:draw_topology")(self)

    def show(self, brief: bool = False) -> str:
        """The tree as text with link bandwidths; see :func:`simtopo.report.text.render_tree`."""
        return view("report.text:render_tree")(self, brief=brief)

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


def some_ids(ids: Iterable[str], limit: int = 8) -> str:
    """The first ``limit`` ids, comma-separated, with a count when there are more."""
    ids = list(ids)
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


# -- building -------------------------------------------------------------------------------


