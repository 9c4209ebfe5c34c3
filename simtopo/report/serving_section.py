"""The serving part of a report and of ``simtopo run``'s table: per variant, its load and
latency percentiles, goodput under the SLOs, and the program's simulated times."""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def _cells(serving: ServingResult) -> list[str]:
    m = serving.metrics
    return [serving.name, layout_text(serving.inputs["plan"]),
            serving.inputs["serving"].get("scheduler", "continuous"),
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
    out += ["", "| variant | prefill chunk (1 request) | prefill chunk (batch) | decode step "
            "| slots | Little's law L / (lambda W) - 1 |", "|---|---|---|---|---|---|"]
    for s in result.servings:
        t = s.times
        error = s.metrics.get("littles_law_relative_error")
        out.append(f"| {s.name} | {t.prefill_s * 1e3:.4g} ms ({t.chunk} tokens) | "
                   f"{t.batch_prefill_s * 1e3:.4g} ms | {t.decode_s * 1e3:.4g} ms | "
                   f"{t.slots} | {'-' if error is None else f'{100 * error:.2g}%'} |")
    return [*out, ""]
