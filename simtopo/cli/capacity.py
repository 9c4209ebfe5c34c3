"""``simtopo capacity``: the fewest SoCs that serve a request rate within the SLOs."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import limits
from ..errors import ConfigError
from .common import EXIT_OK, console, counted


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected requests/s, e.g. 0.5 (got {text!r})") \
            from None
    if not 0 < value <= 1e6:
        raise argparse.ArgumentTypeError(f"expected a rate above 0, at most 1e6 (got {text})")
    return value


def cmd_capacity(args: argparse.Namespace) -> int:
    """``simtopo capacity``: try layouts at the rate, print them and the answer."""
    from ..analysis.capacity import capacity, max_rate
    from ..report.tables import NAME, NUMBER, TEXT, terminal_table

    if args.rate is None and args.topology:
        raise ConfigError("--topology tries layouts at a rate: give --rate (without it, "
                          "capacity finds the highest rate of the variant's own layout)")
    if args.rate is None:  # the highest rate the variant's own layout serves
        rate, metrics = max_rate(args.file, args.variant, args.attainment, reduced=args.ci)
        line = (f"{args.variant}: {rate:.4g} requests/s with {100 * args.attainment:g}% of "
                "its requests within every SLO")
        if metrics:
            line += (f" (TTFT p99 {metrics['ttft_p99_s'] * 1e3:.4g} ms, TPOT p99 "
                     f"{metrics.get('tpot_p99_s', 0.0) * 1e3:.4g} ms)")
        console(sys.stdout).print(line if rate > 0 else
                                  f"{args.variant}: no rate meets the SLOs")
        return EXIT_OK

    err = console(sys.stderr)

    def progress(text: str) -> None:
        if sys.stderr.isatty() and not args.quiet:
            err.print(f"capacity: {text} ...")

    found = capacity(args.file, args.variant, args.rate, args.attainment, reduced=args.ci,
                     progress=progress, jobs=args.jobs or os.cpu_count() or 1,
                     topologies=args.topology or ())
    several = len(found.topologies) > 1
    out = console(sys.stdout)
    table = terminal_table(
        f"{found.variant} at {found.rate:g} requests/s", [
            ("layout", NAME), ("SoCs", NUMBER), ("served/s", NUMBER), ("TTFT p99 ms", NUMBER),
            ("TPOT p99 ms", NUMBER), ("in SLO", NUMBER), ("", TEXT)],
        f"a layout meets the SLOs when {100 * found.attainment:g}% of its requests meet every "
        "one (docs/metrics.md, \"Serving\")")
    for t in found.trials:
        m = t.metrics
        cells = [f"{m[k] * s:.4g}" if k in m else "-" for k, s in (
            ("requests_per_s", 1), ("ttft_p99_s", 1e3), ("tpot_p99_s", 1e3))]
        attained = f"{100 * m['slo_attainment']:.3g}%" if "slo_attainment" in m else "-"
        note = t.error[:60] if t.error else ("meets" if t.meets(found.attainment) else "")
        where = f"{t.topology}: " if several else ""
        table.add_row(f"{where}tp{t.tp} x{t.replicas} {t.connection}", str(t.socs), *cells,
                      attained, note)
    out.print(table)
    for connection, label in (("p2p", "P2P"), ("host", "host-routed")):
        best = found.best(connection)
        on = f" on {best.topology}" if best and several else ""
        out.print(f"{label}: " + (f"tp{best.tp} x{best.replicas}{on}, {best.socs} SoCs"
                                   if best else "no layout on "
                                   f"{'these topologies' if several else 'this topology'} "
                                   "meets the SLOs"))
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``capacity`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("capacity", help="the fewest SoCs that serve a request rate within a "
                                        "serving variant's SLOs, P2P and host-routed")
    p.add_argument("file", metavar="EXPERIMENT", help="an experiment with a serving variant")
    p.add_argument("--variant", required=True, metavar="NAME",
                   help="the serving variant to take as the template")
    p.add_argument("--rate", type=_rate, metavar="REQ_PER_S",
                   help="the offered load, requests/s (left out: the highest rate the "
                        "variant's own layout serves within the SLOs)")
    p.add_argument("--topology", action="append", metavar="FILE",
                   help="a topology to try layouts on instead of the variant's (repeat for a "
                        "family: the answer is the fewest SoCs on any of them)")
    p.add_argument("--attainment", type=float, default=0.99, metavar="SHARE",
                   help="share of requests that must meet every SLO (default 0.99)")
    p.add_argument("--ci", action="store_true", help="the experiment's reduced CI size")
    p.add_argument("-j", "--jobs", type=counted(limits.MAX_THREADS), metavar="N",
                   help="processes for the layouts' series (default: the CPU count)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_capacity)
