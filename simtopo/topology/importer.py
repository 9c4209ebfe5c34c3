"""A topology file from a real server's ``lspci -tv`` (and ``lspci -vv``): ``simtopo topo
import``.

What lspci shows becomes the tree, and what it cannot show is written as a marked assumption
for the user to edit:

- each root bus is a root complex (``rc0``, ``rc1``, ...), spread in order over ``sockets``
  sockets (lspci does not say which socket a root bus belongs to: inferred);
- a bridge below a root port whose children are bridges is a PCIe switch (its upstream port
  and downstream ports; ``sw0``, ``sw1``, ...); a switch with no modelled device below it is
  left out;
- a function whose name matches a ``--card`` pattern is a SoC of that card type; a switch whose
  functions below are exactly one card of a type with an on-card switch (an AI 100 Ultra:
  four SoCs behind its switch) is that card; NVMe controllers are storage; anything else
  (NICs, chipset functions) is listed as not modelled; SR-IOV virtual functions (read from
  ``lspci -vv``) are slices of their device, left out and counted;
- every link is the generation and width ``lspci -vv`` reports for the function at its lower
  end (``LnkSta``); without it, Gen4 x16 is assumed and marked so. A card's links are its
  type's: where lspci reports another rate, the file says so.

The host's cores, memory and memory bandwidth, and the platform's P2P settings, are not in
lspci: they are written as assumptions to replace.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..spec.topology import CardTypeSpec
from .lspci import PciNode

ASSUMED_LINK = (4, 16)
"""The link written where ``lspci -vv`` gives none (assumption)."""
ASSUMED_DRIVE_LINK = (4, 4)
"""A drive's link where ``lspci -vv`` gives none (assumption: an NVMe drive's usual x4)."""

LANE_RATES_BPS = {1: (0.25e9,), 2: (0.5e9,), 3: (8e9 * 128 / 130 / 8,),
                  4: (16e9 * 128 / 130 / 8,), 5: (32e9 * 128 / 130 / 8,),
                  6: (64e9 * 242 / 256 / 8, 64e9 * 128 / 130 / 8)}
"""A lane's rate after line coding, by PCIe generation, as hwloc's ``pci_link_speed`` gives
it (8b/10b to Gen2, 128b/130b to Gen5; at Gen6 FLIT's 242/256, or 128/130 as hwloc before
2.8 and its sysfs reader compute it)."""

NVME = re.compile(r"non-volatile memory controller|nvme", re.IGNORECASE)


@dataclass
class Found:
    """What the walk found: switches, card placements, storage, and what it skipped."""

    switches: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(id, parent, uplink text, comment)."""
    cards: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, parent, comment)."""
    storage: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(id, parent, link text, comment)."""
    skipped: list[str] = field(default_factory=list)
    virtual: dict[str, int] = field(default_factory=dict)
    """SR-IOV virtual functions left out, counted by their physical function."""
    fabric: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(device, device or fabric switch, bandwidth text, comment)."""
    fabric_switches: list[tuple[str, str]] = field(default_factory=list)
    """(id, comment)."""


Links = dict[str, tuple[int, int] | float]
"""Each function's link: (PCIe generation, lanes), or a rate in bytes/s where only that is
known (hwloc's ``pci_link_speed``)."""


@dataclass(frozen=True)
class SocketFacts:
    """What the input says of a socket (None: nothing)."""

    cores: int | None = None
    memory_bytes: float | None = None
    note: str = ""


def _fits(rate: float) -> list[tuple[int, int]]:
    """(generation, lanes) whose rate after line coding is ``rate`` (within 1%)."""
    return sorted({(gen, lanes) for gen, rates in LANE_RATES_BPS.items() for per_lane in rates
                   for lanes in (1, 2, 4, 8, 16, 32)
                   if abs(per_lane * lanes - rate) <= 0.01 * rate})


def _link(address: str, links: Links,
          assumed: tuple[int, int] = ASSUMED_LINK) -> tuple[str, str]:
    """A link's YAML and where it came from."""
    read = links.get(address)
    if isinstance(read, tuple):
        gen, lanes = read
        return f"{{gen: {gen}, lanes: {lanes}}}", f"read: LnkSta of {address}"
    if read is not None:  # a rate: the generation and width that give it (the width nearest
        # the usual one, then the newest)
        fits = _fits(read)
        if not fits:
            raise ConfigError(f"{address}: a link of {read / 1e9:.6g} GB/s is no PCIe "
                              "generation and width's rate")
        gen, lanes = min(fits, key=lambda f: (f[1] > 16, abs(math.log2(f[1] / assumed[1])),
                                              -f[0]))
        others = ", ".join(f"Gen{g} x{n}" for g, n in fits if (g, n) != (gen, lanes))
        return (f"{{gen: {gen}, lanes: {lanes}}}",
                f"inferred: {read / 1e9:.6g} GB/s at {address}"
                + (f" (or {others}: the same rate)" if others else ""))
    gen, lanes = assumed
    return f"{{gen: {gen}, lanes: {lanes}}}", f"assumption: no link rate given for {address}"


class _Walk:
    def __init__(self, patterns: list[tuple[re.Pattern[str], str]],
                 types: dict[str, CardTypeSpec], links: Links,
                 virtual: dict[str, str]) -> None:
        self.patterns, self.types, self.links = patterns, types, links
        self.virtual = virtual
        self.found = Found()
        for pf in virtual.values():  # all of them: also those below a switch taken as a card
            self.found.virtual[pf] = self.found.virtual.get(pf, 0) + 1

    def card_type(self, node: PciNode) -> str | None:
        return next((t for p, t in self.patterns if p.search(node.name)), None)

    def endpoints(self, node: PciNode) -> list[PciNode]:
        """The devices below ``node``: their first functions (a GPU's audio function, a
        NIC's second port are the same device)."""
        return [n for n in node.walk() if not n.is_bridge and not n.is_root
                and n.address.endswith(".0") and n.address not in self.virtual]

    def place(self, node: PciNode, parent: str) -> None:
        """Place what hangs from bridge or root bus ``node`` under topology node ``parent``."""
        for child in node.children:
            if child.is_bridge and node.is_root:  # a root port: its devices hang off the rc
                self.place(child, parent)
            elif child.is_bridge and any(c.is_bridge for c in child.children):
                self.switch(child, parent)
            elif child.is_bridge:  # a downstream port, or a bridge of one device
                self.place(child, parent)
            else:
                self.endpoint(child, parent)

    def switch(self, node: PciNode, parent: str) -> None:
        below = self.endpoints(node)
        kinds = {self.card_type(e) for e in below}
        if len(kinds) == 1 and None not in kinds:
            (kind,) = kinds
            spec = self.types[kind]
            if spec.switch is not None and len(below) == spec.socs:
                read = self.mismatch(self.links.get(node.address), spec, node.address)
                note = f"{len(below)} SoCs behind the switch at {node.address}: one card " \
                       f"(inferred){read}"
                self.found.cards.append((kind, parent, note))
                return
        if not any(self.card_type(e) or NVME.search(e.name) for e in below):
            self.found.skipped.append(f"{node.address} switch with nothing modelled below")
            return
        ident = f"sw{len(self.found.switches)}"
        uplink, source = _link(node.address, self.links)
        self.found.switches.append((ident, parent, uplink,
                                    f"{source}; upstream port {node.address}"))
        for port in node.children:
            self.place(port, ident)

    def mismatch(self, read: tuple[int, int] | float | None, spec: CardTypeSpec,
                 where: str) -> str:
        link = spec.host_link
        if read is None or (link.gen, link.lanes) == read or (
                isinstance(read, float) and (link.gen, link.lanes) in _fits(read)):
            return ""
        if isinstance(read, float):
            return (f"; its link runs at {read / 1e9:.6g} GB/s at {where}, not the card type's "
                    f"{link.label()}")
        return (f"; lspci reports Gen{read[0]} x{read[1]} at {where}, the card type says "
                f"{link.label()}")

    def endpoint(self, node: PciNode, parent: str) -> None:
        if node.address in self.virtual:  # counted in __init__
            return
        kind = self.card_type(node) if node.address.endswith(".0") else None
        if kind is not None:
            spec = self.types[kind]
            if spec.socs != 1:
                raise ConfigError(f"{node.address} ({node.name}) matches card type {kind!r} "
                                  f"of {spec.socs} SoCs, but stands alone: map it to a card "
                                  "type of one SoC")
            note = f"read: {node.address} {node.name}" + self.mismatch(
                self.links.get(node.address), spec, node.address)
            self.found.cards.append((kind, parent, note))
        elif NVME.search(node.name) and node.address.endswith(".0"):  # one drive a device
            link, source = _link(node.address, self.links, ASSUMED_DRIVE_LINK)
            ident = f"nvme{len(self.found.storage)}"
            self.found.storage.append((ident, parent, link,
                                       f"{source}; {node.address} {node.name}"))
        else:
            self.found.skipped.append(f"{node.address} {node.name or '(no name)'}")


def import_pci(roots: list[PciNode], links: Links, cards: list[tuple[str, str]],
               types: dict[str, CardTypeSpec], includes: list[str], name: str,
               sockets: int = 1, source: str = "lspci", socket_of: list[int] | None = None,
               facts: list[SocketFacts] | None = None,
               socket_notes: list[str] | None = None,
               virtual: dict[str, str] | None = None) -> str:
    """The topology YAML of ``roots`` (module docstring): ``cards`` maps name patterns
    (regular expressions) to card types of ``types``, which ``includes`` define. The root
    buses go to ``sockets`` sockets in order, or as ``socket_of`` says (read, with ``facts``
    of each socket, and ``socket_notes`` where a root bus's socket was not read);
    ``virtual``: SR-IOV virtual functions to leave out, with their physical functions."""
    patterns = []
    for pattern, kind in cards:
        if kind not in types:
            raise ConfigError(f"--card {pattern}={kind}: no card type {kind!r} in the included "
                              f"files (known: {', '.join(sorted(types)) or 'none'})")
        try:
            patterns.append((re.compile(pattern, re.IGNORECASE), kind))
        except re.error as err:
            raise ConfigError(f"--card {pattern}={kind}: not a regular expression ({err})") \
                from None
    if socket_of is None and not 1 <= sockets <= len(roots):
        raise ConfigError(f"--sockets {sockets}: expected 1 to {len(roots)} (the root buses)")
    walk = _Walk(patterns, types, links, virtual or {})
    rcs = []
    for k, root in enumerate(roots):
        where = socket_of[k] if socket_of is not None else k * sockets // len(roots)
        note = f"read: root bus {root.address}"
        if socket_notes is not None and socket_notes[k]:
            note += f"; {socket_notes[k]}"
        rcs.append((f"rc{k}", f"cpu{where}", note))
        walk.place(root, f"rc{k}")
    found = walk.found
    if not found.cards:
        seen = sorted({n.name for r in roots for n in r.walk() if n.name})
        raise ConfigError(f"{source}: no device matches a --card pattern, and a topology needs "
                          f"a SoC (names seen: {'; '.join(seen[:6]) or 'none'})")
    return topology_yaml(name, source, includes, rcs, sockets, found, facts)


def check_imported(text: str, types: dict[str, CardTypeSpec], source: str) -> None:
    """Build the topology an import wrote (its includes' card types given), so that a file
    that would not load is refused before it is written."""
    import yaml

    from ..io.documents import Document, validate_document
    from ..spec.topology import TopologySpec
    from .build import build_topology

    data = yaml.safe_load(text)
    data.pop("include", None)
    spec = validate_document(Document(data, f"{source} (imported)"), TopologySpec)
    build_topology(spec, types, source)


def _size(size_bytes: float) -> str:
    """Bytes as the file writes them: GiB where they are whole, else GB."""
    gib = size_bytes / 2**30
    return f"{gib:g}GiB" if gib == int(gib) else f"{size_bytes / 1e9:.6g}GB"


def topology_yaml(name: str, source: str, includes: list[str],
                  rcs: list[tuple[str, str, str]], sockets: int, found: Found,
                  facts: list[SocketFacts] | None = None) -> str:
    """The topology file of what an import found: root complexes ``rcs`` (id, socket, where
    they came from) on ``sockets`` sockets, and ``found``'s switches, cards, drives and
    fabric links, every value with where it came from."""
    out = [f"# {name}: imported from {source} by simtopo topo import.",
           "# 'read:' marks what the input showed, 'inferred:' what its shape implies, and",
           "# 'assumption:' what it cannot show: replace those with the machine's figures.",
           f"name: {json.dumps(name)}",
           f"description: {json.dumps('imported from ' + Path(source).name)}",
           f"include: [{', '.join(json.dumps(i) for i in includes)}]", "",
           "platform: {}  # assumption: the defaults (ACS off, no P2P through a root complex "
           "or across sockets); set them from the BIOS", "",
           "host:"]
    if sockets > 1:
        out.append("  socket_link: {bandwidth: 60GB/s, latency: 150ns}  # assumption")
    out.append("  sockets:")
    for s in range(sockets):
        mine = [f"{{id: {rc}}}" for rc, cpu, _ in rcs if cpu == f"cpu{s}"]
        where = "; ".join(note for _, cpu, note in rcs if cpu == f"cpu{s}")
        known = facts[s] if facts is not None else SocketFacts()
        out += [f"    - id: cpu{s}",
                f"      cores: {known.cores}  # read: {known.note}" if known.cores else
                "      cores: 32              # assumption: not in the input",
                f"      memory: {_size(known.memory_bytes)}  # read: {known.note}"
                if known.memory_bytes else
                "      memory: 512GB          # assumption: not in the input",
                "      memory_bw: 200GB/s     # assumption: not in the input",
                f"      root_complexes: [{', '.join(mine)}]  # {where}"
                + ("; inferred: their socket" if sockets > 1 and facts is None else "")]
    if found.switches:
        out += ["", "switches:"]
        out += [f"  - {{id: {i}, parent: {p}, uplink: {u}}}  # {c}"
                for i, p, u, c in found.switches]
    out += ["", "cards:"]
    out += [f"  - {{type: {t}, parent: {p}}}  # {c}" for t, p, c in found.cards]
    if found.storage:
        out += ["", "storage:"]
        for i, p, link, c in found.storage:
            out += [f"  - id: {i}  # {c}", "    kind: nvme", f"    parent: {p}",
                    f"    link: {link}",
                    "    read_bw: 6.5GB/s   # assumption: a datacenter NVMe drive; edit",
                    "    write_bw: 3.5GB/s  # assumption: as read_bw",
                    "    latency: 90us      # assumption: as read_bw"]
    if found.fabric_switches:
        out += ["", "fabric_switches:"]
        out += [f"  - {{id: {i}, kind: nvswitch}}  # {c}; assumption: no hop latency"
                for i, c in found.fabric_switches]
    if found.fabric:
        switches = {i for i, _ in found.fabric_switches}
        out += ["", "fabric:"]
        out += [f"  - {{between: [{a}, {b}], bandwidth: {bw}, latency: "
                f"{'500ns' if b in switches else '1us'}, kind: nvlink}}  # {c}; assumption: the "
                f"latency{' (half of 1 us each side of the switch)' if b in switches else ''}"
                for a, b, bw, c in found.fabric]
    if found.skipped:
        out += ["", "# not modelled:"] + [f"#   {s}" for s in found.skipped]
    if found.virtual:
        out += ["", "# SR-IOV virtual functions left out (slices of their device, read from "
                "lspci -vv):"] + [f"#   {n} of {pf}" for pf, n in sorted(found.virtual.items())]
    return "\n".join(out) + "\n"
