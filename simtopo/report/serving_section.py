"""The serving part of a report and of ``simtopo run``'s table: per variant, its load and
latency percentiles, goodput under the SLOs, and the program's simulated times."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sim.serving import IterationTimes

if TYPE_CHECKING:
    from ..results.result import Result
    from ..results.serving import ServingResult

COLUMNS = (("offered/s", "offered_per_s", 1.0), ("served/s", "requests_per_s", 1.0),
           ("TTFT p50 ms", "ttft_p50_s", 1e3), ("TTFT p99 ms", "ttft_p99_s", 1e3),
           ("TPOT p50 ms", "tpot_p50_s", 1e3), ("TPOT p99 ms", "tpot_p99_s", 1e3),
           ("goodput/s", "goodput_per_s", 1.0), ("in SLO", "slo_attainment", 100.0))
"""(heading, metric, scale) of each column."""


def layout_text(plan: dict) -> str:
    """A serving variant's layout in a few characters: ``tp16 x2 p2p``."""
    replicas = plan.get("replicas", 1)
    return f"tp{plan.get('tp', 1)}" + (f" pp{plan['pp']}" if plan.get("pp", 1) > 1 else "") \
        + (f" x{replicas}" if replicas > 1 else "") + f" {plan.get('connection', 'p2p')}"


def scheduler_text(inputs: dict) -> str:
    """How a serving variant batches: ``static``, ``continuous`` (a compiled program), or
    ``chunked, decode first`` (dynamic shapes)."""
    serving = inputs.get("serving", {})
    if inputs["workload"].get("shapes") == "dynamic":
        return f"chunked, {serving.get('priority', 'decode')} first"
    return serving.get("scheduler", "continuous")


def _cells(serving: ServingResult) -> list[str]:
    m = serving.metrics
    return [serving.name, layout_text(serving.inputs["plan"]), scheduler_text(serving.inputs),
            *(f"{m[key] * scale:.4g}" + ("%" if key == "slo_attainment" else "")
              if key in m else "-" for _, key, scale in COLUMNS)]


def serving_table(result: Result) -> object:
    """The terminal table of every serving variant."""
    from .tables import NAME, NUMBER, TEXT, terminal_table

    columns = [("variant", NAME), ("layout", TEXT),
               *((label.replace(" ms", ""), NUMBER) for label, _, _ in COLUMNS)]
    table = terminal_table(f"{result.name}: serving", columns,
                           "times in ms; percentiles over the requests after the warm-up; "
                           "goodput: requests per second that meet every SLO (docs/metrics.md)")
    for serving in result.servings:
        cells = _cells(serving)
        table.add_row(*cells[:2], *cells[3:])
    return table


def serving_section(result: Result) -> list[str]:
    """Markdown: the serving table, and each variant's simulated iteration times."""
    if not result.servings:
        return []
    heads = ["variant", "layout", "scheduler", *(label for label, _, _ in COLUMNS)]
    out = ["## Serving", "",
           "Requests played through the compiled program's simulated times (docs/metrics.md, "
           "\"Serving\"); percentiles over the requests after the warm-up.", "",
           "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    out += ["| " + " | ".join(_cells(s)) + " |" for s in result.servings]
    compiled = [s for s in result.servings if isinstance(s.times, IterationTimes)]
    dynamic = [s for s in result.servings if not isinstance(s.times, IterationTimes)]
    if compiled:
        out += ["", "| variant | prefill chunk (1 request) | prefill chunk (batch) | decode "
                "step | slots | Little's law L / (lambda W) - 1 |", "|---|---|---|---|---|---|"]
    for s in compiled:
        t = s.times
        assert isinstance(t, IterationTimes)
        out.append(f"| {s.name} | {t.prefill_s * 1e3:.4g} ms ({t.chunk} tokens) | "
                   f"{t.batch_prefill_s * 1e3:.4g} ms | {t.decode_s * 1e3:.4g} ms | "
                   f"{t.slots} | {_law(s)} |")
    if dynamic:
        out += ["", "Dynamic shapes: iterations interpolated from simulated ones (docs/"
                "metrics.md, \"Dynamic shapes\"); KV pool per replica.", "",
                "| variant | 1-row iteration | budget iteration | slots | KV pool (positions) "
                "| KV in use | rows per iteration | preemptions | Little's law |",
                "|---|---|---|---|---|---|---|---|---|"]
    for s in dynamic:
        d, m = s.times.summary(), s.metrics
        out.append(f"| {s.name} | {d['one_row_s'] * 1e3:.4g} ms | {d['budget_rows_s'] * 1e3:.4g}"
                   f" ms ({d['token_budget']} rows) | {d['slots']} | {d['kv_positions']:,} | "
                   f"{100 * m.get('kv_use_mean', 0.0):.3g}% | "
                   f"{m.get('iteration_rows_mean', 0.0):.4g} | {m.get('preemptions', 0.0):.0f} "
                   f"| {_law(s)} |")
    return [*out, ""]


def _law(serving: ServingResult) -> str:
    error = serving.metrics.get("littles_law_relative_error")
    return "-" if error is None else f"{100 * error:.2g}%"
