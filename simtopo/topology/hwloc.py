"""hwloc's XML (``lstopo --of xml``) read into the PCI tree of :mod:`simtopo.topology.lspci`,
with what it says of the sockets.

hwloc 2 nests a machine's objects: ``Package`` (a socket) holds its ``NUMANode`` memory
(``local_memory``, bytes), its cores (``Core``) and, as I/O children, the host bridges of its
PCI buses (``Bridge`` with ``bridge_type="0-1"`` and ``bridge_pci="0000:[00-0f]"``), below them
PCI bridges (``bridge_type="1-1"``, ``pci_busid``, ``bridge_pci``) and devices (``PCIDev``,
named by their ``PCIVendor`` and ``PCIDevice`` infos). ``pci_link_speed`` is a link's rate in
GB/s after line coding, without its generation and width (the importer infers them). A host
bridge hwloc places under no package (no locality known) goes to the first socket (inferred).

Documents declaring entities are refused (their expansion can be made to exhaust memory), and
so is anything that is not an hwloc topology, naming what was expected.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..errors import ConfigError
from .importer import Links, SocketFacts
from .lspci import PciNode

MAX_XML_BYTES = 64 << 20
"""The largest hwloc XML read (a large machine's is a few megabytes)."""

_BUS = re.compile(r"^([0-9a-f]{4,}):\[([0-9a-f]{2})-([0-9a-f]{2})\]$", re.IGNORECASE)
_ADDRESS = re.compile(r"^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", re.IGNORECASE)


def _number(obj: ET.Element, key: str, source: str) -> float:
    text = obj.get(key, "0")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e18:
        raise ConfigError(f"{source}: {obj.get('type')} {key}={text!r} (expected a number)")
    return value


def _name(obj: ET.Element) -> str:
    infos = {i.get("name"): i.get("value", "") for i in obj.findall("info")}
    named = " ".join(v for v in (infos.get("PCIVendor"), infos.get("PCIDevice")) if v)
    if named:
        return named
    ids = re.search(r"\[([0-9a-f]{4}:[0-9a-f]{4})\]", obj.get("pci_type", ""), re.IGNORECASE)
    return obj.get("name") or (f"PCI device {ids[1]}" if ids else "")


def _children(obj: ET.Element, source: str) -> list[PciNode]:
    out = []
    for child in obj.findall("object"):
        kind = child.get("type")
        if kind not in ("Bridge", "PCIDev"):
            continue
        address = (child.get("pci_busid") or "").lower()
        if not _ADDRESS.match(address):
            raise ConfigError(f"{source}: a {kind} with pci_busid {address!r} (expected "
                              "'0000:03:00.0')")
        node = PciNode(address, _name(child))
        if kind == "Bridge":
            bus = _BUS.match(child.get("bridge_pci", ""))
            if bus is None:
                raise ConfigError(f"{source}: bridge {address} has bridge_pci "
                                  f"{child.get('bridge_pci')!r} (expected '0000:[01-05]')")
            node.secondary = bus[2].lower()
            node.children = _children(child, source)
        out.append(node)
    return out


def parse_hwloc(text: str, source: str = "hwloc XML"
                ) -> tuple[list[PciNode], Links, list[int], list[SocketFacts], list[str]]:
    """(root buses, link rates, each root bus's socket, each socket's facts, and for each
    root bus what was inferred of its socket ('' where hwloc places it in a package))."""
    if len(text) > MAX_XML_BYTES:
        raise ConfigError(f"{source}: {len(text):,} bytes; hwloc XML of at most "
                          f"{MAX_XML_BYTES:,} is read")
    if "<!ENTITY" in text:
        raise ConfigError(f"{source}: declares XML entities; hwloc XML has none (refused: "
                          "their expansion can exhaust memory)")
    try:
        top = ET.fromstring(text)
    except ET.ParseError as err:
        raise ConfigError(f"{source}: not XML ({err})") from None
    if top.tag != "topology":
        raise ConfigError(f"{source}: not hwloc XML (its root is <{top.tag}>, expected "
                          "<topology>, as 'lstopo --of xml' writes)")
    packages = [o for o in top.iter("object") if o.get("type") == "Package"]
    facts = []
    for k, package in enumerate(packages):
        memory = sum(_number(n, "local_memory", source) for n in package.iter("object")
                     if n.get("type") == "NUMANode")
        cores = sum(1 for n in package.iter("object") if n.get("type") == "Core")
        facts.append(SocketFacts(cores or None, memory or None,
                                 f"hwloc Package {package.get('os_index', k)}"))
    owner = {id(b): k for k, p in enumerate(packages) for b in p.iter("object")}
    roots, socket_of, notes, links = [], [], [], {}
    for bridge in top.iter("object"):
        if bridge.get("type") != "Bridge" or not bridge.get("bridge_type", "").startswith("0-"):
            continue
        bus = _BUS.match(bridge.get("bridge_pci", ""))
        if bus is None:
            raise ConfigError(f"{source}: a host bridge with bridge_pci "
                              f"{bridge.get('bridge_pci')!r} (expected '0000:[00-0f]')")
        root = PciNode(f"{bus[1]}:{bus[2]}".lower(), secondary=bus[2].lower(),
                       children=_children(bridge, source))
        roots.append(root)
        socket_of.append(owner.get(id(bridge), 0))
        notes.append("" if id(bridge) in owner else "inferred: the first socket (hwloc "
                     "places its host bridge in no package)")
        for obj in bridge.iter("object"):
            speed = _number(obj, "pci_link_speed", source)
            if speed > 0 and obj.get("pci_busid"):
                links[obj.get("pci_busid", "").lower()] = speed * 1e9
    if not roots:
        raise ConfigError(f"{source}: no host bridge (a Bridge object with bridge_type "
                          "'0-1'): was lstopo run with its I/O devices (the default)?")
    if not facts:
        facts = [SocketFacts(note="hwloc shows no Package")]
    return roots, links, socket_of, facts, notes
