"""The headline's uncertainty: each P2P-over-host speed-up re-run at the two ends of the
constants no measurement pins down for the AI 100.

The AI 100's host hand-off, its host threads, its staging chunk, the host's summing rate, its
collective software costs and its DMA set-up are unpublished; the link model's values come
from PCIe GPU machines (``docs/validation.md``) or are assumptions (:mod:`simtopo.constants`).
A pair of variants that differ only in the connection is simulated twice more: once with every
constant at the end that favours P2P (a slow host path, cheap per-message costs) and once at
the end that favours the host path. The two speed-ups bound the headline; ``simtopo whatif``
shows each constant alone. Ranges and their sources: ``docs/whatif.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..sim.setup import transfer_settings
from ..spec.experiment import Variant
from ..topology.graph import Topology
from ..units import format_bandwidth, format_bytes, format_time

SPEEDUPS = ("ttft_s", "tpot_mean_s", "e2e_s", "latency_s")
"""Metrics of the P2P-over-host speed-up (as :meth:`Result.comparisons`)."""


def format_constant(key: str, value: float) -> str:
    """A band constant's value for people: a thread count, a bandwidth or a time."""
    if key == "handoff_threads":
        return f"{value:g}"
    if key == "host_thread_bw":
        return format_bandwidth(value)
    if key == "chunk":
        return format_bytes(value)
    return format_time(value)


@dataclass(frozen=True)
class Unmeasured:
    """One constant of the band: its range, and which end raises the P2P speed-up."""

    key: str
    label: str
    low: float
    high: float
    relative: bool
    """The range is a factor of the value in effect (for fitted values the AI 100 may not
    share); otherwise absolute SI values."""
    raises: str
    """``high`` or ``low``: the end that makes host-routed traffic relatively slower."""
    host_corner: bool = True
    """Whether the corner that favours the host path sets it (else it keeps the value in
    effect there: its direction turns with the other constants)."""

    def text(self, value: float) -> str:
        """A value of this constant (or a factor, for a relative range) for people."""
        return f"x{value:g}" if self.relative else format_constant(self.key, value)

    def end(self, favour: str) -> str:
        """``low`` or ``high``: the end that favours ``p2p`` or ``host``."""
        return self.raises if favour == "p2p" else ("low" if self.raises == "high" else "high")


UNMEASURED = (
    Unmeasured("handoff_s", "host hand-off", 5e-6, 50e-6, False, "high"),
    Unmeasured("handoff_threads", "host hand-off threads", 1, 16, False, "low"),
    Unmeasured("chunk", "staging chunk", 64 * 1024, 1024 * 1024, False, "low",
               host_corner=False),
    Unmeasured("host_thread_bw", "host summing rate per thread", 5e9, 20e9, False, "low"),
    Unmeasured("collective_launch", "collective launch cost", 0.25, 2.0, True, "low"),
    Unmeasured("collective_step", "collective step cost", 0.25, 2.0, True, "low"),
    Unmeasured("dma_setup", "DMA set-up", 0.3e-6, 2e-6, False, "low"),
)
"""The band's constants. A slower host path (long hand-offs, few threads, slow sums) raises the
speed-up; per-message costs that both paths pay (collective launch and steps, DMA set-up)
weigh more on the faster P2P path, so cheap ones raise it. The staging chunk's direction
turns: with the P2P corner's dear hand-offs small chunks slow the host path (more hand-offs),
with cheap ones they may speed it up (a bounce's pipeline fills in smaller pieces) or not
(many bounces on few threads). So the P2P corner takes its small end and the host corner
keeps the chunk in effect: running the host corner at both ends would cost the main job
about 1 s more (docs/whatif.md gives what the low end leaves out)."""

TRANSFER_KEYS = ("chunk", "host_thread_bw", "collective_launch", "collective_step", "dma_setup")


def in_effect(topo: Topology, variant: Variant, key: str) -> float:
    """The value of band constant ``key`` a run of ``variant`` on ``topo`` uses."""
    if key == "handoff_s":
        return topo.handoff_latency_s
    if key == "handoff_threads":
        return float(topo.handoff_threads)
    return float(getattr(transfer_settings(topo, variant), key) or 0.0)


def value_at(item: Unmeasured, end: str, current: float) -> float:
    """The constant's value at ``end`` of its range."""
    bound = item.low if end == "low" else item.high
    return current * bound if item.relative else bound


def with_host(topo: Topology, **changes: Any) -> Topology:
    """``topo`` with fields of its host spec changed (``handoff_latency``, ``handoff_threads``),
    whether the file pinned them or not; a fresh route cache, the same graph and source."""
    return topo.derived(
        topo.spec.model_copy(update={"host": topo.spec.host.model_copy(update=changes)}))


def with_values(topo: Topology, variant: Variant,
                values: dict[str, float]) -> tuple[Topology, Variant]:
    """``topo`` and ``variant`` with band constants set (absent ones stay as they are)."""
    host: dict[str, Any] = {}
    if "handoff_s" in values:
        host["handoff_latency"] = values["handoff_s"]
    if "handoff_threads" in values:
        host["handoff_threads"] = round(values["handoff_threads"])
    if host:
        topo = with_host(topo, **host)
    transfer = {k: values[k] for k in TRANSFER_KEYS if k in values}
    if transfer:
        variant = replace(variant, transfer={**variant.transfer, **transfer})
    return topo, variant


def corner(topo: Topology, variant: Variant, favour: str) -> dict[str, float]:
    """Every band constant at the end that favours ``favour`` (``p2p`` or ``host``), where
    that corner sets it."""
    return {item.key: value_at(item, item.end(favour), in_effect(topo, variant, item.key))
            for item in UNMEASURED if favour == "p2p" or item.host_corner}


def speedups(p2p: dict[str, float], host: dict[str, float]) -> dict[str, float]:
    """host-routed / P2P for each time metric both have."""
    return {m: host[m] / p2p[m] for m in SPEEDUPS if p2p.get(m) and m in host}


def band_runs(pairs: Sequence[tuple[Variant, Variant]]) -> list[tuple[Variant, str]]:
    """The runs the band of ``pairs`` needs: each variant once at each corner, in order."""
    out: list[tuple[Variant, str]] = []
    for pair in pairs:
        for favour in ("host", "p2p"):
            for variant in pair:
                if not any(v.name == variant.name and f == favour for v, f in out):
                    out.append((variant, favour))
    return out


def at_corner(variant: Variant, favour: str, base: Topology) -> tuple[Variant, Topology]:
    """``variant`` and ``base``, the topology its set-up built (without the fabric for a plan
    that leaves it out), with every band constant at the end that favours ``favour``."""
    topo, changed = with_values(base, variant, corner(base, variant, favour))
    return changed, topo


def band_rows(pairs: Sequence[tuple[Variant, Variant]],
              metrics: dict[tuple[str, str], dict[str, float]]) -> list[dict[str, Any]]:
    """For each (P2P, host-routed) pair, the speed-ups at the two corners, from the metrics of
    every run of :func:`band_runs` by (variant name, favour): ``{"p2p", "host",
    "<metric>_speedup_band": [low, high]}``."""
    rows = []
    for p2p, host in pairs:
        ends = [speedups(metrics[(p2p.name, favour)], metrics[(host.name, favour)])
                for favour in ("host", "p2p")]
        row: dict[str, Any] = {"p2p": p2p.name, "host": host.name}
        for metric in SPEEDUPS:
            if all(metric in e for e in ends):
                row[f"{metric}_speedup_band"] = sorted(e[metric] for e in ends)
        rows.append(row)
    return rows


def band_text(row: dict[str, Any], key: str) -> str:
    """A comparison row's range of speed-up ``key`` for people, ``(low-high)``, or ``""``."""
    band = row.get(f"{key}_band")
    return f"({band[0]:.3g}-{band[1]:.3g})" if band else ""


def describe() -> list[dict[str, Any]]:
    """The band's constants and ranges as plain data (for summaries)."""
    return [{"constant": i.key, "label": i.label, "low": i.low, "high": i.high,
             "relative": i.relative, "raises_speedup": i.raises, "host_corner": i.host_corner}
            for i in UNMEASURED]
