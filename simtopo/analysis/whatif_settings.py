"""The settings of ``simtopo whatif``: built topologies, transfer overrides and SoC models that
differ from a variant's in one thing.

Continuous changes edit a copy of the built topology (a link class's bandwidth, host memory
bandwidth, the root complexes) or override the value in effect (the hand-off, the DMA set-up),
so they apply whether the value comes from the calibrated link model or is pinned by the
topology or experiment file. Discrete ones (Gen5 switch uplinks, one more switch) are
topologies built again from changed specs. Nothing depends on a file path but the topology's
own. Definitions: ``docs/whatif.md``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from ..constants import (
    DEFAULT_SOC_MODEL,
    MXFP6_EXPAND_OPS_PER_WEIGHT,
    MXFP6_SERIAL_EXPAND_OPS_PER_WEIGHT,
    SocModel,
)
from ..results.bands import in_effect, with_host
from ..results.result import VariantResult
from ..spec.experiment import Variant
from ..topology.build import link_rates
from ..topology.graph import Topology
from ..units import format_bandwidth, format_time
from ..workload.cost import onchip_bytes

LINK_CLASSES = {
    "uplink": "switch uplinks (switch to root complex)",
    "switch-link": "switch-to-switch links",
    "card-link": "card links (card to switch or root port)",
    "soc-link": "SoC links (on-card switch to SoC)",
    "socket-link": "socket link",
    "fabric-link": "device fabric links (NeuronLink, NVLink bridges)",
}
"""Link classes a topology can have (reported in this order): server switch to root complex,
server switch to server switch, card (its on-card switch, or a single-SoC card) to its server
switch or root port, on-card switch to SoC, socket to socket, device to device beside the
tree."""


@dataclass(frozen=True)
class Setting:
    """What a run is built from besides the variant."""

    topology: Topology
    transfer: dict[str, float] = field(default_factory=dict)
    soc_model: SocModel = DEFAULT_SOC_MODEL


@dataclass(frozen=True)
class Perturbation:
    """One change to the base setting; ``relative_change`` (of the parameter) is None for a
    discrete change."""

    key: str
    label: str
    changed: str
    setting: Setting
    relative_change: float | None = None


def run_setting(variant: Variant, setting: Setting) -> VariantResult:
    """Simulate ``variant`` in ``setting``."""
    from ..results.run import run_variant

    if setting.transfer:
        variant = replace(variant, transfer={**variant.transfer, **setting.transfer})
    return run_variant(variant, soc_model=setting.soc_model, topology=setting.topology)


# -- changed topologies --------------------------------------------------------------------

def with_root_complexes(topo: Topology, hop_s: float | None = None,
                        p2p: bool | None = None) -> Topology:
    """``topo`` with every root complex's hop latency and/or P2P flag set."""
    graph = topo.graph.copy()
    for rc in topo.root_complexes:
        if hop_s is not None:
            graph.nodes[rc]["hop_latency_s"] = hop_s
        if p2p is not None:
            graph.nodes[rc]["p2p"] = p2p
    return topo.derived(graph=graph)


def link_class(graph: nx.DiGraph, u: str, v: str) -> str | None:
    """The class of directed link ``u -> v`` (a key of LINK_CLASSES); None for storage and
    internal links."""
    data = graph.edges[u, v]
    if data["direction"] == "socket":
        return "socket-link"
    if data["direction"] == "fabric":
        return "fabric-link"
    if data["direction"] not in ("up", "down"):
        return None
    child, parent = (u, v) if data["direction"] == "up" else (v, u)
    kind, above = graph.nodes[child]["kind"], graph.nodes[parent]
    if kind == "switch" and graph.nodes[child]["card"] is None:
        return "uplink" if above["kind"] == "root_complex" else "switch-link"
    if kind == "switch":
        return "card-link"
    if kind == "soc":
        return "soc-link" if above["kind"] == "switch" and above["card"] is not None \
            else "card-link"
    return None


def _rates(rates: list[float], factor: float, count: int, what: str) -> str:
    low, high = min(rates), max(rates)
    what = what if count != 1 else what[:-1]
    if low == high:
        return f"{format_bandwidth(low)} -> {format_bandwidth(low * factor)}, {count} {what}"
    return f"x{factor:g}, {count} {what} of {format_bandwidth(low)} to {format_bandwidth(high)}"


# -- continuous ----------------------------------------------------------------------------

def bandwidth_perturbations(topo: Topology, step: float,
                            soc_model: SocModel = DEFAULT_SOC_MODEL) -> list[Perturbation]:
    """Each link class the topology has, and host memory, ``step`` faster (both directions)."""
    graph, factor = topo.graph, 1.0 + step
    members: dict[str, list[tuple[str, str]]] = {}
    for u, v in graph.edges:
        key = link_class(graph, u, v)
        if key is not None:
            members.setdefault(key, []).append((u, v))
    out = []
    for key in (k for k in LINK_CLASSES if k in members):
        scaled = graph.copy()
        for u, v in members[key]:
            scaled.edges[u, v]["bw_Bps"] *= factor
        rates = [graph.edges[e]["bw_Bps"] for e in members[key]]
        count = len({graph.edges[e]["link_id"] for e in members[key]})
        out.append(Perturbation(key, LINK_CLASSES[key],
                                _rates(rates, factor, count, "links"),
                                Setting(topo.derived(graph=scaled), soc_model=soc_model), step))
    scaled = graph.copy()
    for sock in topo.sockets:
        scaled.nodes[sock]["memory_bw_Bps"] *= factor
    rates = [graph.nodes[s]["memory_bw_Bps"] for s in topo.sockets]
    out.append(Perturbation("host-memory", "host memory bandwidth",
                            _rates(rates, factor, len(rates), "sockets"),
                            Setting(topo.derived(graph=scaled), soc_model=soc_model), step))
    return out


def continuous_perturbations(topo: Topology, variant: Variant, soc_model: SocModel,
                             step: float) -> tuple[list[Perturbation], list[str]]:
    """Bandwidths up by ``step``; hand-off and DMA set-up down by ``step``; DRAM efficiency up
    by ``step`` (at most 1). Returns the perturbations and notes on those left out."""
    out, notes = bandwidth_perturbations(topo, step, soc_model), []
    base = Setting(topo, soc_model=soc_model)
    handoff = topo.handoff_latency_s
    out.append(Perturbation("handoff", "host hand-off",
                            f"{format_time(handoff)} -> {format_time(handoff * (1 - step))}",
                            replace(base, topology=with_host(
                                topo, handoff_latency=handoff * (1 - step))),
                            -step))
    dma = in_effect(topo, variant, "dma_setup")
    if dma > 0:
        out.append(Perturbation("dma-setup", "DMA set-up",
                                f"{format_time(dma)} -> {format_time(dma * (1 - step))}",
                                replace(base, transfer={"dma_setup": dma * (1 - step)}), -step))
    else:
        notes.append("DMA set-up: 0 in this setting, nothing to lower")
    eff = soc_model.dram_efficiency
    new = min(eff * (1 + step), 1.0)
    if new > eff:
        out.append(Perturbation("dram-efficiency", "DRAM efficiency", f"{eff:.4g} -> {new:.4g}",
                                replace(base, soc_model=replace(soc_model, dram_efficiency=new)),
                                (new - eff) / eff))
    else:
        notes.append(f"DRAM efficiency: already {eff:g} (at most 1)")
    return out, notes


# -- discrete ------------------------------------------------------------------------------

def mxfp6_other_form(topo: Topology, variant: Variant,
                     soc_model: SocModel) -> Perturbation | None:
    """An mxfp6 variant with the expansion's other form (in series with the DRAM stream if
    the model overlaps them, and the other way round), at that form's own fit: the one
    calibration pair cannot tell the two apart (docs/validation.md)."""
    if variant.workload.precision != "mxfp6":
        return None
    serial = soc_model.mxfp6_overlap
    x = MXFP6_SERIAL_EXPAND_OPS_PER_WEIGHT if serial else MXFP6_EXPAND_OPS_PER_WEIGHT
    now, other = ("overlapped", "in series") if serial else ("in series", "overlapped")
    return Perturbation("mxfp6-form", f"mxfp6 expansion {other}",
                        f"{now} with the DRAM stream, {soc_model.mxfp6_expand_ops_per_weight:.4g}"
                        f" ops/weight -> {other}, {x:.4g} (its own fit)",
                        Setting(topo, soc_model=replace(
                            soc_model, mxfp6_overlap=not serial,
                            mxfp6_expand_ops_per_weight=x)))


def onchip_off(topo: Topology, soc_model: SocModel) -> Perturbation | str:
    """The SoC model without on-chip memory (every activation through DRAM, nothing fused):
    how much the prediction rests on the on-chip rules."""
    if soc_model.onchip_fraction <= 0 or not any(
            onchip_bytes(topo.node(s), 1) for s in topo.socs):
        return "on-chip memory: none in this setting, nothing to turn off"
    return Perturbation("onchip-off", "no on-chip memory",
                        "activations in VTCM, fusion -> every activation through DRAM",
                        Setting(topo, soc_model=replace(soc_model, onchip_fraction=0.0)))


def gen5_uplinks(topo: Topology, soc_model: SocModel) -> Perturbation | str:
    """Every server switch uplink to a root complex below Gen5 trained at Gen5 (same lanes);
    a note when there is none."""
    spec, graph = topo.spec, topo.graph.copy()
    switches = []
    changed: dict[str, list[str]] = {}
    for sw in spec.switches:
        link = sw.uplink
        below_rc = topo.node(sw.parent)["kind"] == "root_complex"
        if below_rc and link.gen is not None and link.gen < 5:
            old = topo.graph.edges[sw.id, sw.parent]
            link = link.model_copy(update={"gen": 5})
            up, down = link_rates(link, spec.pcie, topo.model)
            graph.edges[sw.id, sw.parent].update(bw_Bps=up, gen=5, link=link.label())
            graph.edges[sw.parent, sw.id].update(bw_Bps=down, gen=5, link=link.label())
            what = (f"{format_bandwidth(old['bw_Bps'])} -> {format_bandwidth(up)} "
                    f"({old['link']} -> {link.label()})")
            changed.setdefault(what, []).append(sw.id)
        switches.append(sw.model_copy(update={"uplink": link}))
    if not changed:
        return "Gen5 uplinks: no server switch uplink to a root complex below Gen5"
    new = topo.derived(spec.model_copy(update={"switches": switches}), graph)
    return Perturbation("gen5-uplinks", "Gen5 switch uplinks",
                        "; ".join(f"{', '.join(ids)}: {what}" for what, ids in changed.items()),
                        Setting(new, soc_model=soc_model))


def busiest_switch(topo: Topology, devices: Collection[str],
                   uplink_bytes: Mapping[str, float]) -> str | None:
    """The server switch with two or more cards directly below that holds the most of
    ``devices``; ties go to the uplink that moved more bytes, then to topology order."""
    best: tuple[int, float, int] | None = None
    chosen = None
    for index, sw in enumerate(topo.spec.switches):
        cards = [c for c in topo.cards.values() if c.parent == sw.id]
        if len(cards) < 2:
            continue
        score = (sum(s in devices for c in cards for s in c.socs),
                 uplink_bytes.get(sw.id, 0.0), -index)
        if best is None or score > best:
            best, chosen = score, sw.id
    return chosen


def extra_switch(topo: Topology, path: Path, base: VariantResult,
                 soc_model: SocModel) -> Perturbation | str:
    """One more server switch like the busiest (same uplink, same parent), and that switch's
    cards split over the two: the later half of the cards holding the variant's SoCs, and the
    later half of the others, move (at least one card). A note when no switch qualifies.

    The new topology is a file that ``extends:`` the variant's topology with new ``switches``
    and ``cards`` lists (lists replace in the merge; the cards keep their ids), read from a
    temporary folder; its source is set back to the original's."""
    from ..topology.files import load_topology

    devices = {d for stages in base.plan.replicas for stage in stages for d in stage.devices}
    moved_bytes: dict[str, float] = {}
    for row in base.links:
        for end in row["link"].split("->"):
            moved_bytes[end] = moved_bytes.get(end, 0.0) + row["bytes"]
    name = busiest_switch(topo, devices, moved_bytes)
    if name is None:
        return "one more switch: no server switch with two or more cards to split"
    spec = topo.spec
    sw = next(s for s in spec.switches if s.id == name)
    new_id = f"{name}-b"
    while new_id in topo.graph:
        new_id += "b"
    cards = [c for c in topo.cards.values() if c.parent == name]
    used = [c.id for c in cards if any(s in devices for s in c.socs)]
    idle = [c.id for c in cards if c.id not in used]
    moving = used[len(used) - len(used) // 2:] + idle[len(idle) - len(idle) // 2:]
    moving = moving or [cards[-1].id]
    placements: list[dict[str, Any]] = []
    numbering: dict[str, int] = {}
    for placement in spec.cards:
        entry = placement.model_dump(exclude_none=True)
        start = numbering.get(placement.prefix, 0)
        numbering[placement.prefix] = start + placement.count
        if placement.parent != name:
            placements.append(entry)
            continue
        # runs of cards with one parent, in order, so that every card keeps its id
        runs: list[tuple[str, int]] = []
        for n in range(start, start + placement.count):
            parent = new_id if f"{placement.prefix}{n}" in moving else name
            if runs and runs[-1][0] == parent:
                runs[-1] = (parent, runs[-1][1] + 1)
            else:
                runs.append((parent, 1))
        placements += [{**entry, "parent": parent, "count": count} for parent, count in runs]
    data = {"extends": str(Path(path).resolve()),
            "switches": [s.model_dump(exclude_none=True) for s in spec.switches]
            + [{**sw.model_dump(exclude_none=True), "id": new_id}],
            "cards": placements}
    with tempfile.TemporaryDirectory(prefix="simtopo-whatif-") as folder:
        file = Path(folder) / "split.yaml"
        file.write_text(yaml.safe_dump(data, sort_keys=False))
        built = load_topology(file, topo.model)
    new = Topology(built.spec, built.graph, built.cards, topo.source, built.model)
    label = sw.uplink.label() if sw.uplink.gen is not None else format_bandwidth(
        topo.graph.edges[name, sw.parent]["bw_Bps"])
    return Perturbation("extra-switch", "one more switch",
                        f"{', '.join(moving)}: {name} -> new {new_id} ({label} to {sw.parent})",
                        Setting(new, soc_model=soc_model))
