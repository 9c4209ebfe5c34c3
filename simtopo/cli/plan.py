"""``simtopo plan`` without a layout: the sizing advisor's ranked table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import limits
from ..errors import ConfigError, PlanError
from .common import (
    EXIT_OK,
    add_workload_options,
    console,
    counted,
    devices_option,
    echo,
    memory_fit,
    progress_bar,
    rules,
    workload_graphs,
)

DROPPED_SHOWN = 12
KEPT_SHOWN = 15


def _cores(text: str | None) -> list[int | None]:
    if text is None:
        return [None]
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        values = [0]
    if not values or min(values) < 1:
        raise ConfigError(f"--cores: expected cores per SoC, e.g. 16 or 8,16 (got {text!r})")
    return sorted(set(values))


def _advisor_workload(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from ..spec.experiment import WorkloadSpec

    prompt = args.prompt if args.prompt is not None else max(1, args.context // 2)
    generate = args.generate if args.generate is not None else max(1, args.context - prompt)
    try:
        return WorkloadSpec(batch=args.batch, prompt=prompt, generate=generate,
                            context=args.context, precision=args.precision,
                            activations=args.activations)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"workload options: {where + ': ' if where else ''}"
                          f"{first['msg']}") from None


def _table(candidates: list[Any], objective: str, title: str) -> Any:
    from ..report.tables import NAME, NUMBER, TEXT, link_text, terminal_table

    table = terminal_table(title, [
        ("#", NUMBER), ("layout", NAME), ("SoCs", NUMBER), ("TTFT ms", NUMBER),
        ("TPOT ms", NUMBER), ("tok/s", NUMBER), ("tok/s/SoC", NUMBER), ("GB/SoC", NUMBER),
        ("decode step", TEXT), ("busiest link", TEXT)])
    for i, c in enumerate(candidates, 1):
        m = c.metrics
        table.add_row(str(i), c.layout.label + (" *" if c.approximate else ""),
                      str(c.layout.socs), f"{1e3 * m['ttft_s']:.4g}",
                      f"{1e3 * m['tpot_mean_s']:.4g}" if "tpot_mean_s" in m else "-",
                      f"{m['tokens_per_s']:.4g}",
                      f"{m['tokens_per_s'] / c.layout.socs:.3g}",
                      f"{m['memory_max_bytes'] / 1e9:.3g}", c.reason,
                      link_text(c.busiest_link))
    if any(c.approximate for c in candidates):
        table.caption = ("* screened numbers, optimistic: its pipeline stages (while their "
                         "prefills overlap) or its replicas contend, which the screen leaves "
                         "out (the leading layouts are re-simulated; --exact simulates every "
                         "layout; docs/metrics.md)")
        table.caption_justify = "left"
    return table


def _write_mdp(args: argparse.Namespace, kept: list[Any]) -> str:
    """Write the best layout an MDP config can express; returns what was written."""
    from ..plan.mdp import mdp_from_plan, write_mdp
    from ..plan.stages import make_plan
    from ..spec.experiment import PlanSpec
    from ..topology.files import load_topology
    from ..workload.modelref import resolve_model
    from ..workload.opgraph import Precision, decode_shape

    topo = load_topology(args.topology)
    ref = resolve_model(args.model)
    precision = Precision(weights=args.precision, activations=args.activations,
                          kv_cache=args.activations)
    graph = ref.graph_for(decode_shape(args.batch, args.context - 1,
                                       compiled_context=args.context), precision)
    for c in kept:
        lay = c.layout
        spec = PlanSpec(tp=lay.tp, mode=lay.mode, pp=lay.pp, replicas=1, cores=lay.cores,
                        connection=lay.connection)
        try:
            config = mdp_from_plan(make_plan(graph, ref.decoder, topo, spec, precision))
        except PlanError:
            continue  # batch mode: not expressible as MDP; try the next best
        write_mdp(config, args.write_mdp)
        extra = f" (one replica of {lay.replicas})" if lay.replicas > 1 else ""
        return f"wrote {args.write_mdp}: {lay.label}{extra}"
    raise ConfigError("--write-mdp: no kept layout can be written as an MDP config")


def cmd_advise(args: argparse.Namespace) -> int:
    """``simtopo plan`` without a layout: the advisor's ranked table."""
    from ..analysis.advisor import advise

    workload = _advisor_workload(args)
    args.objective = args.objective or "latency"
    if args.dim:
        raise ConfigError("--dim sets ONNX dimensions; the advisor lays out decoders")
    with progress_bar("layouts", True) as progress:
        ranked = advise(args.model, args.topology, workload, args.objective,
                        _cores(args.cores), jobs=args.jobs, socs=args.socs, progress=progress,
                        exact=args.exact)
    kept = [c for c in ranked if c.kept]
    dropped = [c for c in ranked if not c.kept]
    out = console(sys.stdout)
    w = workload
    title = (f"{args.model} on {args.topology}, ranked by {args.objective} (batch {w.batch}, "
             f"prompt {w.prompt}, generate {w.generate}, context {w.context}, {w.precision})")
    if kept:
        out.print(_table(kept if args.all else kept[:KEPT_SHOWN], args.objective, title))
        if not args.all and len(kept) > KEPT_SHOWN:
            out.print(f"... and {len(kept) - KEPT_SHOWN} more layouts that fit (--all)")
        best = kept[0]
        m = best.metrics
        metric = ("throughput", f"{m['tokens_per_s']:.4g} tok/s")
        if args.objective == "latency":
            metric = (("time per output token", f"{1e3 * m['tpot_mean_s']:.4g} ms")
                      if "tpot_mean_s" in m else
                      ("time to first token", f"{1e3 * m['ttft_s']:.4g} ms"))
        out.print(f"recommended: {best.layout.label} on {best.layout.socs} SoCs: {metric[0]} "
                  f"{metric[1]}; decode step {best.reason}")
    else:
        out.print(f"{title}: no layout fits")
    if dropped:
        out.print(f"dropped {len(dropped)} layouts:")
        groups: dict[str, list[str]] = {}
        for c in dropped:
            groups.setdefault(c.reason.split("; smallest layouts")[0], []).append(c.layout.label)
        for i, (reason, labels) in enumerate(groups.items()):
            if not args.all and i == DROPPED_SHOWN:
                out.print(f"  ... and {len(groups) - DROPPED_SHOWN} more reasons (--all)")
                break
            shown = ", ".join(labels if args.all else labels[:4]) + (
                "" if args.all or len(labels) <= 4 else f" and {len(labels) - 4} more")
            out.print(f"  {shown}: {reason}", overflow="fold")
    if args.write_mdp:
        if not kept:
            raise ConfigError("--write-mdp: no layout fits")
        out.print(_write_mdp(args, kept))
    return 0 if kept else 1


def cmd_plan(args: argparse.Namespace) -> int:
    """``simtopo plan``: one layout's plan and memory fit, or the advisor."""
    from ..plan.mdp import mdp_from_plan, write_mdp
    from ..plan.stages import make_plan
    from ..report.planview import render_plan
    from ..spec.experiment import plan_spec
    from ..topology.files import load_topology

    layout = (args.tp, args.mode, args.pp, args.replicas, args.connection, args.rule,
              args.devices)
    if all(x is None for x in layout):
        from .plan import cmd_advise

        return cmd_advise(args)
    advisor_only = {"--objective": args.objective, "--generate": args.generate,
                     "--socs": args.socs, "--jobs": args.jobs, "--all": args.all or None,
                     "--exact": args.exact or None}
    given = [name for name, value in advisor_only.items() if value is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: advisor options; drop them, or drop the layout "
                          "options (--tp, --pp, --replicas, --mode, --connection, --rule, "
                          "--devices) to ask the advisor")
    topo = load_topology(args.topology)
    ref, decode, prefill, precision = workload_graphs(args)  # a graph: its one pass, twice
    cores = None
    if args.cores is not None:
        if not args.cores.isdigit():
            raise ConfigError(f"--cores: with a layout, one number of cores (got "
                              f"{args.cores!r})")
        cores = int(args.cores)
    given = {"tp": args.tp, "mode": args.mode, "pp": args.pp, "replicas": args.replicas,
             "cores": cores, "connection": args.connection, "rules": dict(rules(args.rule)),
             "devices": devices_option(topo, args.devices)}
    spec = plan_spec({k: v for k, v in given.items() if v is not None}, "simtopo plan")
    plan = make_plan(decode, ref.decoder, topo, spec, precision)
    memory = memory_fit(plan, decode, prefill, ref, topo, args)
    if args.write_mdp:
        write_mdp(mdp_from_plan(plan), args.write_mdp)
    echo(render_plan(plan, memory))
    if args.write_mdp:
        echo(f"wrote {args.write_mdp}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``plan`` (one layout's plan, or the sizing advisor) to the ``simtopo`` sub-commands."""
    p = sub.add_parser("plan", help="the sizing advisor (no layout given: every layout that "
                                    "fits, simulated and ranked), or one layout's plan and "
                                    "memory fit")
    p.add_argument("--topology", required=True, metavar="FILE")
    p.add_argument("--tp", type=counted(limits.MAX_SOCS),
                   help="tensor-parallel size (gives one layout)")
    p.add_argument("--mode", choices=("weight", "batch"), help="tensor-parallel mode")
    p.add_argument("--pp", type=counted(limits.MAX_SOCS), help="pipeline stages")
    p.add_argument("--replicas", type=counted(limits.MAX_SOCS))
    p.add_argument("--cores", metavar="N[,N...]",
                   help="cores per SoC (default all; the advisor tries each one listed)")
    p.add_argument("--connection", choices=("p2p", "host"))
    p.add_argument("--rule", action="append", metavar="PATTERN=SPLIT",
                   help="override a GEMM split, e.g. lm_head=M (repeatable)")
    p.add_argument("--devices", metavar="PATTERNS", help="SoCs in logical order")
    p.add_argument("--write-mdp", metavar="JSON",
                   help="write the plan (the advisor's best expressible one) as an MDP config")
    p.add_argument("--objective", choices=("latency", "throughput"),
                   help="advisor: rank by time per output token (default) or by tokens/s")
    p.add_argument("--generate", type=counted(limits.MAX_TOKENS),
                   help="advisor: tokens generated (default context - prompt)")
    p.add_argument("--socs", type=counted(limits.MAX_SOCS),
                   help="advisor: use at most this many SoCs")
    p.add_argument("-j", "--jobs", type=counted(limits.MAX_THREADS), metavar="N",
                   help="advisor: local processes")
    p.add_argument("--all", action="store_true",
                   help="advisor: list every layout, kept and dropped")
    p.add_argument("--exact", action="store_true",
                   help="advisor: simulate every layout exactly (default: screen them, then "
                        "re-simulate the leaders whose screen left contention out)")
    add_workload_options(p)
    p.set_defaults(func=cmd_plan)
