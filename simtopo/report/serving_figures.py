"""Figures of serving runs: latency distributions, latency and goodput over offered load, and
the requests running over time."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from .serving_section import layout_text, scheduler_text

if TYPE_CHECKING:
    from ..results.result import Result
    from ..results.serving import ServingResult


def _measured(serving: ServingResult, values: np.ndarray) -> np.ndarray:
    return values[serving.measured_from:]


def latency_cdfs(result: Result) -> Figure:
    """TTFT and TPOT of every serving variant as cumulative distributions (log time), with
    the SLOs."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    for serving in result.servings:
        q, r = serving.requests, serving.records
        ttft = _measured(serving, r.first_token_s - q.arrival_s)
        out = _measured(serving, q.output_tokens)
        tpot = (_measured(serving, r.finish_s - r.first_token_s)[out > 1]) / (out[out > 1] - 1)
        for ax, values in zip(axes, (ttft, tpot), strict=True):
            if len(values):
                xs = np.sort(values)
                ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=serving.name, lw=1.2)
    slo = result.servings[0].inputs["serving"].get("slo", {}) if result.servings else {}
    for ax, name, key in ((axes[0], "TTFT", "ttft"), (axes[1], "TPOT", "tpot")):
        if slo.get(key):
            ax.axvline(slo[key], color="black", ls="--", lw=1, label=f"SLO {slo[key]:g} s")
        ax.set_xscale("log")
        ax.set_xlabel(f"{name} (s)")
        ax.set_ylabel("share of requests")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{result.name}: latency distributions (after the warm-up)", fontsize=10)
    return fig


def _layout(serving: ServingResult) -> str:
    """Everything but the offered load and the seed: variants of one layout share it."""
    inputs = {k: v for k, v in serving.inputs.items() if k != "serving"}
    rest = {k: v for k, v in serving.inputs.get("serving", {}).items()
            if k not in ("arrivals", "seed")}
    return json.dumps([inputs, rest], sort_keys=True)


def load_curves(result: Result) -> Figure:
    """For every layout served at two or more rates: p99 TTFT and the share of requests
    within the SLOs against the offered load (where a layout stops meeting them)."""
    groups: dict[str, list[ServingResult]] = {}
    for serving in result.servings:
        groups.setdefault(_layout(serving), []).append(serving)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda s: s.metrics["offered_per_s"])
        rates = [s.metrics["offered_per_s"] for s in members]
        inputs = members[0].inputs
        label = f"{layout_text(inputs['plan'])}, {scheduler_text(inputs)}, " \
            f"{inputs['workload'].get('batch', 1)} slots"
        left.plot(rates, [s.metrics["ttft_p99_s"] for s in members], marker="o", label=label)
        right.plot(rates, [100 * s.metrics["slo_attainment"] for s in members], marker="o",
                   label=label)
    left.set_yscale("log")
    left.set_ylabel("p99 TTFT (s)")
    right.set_ylabel("requests within every SLO (%)")
    right.set_ylim(-3, 103)
    for ax in (left, right):
        ax.set_xlabel("offered load (requests/s)")
        ax.grid(alpha=0.3)
    right.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{result.name}: each layout over offered load", fontsize=10)
    return fig


def running(serving: ServingResult) -> Figure:
    """Requests decoding (each holding a slot and its KV buffer) and waiting, over time."""
    q, r = serving.requests, serving.records
    events = [(q.arrival_s, 0, 1), (r.start_s, 0, -1), (r.first_token_s, 1, 1),
              (r.finish_s, 1, -1)]
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax = fig.subplots()
    for kind, label in ((0, "waiting"), (1, "decoding (slots and KV buffers in use)")):
        times = np.concatenate([t for t, k, _ in events if k == kind])
        steps = np.concatenate([np.full(len(t), s) for t, k, s in events if k == kind])
        order = np.argsort(times, kind="stable")
        ax.step(times[order], np.cumsum(steps[order]), where="post", lw=0.8, label=label)
    slots = serving.times.slots * serving.inputs["plan"].get("replicas", 1)
    ax.axhline(slots, color="black", ls="--", lw=1, label=f"{slots} slots")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{serving.name}: requests over time", fontsize=10)
    return fig


ITERATION_BINS = 200
"""Time bins of the iterations figure's lower panel."""


def iterations(serving: ServingResult) -> Figure:
    """A dynamic-shape server's iterations over time (replica 0): the KV pool in use, and
    the sequences decoding and prompt tokens prefilled per iteration (time averages over
    :data:`ITERATION_BINS` bins)."""
    it = serving.records.iterations
    assert it is not None
    mine = it.replica == 0
    start, seconds = it.start_s[mine], it.seconds[mine]
    pool = serving.times.summary()["kv_positions"]
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.step(start, 100 * it.kv_positions[mine] / pool, where="post", lw=0.8)
    top.set_ylabel("KV pool in use (%)")
    top.set_ylim(bottom=0)
    edges = np.linspace(start.min(), start.max() + seconds[-1], ITERATION_BINS + 1)
    where = np.clip(np.searchsorted(edges, start, side="right") - 1, 0, ITERATION_BINS - 1)
    busy = np.bincount(where, seconds, ITERATION_BINS)
    middle = (edges[:-1] + edges[1:]) / 2
    for values, label in ((it.decodes[mine], "sequences decoding"),
                          (it.prefill_tokens[mine], "prompt tokens prefilled")):
        total = np.bincount(where, values * seconds, ITERATION_BINS)
        mean = np.divide(total, busy, out=np.zeros(ITERATION_BINS), where=busy > 0)
        bottom.plot(middle, mean, lw=1, label=label)
    bottom.set_yscale("symlog", linthresh=10)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("per iteration (time average)")
    bottom.legend(fontsize=7, loc="upper left")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.set_title(f"{serving.name}: replica 0's iterations", fontsize=10)
    return fig


def serving_figures(result: Result, stem: Callable[[str], str]
                    ) -> dict[str, Callable[[], Figure]]:
    """File name -> a function drawing it: the distributions, the load curves (where a
    layout ran at two or more rates), the first variant's requests over time and the first
    dynamic-shape variant's iterations."""
    if not result.servings:
        return {}
    out: dict[str, Callable[[], Figure]] = {"latencycdf.png": lambda: latency_cdfs(result)}
    layouts = [_layout(s) for s in result.servings]
    if any(layouts.count(k) > 1 for k in layouts):
        out["loadcurve.png"] = lambda: load_curves(result)
    first = result.servings[0]
    out[f"requests-{stem(first.name)}.png"] = lambda: running(first)
    dynamic = next((s for s in result.servings if s.records.iterations is not None), None)
    if dynamic is not None:
        out[f"iterations-{stem(dynamic.name)}.png"] = lambda: iterations(dynamic)
    return out
