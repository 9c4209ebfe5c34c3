"""Figures from a Result (matplotlib Figures, no pyplot state): they only read results."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..results.result import Result, VariantResult
from ..sim.profiles import Span
from .draw import draw_topology
from .figure_data import link_busy, representative, step_shares

COMPUTE, COLLECTIVE, TRANSFER, IDLE = "#2e86c1", "#e67e22", "#8e44ad", "#d5d8dc"


def _rows(ax: Axes, spans: list[Span], order: list[str], min_width_ms: float = 0.0) -> None:
    """One row per track; bars narrower than ``min_width_ms`` are drawn that wide, so that
    microsecond collectives stay visible on a pass of tens of milliseconds."""
    colours = {"compute": COMPUTE, "collective": COLLECTIVE, "transfer": TRANSFER}
    for i, track in enumerate(order):
        for category, colour in colours.items():
            bars = [(s.start_s * 1e3, max((s.end_s - s.start_s) * 1e3, min_width_ms))
                    for s in spans if s.track == track and s.category == category]
            if bars:
                ax.broken_barh(bars, (i - 0.4, 0.8), facecolors=colour, linewidth=0)
    ax.set_yticks(range(len(order)), labels=order, fontsize=7)
    ax.invert_yaxis()


def _merge_alike(spans: list[Span]) -> tuple[list[Span], list[str]]:
    """SoC tracks with identical spans (the SoCs of a tensor-parallel stage) as one row named
    after the first and last, and the rows in order (SoCs first)."""
    by_track: dict[str, list[Span]] = {}
    for span in spans:
        by_track.setdefault(span.track, []).append(span)
    alike: dict[tuple, list[str]] = {}
    for track in sorted(by_track, key=lambda x: (x.startswith("stage"), x)):
        key = tuple((s.name, s.category, s.start_s, s.end_s) for s in by_track[track])
        alike.setdefault(key, []).append(track)
    merged, order = [], []
    for tracks in alike.values():
        label = tracks[0] if len(tracks) == 1 else \
            f"{len(tracks)} SoCs {tracks[0]} .. {tracks[-1]}"
        order.append(label)
        merged += [Span(label, s.name, s.category, s.start_s, s.end_s)
                   for s in by_track[tracks[0]]]
    return merged, order


def _shares(ax: Axes, result: VariantResult, kind: str) -> None:
    """Stacked bars: where each stage's SoCs spend the step, with the shares written in."""
    step, rows = step_shares(result)
    parts = (("compute_s", "compute", COMPUTE), ("communication_s", "collectives not hidden",
                                                  COLLECTIVE),
             ("host_s", "host round trip", TRANSFER), ("waiting_s", "waiting", IDLE))
    for i, row in enumerate(rows):
        left = 0.0
        for attr, label, colour in parts:
            width = getattr(row, attr) * 1e3
            ax.barh(i, width, left=left, color=colour, height=0.6,
                    label=label if i == 0 else None)
            if width >= 0.06 * step * 1e3:
                ax.text(left + width / 2, i, f"{width / (step * 1e3):.0%}", ha="center",
                        va="center", fontsize=8, color="white" if colour != IDLE else "black")
            left += width
    ax.set_yticks(range(len(rows)), labels=[r.label for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, step * 1e3)
    ax.set_xlabel(f"time in the {kind} (ms)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(rows) < 3 else -0.2),
              ncol=4, fontsize=8, frameon=False)


def step_timeline(result: VariantResult, top_links: int = 4) -> Figure:
    """Where each stage's SoCs spend a decode step (or the forward pass), and one layer up
    close with its collectives and the flows on the busiest links."""
    name, profile = representative(result)
    kind = "median decode step" if "step_s" in result.metrics else f"{name} pass"
    step, rows = step_shares(result)
    layer = next(((run, stage) for stage in profile.stages for block, run, _ in stage.blocks
                  if block == "layer"), None)
    close: list[Span] = []
    order: list[str] = []
    if layer:
        run, _ = layer
        busiest = [r["link"] for r in result.links[:top_links]]
        flows = [f for f in run.flows if f.track in busiest]
        close, order = _merge_alike(run.spans)
        close += flows
        order += [b for b in busiest if any(f.track == b for f in flows)]
    top_h, low_h = 0.45 * len(rows) + 1.6, 0.32 * len(order) + 1.2
    fig = Figure(figsize=(11, top_h + (low_h if layer else 0)))
    grid = fig.add_gridspec(2 if layer else 1, 1,
                            height_ratios=[top_h, low_h] if layer else [1])
    ax = fig.add_subplot(grid[0])
    _shares(ax, result, kind)
    groups = result.inputs.get("workload", {}).get("groups", 1)
    others = (f"\n(with {groups} request groups in flight, the others' steps fill the waiting)"
              if groups > 1 and len(rows) > 1 else "")
    ax.set_title(f"{result.name}: the {kind}, {step * 1e3:.4g} ms: where each stage's SoCs "
                 f"spend it{others}", fontsize=9)
    if layer:
        run, _ = layer
        ax2 = fig.add_subplot(grid[1])
        _rows(ax2, close, order)
        ax2.set_xlabel("time in one layer (ms)")
        ax2.set_title(f"one layer up close: {run.seconds * 1e6:.4g} us, of which collectives "
                      f"{(run.seconds - run.compute_s) * 1e6:.3g} us (blue compute, orange "
                      "collectives, purple flows on the busiest links)", fontsize=9)
    fig.tight_layout()
    return fig


def link_utilization(result: VariantResult, top: int = 12) -> Figure:
    """The busiest directed links of a step: how hard each is driven while it carries
    traffic, and how much of the step it carries any."""
    name, _ = representative(result)
    busy = link_busy(result)
    rows = sorted(busy.values(), key=lambda b: (-b.bytes, b.link))[:top]
    fig = Figure(figsize=(9, 0.32 * max(len(rows), 1) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    labels = [b.link for b in rows]
    ax.barh(labels, [100 * b.while_busy for b in rows], color=COLLECTIVE,
            label="while carrying traffic")
    ax.barh(labels, [100 * b.while_busy * b.busy_share for b in rows], color=COMPUTE,
            height=0.35, label="over the whole pass")
    for i, b in enumerate(rows):
        ax.text(100 * b.while_busy + 1, i, f"busy {b.busy_share:.1%} of the pass", va="center",
                fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 125)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("utilisation (% of the link's capacity)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=7,
              frameon=False)
    ax.set_title(f"{result.name}: the links of one {name.split('@')[0]} pass, by bytes "
                 "moved", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def comparison(result: Result) -> Figure:
    """Headline metrics of every variant side by side."""
    names = [v.name for v in result.variants]
    llm = any("ttft_s" in v.metrics for v in result.variants)
    metrics = ([("tokens_per_s", "tokens/s", 1.0), ("tpot_mean_s", "time per token (ms)", 1e3),
                ("ttft_s", "time to first token (ms)", 1e3)] if llm else
               [("inferences_per_s", "inferences/s", 1.0), ("latency_s", "latency (ms)", 1e3)])
    fig = Figure(figsize=(3.6 * len(metrics), 0.35 * len(names) + 1.6))
    for k, (metric, label, scale) in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1)
        values = [v.metrics.get(metric, 0.0) * scale for v in result.variants]
        colours = [COMPUTE if v.connection == "p2p" else COLLECTIVE for v in result.variants]
        ax.barh(names, values, color=colours)
        ax.invert_yaxis()
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="y", labelsize=7 if k == 0 else 0, labelleft=k == 0)
    fig.suptitle(f"{result.name}: variants (blue P2P, orange host-routed)", fontsize=10)
    fig.tight_layout()
    return fig


def topology_load(result: VariantResult) -> Figure:
    """The topology with each link coloured by its busier direction's utilisation over the
    run, on an absolute (logarithmic) scale with a colour bar."""
    load = {r["link"]: r["utilization"] for r in result.links}
    busiest = (f"busiest {result.links[0]['link']} at {result.links[0]['utilization']:.2%}"
               if result.links else "no traffic")
    return draw_topology(result.topology, link_load=load,
                         title=f"{result.topology.name}: link load of {result.name} over the "
                               f"run ({busiest})")
