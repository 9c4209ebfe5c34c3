"""A topology file from ``nvidia-smi topo -m``: the GPU-by-GPU connection matrix.

The matrix gives, for each pair of GPUs, the farthest thing their P2P path crosses: ``PIX``
(at most one PCIe bridge: one switch), ``PXB`` (several bridges, no host bridge: one switch
tree), ``PHB`` (a host bridge: one root complex), ``NODE`` (host bridges of one NUMA node),
``SYS`` (the link between sockets), or ``NV#`` (a bonded set of # NVLinks; it hides the PCIe
path). From it (:func:`import_nvsmi`):

- sockets are the classes of GPUs no ``SYS`` separates (inferred; the ``NUMA Affinity``
  column, where given, orders them);
- root complexes are the classes ``PIX``, ``PXB`` or ``PHB`` join within a socket; switches
  the classes ``PIX`` or ``PXB`` join (nested switches folded into one: inferred); a GPU no
  such pair joins hangs off its root complex alone (inferred);
- ``NV#`` pairs are device fabric links of # x ``nvlink_bw`` each way (25 GB/s a link each
  way by default: NVIDIA's A100 and H100 datasheets give 600 GB/s over 12 NVLinks and 900 GB/s
  over 18, both directions together);
- where every pair shows one ``NV#`` and # x (GPUs - 1) exceeds the NVLinks any GPU has
  (:data:`MAX_NVLINKS`), the links cannot be direct: the GPUs reach each other through
  NVSwitches, written as one fabric switch with each GPU's # links to it (inferred; the
  NVSwitches of a baseboard act as one non-blocking switch for the traffic modelled here).

Links between the PCIe levels are not in the matrix: switch uplinks are assumed Gen4 x16, and
the GPUs' are their card type's.
"""

from __future__ import annotations

import re

from ..errors import ConfigError
from ..spec.topology import CardTypeSpec
from .importer import Found, topology_yaml

CODES = ("X", "PIX", "PXB", "PHB", "NODE", "SYS", "SOC")
"""What a cell may say, besides ``NV#`` (``SOC`` is older drivers' ``SYS``)."""

MAX_NVLINKS = 18
"""The most NVLinks one GPU has (NVIDIA H100 SXM and B200: 18)."""

DEFAULT_NVLINK_BPS = 25e9
"""One NVLink's bandwidth each way (NVIDIA A100 and H100 datasheets: 600 GB/s over 12 links,
900 GB/s over 18, both directions)."""


def plain(text: str) -> str:
    """``text`` without a terminal's formatting (nvidia-smi underlines its header there)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def parse_matrix(text: str, source: str = "nvidia-smi topo -m"
                 ) -> tuple[list[str], list[list[str]], list[str]]:
    """(GPU names, the GPU-by-GPU cells, each GPU's NUMA affinity or '') of the output."""
    text = plain(text)
    lines = [ln.rstrip("\r") for ln in text.splitlines()]
    head = next((k for k, ln in enumerate(lines) if re.search(r"\bGPU0\b", ln)), None)
    if head is None:
        raise ConfigError(f"{source}: not nvidia-smi topo -m output: no header row naming GPU0")
    columns = [c.strip() for c in re.split(r"\t|\s{2,}", lines[head].strip()) if c.strip()]
    gpus = re.findall(r"\bGPU\d+\b", lines[head])
    numa_at = columns.index("NUMA Affinity") if "NUMA Affinity" in columns else None
    rows: dict[str, list[str]] = {}
    numa: dict[str, str] = {}
    for number, line in enumerate(lines[head + 1:], head + 2):
        cells = [c.strip() for c in re.split(r"\t|\s{2,}|(?<=\S) (?=\S)", line.strip())]
        cells = [c for c in cells if c]
        if not cells or not re.fullmatch(r"GPU\d+", cells[0]):
            if cells and cells[0].startswith("Legend"):
                break
            continue
        values = cells[1:1 + len(columns)]
        if len(values) < len(gpus):
            raise ConfigError(f"{source}:{number}: {cells[0]} has {len(values)} cells for "
                              f"{len(gpus)} GPUs")
        rows[cells[0]] = values[:len(gpus)]
        if numa_at is not None and len(values) > numa_at:
            numa[cells[0]] = values[numa_at]
        for gpu, cell in zip(gpus, values[:len(gpus)], strict=True):
            if cell not in CODES and not re.fullmatch(r"NV\d+", cell):
                raise ConfigError(f"{source}:{number}: {cells[0]} to {gpu} says {cell!r} "
                                  f"(expected X, NV#, {', '.join(CODES[1:-1])})")
    if set(rows) != set(gpus):
        missing = sorted(set(gpus) - set(rows))
        raise ConfigError(f"{source}: no row for {', '.join(missing)}")
    cells = [rows[g] for g in gpus]
    for i, a in enumerate(gpus):
        for j, b in enumerate(gpus):
            if (i == j) != (cells[i][j] == "X") or cells[i][j] != cells[j][i]:
                raise ConfigError(f"{source}: {a} to {b} says {cells[i][j]!r} but {b} to {a} "
                                  f"{cells[j][i]!r}: the matrix must be symmetric, X on the "
                                  "diagonal only")
    return gpus, cells, [numa.get(g, "") for g in gpus]


def _classes(n: int, joined: set[tuple[int, int]]) -> list[int]:
    """The class (its smallest member) of each of ``n`` items under the pairs ``joined``."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in joined:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return [find(x) for x in range(n)]


def import_nvsmi(text: str, card_type: str, types: dict[str, CardTypeSpec],
                 includes: list[str], name: str, nvlink_bw: float = DEFAULT_NVLINK_BPS,
                 source: str = "nvidia-smi topo -m") -> str:
    """The topology YAML of ``nvidia-smi topo -m`` output (module docstring): every GPU a
    card of ``card_type`` (one SoC), which ``includes`` define."""
    if card_type not in types:
        raise ConfigError(f"--card-type {card_type}: no such card type in the included files "
                          f"(known: {', '.join(sorted(types)) or 'none'})")
    if types[card_type].socs != 1:
        raise ConfigError(f"--card-type {card_type}: a GPU is one device; that type has "
                          f"{types[card_type].socs} SoCs")
    gpus, cells, numa = parse_matrix(text, source)
    n = len(gpus)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    socket = _classes(n, {(i, j) for i, j in pairs if cells[i][j] not in ("SYS", "SOC")})
    rc = _classes(n, {(i, j) for i, j in pairs if cells[i][j] in ("PIX", "PXB", "PHB")})
    switch = _classes(n, {(i, j) for i, j in pairs if cells[i][j] in ("PIX", "PXB")})
    sockets = sorted(set(socket), key=lambda s: (numa[s], s))
    rc_ids = {r: f"rc{k}" for k, r in enumerate(sorted(set(rc)))}
    found = Found()
    switch_ids: dict[int, str] = {}
    for g in range(n):
        parent = rc_ids[rc[g]]
        if switch.count(switch[g]) > 1:
            if switch[g] not in switch_ids:
                switch_ids[switch[g]] = ident = f"sw{len(switch_ids)}"
                members = ", ".join(gpus[k] for k in range(n) if switch[k] == switch[g])
                found.switches.append((ident, parent, "{gen: 4, lanes: 16}",
                                       f"inferred: {members} meet below their host bridge; "
                                       "assumption: its uplink"))
            parent = switch_ids[switch[g]]
        found.cards.append((card_type, parent, f"read: {gpus[g]}"))
    counts = {cells[i][j] for i, j in pairs}
    each = re.fullmatch(r"NV(\d+)", next(iter(counts))) if len(counts) == 1 else None
    if each is not None and n > 2 and int(each[1]) * (n - 1) > MAX_NVLINKS:
        found.fabric_switches.append(("nvswitch", f"inferred: every pair shows {each[0]}, "
                                      f"{int(each[1]) * (n - 1)} NVLinks a GPU, more than any "
                                      f"has ({MAX_NVLINKS}): NVSwitches"))
        bw = int(each[1]) * nvlink_bw
        for i in range(n):
            found.fabric.append((f"card{i}", "nvswitch", f"{bw / 1e9:g}GB/s",
                                 f"inferred: {gpus[i]}'s {each[1]} NVLinks ({each[0]} read to "
                                 f"every GPU) go to the NVSwitches, {nvlink_bw / 1e9:g} GB/s "
                                 "each way a link"))
    else:  # a link per NV# pair
        for i, j in pairs:
            links = re.fullmatch(r"NV(\d+)", cells[i][j])
            if links:
                bw = int(links[1]) * nvlink_bw
                found.fabric.append((f"card{i}", f"card{j}", f"{bw / 1e9:g}GB/s",
                                     f"read: {gpus[i]}-{gpus[j]} {cells[i][j]}; {links[1]} x "
                                     f"{nvlink_bw / 1e9:g} GB/s each way"))
    rcs = [(rc_ids[r], f"cpu{sockets.index(socket[r])}",
            f"inferred: {rc_ids[r]} holds {', '.join(gpus[k] for k in range(n) if rc[k] == r)}")
           for r in sorted(set(rc))]
    return topology_yaml(name, source, includes, rcs, len(sockets), found)
