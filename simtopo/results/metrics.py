"""Metrics of a simulated variant (every one defined in ``docs/metrics.md``)."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np

from ..errors import SimtopoError
from ..plan.memory import MemoryUse
from ..plan.stages import PartitionPlan
from ..sim.driver import Simulation
from ..sim.pipeline import Timeline
from ..sim.profiles import PassProfile
from ..sim.setup import Setup
from ..topology.graph import Topology
from .result import VariantResult
from .scenarios import offline_feed, query_latency, sample_bytes


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


def llm_metrics(setup: Setup, sim: Simulation) -> VariantResult:
    """Metrics of an LLM run (definitions in docs/metrics.md)."""
    variant, plan, timeline = setup.variant, setup.plan, sim.timeline
    w = variant.workload
    firsts = [times[0] for per_replica in timeline.token_times for times in per_replica]
    lasts = [times[-1] for per_replica in timeline.token_times for times in per_replica]
    gaps = [b - a for per_replica in timeline.token_times for times in per_replica
            for a, b in itertools.pairwise(times)]
    sequences = len(plan.replicas) * w.groups * w.batch
    tokens = sequences * w.generate
    decode = {int(k.split("@")[1]): p for k, p in sim.profiles.items() if k.startswith("decode@")}
    prefill = sim.profiles["prefill"]
    last_decode = decode[max(decode)]
    steps = sorted(e - s for s, e in timeline.decode_steps)
    step = steps[len(steps) // 2] if steps else 0.0
    compute = sum(s.compute_s for s in last_decode.stages)
    comm = sum(s.comm_s for s in last_decode.stages) + sum(last_decode.handoff_s) + \
        sim.logits_s + sim.token_s
    metrics = {
        "ttft_s": float(np.mean(firsts)),
        "ttft_max_s": float(np.max(firsts)),
        "e2e_s": float(np.mean(lasts)),
        "makespan_s": timeline.makespan,
        "tokens_per_s": tokens / timeline.makespan,
        "prefill_s": float(np.mean([e for r in timeline.prefill_end for e in r])),
        "host_round_trip_s": sim.logits_s + sim.token_s,
        "socs": float(sum(s.tp for s in plan.stages) * len(plan.replicas)),
        "memory_max_bytes": max(u.total for u in setup.memory),
    }
    if gaps:  # decode steps ran (generate > 1); with generate: 1 there is none to report
        tpot = float(np.mean(gaps))
        metrics |= {
            "tpot_mean_s": tpot,
            "tpot_p50_s": _percentile(gaps, 50),
            "tpot_p99_s": _percentile(gaps, 99),
            "decode_tokens_per_s": sequences / tpot,
            "step_s": step,
            "step_compute_s": compute,
            "step_comm_s": comm,
            "step_bubble_s": _bubble(step, compute, comm),
        }
    moved: Counter[str] = Counter()
    groups, chunks = w.groups, setup.forward_passes
    for key, value in prefill.link_bytes.items():
        moved[key] += value * chunks * groups
    contexts = sorted(decode)
    per_step = w.generate - 1
    for key in {k for p in decode.values() for k in p.link_bytes}:
        mean = float(np.mean([decode[c].link_bytes.get(key, 0.0) for c in contexts]))
        moved[key] += mean * per_step * groups
    for key, value in sim.host_links.items():
        moved[key] += value * w.generate * groups
    compute_by_stage = [prefill.stages[s].compute_s * chunks * groups
                        + float(np.mean([decode[c].stages[s].compute_s for c in contexts]))
                        * per_step * groups for s in range(len(plan.stages))]
    return _result(setup, sim, metrics, moved, compute_by_stage, last_decode)


def inference_metrics(setup: Setup, sim: Simulation) -> VariantResult:
    """Metrics of one forward pass of a batch (definitions in docs/metrics.md)."""
    variant, plan, timeline = setup.variant, setup.plan, sim.timeline
    w = variant.workload
    profile = sim.profiles["forward"]
    micro_batches = setup.forward_passes
    latency = timeline.makespan
    slowest = max(s.seconds for s in profile.stages)
    instances = len(plan.replicas) * plan.per_soc
    steady = (w.batch / micro_batches) / slowest if slowest else 0.0
    metrics = {
        "latency_s": latency,
        "inferences_per_s": instances * w.batch / latency if latency else 0.0,
        "stage_max_s": slowest,
        "pipeline_throughput_per_s": steady,
        "makespan_s": latency,
        "socs": float(sum(s.tp for s in plan.stages) * len(plan.replicas)),
        "memory_max_bytes": max(u.total for u in setup.memory),
    }
    scenario: dict[str, Any] = {}
    if w.scenario != "pass":
        scenario = scenario_metrics(setup, steady, latency, metrics)
    moved = Counter({k: v * micro_batches for k, v in profile.link_bytes.items()})
    compute = [s.compute_s * micro_batches for s in profile.stages]
    return _result(setup, sim, metrics, moved, compute, profile, scenario)


def scenario_metrics(setup: Setup, instance_rate: float, latency: float,
                     metrics: dict[str, float]) -> dict[str, Any]:
    """Add the MLPerf scenario's metrics to ``metrics``; return what bounds it, as data
    (:mod:`simtopo.results.scenarios`)."""
    w = setup.variant.workload
    into, out = sample_bytes(setup, setup.forward_graph)
    metrics.update(input_bytes_per_sample=into, output_bytes_per_sample=out)
    if w.scenario != "offline":
        query = query_latency(setup, setup.plan, latency, into, out)
        metrics.update(query_latency_s=query, queries_per_s=1.0 / query if query else 0.0)
        return {"name": w.scenario}
    feed = offline_feed(setup, instance_rate, into, out)
    metrics.update(offline_samples_per_s=feed.samples_per_s,
                   instance_samples_per_s=instance_rate, instances=float(len(feed.rates)),
                   busiest_feed_utilization=next(iter(feed.utilization.values()), 0.0))
    return {"name": "offline", "bound": feed.bound,
            "feed_utilization": dict(list(feed.utilization.items())[:8])}


def _result(setup: Setup, sim: Simulation, metrics: dict[str, float], moved: Counter[str],
            compute_by_stage: list[float], step: PassProfile,
            scenario: dict[str, Any] | None = None) -> VariantResult:
    """The variant's result: links and SoC rows added to ``metrics``."""
    variant, plan, timeline = setup.variant, setup.plan, sim.timeline
    links = _links(setup.topo, moved, timeline.makespan)
    if links:
        metrics["busiest_link_utilization"] = links[0]["utilization"]
    for name, value in metrics.items():
        if not math.isfinite(value) or value < 0:
            raise SimtopoError(f"variant {variant.name!r}: metric {name} came out {value}; "
                               "the inputs' numbers are out of any range this model handles "
                               "(please report it with the input files)")
    inputs = variant.inputs()
    if setup.kind == "llm":
        inputs["transfer"] = {**inputs["transfer"],
                              "host_allreduce": setup.params.host_allreduce}
    simulation = {"mode": sim.mode, "live": sim.live or "nothing", "reason": sim.reason} \
        if sim.mode != "auto" or sim.live else {}
    return VariantResult(variant.name, inputs, metrics,
                         _socs(plan, timeline, compute_by_stage, setup.memory, step), links,
                         _algorithms(sim.profiles), setup.memory, setup.host, plan, setup.topo,
                         timeline, sim.profiles, plan.talks,
                         variant.description, simulation, scenario or {})
