"""What ``lspci -tv`` (and ``lspci -vv``) print, read into a tree of PCI functions.

``lspci -tv`` draws each PCI domain's root bus and everything below it::

    -[0000:00]-+-00.0  Intel Corporation Device 09a2
               +-01.0-[01-0b]----00.0-[02-0b]--+-00.0-[03]----00.0  Qualcomm Device a100
               |                               \\-07.0-[0a]----00.0  Qualcomm Device a100
               \\-1f.0  Intel Corporation LPC Controller

A function is ``dd.f``, a bridge adds the buses behind it (``-[sec-sub]``); ``----`` leads to
a bridge's only child, ``--+-`` to its first of several, whose siblings hang at the ``+-`` or
``\\-`` (the last) in that column on the lines below; a name follows two spaces. Several root
buses are siblings at the left (``+-[0000:80]-...``). Bridges drawn with children on their own
line carry no name. :func:`parse_tree` reads it; :func:`parse_links` reads the negotiated link
(``LnkSta: Speed 16GT/s, Width x16``) of each function from ``lspci -vv``, and
:func:`parse_virtual_functions` the SR-IOV virtual functions a physical function has enabled
(``Number of VFs``, ``VF offset``, ``stride``). Input that does not fit the drawing is refused
with the line it stopped at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import ConfigError

_TOKEN = re.compile(
    r"(?P<branch>[+\\]-)"
    r"|\[(?P<domain>[0-9a-f]{4,}):(?P<root>[0-9a-f]{2})\]"
    r"|(?P<slot>[0-9a-f]{2}\.[0-7])(?:-\[(?P<sec>[0-9a-f]{2})(?:-(?P<sub>[0-9a-f]{2}))?\])?",
    re.IGNORECASE)
_ONWARD = re.compile(r"-+(?:(?P<fork>[+\\])-|(?=[0-9a-f]{2}\.[0-7]))", re.IGNORECASE)

GT_PER_S_TO_GEN = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}


@dataclass
class PciNode:
    """A root bus or a PCI function of the tree."""

    address: str
    """``0000:00`` for a root bus, ``0000:03:00.0`` for a function."""
    name: str = ""
    secondary: str | None = None
    """The bus behind a bridge (None: an endpoint)."""
    children: list[PciNode] = field(default_factory=list)

    @property
    def is_root(self) -> bool:
        """A root bus (not a function)."""
        return self.address.count(":") == 1

    @property
    def is_bridge(self) -> bool:
        """A root bus or a bridge: something with a bus behind it."""
        return self.secondary is not None

    def walk(self) -> Iterator[PciNode]:
        """This node and everything below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


def _refuse(source: str, number: int, line: str, why: str) -> ConfigError:
    return ConfigError(f"{source}:{number}: not lspci -tv output: {why} (in {line.strip()!r})")


def parse_tree(text: str, source: str = "lspci -tv") -> list[PciNode]:
    """The root buses of ``lspci -tv`` output, each with its tree (module docstring)."""
    roots: list[PciNode] = []
    columns: dict[int, PciNode] = {}  # where a bridge's further children hang
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parent: PciNode | None = None  # the node the next function or root bus hangs from
        last: PciNode | None = None
        top = False
        pos = 0
        while pos < len(line):
            if line[pos] in " |":
                pos += 1
                continue
            match = _TOKEN.match(line, pos)
            if match is None:
                if line[pos] == "-" and last is None:  # the first root bus's lead
                    pos += 1
                    top = True
                    continue
                raise _refuse(source, number, line, f"unexpected {line[pos:pos + 12]!r} at "
                                                    f"column {pos + 1}")
            if match["branch"]:
                parent = columns.get(pos)
                top = parent is None and pos <= 1
                if parent is None and not top:
                    raise _refuse(source, number, line, f"a branch at column {pos + 1} below "
                                                        "no bridge")
            else:
                if match["domain"]:
                    if not top:
                        raise _refuse(source, number, line, "a root bus below a function")
                    node = PciNode(f"{match['domain']}:{match['root']}".lower(),
                                   secondary=match["root"].lower())
                    roots.append(node)
                else:
                    if parent is None or parent.secondary is None:
                        raise _refuse(source, number, line, f"function {match['slot']} below "
                                                            "no bridge")
                    bus = parent.address.split(":")[0] + ":" + parent.secondary
                    node = PciNode(f"{bus}:{match['slot']}".lower(),
                                   secondary=match["sec"].lower() if match["sec"] else None)
                    parent.children.append(node)
                last, parent, top = node, None, False
                pos = match.end()
                onward = _ONWARD.match(line, pos)
                if onward is not None:
                    if node.secondary is None:
                        raise _refuse(source, number, line, f"an endpoint ({node.address}) "
                                                            "with children")
                    if onward["fork"]:
                        columns[onward.start("fork")] = node
                        pos = onward.start("fork")
                    else:
                        parent = node
                        pos = onward.end()
                elif line.startswith("  ", pos) and line[pos:].strip():
                    node.name = line[pos:].strip()  # its name: the rest of the line
                    break
                elif not line[pos:].strip().strip("-"):
                    break  # a bridge with nothing behind it
                continue
            pos = match.end()
    if not roots:
        raise ConfigError(f"{source}: not lspci -tv output: no root bus ('-[0000:00]-...') in "
                          "it")
    # lspci prints the root buses last first: in the order of their domain and bus here
    return sorted(roots, key=lambda r: (len(r.address), r.address))


_FUNCTION = re.compile(r"^(?:(?P<domain>[0-9a-f]{4,}):)?(?P<bus>[0-9a-f]{2}):(?P<slot>"
                       r"[0-9a-f]{2}\.[0-7]) ", re.IGNORECASE)
_LINK = re.compile(r"LnkSta:\s*Speed\s+(?P<speed>[0-9.]+)GT/s[^,]*,\s*Width\s+x(?P<width>\d+)")


def _function_lines(text: str) -> Iterator[tuple[str, int, str]]:
    """The indented lines of ``lspci -vv`` output under a function's heading: (the function's
    address, line number, line); an unindented line that heads no function ends a block."""
    current: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        head = _FUNCTION.match(line)
        if head is not None or line[:1].strip():
            current = None if head is None else \
                f"{(head['domain'] or '0000')}:{head['bus']}:{head['slot']}".lower()
        elif current is not None:
            yield current, number, line


def parse_links(text: str, source: str = "lspci -vv") -> dict[str, tuple[int, int]]:
    """(PCIe generation, lanes) each function's link runs at, by address (``lspci -vv``'s
    ``LnkSta``; functions without one are left out)."""
    out: dict[str, tuple[int, int]] = {}
    for current, number, line in _function_lines(text):
        link = _LINK.search(line)
        if link is not None:
            speed = float(link["speed"])
            if speed not in GT_PER_S_TO_GEN:
                raise ConfigError(f"{source}:{number}: link speed {link['speed']} GT/s is no "
                                  f"PCIe generation's (expected one of "
                                  f"{', '.join(f'{s:g}' for s in GT_PER_S_TO_GEN)})")
            if int(link["width"]) in (1, 2, 4, 8, 16, 32):  # x0: the link is down
                out[current] = (GT_PER_S_TO_GEN[speed], int(link["width"]))
    return out

_VF_COUNT = re.compile(r"Number of VFs:\s*(?P<count>\d+)")
_VF_PLACE = re.compile(r"VF offset:\s*(?P<offset>\d+),\s*stride:\s*(?P<stride>\d+)")


def parse_virtual_functions(text: str) -> dict[str, str]:
    """The SR-IOV virtual functions of ``lspci -vv`` output, each with its physical function:
    virtual function n (from 1) of a physical function whose routing ID (bus, device,
    function as 8 + 5 + 3 bits) is R sits at R + offset + (n - 1) x stride (PCIe SR-IOV, the
    capability's First VF Offset and VF Stride, which lspci prints in decimal). They are slices
    of their device, not devices: the import leaves them out."""
    out: dict[str, str] = {}
    count: dict[str, int] = {}
    for current, _, line in _function_lines(text):
        if (found := _VF_COUNT.search(line)) is not None:
            count[current] = int(found["count"])
        elif (place := _VF_PLACE.search(line)) is not None and count.get(current):
            domain, bus, slot = current.split(":")
            device, function = slot.split(".")
            rid = (int(bus, 16) << 8) | (int(device, 16) << 3) | int(function)
            for i in range(count[current]):
                vf = rid + int(place["offset"]) + i * int(place["stride"])
                if vf < 1 << 16:
                    out[f"{domain}:{vf >> 8:02x}:{(vf >> 3) & 31:02x}.{vf & 7}"] = current
    return out
