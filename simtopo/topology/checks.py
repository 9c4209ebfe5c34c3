"""Platform checks a user wants before compiling a model across SoCs.

- BAR space: every AI 100 SoC needs a 2 GiB BAR (region 4); the host must map them all.
- ACS: a switch with ACS on turns P2P into a hairpin through the root port, and Qualcomm's
  multi-device partitioning (MDP) P2P needs ACS off.
- P2P domains: the largest group of SoCs that can all reach each other peer-to-peer, against
  the platform's tensor-slicing limit (naming the card types and switches without P2P).
- Uplinks: how many times a switch's downstream bandwidth oversubscribes its uplink (what
  host-routed traffic and weight loading will feel).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..units import format_bandwidth, format_bytes
from .fabric import group_ring
from .graph import Topology
from .matrix import PATH_CLASSES, path_matrix

Level = Literal["ok", "info", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One result of a platform check."""

    level: Level
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.level:<7} {self.check}: {self.message}"


def _names(ids: list[str], limit: int = 6) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def check_bar_space(topo: Topology) -> Finding:
    """BAR space the SoCs need against what the host declares."""
    bars = [topo.graph.nodes[s]["bar_bytes"] for s in topo.socs]
    need = float(sum(bars))
    have = topo.platform.bar_space
    what = f"{len(bars)} SoCs need {format_bytes(need)} of BAR space"
    if len(set(bars)) == 1 and bars:
        what += f" ({format_bytes(bars[0])} each)"
    if have is None:
        return Finding("warning", "bar-space",
                       f"{what}; the host declares none (set platform.bar_space)")
    if need > have:
        return Finding("error", "bar-space", f"{what}; the host declares only "
                       f"{format_bytes(have)}: SoCs beyond it will not enumerate")
    return Finding("ok", "bar-space", f"{what}; the host declares {format_bytes(have)}")


def check_acs(topo: Topology) -> Finding:
    """Switches with ACS on, which hairpin P2P through the root complex."""
    nodes = topo.graph.nodes
    on = [s for s in topo.switches if nodes[s]["acs"]]
    if not on:
        n = len(topo.switches)
        which = "the only switch" if n == 1 else f"all {n} switches"
        return Finding("ok", "acs", f"ACS off on {which}: P2P stays below the lowest common "
                       "switch")
    rcs = sorted({topo.ancestors(s)[-2] for s in on})
    return Finding("warning", "acs", f"ACS on at {_names(on)}: P2P between their ports "
                   f"hairpins through root complex {', '.join(rcs)}, loading the uplinks both "
                   "ways; Qualcomm MDP P2P needs ACS off")


def _fabric_links(topo: Topology) -> int:
    return sum(1 for _, _, d in topo.graph.edges(data=True) if d["direction"] == "fabric") // 2


def check_p2p_domains(topo: Topology) -> Finding:
    """The largest group of SoCs joined by P2P, against the platform's tensor-slicing limit."""
    if not topo.socs:
        return Finding("info", "p2p-domains", "no SoCs")
    matrix = path_matrix(topo)
    # a domain is the SoCs that reach exactly the same SoCs: each can reach all the others
    # (a row holds its own column), and where "reaches by P2P" is an equivalence (on a tree,
    # decided by the lowest common ancestor and per-root-complex flags) the domains are its
    # classes; a partitioned chip (a crossing between two subtrees that otherwise meet at a
    # root complex without P2P) can break transitivity, and then a domain is a group that
    # surely can, not always the largest one
    # over the tree alone: fabric links join pairs, not domains (reaching by them is not
    # transitive), and the fabric rings are reported beside
    tree = path_matrix(topo.without_fabric) if _fabric_links(topo) else matrix
    linked = tree.path_class != PATH_CLASSES.index("host")
    _, counts = np.unique(linked, axis=0, return_counts=True)
    sizes = sorted(counts.tolist(), reverse=True)
    largest, limit = sizes[0], topo.platform.max_p2p_group
    nodes = topo.graph.nodes
    off = sorted({nodes[s]["p2p_key"] for s in topo.socs if not nodes[s]["p2p"]}) + [
        nodes[s]["p2p_key"] for s in topo.switches if not nodes[s]["p2p"]]
    why = f"; P2P off by {_names(off, 4)}" if off else ""
    text = (f"{len(sizes)} P2P domain{'s' if len(sizes) > 1 else ''} "
            f"(sizes {_names([str(k) for k in sizes], 8)}{why})")
    if fabric := _fabric_links(topo):
        if group_ring(topo, list(topo.socs)) is not None:
            largest = len(topo.socs)  # a tensor-sliced group steps around the ring
            text += (f" over the tree; a device fabric of {fabric} links joins all "
                     f"{largest} SoCs in one ring")
        else:
            text += f" over the tree; a device fabric of {fabric} links (no ring through all)"
    acs = [s for s in topo.switches if topo.graph.nodes[s]["acs"] and topo.children(s)]
    if acs:
        return Finding("warning", "p2p-domains", f"{text}, counting hairpins through ACS-on "
                       f"switches ({_names(acs, 3)}), which Qualcomm MDP P2P does not allow: "
                       "disable ACS for a usable P2P group")
    if limit is None:
        return Finding("info", "p2p-domains", f"{text}; the platform declares no tensor-slicing "
                       "limit over P2P (platform.max_p2p_group)")
    if largest < limit:
        return Finding("info", "p2p-domains", f"{text}: tensor slicing over P2P reaches at most "
                       f"{largest} SoCs here, below the platform limit of {limit}")
    return Finding("ok", "p2p-domains", f"{text}: a tensor-sliced group of up to {limit} SoCs "
                   "(the platform limit) can use P2P")


def check_uplinks(topo: Topology) -> list[Finding]:
    """Downstream bandwidth over uplink bandwidth, per switch (grouped when identical)."""
    graph = topo.graph
    groups: dict[str, list[str]] = defaultdict(list)
    for sw in topo.switches:
        parent = graph.nodes[sw]["parent"]
        uplink = graph.edges[sw, parent]
        children = topo.children(sw)
        if not children:
            continue
        down = [graph.edges[sw, c] for c in children]
        total = sum(e["bw_Bps"] for e in down)
        labels = sorted({e["link"] for e in down})
        ratio = total / uplink["bw_Bps"]
        key = (f"{len(children)} x {'/'.join(labels)} ({format_bandwidth(total)}) behind "
               f"{uplink['link']} ({format_bandwidth(uplink['bw_Bps'])}): "
               f"{ratio:.3g}:1 toward the host")
        groups[key].append(sw)
    return [Finding("info", "uplink", f"{_names(ids, 3)}: {key}") for key, ids in groups.items()]


def check_platform(topo: Topology) -> list[Finding]:
    """Run every platform check, in a fixed order."""
    return [check_bar_space(topo), check_acs(topo), check_p2p_domains(topo),
            *check_uplinks(topo)]
