"""``simtopo plan`` without a layout: the sizing advisor's ranked table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .console import console
from .errors import ConfigError, PlanError

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


def _workload(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from .experiment import WorkloadSpec

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
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for label, justify in (("#", "right"), ("layout", "left"), ("SoCs", "right"),
                           ("TTFT ms", "right"), ("TPOT ms", "right"), ("tok/s", "right"),
                           ("tok/s/SoC", "right"), ("GB/SoC", "right"),
                           ("decode step", "left"), ("busiest link", "left")):
        table.add_column(label, justify=justify)  # type: ignore[arg-type]
    for i, c in enumerate(candidates, 1):
        m = c.metrics
        table.add_row(str(i), c.layout.label, str(c.layout.socs), f"{1e3 * m['ttft_s']:.4g}",
                      f"{1e3 * m['tpot_mean_s']:.4g}", f"{m['tokens_per_s']:.4g}",
                      f"{m['tokens_per_s'] / c.layout.socs:.3g}",
                      f"{m['memory_max_bytes'] / 1e9:.3g}", c.reason, c.busiest_link)
    return table


def _write_mdp(args: argparse.Namespace, kept: list[Any]) -> str:
    """Write the best layout an MDP config can express; returns what was written."""
    from .mdp import mdp_from_plan, write_mdp
    from .modelref import resolve_model
    from .opgraph import Precision, decode_shape
    from .plan import ParallelSpec, make_plan
    from .topofile import load_topology

    topo = load_topology(args.topology)
    ref = resolve_model(args.model)
    precision = Precision(weights=args.precision, activations=args.activations,
                          kv_cache=args.activations)
    graph = ref.graph_for(decode_shape(args.batch, args.context - 1,
                                       compiled_context=args.context), precision)
    for c in kept:
        lay = c.layout
        spec = ParallelSpec(tp=lay.tp, mode=lay.mode, pp=lay.pp, replicas=1, cores=lay.cores,
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
    from .advisor import advise

    workload = _workload(args)
    args.objective = args.objective or "latency"
    if args.dim:
        raise ConfigError("--dim sets ONNX dimensions; the advisor lays out decoders")
    err = console(sys.stderr)
    if sys.stderr.isatty():
        err.print("simulating every layout that fits ...", end="\r")
    ranked = advise(args.model, args.topology, workload, args.objective,
                    _cores(args.cores), jobs=args.jobs, socs=args.socs)
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
        metric = ("time per output token", f"{1e3 * best.metrics['tpot_mean_s']:.4g} ms") \
            if args.objective == "latency" else \
            ("throughput", f"{best.metrics['tokens_per_s']:.4g} tok/s")
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


def _builtin(path: str) -> Any:
    """A built-in topology: under the working folder, else next to the package (a checkout
    installed in editable mode)."""
    from pathlib import Path

    here = Path(path)
    beside = Path(__file__).resolve().parent.parent / path
    return here if here.is_file() or not beside.is_file() else beside


def cmd_sizing(args: argparse.Namespace) -> int:
    from .io import write_text_atomic
    from .sizing import MODELS, TOPOLOGIES, sizing_markdown

    models = args.model or list(MODELS)
    topologies = args.topology or [str(_builtin(t)) for t in TOPOLOGIES]
    command = "simtopo sizing" + "".join(f" --model {m}" for m in args.model or []) + "".join(
        f" --topology {t}" for t in args.topology or []) + (
        f" -o {args.output}" if args.output else "")
    err = console(sys.stderr)

    def progress(text: str) -> None:
        if sys.stderr.isatty():
            err.print(f"sizing {text} ...")

    text = sizing_markdown(models, topologies, jobs=args.jobs, command=command,
                           progress=progress)
    if args.output:
        write_text_atomic(args.output, text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def register(sub: Any) -> None:
    """Add ``sizing`` to the ``simtopo`` sub-commands (``plan`` is in cli.py)."""
    p = sub.add_parser("sizing", help="the advisor's sizing table: models x topologies")
    p.add_argument("--model", action="append", metavar="MODEL",
                   help="a model (repeatable; default 7B to 405B presets)")
    p.add_argument("--topology", action="append", metavar="FILE",
                   help="a topology (repeatable; default the built-in servers: "
                        "topologies/{ultra4-direct,std8,ultra8,ultra16-2s}.yaml)")
    p.add_argument("-o", "--output", metavar="MARKDOWN", help="write the table here")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="local processes")
    p.set_defaults(func=cmd_sizing)
