"""Chrome trace format (opens in Perfetto and chrome://tracing) from simulated variants.

Each variant is three processes:

- ``<variant>: requests``: every prefill and every decode step of every request group and
  replica over the whole run, one span each (bounded by the number of tokens);
- ``<variant>: prefill, op by op`` and ``<variant>: decode step at context C, op by op``: one
  prefill chunk and one representative decode step (the largest simulated context) with every
  op on every SoC and every collective on its stage's track. The first ``detail_layers`` layers
  of each stage are drawn op by op; the rest of the stage's identical layers are one span per
  track, so a trace stays a few thousand events whatever the model's depth.

Times are microseconds (the format's unit), each process starting at zero.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..results.result import VariantResult
from ..sim.profiles import PassProfile, Span

DETAIL_LAYERS = 2
"""Layers per stage drawn op by op in a trace (the others are one span per track)."""


def pass_spans(profile: PassProfile, start_s: float, stage: int,
               detail_layers: int | None = None) -> list[Span]:
    """The ops and collectives of one stage's pass laid end to end from ``start_s``: every
    repetition of every block, or only the first ``detail_layers`` of a repeated layer
    followed by one span per track for the rest."""
    out: list[Span] = []
    t = start_s
    for block, run, times in profile.stages[stage].blocks:
        shown = times if detail_layers is None else min(times, detail_layers)
        for k in range(shown):
            offset = t + k * run.seconds
            out += [Span(s.track, s.name, s.category, s.start_s + offset, s.end_s + offset,
                         s.args) for s in run.spans]
        if shown < times:
            begin, end = t + shown * run.seconds, t + times * run.seconds
            for track in sorted({s.track for s in run.spans}):
                out.append(Span(track, f"{block} x {times - shown} (as above)", "repeat",
                                begin, end, (("repeats", times - shown),)))
        t += run.seconds * times
    return out


def stage_spans(profile: PassProfile, detail_layers: int | None = None) -> tuple[list[Span],
                                                                                float]:
    """Every stage of one pass in turn (with its hand-off), and the pass's end time."""
    spans: list[Span] = []
    t = 0.0
    for s in range(len(profile.stages)):
        if s > 0 and profile.handoff_s[s] > 0:
            spans.append(Span(f"hand-off to stage {s}", f"{profile.handoff_bytes[s]:.0f} B",
                              "transfer", t, t + profile.handoff_s[s]))
            t += profile.handoff_s[s]
        spans += pass_spans(profile, t, s, detail_layers)
        t += profile.stages[s].seconds
    return spans, t


def request_spans(result: VariantResult) -> list[Span]:
    """Prefill and each decode step of every request group, from the pass-level timeline."""
    spans: list[Span] = []
    timeline = result.timeline
    for r, groups in enumerate(timeline.token_times):
        for g, times in enumerate(groups):
            track = f"replica {r} group {g}"
            if "forward" in result.profiles:
                spans.append(Span(track, "forward pass", "pass", 0.0, times[-1]))
                continue
            spans.append(Span(track, "prefill + first token", "pass", 0.0, times[0]))
            spans += [Span(track, f"decode token {i + 2}", "pass", a, b)
                      for i, (a, b) in enumerate(itertools.pairwise(times))]
    return spans


def _events(pid: int, name: str, spans: list[Span]) -> list[dict[str, Any]]:
    tracks = sorted({s.track for s in spans},
                    key=lambda x: (x.startswith(("stage", "hand-off")), x))
    tid = {track: i + 1 for i, track in enumerate(tracks)}
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}},
        {"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}}]
    events += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": i, "args": {"name": n}}
               for n, i in tid.items()]
    for s in spans:
        events.append({"name": s.name, "cat": s.category, "ph": "X", "pid": pid,
                       "tid": tid[s.track], "ts": round(s.start_s * 1e6, 6),
                       "dur": round((s.end_s - s.start_s) * 1e6, 6), "args": dict(s.args)})
    return events


def chrome_trace(results: list[VariantResult],
                 detail_layers: int = DETAIL_LAYERS) -> dict[str, Any]:
    """The trace of ``results`` (see the module docstring) as a JSON-ready dict."""
    events: list[dict[str, Any]] = []
    pid = 0
    for result in results:
        pid += 1
        events += _events(pid, f"{result.name}: requests", request_spans(result))
        decode = [k for k in result.profiles if k.startswith("decode@")]
        for key in ("prefill", *decode[-1:], "forward"):
            profile = result.profiles.get(key)
            if profile is None:
                continue
            pid += 1
            label = {"prefill": "prefill chunk", "forward": "forward pass"}.get(key) or \
                f"decode step at context {key.partition('@')[2]}"
            spans, _ = stage_spans(profile, detail_layers)
            events += _events(pid, f"{result.name}: {label}, op by op", spans)
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"generator": "simtopo", "time_unit": "us"}}
