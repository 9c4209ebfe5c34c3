"""Plain-text views of a topology: the tree with link bandwidths, and the path matrix.

Plain strings (no terminal styling) so that output is identical in a terminal, a pipe, a
notebook and a golden file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..topology.graph import Topology
from ..topology.matrix import CODES, MEANING, PATH_CLASSES, PathMatrix
from ..units import format_bandwidth, format_bytes, format_flops, format_time


def _link_text(topo: Topology, parent: str, child: str) -> str:
    down = topo.graph.edges[parent, child]
    up = topo.graph.edges[child, parent]
    rate = format_bandwidth(down["bw_Bps"])
    if up["bw_Bps"] != down["bw_Bps"]:
        rate = f"up {format_bandwidth(up['bw_Bps'])} / down {rate}"
    label = "" if down["link"] == "explicit" else f"{down['link']}: "
    latency = f", {format_time(down['latency_s'])}" if down["latency_s"] else ""
    return f"[{label}{rate}{latency}]"


def describe_node(topo: Topology, node: str) -> str:
    """One-line description of a node's kind and numbers."""
    data = topo.graph.nodes[node]
    kind = data["kind"]
    if kind == "socket":
        return (f"socket: {data['cores']} cores, {format_bytes(data['memory_bytes'])} memory "
                f"at {format_bandwidth(data['memory_bw_Bps'])}")
    if kind == "root_complex":
        p2p = "carries P2P between root ports" if data["p2p"] else "no P2P between root ports"
        return f"root complex: {p2p}, hop {format_time(data['hop_latency_s'])}"
    if kind == "switch":
        acs = f"ACS {'on' if data['acs'] else 'off'}, hop {format_time(data['hop_latency_s'])}"
        if data["card"] is not None:
            card = topo.cards[data["card"]]
            return f"on-card switch of {card.id} ({card.name}): {acs}"
        model = f" ({data['model']})" if data["model"] else ""
        chip = f", partition of chip {data['chip']}" if data.get("chip") else ""
        p2p = "" if data.get("p2p", True) else ", no P2P"
        return f"switch{model}{chip}: {acs}{p2p}"
    if kind == "soc":
        fp16 = data["peak_flops_per_core"].get("fp16")
        compute = f", {format_flops(fp16 * data['cores'])} fp16" if fp16 else ""
        owner = topo.cards[data["card"]]
        where = f" of {owner.id} ({owner.name})" if owner.switch is None else ""
        p2p = "" if data.get("p2p", True) else ", no P2P"
        return (f"SoC{where}: {data['cores']} cores{compute}, "
                f"{format_bytes(data['dram_bytes'])} at {format_bandwidth(data['dram_bw_Bps'])}"
                f"{p2p}")
    if kind == "storage":
        what = "NVMe drive" if data["storage_kind"] == "nvme" else "network volume"
        return (f"{what}: read {format_bandwidth(data['read_bw_Bps'])}, write "
                f"{format_bandwidth(data['write_bw_Bps'])}, {format_time(data['latency_s'])}")
    return kind


def render_tree(topo: Topology, brief: bool = False) -> str:
    """The topology as an indented tree; ``brief`` folds the SoCs of each card into one line."""
    platform = topo.platform
    lines = [f"{topo.name}: {topo.spec.description}" if topo.spec.description else topo.name]
    limit = (f"{platform.max_p2p_group} SoCs" if platform.max_p2p_group is not None
             else "not declared")
    bar = format_bytes(platform.bar_space) if platform.bar_space is not None else "not declared"
    lines.append(
        f"platform: root-complex P2P {'on' if platform.root_complex_p2p else 'off'}, "
        f"cross-socket P2P {'on' if platform.cross_socket_p2p else 'off'}, "
        f"ACS default {'on' if platform.acs else 'off'}, tensor-slicing P2P limit {limit}, "
        f"BAR space {bar}"
    )
    lines.append(f"host: hand-off {format_time(topo.handoff_latency_s)} on "
                 f"{topo.handoff_threads} thread{'s' if topo.handoff_threads != 1 else ''}")
    lines.append(topo.summary())
    lines.append("")

    # depth first with a stack of (node, prefix, last child, socket): no recursion
    stack = [(socket, "", True, True) for socket in reversed(topo.sockets)]
    while stack:
        node, prefix, last, top = stack.pop()
        branch = "" if top else ("└─ " if last else "├─ ")
        link = "" if top or topo.graph.nodes[node]["kind"] == "root_complex" else \
            "  " + _link_text(topo, topo.graph.nodes[node]["parent"], node)
        lines.append(f"{prefix}{branch}{node}  {describe_node(topo, node)}{link}")
        children = topo.children(node)
        child_prefix = prefix if top else prefix + ("   " if last else "│  ")
        card = topo.graph.nodes[node].get("card")
        if brief and children and all(topo.graph.nodes[c]["kind"] == "soc" for c in children) \
                and card is not None:
            first, rest = children[0], children[-1].rsplit(".", 1)[1]
            lines.append(f"{child_prefix}└─ {first} .. {rest}  {len(children)} x "
                         f"{describe_node(topo, first)}  "
                         f"{_link_text(topo, node, first)} each")
            continue
        stack += [(child, child_prefix, k == len(children) - 1, False)
                  for k, child in reversed(list(enumerate(children)))]
    graph = topo.graph
    lines += [f"{n}  fabric switch ({d['link']}), hop {format_time(d['hop_latency_s'])}, joins "
              f"{', '.join(sorted(graph.adj[n]))}" for n, d in graph.nodes(data=True)
              if d["kind"] == "fabric_switch"]
    for u, v, data in graph.edges(data=True):
        if data["direction"] == "socket" and u < v:
            back = graph.edges[v, u]
            rate = format_bandwidth(data["bw_Bps"])
            if back["bw_Bps"] != data["bw_Bps"]:
                rate = f"{u}->{v} {rate} / {v}->{u} {format_bandwidth(back['bw_Bps'])}"
            lines.append(f"{u} <-> {v}  socket link: {rate} per direction, "
                         f"{format_time(data['latency_s'])}")
        elif data["direction"] == "fabric" and u < v:
            lines.append(f"{u} <-> {v}  {data['link']} (device fabric): "
                         f"{format_bandwidth(data['bw_Bps'])} per direction, "
                         f"{format_time(data['latency_s'])}")
    return "\n".join(lines) + "\n"


def _cell(matrix: PathMatrix, value: str, i: int, j: int) -> str:
    if value == "class":
        return CODES[PATH_CLASSES[matrix.path_class[i, j]]]
    if i == j:
        return "-"
    if value == "bandwidth":
        return f"{matrix.bottleneck_Bps[i, j] / 1e9:.3g}"
    return f"{matrix.latency_s[i, j] * 1e6:.3g}"


def _span(values: np.ndarray, fmt: Callable[[float], str]) -> str:
    low, high = float(values.min()), float(values.max())
    return fmt(low) if np.isclose(low, high, rtol=1e-9, atol=0) else f"{fmt(low)} .. {fmt(high)}"


def render_matrix(matrix: PathMatrix, value: str = "class") -> str:
    """A device-by-device table (columns numbered like the rows), then a legend and summary.

    ``value`` is ``"class"`` (path class codes), ``"bandwidth"`` (GB/s) or ``"latency"`` (us).
    """
    return "".join(matrix_lines(matrix, value))


def matrix_lines(matrix: PathMatrix, value: str = "class") -> Iterator[str]:
    """:func:`render_matrix` line by line (a 2,048-device table is 4 million cells: made a
    row at a time, never held whole)."""
    n = len(matrix.devices)
    width = 1 + max(len(str(n - 1)), *(len(_cell(matrix, value, i, j)) for i in range(n)
                                        for j in range(n)))
    label = max(len(d) for d in matrix.devices) + len(str(n - 1)) + 3
    unit = {"class": "path class", "bandwidth": "bottleneck, GB/s", "latency": "latency, us"}
    yield f"{unit[value]:<{label}}" + "".join(f"{j:>{width}}" for j in range(n)) + "\n"
    for i, device in enumerate(matrix.devices):
        yield f"{f'{device} [{i}]':<{label}}" + "".join(
            f"{_cell(matrix, value, i, j):>{width}}" for j in range(n)) + "\n"
    yield "\n"
    summary = [("class", "meaning", "pairs", "bottleneck", "latency")]
    for name, count in matrix.counts().items():
        mask = matrix.path_class == PATH_CLASSES.index(name)
        summary.append((CODES[name], MEANING[name], str(count),
                        _span(matrix.bottleneck_Bps[mask], format_bandwidth),
                        _span(matrix.latency_s[mask], format_time)))
    widths = [max(len(row[k]) for row in summary) for k in range(5)]
    for row in summary:
        yield "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                         row[2].rjust(widths[2]), row[3].ljust(widths[3]), row[4]]).rstrip() + "\n"


def matrix_json(matrix: PathMatrix) -> str:
    """The matrix as JSON: devices, class names, bottlenecks (B/s, null on the diagonal) and
    latencies (s)."""
    return "".join(matrix_json_lines(matrix))


def matrix_json_lines(matrix: PathMatrix) -> Iterator[str]:
    """:func:`matrix_json` a row per line, made a row at a time."""
    def rows(name: str, make: Callable[[int], list[Any]]) -> Iterator[str]:
        yield f' "{name}": [\n'
        n = len(matrix.devices)
        for i in range(n):
            yield "  " + json.dumps(make(i)) + (",\n" if i < n - 1 else "\n")
        yield " ]"

    yield '{\n "devices": ' + json.dumps(list(matrix.devices)) + ",\n"
    yield from rows("path_class", lambda i: [PATH_CLASSES[c] for c in matrix.path_class[i]])
    yield ",\n"
    yield from rows("bottleneck_Bps", lambda i: [None if np.isinf(x) else float(f"{x:.12g}")
                                                 for x in matrix.bottleneck_Bps[i]])
    yield ",\n"
    yield from rows("latency_s", lambda i: [float(f"{x:.12g}") for x in matrix.latency_s[i]])
    yield "\n}\n"
