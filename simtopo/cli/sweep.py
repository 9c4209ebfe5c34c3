"""``simtopo sweep``: the cross product of settings, in parallel, resumable."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import limits
from .common import (
    add_selection_options,
    add_simulation_option,
    console,
    counted,
    progress_bar,
)

SHOWN = 25
"""Points listed in the terminal table when the sweep has more (the best by latency)."""


def _table(result: Any) -> Any:
    from ..report.tables import NAME, NUMBER, TEXT, link_text, terminal_table

    frame = result.frame
    ok = frame[frame["status"] == "ok"]
    if "goodput_per_s" in ok:
        return _serving_table(result, ok)
    llm = "ttft_s" in ok
    lat = "tpot_mean_s" if "tpot_mean_s" in ok else "ttft_s"
    lat, thr = (lat, "tokens_per_s") if llm else ("latency_s", "inferences_per_s")
    if len(ok) > SHOWN:
        ok = ok.sort_values([lat, "point"]).head(SHOWN)
        title = f"{result.name} sweep: the {SHOWN} lowest-latency of {len(frame)} points"
    else:
        title = f"{result.name} sweep"
    ttft = llm and lat != "ttft_s"  # a TTFT column besides the latency one
    labels = ((["TTFT ms"] if ttft else []) +
              [{"tpot_mean_s": "TPOT ms", "ttft_s": "TTFT ms"}.get(lat, "latency ms")] +
              (["tok/s", "tok/s/SoC"] if llm else ["inf/s", "inf/s/SoC"]))
    table = terminal_table(title, [
        ("variant", NAME), *((axis.key.split(".")[-1], NUMBER) for axis in result.axes),
        ("SoCs", NUMBER), *((label, NUMBER) for label in labels), ("busiest link", TEXT)])
    for _, row in ok.iterrows():
        cells = [row["variant"], *(str(row[a.key]) for a in result.axes),
                 f"{row['socs']:.0f}"]
        if ttft:
            cells.append(f"{1e3 * row['ttft_s']:.4g}")
        cells += [f"{1e3 * row[lat]:.4g}", f"{row[thr]:.4g}",
                  f"{row[thr] / row['socs']:.4g}", link_text(str(row["busiest_link"]))]
        table.add_row(*cells)
    return table


def _serving_table(result: Any, ok: Any) -> object:
    """Serving points: the SLO percentiles, throughput and goodput of each."""
    from ..report.tables import NAME, NUMBER, terminal_table

    columns = [("TTFT p99 ms", "ttft_p99_s", 1e3), ("TPOT p99 ms", "tpot_p99_s", 1e3),
               ("served/s", "requests_per_s", 1.0), ("goodput/s", "goodput_per_s", 1.0),
               ("in SLO %", "slo_attainment", 100.0)]
    table = terminal_table(f"{result.name} sweep", [
        ("variant", NAME), *((axis.key.split(".")[-1], NUMBER) for axis in result.axes),
        ("SoCs", NUMBER), *((label, NUMBER) for label, _, _ in columns)])
    for _, row in ok.iterrows():
        table.add_row(row["variant"], *(str(row[a.key]) for a in result.axes),
                      f"{row['socs']:.0f}", *(f"{row[key] * scale:.4g}"
                                              for _, key, scale in columns))
    return table


def cmd_sweep(args: argparse.Namespace) -> int:
    """``simtopo sweep``: run the points, print the table, write the figures."""
    from ..analysis.executors import describe, run_sweep
    from ..analysis.sweep import parse_set
    from ..io.paths import display_path

    axes = [parse_set(s) for s in args.set] if args.set else None
    kwargs = dict(axes=axes, variants=args.variant, reduced=args.ci, folder=args.out,
                  executor=args.executor, jobs=args.jobs, scheduler=args.scheduler,
                  figures=not args.no_figures, mode=args.simulation)
    with progress_bar("sweep", not args.quiet) as progress:
        result = run_sweep(args.file, progress=progress, **kwargs)
    if not args.quiet and len(result.failed) < len(result.points):
        console(sys.stdout).print(_table(result))
    for rec in result.failed[:10]:
        sys.stderr.write(f"failed: {rec['error']}\n")
    if len(result.failed) > 10:
        sys.stderr.write(f"... and {len(result.failed) - 10} more failed points (see the "
                         "table's error column)\n")
    print(describe(result))
    for path in result.figures:
        if not args.quiet:
            print(f"figure: {display_path(path)}")
    if result.points and len(result.failed) == len(result.points):
        sys.stderr.write("error: every point failed (see above)\n")
        return 1
    return 0


def register(sub: Any) -> None:
    """Add ``sweep`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("sweep", help="run an experiment over the cross product of settings "
                                     "(parallel, resumable)")
    p.add_argument("file", metavar="EXPERIMENT")
    p.add_argument("--set", action="append", metavar="KEY=V1,V2,...",
                   help="a key and its values, e.g. plan.tp=1,2,4,8 (repeatable; default: "
                        "the file's sweep: block)")
    add_selection_options(p, "sweep this variant (repeatable; default all, or the block's)")
    p.add_argument("--out", metavar="DIR",
                   help="where points.jsonl, sweep.csv and figures go "
                        "(default reports/<experiment>-sweep)")
    p.add_argument("--executor", choices=("local", "serial", "dask"), default="local",
                   help="local processes (default), this process, or a dask cluster")
    p.add_argument("-j", "--jobs", type=counted(limits.MAX_THREADS), metavar="N",
                   help="local processes (default: the CPU count)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --executor dask: the scheduler, e.g. tcp://host:8786")
    p.add_argument("--no-figures", action="store_true", help="the table only")
    p.add_argument("-q", "--quiet", action="store_true", help="no table, no progress")
    add_simulation_option(p)
    p.set_defaults(func=cmd_sweep)
