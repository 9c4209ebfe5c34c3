"""``simtopo bench``: simulated p2pBandwidthLatencyTest, nccl-tests and bandwidthTest output."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .. import limits
from ..errors import ConfigError
from .common import EXIT_OK, echo, select_devices
from .topo import load_topology_arg


def _values(text: str, option: str, parse: Callable[[str], Any], high: float,
            expected: str, unparsed: str | None = None) -> list[Any]:
    """Comma-separated values, each parsed, at most :data:`limits.MAX_BENCH_VALUES` of them,
    each from 1 to ``high``; anything else refused in one line saying what was ``expected``
    (``unparsed``: what to say of a value ``parse`` refuses, else its own message)."""
    try:
        values = [parse(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}" if unparsed is None else
                          f"{option}: {unparsed} (got {text!r})") from None
    if len(values) > limits.MAX_BENCH_VALUES:
        raise ConfigError(f"{option}: {len(values)} values; at most {limits.MAX_BENCH_VALUES}")
    if not values or min(values) < 1 or max(values) > high:
        raise ConfigError(f"{option}: expected {expected} (got {text!r})")
    return values


def _int_list(text: str, option: str) -> list[int]:
    return _values(text, option, int, limits.MAX_SOCS, f"integers from 1 to {limits.MAX_SOCS}",
                   "expected comma-separated integers")


def _size_list(text: str, option: str) -> list[float]:
    from ..units import parse_bytes

    return _values(text, option, parse_bytes, limits.MAX_MESSAGE_BYTES,
                   "sizes from 1B to 1TB such as 16KiB,64MiB")


def cmd_bench(args: argparse.Namespace) -> int:
    """``simtopo bench``: benchmark-shaped output of a topology."""
    from ..calibration import bench
    from ..calibration.bench_report import bench_json, collect_bench

    topo = load_topology_arg(args)
    devices = select_devices(topo, args.devices)
    groups = _int_list(args.groups, "--groups")
    sizes = _size_list(args.sizes, "--sizes") if args.sizes else list(bench.COLLECTIVE_SIZES)
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.p2p]
    parts = [p.strip() for p in args.what.split(",")]
    unknown = sorted(set(parts) - {"matrices", "collectives", "copies"})
    if unknown:
        raise ConfigError(f"--what: unknown part {unknown[0]!r} (expected matrices, "
                          "collectives, copies)")
    result = collect_bench(topo, devices, modes, groups, sizes, parts)
    echo(bench_json(result) if args.json else result.text())
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``bench`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("bench", help="simulated p2pBandwidthLatencyTest, nccl-tests and "
                       "bandwidthTest output for a topology")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--devices", metavar="PATTERNS",
                   help="comma-separated globs (default: every SoC)")
    p.add_argument("--p2p", choices=("on", "off", "both"), default="both",
                   help="matrices and collectives with P2P on (host-routed where the "
                   "platform has no P2P path, and said so), off (host-routed), or both "
                   "(default)")
    p.add_argument("--groups", default="2,4,8,16", metavar="N,...",
                   help="collective group sizes, the first N devices (default 2,4,8,16)")
    p.add_argument("--sizes", metavar="SIZES",
                   help="collective message sizes such as 16KiB,64MiB (default 1KiB..64MiB)")
    p.add_argument("--what", default="matrices,collectives,copies",
                   help="which parts: matrices, collectives, copies (default all)")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(func=cmd_bench)
