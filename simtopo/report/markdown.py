"""A Result to ``reports/<experiment>/``: summary.json, report.md, figures and trace.json.

The folder is written whole or not at all: everything goes to a temporary folder beside it,
which then replaces the previous report (see :func:`simtopo.io.write_directory_atomic`), so a
failed run leaves the previous report as it was.

Figures are drawn for the *figure variants*: the first variant and the variants of the first
P2P-over-host comparison (``all_figures`` draws every variant); the trace covers the same
variants.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from ..io.atomic import write_directory_atomic
from ..results.bands import band_text
from ..results.parallel import Forked
from ..results.result import Result, VariantResult
from . import figures
from .draw import save_figure
from .load_section import load_figures, load_section
from .serving_figures import serving_figures
from .serving_section import serving_section
from .trace import chrome_trace

GB = 1e9


def file_stem(name: str) -> str:
    """A variant name as a file-name part (letters, digits, ``.``, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "variant"


def figure_variants(result: Result, all_figures: bool = False) -> list[VariantResult]:
    """The variants that get figures and a trace (see the module docstring)."""
    if all_figures or not result.variants:
        return list(result.variants)
    names = [result.variants[0].name]
    comparisons = result.comparisons()
    if comparisons:
        names += [comparisons[0]["p2p"], comparisons[0]["host"]]
    return [result.variant(n) for n in dict.fromkeys(names)]


def figure_files(result: Result, all_figures: bool = False
            ) -> dict[str, Callable[[], Figure]]:
    """File name -> a function drawing it, in report order."""
    out: dict[str, Callable[[], Figure]] = {}
    if len(result.variants) > 1:
        out["comparison.png"] = lambda: figures.comparison(result)
    for v in figure_variants(result, all_figures):
        stem = file_stem(v.name)
        out[f"timeline-{stem}.png"] = lambda v=v: figures.step_timeline(v)
        out[f"links-{stem}.png"] = lambda v=v: figures.link_utilization(v)
        out[f"topology-{stem}.png"] = lambda v=v: figures.topology_load(v)
    out.update(load_figures(result, file_stem))
    out.update(serving_figures(result, file_stem))
    return out


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4g}"


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _plan_text(v: VariantResult) -> str:
    plan = v.plan
    tp = {s.tp for s in plan.stages}
    parts = []
    if "mdp" in v.inputs["plan"]:
        parts.append(f"MDP `{Path(v.inputs['plan']['mdp']).name}`")
    parts.append(f"tp {'/'.join(str(t) for t in sorted(tp))}")
    if len(plan.stages) > 1:
        parts.append(f"pp {len(plan.stages)}")
    if len(plan.replicas) > 1:
        parts.append(f"{len(plan.replicas)} replicas")
    parts.append(v.connection)
    if v.inputs["plan"].get("fabric") is False:
        parts.append("PCIe only (fabric off)")
    host_allreduce = v.inputs.get("transfer", {}).get("host_allreduce")
    if v.connection == "host" and host_allreduce not in (None, "auto"):
        parts.append(f"{host_allreduce} all-reduce")
    return ", ".join(parts)


def _llm_tables(rows: list[VariantResult]) -> list[str]:
    out = ["| variant | SoCs | TTFT (ms) | TPOT mean (ms) | TPOT p99 (ms) | tokens/s | "
           "decode tokens/s | end to end (s) | busiest link |",
           "|---|---|---|---|---|---|---|---|---|"]
    for v in rows:
        m = v.metrics
        out.append(f"| {v.name} | {m['socs']:.0f} | {_ms(m['ttft_s'])} | "
                   f"{_ms(m.get('tpot_mean_s'))} | {_ms(m.get('tpot_p99_s'))} | "
                   f"{_num(m['tokens_per_s'])} | {_num(m.get('decode_tokens_per_s'))} | "
                   f"{_num(m['e2e_s'])} | {_busiest(v)} |")
    return out


def _inference_tables(rows: list[VariantResult]) -> list[str]:
    out = ["| variant | SoCs | latency (ms) | inferences/s | slowest stage (ms) | "
           "pipeline throughput (/s) | busiest link |", "|---|---|---|---|---|---|---|"]
    for v in rows:
        m = v.metrics
        out.append(f"| {v.name} | {m['socs']:.0f} | {_ms(m['latency_s'])} | "
                   f"{_num(m['inferences_per_s'])} | {_ms(m['stage_max_s'])} | "
                   f"{_num(m['pipeline_throughput_per_s'])} | {_busiest(v)} |")
    return out


def _busiest(v: VariantResult) -> str:
    if not v.links:
        return "no traffic"
    top = v.links[0]
    return f"`{top['link']}` {100 * top['utilization']:.2g}%"


def render_report(result: Result, figure_names: list[str], command: str) -> str:
    """report.md."""
    llm = [v for v in result.variants if "ttft_s" in v.metrics]
    forward = [v for v in result.variants if "latency_s" in v.metrics]
    out = [f"# {result.name}: {result.description}" if result.description else
           f"# {result.name}", "",
           f"Simulated from `{result.source}` by `{command}`. Every metric is defined in "
           "`docs/metrics.md`; the link and SoC models are calibrated as `docs/validation.md` "
           "shows. `summary.json` holds every number below and more (per SoC, per link).", ""]
    out += ["## Results", ""] if result.variants else []
    if llm:
        out += [*_llm_tables(llm), ""]
    if forward:
        out += [*_inference_tables(forward), ""]
    comparisons = result.comparisons()
    if comparisons:
        out += ["## P2P over host-routed", "",
                "Variants that differ only in the connection; speed-up = host-routed time / "
                "P2P time.", "",
                "| P2P | host-routed | TTFT | TPOT | end to end | latency |",
                "|---|---|---|---|---|---|"]
        for c in comparisons:
            cells = [f"{c[k]:.3g}x {band_text(c, k)}".rstrip() if k in c else "-"
                     for k in ("ttft_s_speedup", "tpot_mean_s_speedup", "e2e_s_speedup",
                               "latency_s_speedup")]
            out.append(f"| {c['p2p']} | {c['host']} | " + " | ".join(cells) + " |")
        out.append("")
        if result.bands:
            out += band_notes()
    out += load_section(result)
    out += serving_section(result)
    if not result.variants:
        return _figures_markdown(out, figure_names, trace=False)
    out += ["## What was simulated", "",
            "| variant | model | weights | plan | batch x groups | prompt / generate / context "
            "| topology |", "|---|---|---|---|---|---|---|"]
    for v in result.variants:
        w = v.inputs["workload"]
        context = w.get("context", w["prompt"] + w["generate"])
        lengths = (f"{w['prompt']} / {w['generate']} / {context}"
                   f"{' (dynamic)' if w['shapes'] == 'dynamic' else ''}"
                   if w["kind"] == "llm" else f"one pass, {w['micro_batches']} micro-batches")
        out.append(f"| {v.name} | {v.inputs['model']} | {w['precision']} | {_plan_text(v)} | "
                   f"{w['batch']} x {w['groups']} | {lengths} | {v.inputs['topology']} |")
    described = [v for v in result.variants if v.description]
    if described:
        out += [""] + [f"- **{v.name}**: {v.description}" for v in described]
    live = [v for v in result.variants if v.simulation]
    if live:
        out += ["", "Simulated beyond the memoized shortcuts (`docs/metrics.md`):", ""]
        out += [f"- **{v.name}**: {v.simulation['mode']} mode, {v.simulation['live']} live"
                + (f" ({v.simulation['reason']})" if v.simulation["reason"] else "")
                for v in live]
    out.append("")
    stepped = [v for v in llm if "step_s" in v.metrics]  # generate: 1 has no decode step
    if stepped:
        out += ["## One decode step", "",
                "The median decode step of the first request group, split into the SoCs' "
                "compute, communication that compute does not hide (collectives, hand-offs, the "
                "host round trip), and waiting for a busy stage (pipeline bubble).", "",
                "| variant | step (ms) | compute | exposed communication | of which host round "
                "trip | pipeline bubble | collectives per step |", "|---|---|---|---|---|---|---|"]
        for v in stepped:
            m = v.metrics
            key = max((k for k in v.profiles if k.startswith("decode@")),
                      key=lambda k: int(k.split("@")[1]))
            per_step = sum(c * t for stage in v.profiles[key].stages
                           for _, run, t in stage.blocks for c in run.algorithms.values())
            out.append(f"| {v.name} | {_ms(m['step_s'])} | {_ms(m['step_compute_s'])} | "
                       f"{_ms(m['step_comm_s'])} | {_ms(m['host_round_trip_s'])} | "
                       f"{_ms(m['step_bubble_s'])} | {per_step} |")
        out.append("")
    out += ["## Bottleneck links", "",
            "Directed links by utilisation over the whole run (bytes moved / (capacity x run "
            "time)).", "",
            "| variant | busiest | second | third |", "|---|---|---|---|"]
    for v in result.variants:
        cells = [f"`{r['link']}` {100 * r['utilization']:.3g}% ({r['bytes'] / GB:.3g} GB)"
                 for r in v.links[:3]]
        cells += ["-"] * (3 - len(cells))
        out.append(f"| {v.name} | " + " | ".join(cells) + " |")
    out += ["", "## Memory", "",
            "The fullest SoC of each variant (DRAM) and the host (programs, buffers for "
            "host-routed traffic, runtime; see `docs/metrics.md`).", "",
            "| variant | fullest SoC | used / capacity (GB) | weights | KV cache | activations "
            "| host needs / has (GB) |", "|---|---|---|---|---|---|---|"]
    for v in result.variants:
        full = max(v.memory, key=lambda u: (u.total, u.device))
        out.append(f"| {v.name} | {full.device} | {full.total / GB:.3g} / "
                   f"{full.capacity / GB:.3g} | {full.weights / GB:.3g} | "
                   f"{full.kv_cache / GB:.3g} | {full.activations / GB:.3g} | "
                   f"{v.host.total / GB:.4g} / {v.host.capacity / GB:.4g} |")
    warnings = [(v.name, w) for v in result.variants for w in v.warnings]
    out += ["", "## Platform checks", ""]
    out += [f"- **{name}**: {w}" for name, w in warnings] or [
        "Every variant fits its SoCs' DRAM and the host's memory; host-routed buffers stay "
        "under Linux's default memory-mapping limit."]
    return _figures_markdown(out, figure_names, trace=True)


CAPTIONS = {"comparison": "Headline metrics of every variant",
            "timeline": "Where each stage's SoCs spend the median decode step (or the forward "
                        "pass), and one layer up close with the flows on its busiest links:",
            "links": "The links of one decode step (or forward pass): utilisation while "
                     "carrying traffic, over the whole pass, and how much of it they are busy:",
            "topology": "The topology coloured by each link's utilisation over the run "
                        "(absolute, logarithmic scale):",
            "load": "Load time per strategy and source, by phase:",
            "loadtimeline": "When each phase of each load ran:",
            "latencycdf": "TTFT and TPOT of every serving variant, cumulative, with the SLOs:",
            "loadcurve": "Each layout over offered load: p99 TTFT and the share of requests "
                         "within every SLO (where it stops meeting them):",
            "requests": "Requests waiting and decoding over time (slots and KV buffers in "
                        "use):",
            "iterations": "A dynamic-shape server's iterations over time: KV pool in use, "
                          "sequences decoding and prompt tokens prefilled:"}


def band_notes() -> list[str]:
    """What the brackets of the speed-up table mean, and the constants behind them."""
    from ..results.bands import UNMEASURED

    ranges = "; ".join(
        f"{i.label} {i.text(i.low)} to {i.text(i.high)}"
        + ("" if i.host_corner else " (set at the P2P end only)") for i in UNMEASURED)
    return ["In brackets: the speed-up with every constant that no measurement pins down for "
            "this platform at the end of its range that favours the host path, then P2P "
            f"({ranges}; relative ranges scale the value in effect). `simtopo whatif` varies "
            "each alone; sources in `docs/whatif.md`.", ""]


def _figures_markdown(out: list[str], figure_names: list[str], trace: bool) -> str:
    if figure_names:
        out += ["", "## Figures", ""]
        for name in figure_names:
            kind, _, variant = name.removesuffix(".png").partition("-")
            caption = CAPTIONS[kind] + (f" {variant}" if variant else "")
            out += [f"{caption}", "", f"![{name}]({name})", ""]
        if trace:
            out += ["`trace.json` opens in [Perfetto](https://ui.perfetto.dev): the requests "
                    "of every figure variant over the whole run, and one prefill chunk and one "
                    "decode step op by op on every SoC."]
    return "\n".join(out).rstrip() + "\n"


REPORT_FILES = ("summary.json", "report.md", "trace.json")
"""What a report folder holds besides its figures (``*.png``)."""


def is_report_folder(folder: Path) -> bool:
    """Does ``folder`` hold nothing but a report's files (so that replacing it loses nothing
    simtopo did not write)? Sub-folders, links and other files say no."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    return all(entry.is_file() and not entry.is_symlink()
               and (entry.name in REPORT_FILES or entry.suffix == ".png")
               for entry in entries)


def write_report(result: Result, directory: str | Path, command: str = "simtopo run",
                 all_figures: bool = False, jobs: int = 1) -> Path:
    """Write ``directory`` (usually ``reports/<experiment>``) atomically; returns it. An
    existing folder is replaced only if it holds a report and nothing else. With ``jobs`` >
    1 the figures are drawn by that many forked processes (the same files)."""
    directory = Path(directory)
    drawn = figure_files(result, all_figures)
    names = list(drawn)
    traced = figure_variants(result, all_figures)

    def fill(folder: Path) -> None:
        def draw(i: int) -> Path:
            return save_figure(drawn[names[i]](), folder / names[i])

        with Forked(draw, len(names), jobs if jobs > 1 else 0) as forked:
            (folder / "summary.json").write_text(result.to_json())
            if traced:
                trace = chrome_trace(traced)
                (folder / "trace.json").write_text(json.dumps(trace, separators=(",", ":"))
                                                   + "\n")
            (folder / "report.md").write_text(render_report(result, names, command))
            forked.results()

    return write_directory_atomic(directory, fill, ours=is_report_folder)
