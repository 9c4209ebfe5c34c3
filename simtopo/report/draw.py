"""A hierarchical drawing of a topology: sockets at the top, SoCs at the bottom.

Nodes are layered by depth; each subtree gets at least the width of its own label, so labels
on one layer cannot overlap. Links are drawn with a width and colour per bandwidth class and
named in the legend. Coordinates are in inches (the axes span the figure), which lets the
layout size the figure from the labels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import BinaryIO

from matplotlib import colormaps, rc_context
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch
from matplotlib.textpath import TextToPath

from ..io.atomic import write_atomic
from ..topology.fabric import fabric_neighbours
from ..topology.graph import Topology
from ..units import format_bandwidth, format_bytes

FONT_PT = 7.5
LINE_IN = 1.3 * FONT_PT / 72
BOX_PAD_IN = 0.05  # box padding each side, plus a margin
LEAF_GAP_IN = 0.06  # between sibling leaves (the SoCs of a card)
GAP_IN = 0.3  # between sibling subtrees (cards, switches)
SOCKET_GAP_IN = 0.8
LEVEL_IN = 0.95
TOP_IN = 0.55
BOTTOM_IN = 0.6
DPI = 130
MAX_PIXELS = 30_000
"""Longest side of a raster figure, in pixels."""

NODE_COLOURS = {
    "socket": "#d6e4f5", "root_complex": "#dcefd2", "switch": "#fff0c2", "card": "#fbe0cc",
    "soc": "#ececec", "storage": "#e6ddf0", "fabric_switch": "#e8d5ef",
}
LINK_COLOURS = ("#1f4e79", "#2e86c1", "#48a868", "#e0a100", "#c0392b", "#7d3c98", "#5d6d7e")
LOAD_COLOURS = colormaps["YlOrRd"]
LOAD_FLOOR = 1e-3
"""Utilisation at the pale end of the load scale (0.1%); an idle link is grey."""
LOAD_SCALE = LogNorm(vmin=LOAD_FLOOR, vmax=1.0)
IDLE_COLOUR = "#cccccc"
FABRIC_COLOUR = "#7b3294"
"""Device fabric links (NeuronLink, NVLink bridges)."""
FABRIC_BOW_IN = 0.35
"""How far below the devices a fabric link's arc bows (twice its depth), inches."""
CHIP_COLOUR = "#b7950b"
LAYER_NAMES = {"socket": "CPU sockets", "root_complex": "root complexes", "switch": "switches",
               "card": "card switches", "soc": "SoCs", "storage": "storage",
               "fabric_switch": "fabric switches"}


def _role(topo: Topology, node: str) -> str:
    data = topo.graph.nodes[node]
    if data["kind"] == "switch" and data["card"] is not None:
        return "card"
    return data["kind"]


def node_label(topo: Topology, node: str) -> str:
    """The text in a node's box: its id and the few numbers that matter at a glance."""
    data = topo.graph.nodes[node]
    role = _role(topo, node)
    if role == "socket":
        return (f"{node}\n{data['cores']} cores, {format_bytes(data['memory_bytes'])}\n"
                f"{format_bandwidth(data['memory_bw_Bps'])}")
    if role == "root_complex":
        return f"{node}\nroot complex\nP2P {'on' if data['p2p'] else 'off'}"
    if role == "switch":
        what = f"chip {data['chip']}" if data.get("chip") else "switch"
        p2p = "" if data.get("p2p", True) else ", no P2P"
        return f"{node}\n{what}\nACS {'on' if data['acs'] else 'off'}{p2p}"
    if role == "card":
        card = topo.cards[data["card"]]
        return f"{card.id}\n{card.name}\nACS {'on' if data['acs'] else 'off'}"
    if role == "soc":
        card = topo.cards[data["card"]]
        p2p = "" if data.get("p2p", True) else "\nno P2P"
        if card.switch is None:
            return f"{card.id}\n{card.name}{p2p}"
        return node.rsplit(".", 1)[1] + p2p
    if role == "fabric_switch":
        return f"{node}\n{data['link'] if data['link'] != node else 'fabric switch'}"
    kind = "NVMe" if data["storage_kind"] == "nvme" else "network"
    return f"{node}\n{kind}\n{format_bandwidth(data['read_bw_Bps'])}"


_FONT = FontProperties(size=FONT_PT)
_TEXT = TextToPath()


def _text_size(text: str) -> tuple[float, float]:
    """Width and height in inches of a node's boxed label, measured with the font itself."""
    lines = text.split("\n")
    widest = max(_TEXT.get_text_width_height_descent(line, _FONT, ismath=False)[0]
                 for line in lines)
    return (widest / 72 + 2 * BOX_PAD_IN + 0.08, len(lines) * LINE_IN + 2 * BOX_PAD_IN)


def layout(topo: Topology) -> dict[str, tuple[float, float]]:
    """Node centres in inches, before margins: x across the tree, y = -depth x level height."""
    widths: dict[str, float] = {}
    gaps: dict[str, float] = {}
    # parents precede children in node order, so the reverse order measures children first
    for node in reversed(list(topo.graph.nodes)):
        kids = topo.children(node)
        own = _text_size(node_label(topo, node))[0]
        if not kids:
            widths[node] = own
            continue
        inner = sum(widths[k] for k in kids)
        gaps[node] = LEAF_GAP_IN if all(not topo.children(k) for k in kids) else GAP_IN
        widths[node] = max(own, inner + gaps[node] * (len(kids) - 1))

    pos: dict[str, tuple[float, float]] = {}

    def place(root: str, left: float) -> None:
        stack = [(root, left)]
        while stack:
            node, at = stack.pop()
            pos[node] = (at + widths[node] / 2, -topo.graph.nodes[node]["depth"] * LEVEL_IN)
            kids = topo.children(node)
            if not kids:
                continue
            block = sum(widths[k] for k in kids) + gaps[node] * (len(kids) - 1)
            start = at + (widths[node] - block) / 2
            for kid in kids:
                stack.append((kid, start))
                start += widths[kid] + gaps[node]

    left = 0.0
    for socket in topo.sockets:
        place(socket, left)
        left += widths[socket] + SOCKET_GAP_IN
    for node, data in topo.graph.nodes(data=True):  # a fabric switch: below what it joins
        if data["kind"] == "fabric_switch":
            xs = [pos[v][0] for v in fabric_neighbours(topo.graph, node)]
            pos[node] = (sum(xs) / len(xs), -data["depth"] * LEVEL_IN)
    return pos


def _link_classes(topo: Topology) -> list[tuple[str, float]]:
    classes = {(d["link"], d["bw_Bps"]) for _, _, d in topo.graph.edges(data=True)
               if d["direction"] == "down"}
    return sorted(classes, key=lambda c: (-c[1], c[0]))


def draw_topology(topo: Topology, link_load: dict[str, float] | None = None,
                  title: str | None = None) -> Figure:
    """Draw ``topo`` as a layered tree; returns a matplotlib Figure (no pyplot state).

    ``link_load`` maps directed links (``"u->v"``) to their utilisation (0..1): each link is
    then coloured by the busier of its two directions, on an absolute logarithmic scale from
    0.1% to 100% with a colour bar, instead of by its bandwidth class.
    """
    pos = layout(topo)
    graph = topo.graph
    depth = max(d["depth"] for _, d in graph.nodes(data=True))
    layer_text = {}
    for level in range(depth + 1):
        roles = dict.fromkeys(_role(topo, n) for n, d in graph.nodes(data=True)
                              if d["depth"] == level)
        layer_text[level] = " / ".join(LAYER_NAMES[r] for r in roles)
    margin = max(_text_size(t)[0] for t in layer_text.values()) + 0.2
    if title is None:
        title = f"{topo.name}: {topo.spec.description}" if topo.spec.description else topo.name
    tree_w = max(x for x, _ in pos.values()) + max(
        _text_size(node_label(topo, n))[0] for n in pos) / 2
    title_w = _TEXT.get_text_width_height_descent(
        title, FontProperties(size=FONT_PT * 1.4, weight="bold"), ismath=False)[0] / 72
    width = max(margin + tree_w + 0.3, title_w + 0.5, 6.0)
    height = TOP_IN + (depth + 1) * LEVEL_IN + BOTTOM_IN

    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()

    def at(node: str) -> tuple[float, float]:
        x, y = pos[node]
        return margin + x, height - TOP_IN - LEVEL_IN / 2 + y

    ax.text(0.15, height - 0.28, title, fontsize=FONT_PT * 1.4, ha="left", va="center",
            fontweight="bold")
    for level, text in layer_text.items():
        y = height - TOP_IN - LEVEL_IN / 2 - level * LEVEL_IN
        ax.text(margin - 0.2, y, text, fontsize=FONT_PT, ha="right", va="center",
                color="#666666", style="italic")

    classes = _link_classes(topo)
    top_bw = max(bw for _, bw in classes)
    style = {c: (LINK_COLOURS[min(k, len(LINK_COLOURS) - 1)],
                 0.8 + 3.2 * math.sqrt(c[1] / top_bw)) for k, c in enumerate(classes)}
    for u, v, data in graph.edges(data=True):
        if data["direction"] == "internal" and graph.nodes[u]["kind"] == "socket":
            (x0, y0), (x1, y1) = at(u), at(v)
            ax.plot([x0, x1], [y0, y1], color="#999999", lw=1.0, zorder=1)
        if data["direction"] == "down":
            colour, lw = style[(data["link"], data["bw_Bps"])]
            if link_load is not None:
                load = max(link_load.get(f"{u}->{v}", 0.0), link_load.get(f"{v}->{u}", 0.0))
                colour = LOAD_COLOURS(LOAD_SCALE(min(max(load, LOAD_FLOOR), 1.0))) if load \
                    else IDLE_COLOUR
            (x0, y0), (x1, y1) = at(u), at(v)
            ax.plot([x0, x1], [y0, y1], color=colour, lw=lw, solid_capstyle="butt", zorder=1)
    handles = [Line2D([], [], color="#777777" if link_load is not None else style[c][0],
                      lw=style[c][1],
                      label=(f"{c[0]}: {format_bandwidth(c[1])}" if c[0] != "explicit"
                             else format_bandwidth(c[1]))) for c in classes]
    if link_load is not None:
        handles.append(Line2D([], [], color=IDLE_COLOUR, lw=3, label="no traffic"))
        # the colour bar under the title, right: utilisation on an absolute log scale
        bar = fig.add_axes((0.62, 1 - (TOP_IN - 0.05) / height, 0.33, 0.09 / height))
        colorbar = fig.colorbar(ScalarMappable(norm=LOAD_SCALE, cmap=LOAD_COLOURS), cax=bar,
                                orientation="horizontal")
        colorbar.set_ticks([0.001, 0.01, 0.1, 1.0], labels=["0.1%", "1%", "10%", "100%"])
        colorbar.ax.tick_params(labelsize=FONT_PT * 0.9, length=2, pad=1)
        colorbar.set_label("utilisation over the run (busier direction)",
                           fontsize=FONT_PT * 0.9, labelpad=1)
    socket_edges = [(u, v, d) for u, v, d in graph.edges(data=True)
                    if d["direction"] == "socket" and u < v]
    for u, v, _ in socket_edges:
        (x0, y0), (x1, y1) = at(u), at(v)
        ax.plot([x0, x1], [y0, y1], color="#333333", lw=2.0, ls="--", zorder=1)
    if socket_edges:
        bw = socket_edges[0][2]["bw_Bps"]
        handles.append(Line2D([], [], color="#333333", lw=2.0, ls="--",
                              label=f"socket link: {format_bandwidth(bw)}"))
    # partitions of one switch chip: joined inside the chip (a crossing, not a tree link)
    chip_edges = [(u, v) for u, v, d in graph.edges(data=True)
                  if d["direction"] == "chip" and u < v]
    for u, v in chip_edges:
        (x0, y0), (x1, y1) = at(u), at(v)
        ax.plot([x0, x1], [y0, y1], color=CHIP_COLOUR, lw=1.5, ls=":", zorder=2)
    if chip_edges:
        handles.append(Line2D([], [], color=CHIP_COLOUR, lw=1.5, ls=":",
                              label="partitions of one switch chip"))
    # device fabric links beside the tree: arcs below the devices they join
    fabric_edges = [(u, v, d) for u, v, d in graph.edges(data=True)
                    if d["direction"] == "fabric" and u < v]
    for u, v, _ in fabric_edges:  # from the boxes' bottoms, bowed down by a fixed depth
        (x0, y0), (x1, y1) = at(u), at(v)
        below = [1 if graph.nodes[n]["kind"] == "fabric_switch" else -1 for n in (u, v)]
        y0 += below[0] * _text_size(node_label(topo, u))[1] / 2  # a switch's top
        y1 += below[1] * _text_size(node_label(topo, v))[1] / 2
        span = max(math.hypot(x1 - x0, y1 - y0), 1e-3)
        bend = FABRIC_BOW_IN / span * (1 if x0 <= x1 else -1) if below == [-1, -1] else 0.0
        colour = FABRIC_COLOUR
        if link_load is not None:  # coloured by load as the tree's links are
            load = max(link_load.get(f"{u}->{v}", 0.0), link_load.get(f"{v}->{u}", 0.0))
            colour = LOAD_COLOURS(LOAD_SCALE(min(max(load, LOAD_FLOOR), 1.0))) if load \
                else IDLE_COLOUR
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-",
                                     connectionstyle=f"arc3,rad={bend}", color=colour,
                                     lw=1.4, zorder=2))
    for kind in sorted({d["link"] for _, _, d in fabric_edges}):
        bw = next(d["bw_Bps"] for _, _, d in fabric_edges if d["link"] == kind)
        to_switch = {"fabric_switch" in (graph.nodes[u]["kind"], graph.nodes[v]["kind"])
                     for u, v, d in fabric_edges if d["link"] == kind}
        shape = {frozenset([True]): "lines to a switch", frozenset([False]): "arcs"}.get(
            frozenset(to_switch), "arcs; to a switch, lines")
        handles.append(Line2D([], [], color="#777777" if link_load is not None
                              else FABRIC_COLOUR, lw=1.4, ls="-",
                              label=f"{kind} ({shape}): {format_bandwidth(bw)} per direction"))

    for node in pos:
        x, y = at(node)
        ax.text(x, y, node_label(topo, node), fontsize=FONT_PT, ha="center", va="center",
                zorder=3, linespacing=1.15,
                bbox={"boxstyle": "round,pad=0.3", "fc": NODE_COLOURS[_role(topo, node)],
                      "ec": "#555555", "lw": 0.6})
    legend_title = ("links (width: bandwidth; colour: utilisation, scale above)"
                    if link_load is not None else "links, payload bandwidth per direction")
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0),
              bbox_transform=ax.transAxes, ncol=min(len(handles), 8 if link_load else 4),
              fontsize=FONT_PT, frameon=False, title=legend_title, title_fontsize=FONT_PT)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` atomically (a temporary file, then a rename) without a timestamp."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    # a drawing of a thousand-SoC tree is a few hundred inches wide: fewer dots per inch
    # keep its image within what renderers take (2**16 pixels a side) and a few MB
    dpi = min(dpi, MAX_PIXELS / max(fig.get_size_inches()))
    metadata = {"png": {"Software": None}, "svg": {"Date": None},
                "pdf": {"CreationDate": None}}.get(fmt)

    def write(handle: BinaryIO) -> None:
        with rc_context({"svg.hashsalt": "simtopo"}):
            fig.savefig(handle, format=fmt, dpi=dpi, metadata=metadata)

    return write_atomic(path, write)
