"""The weight-loading part of a report: a table per variant and its figures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from ..spec.load import PHASES

if TYPE_CHECKING:
    from ..results.result import LoadResult, Result

GB = 1e9
SHORT = {"shard-on-compile-first": "compile, 1st run", "shard-on-compile": "pre-sharded",
         "shard-on-load": "shard on load"}


def _min(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.3g} s"


def load_figures(result: Result, stem: Callable[[str], str]
                 ) -> dict[str, Callable[[], Figure]]:
    """File name -> a function drawing it: bars and timeline of every load."""
    from .load_figures import load_bars, load_timeline

    out: dict[str, Callable[[], Figure]] = {}
    for load in result.loads:
        out[f"load-{stem(load.name)}.png"] = lambda load=load: load_bars(load)
        out[f"loadtimeline-{stem(load.name)}.png"] = lambda load=load: load_timeline(load)
    return out


def load_section(result: Result) -> list[str]:
    """Markdown: per variant, every strategy from every source with its phases."""
    if not result.loads:
        return []
    out = ["## Weight loading", "",
           "From storage to every rank's device, by strategy (`docs/loading.md`). Busy time of "
           "a phase: the time any chunk was in it; phases overlap, so they can add up to more "
           "than the load time.", ""]
    for load in result.loads:
        out += [_heading(load), "",
                "| source | strategy | load time | " + " | ".join(PHASES) + " | bottleneck |",
                "|---|---|---|" + "---|" * len(PHASES) + "---|"]
        for o in load.outcomes:
            cells = [_min(o.phases[p]["busy_s"]) if p in o.phases else "-" for p in PHASES]
            out.append(f"| {o.source} | {o.strategy} | {_min(o.total_s)} | "
                       + " | ".join(cells) + f" | {o.bottleneck} |")
        notes = sorted({n for o in load.outcomes for n in o.notes})
        out += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    return out


def _heading(load: LoadResult) -> str:
    devices = len({r["device"] for r in load.ranks})
    spec = load.inputs.get("load", {})
    return (f"**{load.name}**: {load.checkpoint_bytes / GB:.4g} GB of "
            f"{spec.get('precision') or load.inputs['workload']['precision']} weights, "
            f"{len(load.ranks)} ranks on {devices} devices, {spec.get('cache', 'cold')} page "
            f"cache, {spec.get('host', {}).get('buffers', 'pinned')} buffers.")


def loads_table(result: Result) -> object:
    """A rich table for the terminal: one row per variant, source and strategy."""
    from .tables import NAME, NUMBER, TEXT, terminal_table

    table = terminal_table(
        f"{result.name}: weight loading",
        [("variant", NAME), ("source", TEXT), ("strategy", TEXT), ("load time", NUMBER),
         ("storage read", NUMBER), ("sharding", NUMBER), ("serialize", NUMBER),
         ("to device", NUMBER), ("bottleneck", TEXT)],
        caption="compile, 1st run: read, shard, serialise, then load the sharded files; "
                "pre-sharded: later runs; busy time per phase (they overlap)")
    for load in result.loads:
        for o in load.outcomes:
            cells = [_min(o.phases[p]["busy_s"]) if p in o.phases else "-"
                     for p in ("storage read", "sharding", "serialization", "host to device")]
            table.add_row(load.name, o.source, SHORT[o.strategy], _min(o.total_s), *cells,
                          o.bottleneck)
    return table
