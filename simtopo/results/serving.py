"""Serving results: a request stream played through a program's simulated times
(:func:`simtopo.results.serving_run.run_serving`), and the metrics of docs/metrics.md
("Serving")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..sim.iterations import IterationModel
from ..sim.serving import IterationTimes, Records
from ..workload.requests import Requests
from .result import round12

if TYPE_CHECKING:
    import pandas as pd

PERCENTILES = (50, 90, 99)


@dataclass
class ServingResult:
    """A variant's serving run: the program's times, the metrics, and every request."""

    name: str
    inputs: dict[str, Any]
    times: IterationTimes | IterationModel
    """The compiled program's times, or a dynamic-shape program's interpolated ones."""
    metrics: dict[str, float]
    requests: Requests = field(repr=False)
    records: Records = field(repr=False)
    measured_from: int = 0
    """Requests before this index are the warm-up (left out of the metrics)."""
    description: str = ""

    def summary(self) -> dict[str, Any]:
        """Plain data: inputs, the program's times, the metrics."""
        return round12({"name": self.name, "description": self.description,
                        "inputs": self.inputs, "iteration_times": self.times.summary(),
                        "metrics": dict(sorted(self.metrics.items()))})

    def to_dataframe(self) -> pd.DataFrame:
        """One row per request: arrival, lengths, replica, start, first token, finish, and
        the derived latencies; ``warmup`` marks those left out of the metrics (and, with
        dynamic shapes, ``preempted``: how often it was)."""
        import pandas as pd

        q, r = self.requests, self.records
        frame = pd.DataFrame({
            "arrival_s": q.arrival_s, "prompt_tokens": q.prompt_tokens,
            "output_tokens": q.output_tokens, "replica": r.replica, "start_s": r.start_s,
            "first_token_s": r.first_token_s, "finish_s": r.finish_s})
        frame["queue_s"] = frame.start_s - frame.arrival_s
        frame["ttft_s"] = frame.first_token_s - frame.arrival_s
        frame["e2e_s"] = frame.finish_s - frame.arrival_s
        frame["warmup"] = np.arange(len(frame)) < self.measured_from
        if r.preempted is not None:
            frame["preempted"] = r.preempted
        return frame

    def iterations_dataframe(self) -> pd.DataFrame:
        """One row per iteration of a dynamic-shape server: replica, start, seconds,
        sequences decoding, prompt tokens prefilled and KV positions held."""
        import pandas as pd

        it = self.records.iterations
        if it is None:
            raise ValueError(f"{self.name} serves a compiled program: its iterations are "
                             "the fixed prefill and decode steps of iteration_times")
        return pd.DataFrame({"replica": it.replica, "start_s": it.start_s,
                             "seconds": it.seconds, "decodes": it.decodes,
                             "prefill_tokens": it.prefill_tokens,
                             "kv_positions": it.kv_positions})


def serving_metrics(q: Requests, r: Records, warmup: int, slo_ttft: float | None,
                    slo_tpot: float | None, slots: int, kv_pool: int = 0) -> dict[str, float]:
    """The metrics of docs/metrics.md ("Serving") over the requests after ``warmup``
    (``kv_pool``: a replica's KV positions, for a dynamic-shape server's iterations)."""
    m = slice(warmup, None)
    arrival, first, finish, start = q.arrival_s[m], r.first_token_s[m], r.finish_s[m], \
        r.start_s[m]
    out_tokens = q.output_tokens[m]
    ttft, e2e, queue = first - arrival, finish - arrival, start - arrival
    decoding = out_tokens > 1
    tpot = (finish[decoding] - first[decoding]) / (out_tokens[decoding] - 1)
    window = max(float(finish.max() - arrival.min()), 1e-12)
    out: dict[str, float] = {"requests": float(len(arrival)),
                             "requests_per_s": len(arrival) / window,
                             "tokens_per_s": float(out_tokens.sum()) / window,
                             "offered_per_s": (len(arrival) - 1) / float(arrival[-1] - arrival[0])
                             if arrival[-1] > arrival[0] else 0.0}
    for name, values in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e), ("queue", queue)):
        if len(values):
            out[f"{name}_mean_s"] = float(values.mean())
            for p in PERCENTILES:
                out[f"{name}_p{p}_s"] = float(np.percentile(values, p))
    good = np.ones(len(arrival), dtype=bool)
    if slo_ttft is not None:
        good &= ttft <= slo_ttft
    if slo_tpot is not None:
        per_token = np.zeros(len(arrival))
        per_token[decoding] = tpot
        good &= per_token <= slo_tpot
    out["goodput_per_s"] = float(good.sum()) / window
    out["slo_attainment"] = float(good.mean())
    out.update(_littles_law(q, r, warmup))
    busy = np.where(decoding, finish - first, 0.0)
    out["slot_utilization"] = float(busy.sum()) / (window * slots)
    if r.iterations is not None and r.preempted is not None:
        out.update(_iteration_metrics(r, kv_pool, float(arrival[0]), float(finish.max())))
        out["preemptions"] = float(r.preempted[m].sum())
    return out


def _iteration_metrics(r: Records, kv_pool: int, t0: float, t1: float) -> dict[str, float]:
    """Time averages over the iterations that start while the measured requests run: the
    sequences in an iteration, its token rows, and the KV pool in use."""
    it = r.iterations
    assert it is not None
    chosen = (it.start_s >= t0) & (it.start_s <= t1)
    if not chosen.any():
        return {}
    weight = it.seconds[chosen]
    total = float(weight.sum())

    def mean(values: np.ndarray) -> float:
        return float(np.sum(values[chosen] * weight) / total)

    return {"iteration_decodes_mean": mean(it.decodes.astype(float)),
            "iteration_rows_mean": mean((it.decodes + it.prefill_tokens).astype(float)),
            "kv_use_mean": mean(it.kv_positions / kv_pool) if kv_pool else 0.0}


def _littles_law(q: Requests, r: Records, warmup: int) -> dict[str, float]:
    """L, the time-average of requests in the system over the measured requests' arrivals
    (every request counted while it is in), against lambda W (their arrival rate times their
    mean time in the system)."""
    t0, t1 = float(q.arrival_s[warmup]), float(q.arrival_s[-1])
    if t1 <= t0:
        return {}
    times = np.concatenate([q.arrival_s, r.finish_s])
    steps = np.concatenate([np.ones(len(q)), -np.ones(len(q))])
    order = np.argsort(times, kind="stable")
    times, counts = times[order], np.cumsum(steps[order])
    inside = (times >= t0) & (times <= t1)
    edges = np.concatenate([[t0], times[inside], [t1]])
    before = np.searchsorted(times, t0, side="left")
    levels = np.concatenate([[counts[before - 1] if before else 0.0], counts[inside]])
    area = float(np.sum(levels * np.diff(edges)))
    n = len(q) - warmup  # n arrivals span n - 1 gaps
    lam, w = (n - 1) / (t1 - t0), float(np.mean(r.finish_s[warmup:] - q.arrival_s[warmup:]))
    return {"in_system_mean": area / (t1 - t0), "littles_law_relative_error":
            abs(area / (t1 - t0) - lam * w) / (lam * w)}
