"""``simtopo run``: simulate an experiment, print a table, write reports/<name>/."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import limits
from .common import EXIT_OK, add_selection_options, add_simulation_option, console, counted

if TYPE_CHECKING:
    from ..results.result import Result


def _results_table(result: Result) -> object:
    from ..report.tables import NAME, NUMBER, TEXT, link_text, terminal_table
    from ..results.bands import band_text

    llm = any("ttft_s" in v.metrics for v in result.variants)
    metrics = []
    if llm:
        metrics += [("TTFT ms", "ttft_s", 1e3), ("TPOT ms", "tpot_mean_s", 1e3),
                    ("tok/s", "tokens_per_s", 1.0), ("e2e s", "e2e_s", 1.0)]
    if any("latency_s" in v.metrics for v in result.variants):
        metrics += [("latency ms", "latency_s", 1e3), ("inf/s", "inferences_per_s", 1.0)]
    if any("offline_samples_per_s" in v.metrics for v in result.variants):
        metrics += [("offline\nsamples/s", "offline_samples_per_s", 1.0)]
    if any("query_latency_s" in v.metrics for v in result.variants):
        metrics += [("query ms", "query_latency_s", 1e3)]
    bound = any(v.scenario.get("bound") for v in result.variants)
    comparisons = result.comparisons()
    shown = [(key, label) for key, label in (("ttft_s_speedup", "TTFT"),
                                             ("tpot_mean_s_speedup", "TPOT"),
                                             ("latency_s_speedup", "latency"))
             if any(key in c for c in comparisons)]
    columns = [("variant", NAME), ("SoCs", NUMBER), *((label, NUMBER) for label, _, _ in metrics),
               *([("offline bound", TEXT)] if bound else []), ("busiest link", TEXT)]
    banded = [(key, label) for key, label in shown[-1:]
              if any(f"{key}_band" in c for c in comparisons)]
    if comparisons:
        columns.append(("P2P\nspeed-up\n" + ", ".join(label for _, label in shown), NUMBER))
    caption = ""
    if comparisons:
        caption = ("P2P speed-up: host-routed time / P2P time, " + "; ".join(
            f"{c['host']} vs {c['p2p']}" for c in comparisons))
        if banded:
            caption += (f"; in brackets the {banded[0][1]} speed-up's range over the "
                        "unmeasured host and collective constants (docs/whatif.md)")
    table = terminal_table(f"{result.name}: {result.description}" if result.description
                           else result.name, columns, caption)
    speedups: dict[str, str] = {}
    for c in comparisons:
        speedups.setdefault(c["host"], "\n".join([", ".join(
            f"{c[key]:.3g}" if key in c else "-" for key, _ in shown)]
            + [band_text(c, key) for key, _ in banded]))
    for v in result.variants:
        cells = [v.name, f"{v.metrics['socs']:.0f}"]
        for _, key, scale in metrics:
            value = v.metrics.get(key)
            cells.append("-" if value is None else f"{value * scale:.4g}")
        if bound:
            cells.append(link_text(v.scenario["bound"]) if v.scenario.get("bound") else "-")
        top = v.links[0] if v.links else None
        cells.append(f"{link_text(top['link'])} {100 * top['utilization']:.2g}%" if top else "-")
        if comparisons:
            cells.append(speedups.get(v.name, ""))
        table.add_row(*cells)
    return table


def _load_report() -> None:
    """Load what writing the report needs (matplotlib and its fonts)."""
    from ..report import markdown  # noqa: F401


def cmd_run(args: argparse.Namespace) -> int:
    """``simtopo run``: simulate, print the table, write the report."""
    from ..io.paths import child_path, display_path
    from ..results.run import run
    from ..spec.experiment import load_experiment

    exp = load_experiment(args.file, reduced=args.ci)
    folder = None if args.no_report else child_path(
        args.reports, exp.name + ("-ci" if args.ci else ""), "the experiment name")
    names = args.variant or None
    count = len(names) if names else len(exp.variants)
    jobs = args.jobs or os.cpu_count() or 1
    # the report's modules (matplotlib) load while forked band runs finish
    waiting = _load_report if folder is not None and jobs > 1 else None
    err = console(sys.stderr)
    if sys.stderr.isatty() and not args.quiet:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(
                "{task.completed}/{task.total}"), TimeElapsedColumn(), console=err,
                transient=True) as bar:
            task = bar.add_task(f"simulating {exp.name}", total=count)
            seen: list[str] = []

            def progress(name: str) -> None:
                if seen:
                    bar.advance(task)
                seen.append(name)
                # the band's runs (two per variant of a P2P/host pair) come after the
                # variants, their number known only then: the total grows to show them
                bar.update(task, description=f"simulating {exp.name}: {name}",
                           total=max(count, len(seen)))

            result = run(exp, names, progress=progress, mode=args.simulation,
                         band=not args.no_band, jobs=jobs, waiting=waiting)
    else:
        result = run(exp, names, mode=args.simulation, band=not args.no_band, jobs=jobs,
                     waiting=waiting)
    out = console(sys.stdout)
    if args.json:
        sys.stdout.write(result.to_json())
    elif not args.quiet:
        if result.variants:
            out.print(_results_table(result))
        if result.loads:
            from ..report.load_section import loads_table

            out.print(loads_table(result))
        if result.servings:
            from ..report.serving_section import serving_table

            out.print(serving_table(result))
    for v in result.variants:
        for warning in v.warnings:
            sys.stderr.write(f"warning: {v.name}: {warning}\n")
    if folder is not None:
        command = "simtopo run " + " ".join(
            [display_path(Path(args.file))] + (["--ci"] if args.ci else [])
            + [f"--variant {n}" for n in (names or [])] + (["--no-band"] if args.no_band else []))
        written = result.write_report(folder, command=command, all_figures=args.all_figures,
                                      jobs=jobs)
        if not args.quiet and not args.json:
            out.print(f"report: {display_path(written)}/report.md")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``run`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("run", help="simulate an experiment: a table, then reports/<name>/")
    p.add_argument("file", metavar="EXPERIMENT", help="an experiment YAML file")
    add_selection_options(p, "run only this variant (repeat for more)",
                          "the experiment's reduced CI size (its 'ci:' block); the report goes to "
                          "reports/<name>-ci/")
    p.add_argument("--reports", default="reports", metavar="DIR",
                   help="where reports/<name>/ goes (default: reports)")
    p.add_argument("--no-report", action="store_true", help="print the table only")
    p.add_argument("--no-band", action="store_true",
                   help="skip the P2P speed-ups' range over the unmeasured constants (two more "
                        "runs of each P2P/host-routed pair)")
    p.add_argument("--all-figures", action="store_true",
                   help="figures and trace for every variant (default: the first and the "
                        "first P2P/host pair)")
    p.add_argument("--json", action="store_true", help="print summary.json instead of a table")
    p.add_argument("-q", "--quiet", action="store_true", help="no table, no progress")
    p.add_argument("-j", "--jobs", type=counted(limits.MAX_THREADS), metavar="N",
                   help="processes: the band's runs and the figures go to forked ones "
                        "(default: the CPU count; 1: all in this process; the same report)")
    add_simulation_option(p)
    p.set_defaults(func=cmd_run)
