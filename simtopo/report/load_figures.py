"""Figures of a weight load: time per strategy split by phase, and when each phase ran."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from ..spec.load import PHASES

if TYPE_CHECKING:
    from ..results.result import LoadResult

COLORS = dict(zip(PHASES, ("tab:blue", "tab:cyan", "tab:orange", "tab:red", "tab:purple",
                           "tab:green"), strict=True))


def load_bars(load: LoadResult) -> Figure:
    """One bar per (source, strategy): each phase's busy time stacked, the total marked.

    Phases overlap in a pipelined load, so the stack can exceed the total; the marker is the
    time the load takes."""
    outcomes = load.outcomes
    fig = Figure(figsize=(max(6.0, 1.3 * len(outcomes) + 2), 4.5), layout="constrained")
    ax = fig.subplots()
    labels = [f"{o.strategy}\n{o.source}" for o in outcomes]
    for phase in PHASES:
        bottoms = []
        for o in outcomes:
            below = sum(o.phases[p]["busy_s"] for p in PHASES[:PHASES.index(phase)]
                        if p in o.phases)
            bottoms.append(below)
        heights = [o.phases.get(phase, {}).get("busy_s", 0.0) for o in outcomes]
        if any(heights):
            ax.bar(range(len(outcomes)), [h / 60 for h in heights],
                   bottom=[b / 60 for b in bottoms], color=COLORS[phase], label=phase)
    ax.scatter(range(len(outcomes)), [o.total_s / 60 for o in outcomes], color="black",
               marker="_", s=600, zorder=3, label="load time")
    ax.set_xticks(range(len(outcomes)), labels, fontsize=8)
    ax.set_ylabel("minutes (busy time per phase; phases overlap)")
    ax.set_title(f"{load.name}: {load.checkpoint_bytes / 1e9:.0f} GB onto "
                 f"{len(load.ranks)} ranks", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def load_timeline(load: LoadResult) -> Figure:
    """A row per (source, strategy): the span of each phase from first start to last end."""
    outcomes = load.outcomes
    fig = Figure(figsize=(10, 0.55 * len(outcomes) * len(PHASES) / 2 + 1.5),
                 layout="constrained")
    ax = fig.subplots()
    rows = []
    for o in outcomes:
        for phase in PHASES:
            if phase in o.phases:
                rows.append((f"{o.strategy} {o.source}: {phase}", o.phases[phase], phase))
    for i, (_, p, phase) in enumerate(rows):
        ax.barh(i, (p["end_s"] - p["start_s"]) / 60, left=p["start_s"] / 60,
                color=COLORS[phase], height=0.7)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("minutes from the start of the load")
    ax.set_title(f"{load.name}: when each phase ran", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig
