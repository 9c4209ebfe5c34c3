"""Results: metrics per variant, flat rows per SoC and per link, summaries and traces.

Every metric is defined in ``docs/metrics.md``. A :class:`Result` is data: reports, plots and
the CLI only read it. Summaries round floats to 12 significant digits, so that identical
inputs give byte-identical ``summary.json`` files that survive numpy versions.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..accessors import view
from ..plan.memory import HostMemory, MemoryUse
from ..plan.stages import PartitionPlan
from ..sim.loading import LoadOutcome
from ..sim.pipeline import Timeline
from ..sim.profiles import PassProfile
from ..topology.graph import Topology
from ..version import __version__
from ..workload.cost import rate_fallbacks
from ..workload.opgraph import compute_precision
from .bands import describe, speedups

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from .serving import ServingResult

HEADLINE = ("ttft_s", "tpot_mean_s", "tpot_p99_s", "e2e_s", "tokens_per_s",
            "decode_tokens_per_s", "latency_s", "inferences_per_s")


def round12(value: Any) -> Any:
    """Floats at 12 significant digits, recursively; other values unchanged."""
    if isinstance(value, float):
        return float(f"{value:.12g}") if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: round12(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round12(v) for v in value]
    return value


@dataclass
class VariantResult:
    """One simulated variant."""

    name: str
    inputs: dict[str, Any]
    metrics: dict[str, float]
    socs: list[dict[str, Any]]
    links: list[dict[str, Any]]
    algorithms: dict[str, int]
    memory: list[MemoryUse]
    host: HostMemory
    plan: PartitionPlan = field(repr=False)
    topology: Topology = field(repr=False)
    timeline: Timeline = field(repr=False)
    profiles: dict[str, PassProfile] = field(repr=False, default_factory=dict)
    connection: str = "p2p"
    description: str = ""
    simulation: dict[str, str] = field(default_factory=dict)
    """How it was simulated, when not all memoized by the default mode: ``mode``, what ran
    ``live`` and the ``reason`` (:mod:`simtopo.sim.driver`)."""
    scenario: dict[str, Any] = field(default_factory=dict)
    """An MLPerf scenario's ``name``, and offline what ``bound`` it and the host feed's
    busiest resources (:mod:`simtopo.results.scenarios`)."""

    def summary(self) -> dict[str, Any]:
        """Plain data: inputs, metrics, algorithms, SoCs, links (and how it was simulated,
        when not the default's memoized shortcuts; the MLPerf scenario, if any)."""
        extra = {"simulation": dict(self.simulation)} if self.simulation else {}
        if self.scenario:
            extra["scenario"] = dict(self.scenario)
        return round12({
            **extra,
            "name": self.name,
            "description": self.description,
            "inputs": self.inputs,
            "connection": self.connection,
            "metrics": dict(sorted(self.metrics.items())),
            "collective_algorithms": dict(sorted(self.algorithms.items())),
            "host_memory": {"capacity_bytes": self.host.capacity,
                            "programs_bytes": self.host.programs,
                            "staging_bytes": self.host.staging,
                            "runtime_bytes": self.host.runtime,
                            "staging_buffers": self.host.mappings,
                            "total_bytes": self.host.total},
            "warnings": self.warnings,
            "socs": self.socs,
            "links": self.links,
        })

    def plot_timeline(self) -> Figure:
        """One decode step (or the forward pass) per SoC, and one layer up close."""
        return view("report.figures:step_timeline")(self)

    def plot_links(self, top: int = 12) -> Figure:
        """Utilisation of the busiest directed links over the run."""
        return view("report.figures:link_utilization")(self, top)

    def plot_topology(self) -> Figure:
        """The topology with links coloured by their load in this variant."""
        return view("report.figures:topology_load")(self)

    @property
    def warnings(self) -> list[str]:
        """Platform checks that failed (host memory, memory mappings), and precisions the
        SoCs list no rate for (bf16 on the AI 100 runs at its fp16 rate)."""
        workload = self.inputs.get("workload", {})
        activations = workload.get("activations", "fp16")
        precisions = [compute_precision(workload.get("precision", "fp16"), activations),
                      activations]
        found: dict[str, list[str]] = {}
        for stage in self.plan.stages:
            for device in stage.devices:
                node = self.topology.node(device)
                for text in rate_fallbacks(node, precisions):
                    found.setdefault(text, [])
                    if node["card_type"] not in found[text]:
                        found[text].append(node["card_type"])
        return self.host.warnings() + [f"{text} on {', '.join(types)} (no rate listed for it)"
                                       for text, types in found.items()]


@dataclass
class LoadResult:
    """A variant's weight loading: every strategy from every source (``load:``)."""

    name: str
    inputs: dict[str, Any]
    checkpoint_bytes: float
    ranks: list[dict[str, Any]]
    outcomes: list[LoadOutcome]
    description: str = ""
    loaded_bytes: float = 0.0
    """What the ranks receive in all (more than the checkpoint when K/V heads replicate)."""

    def summary(self) -> dict[str, Any]:
        """Plain data: inputs, checkpoint size, ranks per device, every outcome."""
        per_device: Counter[str] = Counter(r["device"] for r in self.ranks)
        return round12({"name": self.name, "description": self.description,
                        "inputs": self.inputs, "checkpoint_bytes": self.checkpoint_bytes,
                        "loaded_bytes": self.loaded_bytes,
                        "ranks": len(self.ranks), "devices": dict(sorted(per_device.items())),
                        "outcomes": [o.summary() for o in self.outcomes]})

    def outcome(self, source: str, strategy: str) -> LoadOutcome:
        """The outcome of ``strategy`` from ``source``."""
        for o in self.outcomes:
            if (o.source, o.strategy) == (source, strategy):
                return o
        raise KeyError((source, strategy))


@dataclass
class Result:
    """An experiment's results: one :class:`VariantResult` per simulated variant, and one
    :class:`LoadResult` per variant with a ``load:`` section."""

    name: str
    description: str
    source: str
    variants: list[VariantResult]
    loads: list[LoadResult] = field(default_factory=list)
    bands: list[dict[str, Any]] = field(default_factory=list)
    """Each P2P-over-host pair's speed-ups at the ends of the unmeasured constants
    (:mod:`simtopo.results.bands`); empty when not computed."""
    servings: list[ServingResult] = field(default_factory=list)
    """One per variant of ``workload.kind: serving`` (:mod:`simtopo.results.serving`)."""

    def variant(self, name: str) -> VariantResult:
        """The variant called ``name``."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def comparisons(self) -> list[dict[str, Any]]:
        """P2P-over-host speed-ups between variants that differ only in the connection."""
        out = []
        bands = {(b["p2p"], b["host"]): b for b in self.bands}
        by_name = {v.name: v for v in self.variants}
        for p2p_name, host_name in connection_pairs(
                [(v.name, v.connection, v.inputs) for v in self.variants]):
            p2p, host = by_name[p2p_name], by_name[host_name]
            row: dict[str, Any] = {"p2p": p2p.name, "host": host.name}
            band = bands.get((p2p.name, host.name), {})
            for metric, value in speedups(p2p.metrics, host.metrics).items():
                row[f"{metric}_speedup"] = value
                ends = band.get(f"{metric}_speedup_band")
                if ends:  # the corners, widened to the value if it lies outside
                    row[f"{metric}_speedup_band"] = [min(ends[0], value), max(ends[1], value)]
            out.append(row)
        return out

    def summary(self) -> dict[str, Any]:
        """Everything as plain data (floats at 12 significant digits)."""
        out = {"simtopo_version": __version__, "experiment": self.name,
               "description": self.description,
               "variants": [v.summary() for v in self.variants],
               "comparisons": self.comparisons()}
        if self.bands:
            out["band"] = describe()
        if self.loads:
            out["loads"] = [load.summary() for load in self.loads]
        if self.servings:
            out["servings"] = [serving.summary() for serving in self.servings]
        return round12(out)

    def to_json(self) -> str:
        """The summary as JSON with sorted keys (byte-identical for identical inputs)."""
        return json.dumps(self.summary(), indent=1, sort_keys=True) + "\n"

    def to_dataframe(self) -> pd.DataFrame:
        """One row per variant, one column per metric."""
        import pandas as pd

        rows = [{"variant": v.name, **v.metrics} for v in self.variants]
        return pd.DataFrame(rows, columns=None if rows else ["variant"]).set_index("variant")

    def serving_dataframe(self, variant: str | None = None) -> pd.DataFrame:
        """One row per request of a serving variant (the first, or ``variant``)."""
        for serving in self.servings:
            if variant is None or serving.name == variant:
                return serving.to_dataframe()
        raise KeyError(variant or "no serving variant")

    def loads_dataframe(self) -> pd.DataFrame:
        """One row per (variant, source, strategy): total and busy time of each phase."""
        import pandas as pd

        rows = []
        for load in self.loads:
            for o in load.outcomes:
                row = {"variant": load.name, "source": o.source, "strategy": o.strategy,
                       "total_s": o.total_s, "bottleneck": o.bottleneck}
                row.update({f"{p}_s": v["busy_s"] for p, v in o.phases.items()})
                rows.append(row)
        return pd.DataFrame(rows)

    def plot_load(self, variant: str | None = None) -> Figure:
        """Load time per strategy and source, split by phase (a matplotlib Figure)."""
        return view("report.load_figures:load_bars")(self._load(variant))

    def plot_load_timeline(self, variant: str | None = None) -> Figure:
        """When each phase of each strategy was busy (a matplotlib Figure)."""
        return view("report.load_figures:load_timeline")(self._load(variant))

    def _load(self, variant: str | None) -> LoadResult:
        for load in self.loads:
            if variant is None or load.name == variant:
                return load
        raise KeyError(variant or "no load section")

    def links_dataframe(self) -> pd.DataFrame:
        """One row per (variant, directed link) that moved bytes."""
        import pandas as pd

        return pd.DataFrame([{"variant": v.name, **row} for v in self.variants
                             for row in v.links])

    def socs_dataframe(self) -> pd.DataFrame:
        """One row per (variant, SoC)."""
        import pandas as pd

        return pd.DataFrame([{"variant": v.name, **row} for v in self.variants
                             for row in v.socs])

    def to_chrome_trace(self, variants: Sequence[str] | None = None) -> dict[str, Any]:
        """A Chrome/Perfetto trace of some variants (default: the first); see
        :func:`simtopo.report.trace.chrome_trace`."""
        chosen = [self.variant(v) for v in variants] if variants else self.variants[:1]
        return view("report.trace:chrome_trace")(chosen)

    def write_report(self, directory: str | Path, command: str = "simtopo run",
                     all_figures: bool = False, jobs: int = 1) -> Path:
        """Write ``directory`` (summary.json, report.md, figures, trace.json) atomically;
        see :func:`simtopo.report.write_report`."""
        return view("report.markdown:write_report")(self, directory, command, all_figures,
                                                    jobs)

    def plot_comparison(self) -> Figure:
        """Headline metrics of every variant side by side (a matplotlib Figure)."""
        return view("report.figures:comparison")(self)

    def _repr_html_(self) -> str:
        html = f"<b>{self.name}</b>: {self.description}<br>"
        if self.variants:
            frame = self.to_dataframe()
            html += frame[[c for c in HEADLINE if c in frame.columns]]._repr_html_()
        if self.loads:
            html += self.loads_dataframe()._repr_html_()
        return html


def connection_pairs(entries: Sequence[tuple[str, str, dict[str, Any]]]
                     ) -> list[tuple[str, str]]:
    """(P2P, host-routed) names of the variants that differ only in the connection, from
    each variant's (name, connection, inputs), host-routed variants in order."""
    out = []
    for host, connection, inputs in entries:
        if connection != "host":
            continue
        key = _without_connection(inputs)
        out += [(p2p, host) for p2p, other, theirs in entries
                if other == "p2p" and _without_connection(theirs) == key]
    return out


def _without_connection(inputs: dict[str, Any]) -> str:
    """The inputs but for how devices talk (the connection, the host all-reduce algorithm)."""
    plan = {k: v for k, v in inputs.get("plan", {}).items() if k != "connection"}
    transfer = {k: v for k, v in inputs.get("transfer", {}).items() if k != "host_allreduce"}
    return json.dumps({**inputs, "plan": plan, "transfer": transfer}, sort_keys=True,
                      default=str)
