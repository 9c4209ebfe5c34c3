"""``simtopo whatif``: which single upgrade buys the most, and the band of the P2P headline.

One ranked table per variant (each perturbation's gain in every headline metric, with its
elasticity), then one table per P2P/host pair (the speed-ups over the ranges of the unpinned
link constants). Definitions: ``docs/whatif.md``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import add_selection_options, console

EXIT_OK = 0

SHORT = {"tpot_mean_s": "TPOT", "ttft_s": "TTFT", "tokens_per_s": "tok/s", "e2e_s": "e2e",
         "latency_s": "latency", "inferences_per_s": "inf/s"}
"""Column names of the headline metrics."""


def _value(metric: str, value: float) -> str:
    from ..analysis.whatif import HIGHER_IS_BETTER
    from ..units import format_time

    return f"{value:.4g}" if metric in HIGHER_IS_BETTER else format_time(value)


def _percent(x: float) -> str:
    """Signed percent at 3 significant digits; ~0% below 0.001% (float noise or nearly)."""
    if x == 0:
        return "0%"
    return "~0%" if abs(x) < 1e-5 else f"{100 * x:+.3g}%"


def _number(x: float) -> str:
    if x == 0:
        return "0"
    return "~0" if abs(x) < 1e-4 else f"{x:.2g}"


def _cell(outcome: Any, base: dict[str, float], metric: str) -> str:
    gain = outcome.gain(base, metric)
    if gain is None:
        return "-"
    elasticity = outcome.elasticity(base, metric)
    if elasticity is None:
        return _percent(gain)
    return f"{_percent(gain)} ({_number(elasticity)})"


def variant_table(v: Any) -> Any:
    """The ranked perturbations of one variant (a rich Table)."""
    from rich import box
    from rich.table import Table

    base = ", ".join(f"{SHORT[m]} {_value(m, v.base[m])}" for m in v.metrics)
    table = Table(title=f"{v.variant}: ranked by {SHORT[v.metrics[0]]} ({base})",
                  title_justify="left", box=box.SIMPLE_HEAD, leading=1)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("perturbation: what changed", overflow="fold")
    for m in v.metrics:  # the gain above the elasticity: narrow enough for 80 columns
        table.add_column(SHORT[m], justify="right", max_width=9)
    for rank, o in enumerate(v.outcomes, 1):
        p = o.perturbation
        label = p.label if p.relative_change is None else \
            f"{p.label} {_percent(p.relative_change)}"
        changed = p.changed if not o.error else f"{p.changed}; not possible: {o.error}"
        table.add_row(str(rank), f"{label}: {changed}",
                      *[_cell(o, v.base, m) for m in v.metrics])
    table.caption = ("gain in each metric (time down, throughput up), and in brackets the "
                     "elasticity: relative change of the metric / relative change of the "
                     "parameter" + ("; " + "; ".join(v.notes) if v.notes else ""))
    table.caption_justify = "left"
    return table


def _best(v: Any) -> str:
    primary = v.metrics[0]
    top = v.outcomes[0] if v.outcomes else None
    gain = top.gain(v.base, primary) if top is not None else None
    if top is None or gain is None or gain <= 1e-12:
        return f"{v.variant}: no single change improves {SHORT[primary]}"
    return (f"{v.variant}: the biggest single gain in {SHORT[primary]} is "
            f"{top.perturbation.label} ({_percent(gain)})")


def _constant(value: Any, key: str = "") -> str:
    from ..results.bands import format_constant

    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None else format_constant(key, value)


def band_table(b: Any) -> Any:
    """The P2P-over-host speed-ups of one pair over the band's ranges (a rich Table)."""
    from rich import box
    from rich.table import Table

    from ..analysis.whatif import RC_HOP
    from ..results.bands import UNMEASURED

    metrics = list(b.base)
    base = ", ".join(f"{SHORT[m]} {b.base[m]:.4g}x" for m in metrics)
    table = Table(title=f"P2P over host-routed, {b.host} vs {b.p2p} ({base})",
                  title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("constant", overflow="fold")
    table.add_column("now", justify="right", no_wrap=True)
    table.add_column("varied", overflow="fold")
    for m in metrics:  # low above high: narrow enough for 80 columns
        table.add_column(f"{SHORT[m]} speed-up", justify="right", max_width=9)
    ranges = {i.key: f"{i.text(i.low)} .. {i.text(i.high)}" for i in UNMEASURED}
    ranges[RC_HOP[0]] = f"{_constant(RC_HOP[2])} .. {_constant(RC_HOP[3])}"
    for row in b.rows:
        cells = []
        for m in metrics:
            values = [f"{p.speedups[m]:.4g}x" if p.speedups else "refused" for p in row.points]
            cells.append(" .. ".join(values))
        if row.key == "corners":
            varied = "favouring host .. P2P"
        elif row.key == "rc_p2p":
            varied = _constant(row.points[0].values["rc_p2p"])
        else:
            varied = ranges[row.key]
        table.add_row(row.label, _constant(row.base_value, row.key), varied, *cells)
    table.add_row("band", "", "every run: min .. max",
                  *[f"{b.span(m)[0]:.4g}x .. {b.span(m)[1]:.4g}x" for m in metrics])
    refused = [p.error for r in b.rows for p in r.points if p.error]
    table.caption = ("speed-up = host-routed time / P2P time; each constant at the low and the "
                     "high end of its range, the others as now (docs/whatif.md)"
                     + (f"; refused: {refused[0]}" if refused else ""))
    table.caption_justify = "left"
    return table


def cmd_whatif(args: argparse.Namespace) -> int:
    """Run ``simtopo whatif``."""
    from ..analysis.whatif import whatif

    err = console(sys.stderr)
    if sys.stderr.isatty() and not args.json:
        with err.status("what if ...") as status:
            result = whatif(args.file, args.variant, args.ci, args.step,
                            with_band=not args.no_band,
                            progress=lambda text: status.update(f"what if: {text}"))
    else:
        result = whatif(args.file, args.variant, args.ci, args.step, with_band=not args.no_band)
    if args.json:
        sys.stdout.write(result.to_json())
        return EXIT_OK
    out = console(sys.stdout)
    for v in result.variants:
        out.print(variant_table(v))
        out.print(_best(v))
        out.print()
    for b in result.bands:
        out.print(band_table(b))
        out.print()
    for note in result.notes:
        out.print(f"note: {note}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``whatif`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("whatif", help="perturb one thing at a time: which single upgrade buys "
                                      "the most, and the band of the P2P-over-host speed-up")
    p.add_argument("file", metavar="EXPERIMENT", help="an experiment YAML file")
    add_selection_options(p, "only this variant (repeat for more; a band needs both of a "
                             "P2P/host pair)", "the experiment's reduced CI size (its 'ci:' block)")
    p.add_argument("--step", type=float, default=0.1, metavar="FRACTION",
                   help="relative step of the continuous perturbations (default 0.1: 10%%)")
    p.add_argument("--no-band", action="store_true", help="skip the P2P-over-host band")
    p.add_argument("--json", action="store_true", help="JSON (SI units) instead of tables")
    p.set_defaults(func=cmd_whatif)
