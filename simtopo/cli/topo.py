"""``simtopo topo``: show, matrix, draw, check and route a topology; import one from lspci."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..io.atomic import check_output
from .common import EXIT_FAILED_CHECK, EXIT_OK, echo, select_devices, subcommands

if TYPE_CHECKING:
    from ..topology.graph import Topology


def load_topology_arg(args: argparse.Namespace) -> Topology:
    """The topology file the command names."""
    from ..topology.files import load_topology

    return load_topology(args.file)


def cmd_show(args: argparse.Namespace) -> int:
    """``simtopo topo show``: the tree as text."""
    echo(load_topology_arg(args).show(brief=args.brief))
    return EXIT_OK


def cmd_matrix(args: argparse.Namespace) -> int:
    """``simtopo topo matrix``: the all-pairs table as text, CSV or JSON."""
    from ..report.text import matrix_json_lines, matrix_lines

    topo = load_topology_arg(args)
    matrix = topo.path_matrix(select_devices(topo, args.devices))
    if args.format == "json":
        sys.stdout.writelines(matrix_json_lines(matrix))
    elif args.format == "csv":
        frame = matrix.to_dataframe(args.value)
        if args.value != "class":
            frame = frame.map(lambda x: float(f"{x:.12g}"))
        echo(frame.to_csv())
    else:
        sys.stdout.writelines(matrix_lines(matrix, args.value))
    return EXIT_OK


def cmd_draw(args: argparse.Namespace) -> int:
    """``simtopo topo draw``: the drawing as PNG, SVG or PDF."""
    from ..report.draw import save_figure

    topo = load_topology_arg(args)
    out = Path(f"{topo.name}.png" if args.output is None else check_output(args.output))
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"-o: {str(out)!r} has no known image suffix (expected .png, .svg or "
                          ".pdf)")
    save_figure(topo.draw(), out)
    echo(f"wrote {out}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """``simtopo topo check``: platform checks; exit 1 on an error."""
    findings = load_topology_arg(args).checks()
    for finding in findings:
        echo(str(finding))
    return EXIT_FAILED_CHECK if any(f.level == "error" for f in findings) else EXIT_OK


def cmd_route(args: argparse.Namespace) -> int:
    """``simtopo topo route``: one transfer's route, link by link."""
    from ..topology import routing
    from ..topology.routing import BounceRoute
    from ..units import format_bandwidth, format_time

    topo = load_topology_arg(args)
    if args.staging is not None and args.mode != "host":
        raise ConfigError("--staging applies only to --mode host")
    route = routing.route(topo, args.src, args.dst, mode=args.mode, staging=args.staging)
    legs = [("to host", route.to_host), ("from host", route.from_host)] \
        if isinstance(route, BounceRoute) else [("", route)]
    echo(f"{route.src} -> {route.dst}: {route.path_class}, bottleneck "
         f"{format_bandwidth(route.bottleneck_Bps)}, latency {format_time(route.latency_s)}")
    for name, leg in legs:
        if name:
            echo(f"  {name} (memory of {leg.memory}):")
        for (u, v), bw in zip(leg.links, leg.link_bw_Bps, strict=True):
            edge = topo.graph.edges[u, v]
            echo(f"    {u} -> {v}  {edge['link']}, {format_bandwidth(bw)}")
    if isinstance(route, BounceRoute):
        echo(f"  hand-off {format_time(route.handoff_s)} on {route.handoff_threads} host "
             f"threads; staging in {route.staging} memory "
             f"({format_bandwidth(route.memory_bw_Bps)}, written and read)")
    return EXIT_OK


def _import_kind(text: str, path: str) -> str:
    """What a pasted file is: ``lspci`` (``lspci -tv``), ``nvidia-smi`` (``topo -m``) or
    ``hwloc`` (``lstopo --of xml``), by its first line."""
    import re

    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.lstrip().startswith(("<?xml", "<topology", "<!DOCTYPE")):
        return "hwloc"
    if re.match(r"\s*[-+\\]*\[[0-9a-fA-F]{4,}:[0-9a-fA-F]{2}\]", first):
        return "lspci"
    if re.search(r"\bGPU0\b", first):
        return "nvidia-smi"
    raise ConfigError(f"{path}: not lspci -tv output (it starts '-[0000:00]-'), nvidia-smi "
                      "topo -m output (a header row naming GPU0) or hwloc XML ('<?xml')")


def cmd_import(args: argparse.Namespace) -> int:
    """``simtopo topo import``: a topology file from ``lspci -tv`` (and ``-vv``),
    ``nvidia-smi topo -m`` or hwloc XML output."""
    import os
    import re

    from ..io.atomic import write_text_atomic
    from ..topology.files import load_card_library
    from ..topology.hwloc import parse_hwloc
    from ..topology.importer import check_imported, import_pci
    from ..topology.lspci import parse_links, parse_tree, parse_virtual_functions
    from ..topology.nvsmi import import_nvsmi, plain

    def read(path: str) -> str:
        try:
            return Path(path).read_text(errors="replace")
        except OSError as err:
            raise ConfigError(f"{path}: cannot read it ({err.strerror})") from None

    text = plain(read(args.file))
    kind = _import_kind(text, args.file)
    types = {}
    for path in args.include:
        types.update(load_card_library(path))
    out = None if args.output is None else check_output(args.output)
    folder = out.parent if out is not None else Path.cwd()
    includes = [os.path.relpath(Path(p).resolve(), folder.resolve()) for p in args.include]
    name = args.name or re.sub(r"[^A-Za-z0-9_-]+", "-", out.stem if out is not None
                               else "imported").strip("-")[:64] or "imported"
    if not args.name and not name[0].isalpha():  # an id starts with a letter
        name = f"t-{name}"[:64]
    if kind == "nvidia-smi":
        if args.card_type is None or args.card or args.vv:
            raise ConfigError("nvidia-smi topo -m output takes --card-type TYPE (the GPUs' "
                              "card type), not --card or --vv")
        result = import_nvsmi(text, args.card_type, types, includes, name, source=args.file)
    else:
        if not args.card or args.card_type is not None:
            raise ConfigError(f"{kind} input takes --card PATTERN=TYPE (which devices are "
                              "SoCs of which card type), not --card-type")
        cards = []
        for item in args.card:
            pattern, sep, card = item.rpartition("=")
            if not sep or not pattern or not card:
                raise ConfigError(f"--card {item!r}: expected PATTERN=TYPE, e.g. "
                                  "'Qualcomm.*a100=ai100-standard'")
            cards.append((pattern, card))
        if kind == "hwloc":
            if args.vv:
                raise ConfigError("hwloc XML gives the link rates itself: drop --vv")
            roots, links, socket_of, facts, notes = parse_hwloc(text, args.file)
            result = import_pci(roots, links, cards, types, includes, name, len(facts),
                                args.file, socket_of, facts, notes)
        else:
            vv = read(args.vv) if args.vv else ""
            links = parse_links(vv, args.vv) if args.vv else {}
            result = import_pci(parse_tree(text, args.file), links, cards, types, includes,
                                name, args.sockets, args.file,
                                virtual=parse_virtual_functions(vv))
    check_imported(result, types, args.file)
    if out is None:
        echo(result.rstrip("\n"))
    else:
        write_text_atomic(out, result)
        echo(f"wrote {out}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``topo show|matrix|draw|check|route|import`` to the ``simtopo`` sub-commands."""
    topo = subcommands(sub, "topo", "inspect a topology")
    p = topo.add_parser("show", help="the tree as text with link bandwidths")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--brief", action="store_true", help="one line for the SoCs of each card")
    p.set_defaults(func=cmd_show)

    p = topo.add_parser("matrix", help="device-by-device path class, bottleneck or latency")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--devices", metavar="PATTERNS",
                   help="comma-separated globs such as 'card0.*,card4.*', or 'all' to add "
                        "storage (default: every SoC)")
    p.add_argument("--value", choices=("class", "bandwidth", "latency"), default="class")
    p.add_argument("--format", choices=("text", "csv", "json"), default="text")
    p.set_defaults(func=cmd_matrix)

    p = topo.add_parser("draw", help="draw the hierarchy to an image")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="IMAGE",
                   help="output .png, .svg or .pdf (default: <name>.png)")
    p.set_defaults(func=cmd_draw)

    p = topo.add_parser("check", help="platform checks before compiling (BAR space, ACS, ...)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_check)

    p = topo.add_parser("route", help="the route of one transfer")
    p.add_argument("file", metavar="FILE")
    p.add_argument("src", help="SoC or storage id, socket id, or 'host'")
    p.add_argument("dst", help="SoC or storage id, socket id, or 'host'")
    p.add_argument("--mode", choices=("p2p", "host"), default="p2p")
    p.add_argument("--staging", help="host mode: 'src', 'dst' or a socket id")
    p.set_defaults(func=cmd_route)

    p = topo.add_parser("import", help="a topology file from a server's lspci -tv, "
                                       "nvidia-smi topo -m or lstopo --of xml output")
    p.add_argument("file", metavar="OUTPUT",
                   help="saved output of 'lspci -tv', 'nvidia-smi topo -m' or "
                        "'lstopo --of xml'")
    p.add_argument("--vv", metavar="LSPCI_VV",
                   help="saved output of 'sudo lspci -vv': each link's generation and width")
    p.add_argument("--card", action="append", default=[], metavar="PATTERN=TYPE",
                   help="lspci, hwloc: devices whose name matches PATTERN (a regular "
                        "expression) are SoCs of card type TYPE (repeatable)")
    p.add_argument("--card-type", metavar="TYPE",
                   help="nvidia-smi: the GPUs' card type")
    p.add_argument("--include", action="append", required=True, metavar="CARDS",
                   help="a card library defining the types (topologies/cards/*.yaml; "
                        "repeatable)")
    p.add_argument("--sockets", type=int, default=1,
                   help="lspci: sockets the root buses are spread over, in order (default 1; "
                        "hwloc reads them)")
    p.add_argument("--name", help="the topology's name (default: the output's stem)")
    p.add_argument("-o", "--output", metavar="YAML",
                   help="where to write it (default: print it)")
    p.set_defaults(func=cmd_import)
