"""``simtopo check``: re-run the experiments behind baselines and show what moved.

Exit 0 when every baseline holds, 1 when a prediction drifted beyond its tolerance, 2 on bad
input. ``--update`` rewrites drifted baselines; ``--add EXPERIMENT`` writes a new one.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from ..errors import ConfigError
from .common import add_selection_options, console

EXIT_OK, EXIT_DRIFT = 0, 1
ROWS = 40
"""Rows of the drift table shown without ``--all`` (headline metrics first)."""


def _tolerances(items: list[str] | None) -> dict[str, float]:
    """``--tolerance 0.01`` (the default) and ``--tolerance ttft_s=0.02`` (one key)."""
    from ..analysis.baselines import DEFAULT_KEY

    out: dict[str, float] = {}
    for item in items or []:
        key, sep, text = item.rpartition("=")
        key = key if sep else DEFAULT_KEY
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not key or not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"--tolerance: expected a relative tolerance of at least 0, or "
                              f"KEY=TOLERANCE, e.g. 0.01 or ttft_s=0.02 or socs.comm_s=0.1 "
                              f"(got {item!r})")
        out[key] = value
    return out


def _show(value: Any) -> str:
    from ..analysis.regress import _show as show

    return show(value)


def _rank(difference: Any) -> tuple[int, str]:
    """Headline metrics first, then other metrics, then everything else."""
    from ..results.result import HEADLINE

    if ".metrics." in difference.path:
        return (0 if difference.key in HEADLINE else 1), difference.path
    return 2, difference.path


def _table(checks: list[Any], show_all: bool) -> Any:
    from ..report.tables import NAME, NUMBER, TEXT, terminal_table

    several = len({c.baseline.name for c in checks if c.differences}) > 1
    title = "what moved (relative to the baseline)"
    if not several:
        title += "".join(f": {c.baseline.name}" for c in checks if c.differences)[:1000]
    table = terminal_table(title, [
        *([("baseline", NAME)] if several else []), ("variant", NAME), ("where", TEXT),
        ("was", NUMBER), ("now", NUMBER), ("change", NUMBER), ("tol.", NUMBER)])
    rows = [(c.baseline.name, d) for c in checks for d in sorted(c.differences, key=_rank)]
    for name, d in rows if show_all else rows[:ROWS]:
        where = d.path.partition("].")[2] or d.path if d.variant else d.path
        if d.relative is None:
            cells = [_show(d.expected), _show(d.actual), d.verdict, ""]
        else:
            sign = "+" if d.actual >= d.expected else "-"
            cells = [f"{d.expected:.5g}", f"{d.actual:.5g}",
                     f"{sign}{100 * d.relative:.3g}% {d.verdict}",
                     f"{100 * d.tolerance:.2g}%" if d.tolerance is not None else ""]
        table.add_row(*([name] if several else []), d.variant or "", where, *cells)
    if not show_all and len(rows) > ROWS:
        table.caption = f"... and {len(rows) - ROWS} more (--all shows every one)"
    return table


def cmd_check(args: argparse.Namespace) -> int:
    """``simtopo check``: re-run baselines and compare, or add and update them."""
    from ..analysis import baselines
    from ..io.paths import display_path

    overrides = _tolerances(args.tolerance)
    if args.add:
        if len(args.paths) != 1:
            raise ConfigError("--add writes into one baseline folder; give exactly one")
        written = baselines.add(args.add, args.paths[0], reduced=args.ci,
                                variants=args.variant, tolerance=overrides)
        print(f"wrote {display_path(written)}")
        return EXIT_OK
    if args.update and args.variant:
        raise ConfigError("--update rewrites whole baselines; drop --variant")
    if args.ci and not args.add:
        raise ConfigError("--ci applies to --add (a baseline records its own size)")
    files = baselines.find_baselines(args.paths)
    loaded = [baselines.read_baseline(p) for p in files]  # every file valid before any run
    out, err = console(sys.stdout), console(sys.stderr)
    checks = []
    for baseline in loaded:
        if sys.stderr.isatty():
            err.print(f"checking {baseline.name} ...", end="\r")
        result = baselines.check(baseline, overrides, args.variant)
        checks.append(result)
        state = "ok" if result.passed else f"{len(result.differences)} differences"
        out.print(f"{display_path(baseline.path)}: {state}")
    drifted = [c for c in checks if not c.passed]
    if drifted:
        out.print(_table(drifted, args.all))
    if drifted and args.update:
        for result in drifted:
            print(f"updated {display_path(baselines.update(result))}")
        return EXIT_OK
    if drifted:
        out.print(f"{len(drifted)} of {len(checks)} baselines drifted; if the change is "
                  "intended, rerun with --update and commit the baselines")
        return EXIT_DRIFT
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``check`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("check", help="re-run the experiments behind baseline summaries and "
                                     "compare; exit 1 on drift")
    p.add_argument("paths", nargs="+", metavar="BASELINES",
                   help="baseline files or folders of them (reports/baselines/)")
    p.add_argument("--tolerance", action="append", metavar="[KEY=]REL",
                   help="relative tolerance: the default (else the baseline's, else 1e-6) or one "
                        "key's (ttft_s=0.02); "
                        "overrides the baseline's own; repeatable")
    p.add_argument("--update", action="store_true",
                   help="rewrite the baselines that drifted with the new predictions")
    p.add_argument("--add", metavar="EXPERIMENT",
                   help="write a new baseline for EXPERIMENT into the folder (never overwrites)")
    add_selection_options(p, "check only this variant (repeatable)",
                          "with --add: at the experiment's reduced ci: size")
    p.add_argument("--all", action="store_true", help="show every difference")
    p.set_defaults(func=cmd_check)
