"""Figures from a Result (matplotlib Figures, no pyplot state): they only read results."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..results.result import Result, VariantResult
from ..sim.profiles import PassProfile, Span
from .draw import draw_topology
from .trace import stage_spans

COMPUTE, COLLECTIVE, TRANSFER = "#2e86c1", "#e67e22", "#8e44ad"


def _representative(result: VariantResult) -> tuple[str, PassProfile]:
    keys = [k for k in result.profiles if k.startswith("decode@")][-1:] or ["forward"]
    return keys[0], result.profiles[keys[0]]


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


def step_timeline(result: VariantResult, top_links: int = 4) -> Figure:
    """One decode step (or the forward pass) on every SoC, and one layer of it up close with
    its collectives and the flows on the busiest links."""
    name, profile = _representative(result)
    spans, t = stage_spans(profile)
    tracks = sorted({x.track for x in spans},
                    key=lambda x: (x.startswith(("stage", "hand-off")), x))
    layer = next(((run, stage) for stage in profile.stages for block, run, _ in stage.blocks
                  if block == "layer"), None)
    panels = 2 if layer else 1
    fig = Figure(figsize=(11, (0.28 * len(tracks) + 1.4) * panels + 0.6))
    ax = fig.add_subplot(panels, 1, 1)
    _rows(ax, spans, tracks, min_width_ms=t * 1e3 / 700)
    ax.set_xlabel("time in the pass (ms)")
    ax.set_title(f"{result.name}: one {name.split('@')[0]} pass, {t * 1e3:.4g} ms "
                 "(blue compute, orange collectives, purple flows on links; the shortest "
                 "drawn wider)", fontsize=9)
    if layer:
        run, _ = layer
        busiest = [r["link"] for r in result.links[:top_links]]
        flows = [f for f in run.flows if f.track in busiest]
        close = run.spans + flows
        order = sorted({x.track for x in run.spans}, key=lambda x: (x.startswith("stage"), x))
        order += [b for b in busiest if any(f.track == b for f in flows)]
        ax2 = fig.add_subplot(2, 1, 2)
        _rows(ax2, close, order)
        ax2.set_xlabel("time in one layer (ms)")
        ax2.set_title(f"one layer up close: {run.seconds * 1e6:.4g} us, of which collectives "
                      f"{(run.seconds - run.compute_s) * 1e6:.3g} us", fontsize=9)
    fig.tight_layout()
    return fig


def link_utilization(result: VariantResult, top: int = 12) -> Figure:
    """Utilisation of the busiest directed links over the whole run."""
    rows = result.links[:top]
    fig = Figure(figsize=(8, 0.3 * max(len(rows), 1) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([r["link"] for r in rows], [100 * r["utilization"] for r in rows],
            color=COLLECTIVE)
    ax.invert_yaxis()
    ax.set_xlabel("utilisation over the run (%)")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{result.name}: busiest links", fontsize=9)
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
    """The topology with each link coloured by its busier direction's utilisation, relative to
    the busiest link of the run (named in the title)."""
    peak = result.links[0]["utilization"] if result.links else 0.0
    load = {r["link"]: (r["utilization"] / peak if peak else 0.0) for r in result.links}
    busiest = f"{result.links[0]['link']} at {peak:.1%}" if result.links else "no traffic"
    return draw_topology(result.topology, link_load=load,
                         title=f"{result.topology.name}: link load of {result.name} "
                               f"(colour relative to the busiest, {busiest})")
