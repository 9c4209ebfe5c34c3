"""The ``simtopo`` command: a thin wrapper over the functions a notebook calls.

Errors the user can cause print one line and exit 2; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import ConfigError, SimtopoError

if TYPE_CHECKING:
    from .topology import Topology

EXIT_OK, EXIT_FAILED_CHECK, EXIT_BAD_INPUT = 0, 1, 2


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _file_kind(path: Path) -> str:
    """'topology' or 'cards', judged from the top-level keys."""
    from .io import read_yaml

    doc = read_yaml(path)
    if isinstance(doc.data, dict):
        if "host" in doc.data or "extends" in doc.data:
            return "topology"
        if "card_types" in doc.data:
            return "cards"
    raise ConfigError("cannot tell what this file is: expected a topology (with 'host' or "
                      "'extends') or a card library (with 'card_types')", file=doc.file)


def cmd_validate(args: argparse.Namespace) -> int:
    from .topofile import load_card_library, load_topology

    failed = 0
    for name in args.files:
        path = Path(name)
        try:
            kind = _file_kind(path)
            if kind == "topology":
                what = f"topology {load_topology(path).summary()}"
            else:
                types = load_card_library(path)
                what = f"card library: {', '.join(types)}"
            _out(f"ok     {name}: {what}")
        except SimtopoError as err:
            if args.debug:
                traceback.print_exc()
            sys.stderr.write(f"error  {err}\n")
            failed += 1
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _load(args: argparse.Namespace) -> Topology:
    from .topofile import load_topology

    return load_topology(args.file)


def cmd_show(args: argparse.Namespace) -> int:
    _out(_load(args).show(brief=args.brief))
    return EXIT_OK


def _select(topo: Topology, patterns: str | None) -> list[str]:
    if patterns is None:
        return list(topo.socs)
    pool = [*topo.socs, *topo.storage]
    if patterns == "all":
        return pool
    chosen = []
    for pattern in patterns.split(","):
        matched = [d for d in pool if fnmatch.fnmatchcase(d, pattern.strip())]
        if not matched:
            raise ConfigError(f"--devices: {pattern.strip()!r} matches no SoC or storage device "
                              f"(ids look like {pool[0]})")
        chosen += [d for d in matched if d not in chosen]
    return chosen


def cmd_matrix(args: argparse.Namespace) -> int:
    from .render import matrix_json, render_matrix

    topo = _load(args)
    matrix = topo.path_matrix(_select(topo, args.devices))
    if args.format == "json":
        _out(matrix_json(matrix))
    elif args.format == "csv":
        frame = matrix.to_dataframe(args.value)
        if args.value != "class":
            frame = frame.map(lambda x: float(f"{x:.12g}"))
        _out(frame.to_csv())
    else:
        _out(render_matrix(matrix, args.value))
    return EXIT_OK


def cmd_draw(args: argparse.Namespace) -> int:
    from .draw import save_figure

    topo = _load(args)
    out = Path(args.output or f"{topo.name}.png")
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"-o: {str(out)!r} has no known image suffix (expected .png, .svg or "
                          ".pdf)")
    save_figure(topo.draw(), out)
    _out(f"wrote {out}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    findings = _load(args).checks()
    for finding in findings:
        _out(str(finding))
    return EXIT_FAILED_CHECK if any(f.level == "error" for f in findings) else EXIT_OK


def cmd_route(args: argparse.Namespace) -> int:
    from .routing import BounceRoute
    from .units import format_bandwidth, format_time

    topo = _load(args)
    if args.staging is not None and args.mode != "host":
        raise ConfigError("--staging applies only to --mode host")
    route = topo.route(args.src, args.dst, mode=args.mode, staging=args.staging)
    legs = [("to host", route.to_host), ("from host", route.from_host)] \
        if isinstance(route, BounceRoute) else [("", route)]
    _out(f"{route.src} -> {route.dst}: {route.path_class}, bottleneck "
         f"{format_bandwidth(route.bottleneck_Bps)}, latency {format_time(route.latency_s)}")
    for name, leg in legs:
        if name:
            _out(f"  {name} (memory of {leg.memory}):")
        for (u, v), bw in zip(leg.links, leg.link_bw_Bps, strict=True):
            edge = topo.graph.edges[u, v]
            _out(f"    {u} -> {v}  {edge['link']}, {format_bandwidth(bw)}")
    if isinstance(route, BounceRoute):
        _out(f"  hand-off {format_time(route.handoff_s)} on {route.handoff_threads} host "
             f"threads; staging in {route.staging} memory "
             f"({format_bandwidth(route.memory_bw_Bps)}, written and read)")
    return EXIT_OK


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated integers (got {text!r})") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{option}: expected positive integers (got {text!r})")
    return values


def _size_list(text: str, option: str) -> list[float]:
    from .units import parse_bytes

    try:
        values = [parse_bytes(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if not values or min(values) <= 0:
        raise ConfigError(f"{option}: expected positive sizes such as 16KiB,64MiB (got {text!r})")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench
    from .bench_report import bench_json, collect_bench

    topo = _load(args)
    devices = _select(topo, args.devices)
    groups = _int_list(args.groups, "--groups")
    sizes = _size_list(args.sizes, "--sizes") if args.sizes else list(bench.COLLECTIVE_SIZES)
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.p2p]
    parts = [p.strip() for p in args.what.split(",")]
    unknown = sorted(set(parts) - {"matrices", "collectives", "copies"})
    if unknown:
        raise ConfigError(f"--what: unknown part {unknown[0]!r} (expected matrices, "
                          "collectives, copies)")
    result = collect_bench(topo, devices, modes, groups, sizes, parts)
    _out(bench_json(result) if args.json else result.text())
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import all_points
    from .calibration_report import (
        MEANING,
        SCALE,
        read_fit_record,
        run_fit,
        validation_document,
        write_fit_record,
    )

    points = all_points()
    if args.fit:
        record = run_fit(points, args.max_evaluations)
        write_fit_record(record)
        _out(f"fit: objective {record['objective']:.4f} after {record['evaluations']} "
             "evaluations; suggested constants for simtopo/calibrated.py:")
        from .calibration import BOUNDS

        for name in BOUNDS:
            value = record["model"][name]
            unit = MEANING[name][0]
            shown = f"  # {value * SCALE[unit]:.3g} {unit}" if unit in ("us", "ns") else ""
            _out(f"  {name.upper()} = {value:.3g}{shown}")
    if args.output:
        from .io import write_text_atomic

        write_text_atomic(args.output, validation_document(points, read_fit_record()))
        _out(f"wrote {args.output}")
    if not args.fit and not args.output:
        from .calibration import predict, relative_error

        for point, value in zip(points, predict(points), strict=True):
            _out(f"{100 * relative_error(value, point.measured):+7.1f}%  {point.machine}: "
                 f"{point.name}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="simtopo",
        description="Topology-aware simulator and cost model for multi-accelerator PCIe "
                    "servers.")
    parser.add_argument("--version", action="version", version=f"simtopo {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks for errors in input files")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="validate topology and card files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)

    topo = sub.add_parser("topo", help="inspect a topology").add_subparsers(
        dest="topo_command", required=True, metavar="SUBCOMMAND")
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

    p = sub.add_parser("bench", help="simulated p2pBandwidthLatencyTest, nccl-tests and "
                       "bandwidthTest output for a topology")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--devices", metavar="PATTERNS",
                   help="comma-separated globs (default: every SoC)")
    p.add_argument("--p2p", choices=("on", "off", "both"), default="both",
                   help="P2P enabled, disabled (host-staged), or both (default)")
    p.add_argument("--groups", default="2,4,8,16", metavar="N,...",
                   help="collective group sizes, the first N devices (default 2,4,8,16)")
    p.add_argument("--sizes", metavar="SIZES",
                   help="collective message sizes such as 16KiB,64MiB (default 1KiB..64MiB)")
    p.add_argument("--what", default="matrices,collectives,copies",
                   help="which parts: matrices, collectives, copies (default all)")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("calibrate", help="link model against the calibration measurements")
    p.add_argument("--fit", action="store_true",
                   help="refit the link model and leave each machine out "
                        "(writes reports/calibration/fit.json; minutes)")
    p.add_argument("-o", "--output", metavar="MARKDOWN",
                   help="write the validation document (docs/validation.md)")
    p.add_argument("--max-evaluations", type=int, default=400, metavar="N")
    p.set_defaults(func=cmd_calibrate)

    p = topo.add_parser("route", help="the route of one transfer")
    p.add_argument("file", metavar="FILE")
    p.add_argument("src", help="SoC or storage id, socket id, or 'host'")
    p.add_argument("dst", help="SoC or storage id, socket id, or 'host'")
    p.add_argument("--mode", choices=("p2p", "host"), default="p2p")
    p.add_argument("--staging", help="host mode: 'src', 'dst' or a socket id")
    p.set_defaults(func=cmd_route)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SimtopoError as err:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {err}\n")
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): not an error
        return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130

