"""Results: metrics per variant, flat rows per SoC and per link, summaries and traces.

Every metric is defined in ``docs/metrics.md``. A :class:`Result` is data: reports, plots and
the CLI only read it. Summaries round floats to 12 significant digits, so that identical
inputs give byte-identical ``summary.json`` files that survive numpy versions.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .experiment import Variant
from .loading import LoadOutcome
from .memory import HostMemory, MemoryUse
from .plan import PartitionPlan
from .sim import PassProfile, Timeline
from .spec import TransferSpec
from .topology import Topology

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

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

    def summary(self) -> dict[str, Any]:
        """Plain data: inputs, metrics, algorithms, SoCs, links."""
        return round12({
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
        from .plots import step_timeline

        return step_timeline(self)

    def plot_links(self, top: int = 12) -> Figure:
        """Utilisation of the busiest directed links over the run."""
        from .plots import link_utilization

        return link_utilization(self, top)

    def plot_topology(self) -> Figure:
        """The topology with links coloured by their load in this variant."""
        from .plots import topology_load

        return topology_load(self)

    @property
    def warnings(self) -> list[str]:
        """Platform checks that failed (host memory, memory mappings)."""
        return self.host.warnings()


def _bubble(step: float, compute: float, comm: float) -> float:
    """Waiting in a step besides compute and exposed communication (float noise is zero)."""
    bubble = step - compute - comm
    return bubble if bubble > 1e-9 * step else 0.0


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else 0.0


def _links(topo: Topology, moved: Counter[str], makespan: float) -> list[dict[str, Any]]:
    rows = []
    for name, size in moved.items():
        u, v = name.split("->")
        capacity = topo.graph.edges[u, v]["bw_Bps"]
        rows.append({"link": name, "bytes": float(size), "capacity_Bps": capacity,
                     "utilization": float(size / (capacity * makespan)) if makespan else 0.0})
    rows.sort(key=lambda r: (-r["utilization"], r["link"]))
    return rows


def _socs(plan: PartitionPlan, timeline: Timeline, compute_by_stage: list[float],
          memory: list[MemoryUse], step: PassProfile) -> list[dict[str, Any]]:
    """One row per SoC; ``step`` is the representative pass whose DRAM bytes are shown."""
    used = {u.device: u for u in memory}
    rows = []
    for r, stages in enumerate(plan.replicas):
        for stage in stages:
            busy = timeline.stage_busy[r][stage.index]
            compute = compute_by_stage[stage.index]
            for device in stage.devices:
                mem = used.get(device)
                rows.append({
                    "soc": device, "replica": r, "stage": stage.index,
                    "compute_s": compute, "comm_s": max(busy - compute, 0.0),
                    "idle_s": max(timeline.makespan - busy, 0.0),
                    "step_dram_bytes": step.stages[stage.index].bytes,
                    "memory_bytes": mem.total if mem else 0.0,
                    "memory_capacity_bytes": mem.capacity if mem else 0.0,
                })
    return rows


def _algorithms(profiles: dict[str, PassProfile]) -> dict[str, int]:
    found: Counter[str] = Counter()
    for profile in profiles.values():
        for stage in profile.stages:
            for _, run, times in stage.blocks:
                for name, count in run.algorithms.items():
                    found[name] += count * times
    return dict(found)


def llm_metrics(variant: Variant, topo: Topology, plan: PartitionPlan,
                memory: list[MemoryUse], host: HostMemory, prefill: PassProfile,
                decode: dict[int, PassProfile],
                timeline: Timeline, logits_s: float, token_s: float,
                host_links: Counter[str], chunks: int, params: TransferSpec) -> VariantResult:
    """Metrics of an LLM run (definitions in docs/metrics.md)."""
    w = variant.workload
    firsts = [times[0] for per_replica in timeline.token_times for times in per_replica]
    lasts = [times[-1] for per_replica in timeline.token_times for times in per_replica]
    gaps = [b - a for per_replica in timeline.token_times for times in per_replica
            for a, b in itertools.pairwise(times)]
    sequences = len(plan.replicas) * w.groups * w.batch
    tokens = sequences * w.generate
    last_decode = decode[max(decode)]
    steps = sorted(e - s for s, e in timeline.decode_steps)
    step = steps[len(steps) // 2] if steps else 0.0
    compute = sum(s.compute_s for s in last_decode.stages)
    comm = sum(s.comm_s for s in last_decode.stages) + sum(last_decode.handoff_s) + \
        logits_s + token_s
    tpot = float(np.mean(gaps)) if gaps else 0.0
    metrics = {
        "ttft_s": float(np.mean(firsts)),
        "ttft_max_s": float(np.max(firsts)),
        "tpot_mean_s": tpot,
        "tpot_p50_s": _percentile(gaps, 50),
        "tpot_p99_s": _percentile(gaps, 99),
        "e2e_s": float(np.mean(lasts)),
        "makespan_s": timeline.makespan,
        "tokens_per_s": tokens / timeline.makespan if timeline.makespan else 0.0,
        "decode_tokens_per_s": sequences / tpot if tpot else 0.0,
        "prefill_s": float(np.mean([e for r in timeline.prefill_end for e in r])),
        "step_s": step,
        "step_compute_s": compute,
        "step_comm_s": comm,
        "step_bubble_s": _bubble(step, compute, comm),
        "host_round_trip_s": logits_s + token_s,
        "socs": float(sum(s.tp for s in plan.stages) * len(plan.replicas)),
        "memory_max_bytes": max(u.total for u in memory),
    }
    moved: Counter[str] = Counter()
    groups = w.groups
    for key, value in prefill.link_bytes.items():
        moved[key] += value * chunks * groups
    contexts = sorted(decode)
    per_step = w.generate - 1
    for key in {k for p in decode.values() for k in p.link_bytes}:
        mean = float(np.mean([decode[c].link_bytes.get(key, 0.0) for c in contexts]))
        moved[key] += mean * per_step * groups
    for key, value in host_links.items():
        moved[key] += value * w.generate * groups
    links = _links(topo, moved, timeline.makespan)
    if links:
        metrics["busiest_link_utilization"] = links[0]["utilization"]
    compute_by_stage = [prefill.stages[s].compute_s * chunks * groups
                        + float(np.mean([decode[c].stages[s].compute_s for c in contexts]))
                        * per_step * groups for s in range(len(plan.stages))]
    profiles = {"prefill": prefill, **{f"decode@{c}": decode[c] for c in contexts}}
    connection = "p2p" if plan.p2p_pairs else "host"
    inputs = variant.inputs()
    inputs["transfer"] = {**inputs["transfer"], "host_allreduce": params.host_allreduce}
    return VariantResult(variant.name, inputs, metrics,
                         _socs(plan, timeline, compute_by_stage, memory, last_decode), links,
                         _algorithms(profiles), memory, host, plan, topo, timeline, profiles,
                         connection, variant.description)


def inference_metrics(variant: Variant, topo: Topology, plan: PartitionPlan,
                      memory: list[MemoryUse], host: HostMemory, profile: PassProfile,
                      timeline: Timeline,
                      micro_batches: int, params: TransferSpec) -> VariantResult:
    """Metrics of one forward pass of a batch (definitions in docs/metrics.md)."""
    w = variant.workload
    latency = timeline.makespan
    metrics = {
        "latency_s": latency,
        "inferences_per_s": len(plan.replicas) * w.batch / latency if latency else 0.0,
        "stage_max_s": max(s.seconds for s in profile.stages),
        "pipeline_throughput_per_s": (w.batch / micro_batches) /
        max(s.seconds for s in profile.stages) if profile.stages else 0.0,
        "makespan_s": latency,
        "socs": float(sum(s.tp for s in plan.stages) * len(plan.replicas)),
        "memory_max_bytes": max(u.total for u in memory),
    }
    moved = Counter({k: v * micro_batches for k, v in profile.link_bytes.items()})
    links = _links(topo, moved, latency)
    if links:
        metrics["busiest_link_utilization"] = links[0]["utilization"]
    compute = [s.compute_s * micro_batches for s in profile.stages]
    inputs = variant.inputs()
    socs = _socs(plan, timeline, compute, memory, profile)
    return VariantResult(variant.name, inputs, metrics, socs, links,
                         _algorithms({"forward": profile}), memory, host, plan, topo, timeline,
                         {"forward": profile}, "p2p" if plan.p2p_pairs else "host",
                         variant.description)


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

    def variant(self, name: str) -> VariantResult:
        """The variant called ``name``."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def comparisons(self) -> list[dict[str, Any]]:
        """P2P-over-host speed-ups between variants that differ only in the connection."""
        out = []
        for host in self.variants:
            if host.connection != "host":
                continue
            key = _without_connection(host.inputs)
            for p2p in self.variants:
                if p2p.connection == "p2p" and _without_connection(p2p.inputs) == key:
                    row = {"p2p": p2p.name, "host": host.name}
                    for metric in ("ttft_s", "tpot_mean_s", "e2e_s", "latency_s"):
                        if p2p.metrics.get(metric):
                            row[f"{metric}_speedup"] = host.metrics[metric] / p2p.metrics[metric]
                    out.append(row)
        return out

    def summary(self) -> dict[str, Any]:
        """Everything as plain data (floats at 12 significant digits)."""
        out = {"simtopo_version": __version__, "experiment": self.name,
               "description": self.description,
               "variants": [v.summary() for v in self.variants],
               "comparisons": self.comparisons()}
        if self.loads:
            out["loads"] = [load.summary() for load in self.loads]
        return round12(out)

    def to_json(self) -> str:
        """The summary as JSON with sorted keys (byte-identical for identical inputs)."""
        return json.dumps(self.summary(), indent=1, sort_keys=True) + "\n"

    def to_dataframe(self) -> pd.DataFrame:
        """One row per variant, one column per metric."""
        import pandas as pd

        rows = [{"variant": v.name, **v.metrics} for v in self.variants]
        return pd.DataFrame(rows, columns=None if rows else ["variant"]).set_index("variant")

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
        from .load_plots import load_bars

        return load_bars(self._load(variant))

    def plot_load_timeline(self, variant: str | None = None) -> Figure:
        """When each phase of each strategy was busy (a matplotlib Figure)."""
        from .load_plots import load_timeline

        return load_timeline(self._load(variant))

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
        :func:`simtopo.trace.chrome_trace`."""
        from .trace import chrome_trace

        chosen = [self.variant(v) for v in variants] if variants else self.variants[:1]
        return chrome_trace(chosen)

    def write_report(self, directory: str | Path, command: str = "simtopo run",
                     all_figures: bool = False) -> Path:
        """Write ``directory`` (summary.json, report.md, figures, trace.json) atomically;
        see :func:`simtopo.report.write_report`."""
        from .report import write_report

        return write_report(self, directory, command, all_figures)

    def plot_comparison(self) -> Figure:
        """Headline metrics of every variant side by side (a matplotlib Figure)."""
        from .plots import comparison

        return comparison(self)

    def _repr_html_(self) -> str:
        html = f"<b>{self.name}</b>: {self.description}<br>"
        if self.variants:
            frame = self.to_dataframe()
            html += frame[[c for c in HEADLINE if c in frame.columns]]._repr_html_()
        if self.loads:
            html += self.loads_dataframe()._repr_html_()
        return html


def _without_connection(inputs: dict[str, Any]) -> str:
    """The inputs but for how devices talk (the connection, the host all-reduce algorithm)."""
    plan = {k: v for k, v in inputs.get("plan", {}).items() if k != "connection"}
    transfer = {k: v for k, v in inputs.get("transfer", {}).items() if k != "host_allreduce"}
    return json.dumps({**inputs, "plan": plan, "transfer": transfer}, sort_keys=True,
                      default=str)
