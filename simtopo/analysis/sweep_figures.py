"""Standard figures of a sweep table (matplotlib Figures, no pyplot state).

- ``scaling.png``: latency and throughput against the SoC count, one series per connection;
- ``p2p_vs_host.png``: the P2P-over-host speed-up (time to first token and per output token)
  of every pair of points that differ only in ``plan.connection`` (when the sweep has that
  axis);
- ``pareto.png``: latency against throughput per SoC, the Pareto-optimal points joined and
  labelled (lower latency and more throughput per SoC are both better).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from ..report.draw import save_figure

if TYPE_CHECKING:
    import pandas as pd

    from .sweep import Axis

COLORS = {"p2p": "tab:blue", "host": "tab:orange"}
FIGURES = ("scaling.png", "pareto.png", "p2p_vs_host.png")


def _latency(frame: pd.DataFrame) -> tuple[str, str]:
    """The latency column of the table and its label: TPOT for LLMs, else the latency."""
    if "tpot_mean_s" in frame:
        return "tpot_mean_s", "time per output token (ms)"
    if "ttft_s" in frame:  # generate: 1, no decode step
        return "ttft_s", "time to first token (ms)"
    return "latency_s", "latency (ms)"


def _throughput(frame: pd.DataFrame) -> tuple[str, str]:
    if "tokens_per_s" in frame:
        return "tokens_per_s", "tokens/s"
    return "inferences_per_s", "inferences/s"


def scaling(frame: pd.DataFrame) -> Figure:
    """Latency and throughput against SoC count; the best point per count is joined."""
    lat, lat_label = _latency(frame)
    thr, thr_label = _throughput(frame)
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, column, label, best in ((axes[0], lat, lat_label, "min"),
                                    (axes[1], thr, thr_label, "max")):
        scale = 1e3 if column == lat else 1.0
        for connection, group in sorted(frame.groupby("connection"), key=lambda g: g[0]):
            color = COLORS.get(str(connection), "tab:gray")
            ax.scatter(group["socs"], group[column] * scale, s=14, alpha=0.45, color=color)
            top = group.groupby("socs")[column].agg(best).sort_index()
            ax.plot(top.index, top.to_numpy() * scale, marker="o", color=color,
                    label=f"{connection} (best per count)")
        ax.set_xscale("log", base=2)
        counts = sorted(int(c) for c in frame["socs"].unique())
        ax.set_xticks(counts, [str(c) for c in counts])  # 8, 16; not 2^3, 2^4
        ax.minorticks_off()
        ax.set_xlabel("SoCs")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("scaling with the SoC count")
    return fig


def p2p_speedups(frame: pd.DataFrame, axes: Sequence[Axis]) -> pd.DataFrame | None:
    """Host time / P2P time per pair of points that differ only in the connection: one
    column per time metric there is (TTFT, where the gap is largest, and TPOT; or the
    latency), indexed by the other settings."""
    if "plan.connection" not in frame:
        return None
    others = ["variant", *(a.key for a in axes if a.key != "plan.connection")]
    metrics = [m for m in ("ttft_s", "tpot_mean_s", "latency_s") if m in frame]
    p2p = frame[frame["plan.connection"] == "p2p"].set_index(others)[metrics]
    host = frame[frame["plan.connection"] == "host"].set_index(others)[metrics]
    speedup = (host / p2p).dropna(how="all").sort_index()
    return None if speedup.empty else speedup


LABELS = {"ttft_s": "time to first token", "tpot_mean_s": "time per output token",
          "latency_s": "latency"}


def p2p_vs_host(frame: pd.DataFrame, axes: Sequence[Axis]) -> Figure | None:
    """Speed-up of P2P over host for point pairs differing only in the connection, for each
    time metric side by side."""
    speedup = p2p_speedups(frame, axes)
    if speedup is None:
        return None
    others = ["variant", *(a.key for a in axes if a.key != "plan.connection")]
    fig = Figure(figsize=(max(6.0, 0.5 * len(speedup) * len(speedup.columns) + 2), 4.5),
                 layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(speedup.columns)
    for k, (metric, colour) in enumerate(zip(speedup.columns, ("tab:blue", "tab:green",
                                                               "tab:purple"), strict=False)):
        x = [i + (k - (len(speedup.columns) - 1) / 2) * width for i in range(len(speedup))]
        ax.bar(x, speedup[metric].to_numpy(), width=width, color=colour,
               label=LABELS[metric])
    labels = [" ".join(str(v) for v in (k if isinstance(k, tuple) else (k,)))
              for k in speedup.index]
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(speedup)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("host-routed time / P2P time")
    ax.set_title("what P2P buys over host-routed, per point (" + ", ".join(others) + ")",
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def pareto_front(latency: Sequence[float], per_soc: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both (lower latency, higher per-SoC
    throughput), ordered by latency."""
    order = sorted(range(len(latency)), key=lambda i: (latency[i], -per_soc[i]))
    front, best = [], float("-inf")
    for i in order:
        if per_soc[i] > best:
            front.append(i)
            best = per_soc[i]
    return front


def pareto(frame: pd.DataFrame) -> Figure:
    """Latency against throughput per SoC; the Pareto front joined and labelled."""
    lat, lat_label = _latency(frame)
    thr, thr_label = _throughput(frame)
    per_soc = frame[thr] / frame["socs"]
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    for connection, group in sorted(frame.groupby("connection"), key=lambda g: g[0]):
        ax.scatter(group[lat] * 1e3, group[thr] / group["socs"], s=16, alpha=0.6,
                   color=COLORS.get(str(connection), "tab:gray"), label=str(connection))
    front = pareto_front(list(frame[lat]), list(per_soc))
    ax.plot(frame[lat].iloc[front] * 1e3, per_soc.iloc[front], color="black", linewidth=1,
            label="Pareto front")
    for i in front[:12]:
        ax.annotate(frame["point"].iloc[i], (frame[lat].iloc[i] * 1e3, per_soc.iloc[i]),
                    fontsize=6, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(lat_label)
    ax.set_ylabel(f"{thr_label} per SoC")
    ax.set_title("latency against throughput per SoC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write_figures(frame: pd.DataFrame, axes: Sequence[Axis], folder: Path) -> list[Path]:
    """The figures of the points that ran, written atomically into ``folder``; a figure of
    an earlier sweep in the same folder that this one does not draw is removed."""
    ok = frame[frame["status"] == "ok"].reset_index(drop=True)
    out = []
    if not ok.empty and "socs" in ok:
        out = [save_figure(scaling(ok), folder / "scaling.png"),
               save_figure(pareto(ok), folder / "pareto.png")]
        pair = p2p_vs_host(ok, axes)
        if pair is not None:
            out.append(save_figure(pair, folder / "p2p_vs_host.png"))
    for name in FIGURES:
        if folder / name not in out:
            (folder / name).unlink(missing_ok=True)
    return out
