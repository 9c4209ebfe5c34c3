"""The ``simtopo`` command: a thin wrapper over the functions a notebook calls.

Errors the user can cause print one line and exit 2; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, cli_advisor, cli_check, cli_sweep, cli_whatif
from .console import console
from .errors import ConfigError, SimtopoError

if TYPE_CHECKING:
    import networkx as nx

    from .memory import MemoryUse
    from .modelref import ModelRef
    from .opgraph import Precision
    from .plan import PartitionPlan
    from .result import Result
    from .topology import Topology

EXIT_OK, EXIT_FAILED_CHECK, EXIT_BAD_INPUT = 0, 1, 2


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _file_kind(path: Path) -> str:
    """'topology', 'cards', 'decoder', 'graph', 'mdp' or 'onnx', judged from the suffix and
    the top-level keys."""
    from .io import read_yaml

    if path.suffix == ".json":
        return "mdp"
    if path.suffix == ".onnx":
        return "onnx"
    doc = read_yaml(path)
    if isinstance(doc.data, dict):
        if "host" in doc.data or "extends" in doc.data:
            return "topology"
        if "card_types" in doc.data:
            return "cards"
        if "decoder" in doc.data:
            return "decoder"
        if "nodes" in doc.data:
            return "graph"
    raise ConfigError("cannot tell what this file is: expected a topology (with 'host' or "
                      "'extends'), a card library ('card_types'), a model ('decoder' or "
                      "'nodes'), an MDP config (.json) or an ONNX model (.onnx)",
                      file=doc.file)


def cmd_validate(args: argparse.Namespace) -> int:
    from .topofile import load_card_library, load_topology

    failed = 0
    for name in args.files:
        path = Path(name)
        try:
            kind = _file_kind(path)
            if kind == "topology":
                what = f"topology {load_topology(path).summary()}"
            elif kind == "cards":
                types = load_card_library(path)
                what = f"card library: {', '.join(types)}"
            elif kind == "mdp":
                from .mdp import read_mdp

                config, _ = read_mdp(path)
                what = (f"MDP config: {len(config.partitions)} partition(s), "
                        f"{len(config.logical_devices())} device(s)")
            else:
                from .modelref import resolve_model

                ref = resolve_model(path)
                graph = ref.graph_for()
                what = f"{kind} {ref.name}: {len(graph)} ops"
            _out(f"ok     {name}: {what}")
        except SimtopoError as err:
            if args.debug:
                traceback.print_exc()
            sys.stderr.write(f"error  {err}\n")
            failed += 1
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _load(args: argparse.Namespace) -> Topology:
    from .topofile import load_topology

    return load_topology(args.file)


def cmd_show(args: argparse.Namespace) -> int:
    _out(_load(args).show(brief=args.brief))
    return EXIT_OK


def _select(topo: Topology, patterns: str | None) -> list[str]:
    if patterns is None:
        return list(topo.socs)
    pool = [*topo.socs, *topo.storage]
    if patterns == "all":
        return pool
    if not pool:
        raise ConfigError(f"--devices: {topo.name} has no devices")
    chosen = []
    for pattern in patterns.split(","):
        matched = [d for d in pool if fnmatch.fnmatchcase(d, pattern.strip())]
        if not matched:
            raise ConfigError(f"--devices: {pattern.strip()!r} matches no SoC or storage device "
                              f"(ids look like {pool[0]})")
        chosen += [d for d in matched if d not in chosen]
    return chosen


def cmd_matrix(args: argparse.Namespace) -> int:
    from .render import matrix_json, render_matrix

    topo = _load(args)
    matrix = topo.path_matrix(_select(topo, args.devices))
    if args.format == "json":
        _out(matrix_json(matrix))
    elif args.format == "csv":
        frame = matrix.to_dataframe(args.value)
        if args.value != "class":
            frame = frame.map(lambda x: float(f"{x:.12g}"))
        _out(frame.to_csv())
    else:
        _out(render_matrix(matrix, args.value))
    return EXIT_OK


def cmd_draw(args: argparse.Namespace) -> int:
    from .draw import save_figure

    topo = _load(args)
    out = Path(args.output or f"{topo.name}.png")
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"-o: {str(out)!r} has no known image suffix (expected .png, .svg or "
                          ".pdf)")
    save_figure(topo.draw(), out)
    _out(f"wrote {out}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    findings = _load(args).checks()
    for finding in findings:
        _out(str(finding))
    return EXIT_FAILED_CHECK if any(f.level == "error" for f in findings) else EXIT_OK


def cmd_route(args: argparse.Namespace) -> int:
    from .routing import BounceRoute
    from .units import format_bandwidth, format_time

    topo = _load(args)
    if args.staging is not None and args.mode != "host":
        raise ConfigError("--staging applies only to --mode host")
    route = topo.route(args.src, args.dst, mode=args.mode, staging=args.staging)
    legs = [("to host", route.to_host), ("from host", route.from_host)] \
        if isinstance(route, BounceRoute) else [("", route)]
    _out(f"{route.src} -> {route.dst}: {route.path_class}, bottleneck "
         f"{format_bandwidth(route.bottleneck_Bps)}, latency {format_time(route.latency_s)}")
    for name, leg in legs:
        if name:
            _out(f"  {name} (memory of {leg.memory}):")
        for (u, v), bw in zip(leg.links, leg.link_bw_Bps, strict=True):
            edge = topo.graph.edges[u, v]
            _out(f"    {u} -> {v}  {edge['link']}, {format_bandwidth(bw)}")
    if isinstance(route, BounceRoute):
        _out(f"  hand-off {format_time(route.handoff_s)} on {route.handoff_threads} host "
             f"threads; staging in {route.staging} memory "
             f"({format_bandwidth(route.memory_bw_Bps)}, written and read)")
    return EXIT_OK


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated integers (got {text!r})") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{option}: expected positive integers (got {text!r})")
    return values


def _size_list(text: str, option: str) -> list[float]:
    from .units import parse_bytes

    try:
        values = [parse_bytes(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if not values or min(values) <= 0:
        raise ConfigError(f"{option}: expected positive sizes such as 16KiB,64MiB (got {text!r})")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench
    from .bench_report import bench_json, collect_bench

    topo = _load(args)
    devices = _select(topo, args.devices)
    groups = _int_list(args.groups, "--groups")
    sizes = _size_list(args.sizes, "--sizes") if args.sizes else list(bench.COLLECTIVE_SIZES)
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.p2p]
    parts = [p.strip() for p in args.what.split(",")]
    unknown = sorted(set(parts) - {"matrices", "collectives", "copies"})
    if unknown:
        raise ConfigError(f"--what: unknown part {unknown[0]!r} (expected matrices, "
                          "collectives, copies)")
    result = collect_bench(topo, devices, modes, groups, sizes, parts)
    _out(bench_json(result) if args.json else result.text())
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import all_points
    from .calibration_report import (
        FIT_RECORD,
        MEANING,
        SCALE,
        read_fit_record,
        run_fit,
        validation_document,
        write_fit_record,
    )

    points = all_points()
    if args.fit in ("all", "links"):
        record = run_fit(points, args.max_evaluations)
        if FIT_RECORD.is_file():
            record["soc"] = read_fit_record().get("soc")
        write_fit_record(record)
        _out(f"link fit: objective {record['objective']:.4f} after {record['evaluations']} "
             "evaluations; suggested constants for simtopo/calibrated.py:")
        from .calibration import BOUNDS

        for name in BOUNDS:
            value = record["model"][name]
            unit = MEANING[name][0]
            shown = f"  # {value * SCALE[unit]:.3g} {unit}" if unit in ("us", "ns") else ""
            _out(f"  {name.upper()} = {value:.3g}{shown}")
    if args.fit in ("all", "soc"):
        from .soc_calibration import fit_record, fit_soc

        soc = fit_soc()
        record = read_fit_record()
        record["soc"] = fit_record(soc)
        write_fit_record(record)
        capped = " (capped at 1: the data wanted more)" if soc.capped else ""
        _out("SoC fit on GPT-J decode; suggested constants for simtopo/calibrated.py:")
        _out(f"  DRAM_EFFICIENCY = {soc.model.dram_efficiency:.4g}{capped}")
        _out(f"  MXFP6_EXPAND_OPS_PER_WEIGHT = {soc.model.mxfp6_expand_ops_per_weight:.4g}")
    if args.output:
        from .io import write_text_atomic

        write_text_atomic(args.output, validation_document(points, read_fit_record()))
        _out(f"wrote {args.output}")
    if not args.fit and not args.output:
        from .calibration import predict, relative_error

        for point, value in zip(points, predict(points), strict=True):
            _out(f"{100 * relative_error(value, point.measured):+7.1f}%  {point.machine}: "
                 f"{point.name}")
        from .soc_calibration import measured_tokens_per_s, predict_soc

        measured = measured_tokens_per_s()
        for precision, got in predict_soc().items():
            value = got["decode_tokens_per_s"]
            _out(f"{100 * relative_error(value, measured[precision]):+7.1f}%  ai100-standard: "
                 f"gpt-j-6b decode {precision} tok/s")
    return EXIT_OK


def _workload(args: argparse.Namespace) -> tuple[ModelRef, nx.DiGraph, nx.DiGraph, Precision]:
    """The model, its decode and prefill graphs, and the precision the options ask for."""
    from .modelref import resolve_model
    from .opgraph import Precision, decode_shape, prefill_shapes

    try:
        precision = Precision(weights=args.precision, activations=args.activations,
                              kv_cache=args.activations)
    except ValueError as exc:
        raise ConfigError(f"--precision: {exc}") from None
    if args.batch < 1 or args.context < 1:
        raise ConfigError("--batch and --context must be positive")
    prompt = args.prompt if args.prompt is not None else max(1, args.context // 2)
    if not 1 <= prompt <= args.context:
        raise ConfigError(f"--prompt must be between 1 and --context {args.context} "
                          f"(got {prompt})")
    ref = resolve_model(args.model, _dims(args.dim))
    decode = ref.graph_for(decode_shape(args.batch, args.context - 1,
                                        compiled_context=args.context), precision)
    prefill = ref.graph_for(prefill_shapes(args.batch, prompt, compiled_prompt=prompt,
                                           compiled_context=args.context)[0], precision)
    return ref, decode, prefill, precision


def _dims(items: Sequence[str] | None) -> dict[str, int]:
    dims = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not name or not value.isdigit() or int(value) < 1:
            raise ConfigError(f"--dim: expected NAME=POSITIVE_INTEGER (got {item!r})")
        dims[name] = int(value)
    return dims


def _rules(items: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    rules = []
    for item in items or []:
        pattern, _, split = item.partition("=")
        if not pattern or split not in ("M", "K", "replicate"):
            raise ConfigError(f"--rule: expected PATTERN=M, PATTERN=K or PATTERN=replicate "
                              f"(got {item!r})")
        rules.append((pattern, split))
    return tuple(rules)


def _with_model(args: argparse.Namespace) -> argparse.Namespace:
    args.model = args.name
    return args


def cmd_model_show(args: argparse.Namespace) -> int:
    from .planview import render_model

    ref, decode, prefill, _ = _workload(args)
    _out(render_model(ref.name, decode, ref.decoder))
    if ref.decoder is not None:
        _out(render_model(ref.name, prefill, None).split("\n", 1)[1])
    return EXIT_OK


def cmd_mdp_dump(args: argparse.Namespace) -> int:
    from .mdp import dump_mdp, write_mdp

    if args.cores < 1:
        raise ConfigError(f"--cores: expected a positive number of cores (got {args.cores})")
    ref, decode, _, _ = _workload(args)
    write_mdp(dump_mdp(decode, cores=args.cores), args.output)
    _out(f"wrote {args.output}: one partition of {len(decode)} nodes of {ref.name}")
    return EXIT_OK


def _devices_option(topo: Topology, text: str | None) -> list[str] | None:
    if text is None:
        return None
    chosen = [d for d in _select(topo, text) if topo.node(d)["kind"] == "soc"]
    if not chosen:
        raise ConfigError(f"--devices: {text!r} names no SoC (ids look like {topo.socs[0]})")
    return chosen


def cmd_mdp_validate(args: argparse.Namespace) -> int:
    from .mdp import plan_from_mdp, read_mdp
    from .planview import render_plan
    from .topofile import load_topology

    topo = load_topology(args.topology)
    ref, decode, prefill, _ = _workload(args)
    config, doc = read_mdp(args.file)
    plan = plan_from_mdp(config, doc, decode, ref.decoder, topo,
                         _devices_option(topo, args.devices), _rules(args.rule))
    memory = _memory(plan, decode, prefill, ref, topo, args)
    _out(f"ok: {args.file} on {topo.name} with {ref.name}")
    _out(render_plan(plan, memory))
    return EXIT_OK


def _memory(plan: PartitionPlan, decode: nx.DiGraph, prefill: nx.DiGraph, ref: ModelRef,
            topo: Topology, args: argparse.Namespace) -> list[MemoryUse]:
    from .memory import check_fit

    extra = [prefill] if ref.decoder is not None else []
    return check_fit(plan, decode, ref.decoder, topo, args.batch, args.context, extra)


def cmd_plan(args: argparse.Namespace) -> int:
    from .mdp import mdp_from_plan, write_mdp
    from .plan import ParallelSpec, make_plan
    from .planview import render_plan
    from .topofile import load_topology

    layout = (args.tp, args.mode, args.pp, args.replicas, args.connection, args.rule,
              args.devices)
    if all(x is None for x in layout):
        from .cli_advisor import cmd_advise

        return cmd_advise(args)
    advisor_only = {"--objective": args.objective, "--generate": args.generate,
                     "--socs": args.socs, "--jobs": args.jobs, "--all": args.all or None}
    given = [name for name, value in advisor_only.items() if value is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: advisor options; drop them, or drop the layout "
                          "options (--tp, --pp, --replicas, --mode, --connection, --rule, "
                          "--devices) to ask the advisor")
    topo = load_topology(args.topology)
    ref, decode, prefill, precision = _workload(args)
    if ref.decoder is None:
        raise ConfigError("--model: plans from a parallel spec need a decoder (a preset or a "
                          "'decoder:' YAML); use 'simtopo mdp validate' for other graphs")
    cores = None
    if args.cores is not None:
        if not args.cores.isdigit():
            raise ConfigError(f"--cores: with a layout, one number of cores (got "
                              f"{args.cores!r})")
        cores = int(args.cores)
    spec = ParallelSpec(tp=args.tp or 1, mode=args.mode or "weight", pp=args.pp or 1,
                        replicas=args.replicas or 1, cores=cores,
                        connection=args.connection or "p2p", rules=_rules(args.rule),
                        devices=tuple(_devices_option(topo, args.devices) or ()) or None)
    plan = make_plan(decode, ref.decoder, topo, spec, precision)
    memory = _memory(plan, decode, prefill, ref, topo, args)
    if args.write_mdp:
        write_mdp(mdp_from_plan(plan), args.write_mdp)
    _out(render_plan(plan, memory))
    if args.write_mdp:
        _out(f"wrote {args.write_mdp}")
    return EXIT_OK


def _workload_options(p: argparse.ArgumentParser, model_required: bool = True) -> None:
    p.add_argument("--model", required=model_required, metavar="MODEL",
                   help="a preset (llama-2-70b, gpt-j-6b, ...), a decoder or graph YAML, or "
                        "an .onnx file")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--context", type=int, default=2048, help="compiled context length")
    p.add_argument("--prompt", type=int, help="compiled prompt length (default context / 2)")
    p.add_argument("--precision", default="fp16",
                   help="GEMM weights: fp32, fp16, bf16, int8, mxfp6 (default fp16)")
    p.add_argument("--activations", default="fp16",
                   help="activations and KV cache: fp32, fp16, bf16 (default fp16)")
    p.add_argument("--dim", action="append", metavar="NAME=VALUE",
                   help="value of a symbolic ONNX dimension, e.g. batch=8 (repeatable)")


def _results_table(result: Result) -> object:
    from rich.table import Table

    llm = any("tpot_mean_s" in v.metrics for v in result.variants)
    table = Table(title=f"{result.name}: {result.description}" if result.description
                  else result.name, title_justify="left")
    table.add_column("variant")
    table.add_column("SoCs", justify="right")
    columns = []
    if llm:
        columns += [("TTFT ms", "ttft_s", 1e3), ("TPOT ms", "tpot_mean_s", 1e3),
                    ("tok/s", "tokens_per_s", 1.0), ("e2e s", "e2e_s", 1.0)]
    if any("latency_s" in v.metrics for v in result.variants):
        columns += [("latency ms", "latency_s", 1e3), ("inf/s", "inferences_per_s", 1.0)]
    for label, _, _ in columns:
        table.add_column(label, justify="right")
    table.add_column("busiest link")
    comparisons = result.comparisons()
    if comparisons:
        table.add_column("P2P speed-up", justify="right")
    speedups: dict[str, str] = {}
    pairs = []
    for c in comparisons:
        parts = [f"{c[key]:.3g}x {label}" for key, label in
                 (("ttft_s_speedup", "TTFT"), ("tpot_mean_s_speedup", "TPOT"),
                  ("latency_s_speedup", "latency")) if key in c]
        speedups.setdefault(c["host"], ", ".join(parts))
        pairs.append(f"{c['host']} vs {c['p2p']}")
    if pairs:
        table.caption = ("P2P speed-up: host-routed time / P2P time, " + "; ".join(pairs))
        table.caption_justify = "left"
    for v in result.variants:
        cells = [v.name, f"{v.metrics['socs']:.0f}"]
        for _, key, scale in columns:
            value = v.metrics.get(key)
            cells.append("-" if value is None else f"{value * scale:.4g}")
        top = v.links[0] if v.links else None
        cells.append(f"{top['link']} {100 * top['utilization']:.2g}%" if top else "-")
        if comparisons:
            cells.append(speedups.get(v.name, ""))
        table.add_row(*cells)
    return table


def cmd_run(args: argparse.Namespace) -> int:
    from .experiment import load_experiment
    from .io import display_path
    from .runner import run

    exp = load_experiment(args.file, reduced=args.ci)
    names = args.variant or None
    count = len(names) if names else len(exp.variants)
    err = console(sys.stderr)
    if sys.stderr.isatty() and not args.quiet:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(
                "{task.completed}/{task.total}"), TimeElapsedColumn(), console=err,
                transient=True) as bar:
            task = bar.add_task(f"simulating {exp.name}", total=count)
            seen: list[str] = []

            def progress(name: str) -> None:
                if seen:
                    bar.advance(task)
                seen.append(name)
                bar.update(task, description=f"simulating {exp.name}: {name}")

            result = run(exp, names, progress=progress)
    else:
        result = run(exp, names)
    out = console(sys.stdout)
    if args.json:
        sys.stdout.write(result.to_json())
    elif not args.quiet:
        if result.variants:
            out.print(_results_table(result))
        if result.loads:
            from .load_report import loads_table

            out.print(loads_table(result))
    for v in result.variants:
        for warning in v.warnings:
            sys.stderr.write(f"warning: {v.name}: {warning}\n")
    if not args.no_report:
        name = exp.name + ("-ci" if args.ci else "")
        folder = Path(args.reports) / name
        command = "simtopo run " + " ".join(
            [display_path(Path(args.file))] + (["--ci"] if args.ci else [])
            + [f"--variant {n}" for n in (names or [])])
        written = result.write_report(folder, command=command, all_figures=args.all_figures)
        if not args.quiet and not args.json:
            out.print(f"report: {display_path(written)}/report.md")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="simtopo",
        description="Topology-aware simulator and cost model for multi-accelerator PCIe "
                    "servers.")
    parser.add_argument("--version", action="version", version=f"simtopo {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks for errors in input files")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="validate topology and card files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)

    topo = sub.add_parser("topo", help="inspect a topology").add_subparsers(
        dest="topo_command", required=True, metavar="SUBCOMMAND")
    p = topo.add_parser("show", help="the tree as text with link bandwidths")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--brief", action="store_true", help="one line for the SoCs of each card")
    p.set_defaults(func=cmd_show)

    p = topo.add_parser("matrix", help="device-by-device path class, bottleneck or latency")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--devices", metavar="PATTERNS",
                   help="comma-separated globs such as 'card0.*,card4.*', or 'all' to add "
                        "storage (default: every SoC)")
    p.add_argument("--value", choices=("class", "bandwidth", "latency"), default="class")
    p.add_argument("--format", choices=("text", "csv", "json"), default="text")
    p.set_defaults(func=cmd_matrix)

    p = topo.add_parser("draw", help="draw the hierarchy to an image")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="IMAGE",
                   help="output .png, .svg or .pdf (default: <name>.png)")
    p.set_defaults(func=cmd_draw)

    p = topo.add_parser("check", help="platform checks before compiling (BAR space, ACS, ...)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("bench", help="simulated p2pBandwidthLatencyTest, nccl-tests and "
                       "bandwidthTest output for a topology")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--devices", metavar="PATTERNS",
                   help="comma-separated globs (default: every SoC)")
    p.add_argument("--p2p", choices=("on", "off", "both"), default="both",
                   help="P2P enabled, disabled (host-staged), or both (default)")
    p.add_argument("--groups", default="2,4,8,16", metavar="N,...",
                   help="collective group sizes, the first N devices (default 2,4,8,16)")
    p.add_argument("--sizes", metavar="SIZES",
                   help="collective message sizes such as 16KiB,64MiB (default 1KiB..64MiB)")
    p.add_argument("--what", default="matrices,collectives,copies",
                   help="which parts: matrices, collectives, copies (default all)")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("calibrate",
                       help="link and SoC models against the calibration measurements")
    p.add_argument("--fit", nargs="?", const="all", choices=("all", "links", "soc"),
                   help="refit (writes reports/calibration/fit.json): the link model with each "
                        "machine left out in turn (minutes), the SoC model on GPT-J decode "
                        "(seconds), or both (the default)")
    p.add_argument("-o", "--output", metavar="MARKDOWN",
                   help="write the validation document (docs/validation.md)")
    p.add_argument("--max-evaluations", type=int, default=400, metavar="N")
    p.set_defaults(func=cmd_calibrate)

    model = sub.add_parser("model", help="inspect a model").add_subparsers(
        dest="model_command", required=True, metavar="SUBCOMMAND")
    p = model.add_parser("show", help="parameters and per-kind totals of one pass")
    p.add_argument("name", metavar="MODEL")
    _workload_options(p, model_required=False)
    p.set_defaults(func=lambda a: cmd_model_show(_with_model(a)))

    mdp = sub.add_parser("mdp", help="Qualcomm MDP partition configs").add_subparsers(
        dest="mdp_command", required=True, metavar="SUBCOMMAND")
    p = mdp.add_parser("dump", help="a starting config: one partition listing every node")
    _workload_options(p)
    p.add_argument("-o", "--output", required=True, metavar="JSON")
    p.add_argument("--cores", type=int, default=16)
    p.set_defaults(func=cmd_mdp_dump)
    p = mdp.add_parser("validate", help="check a config against a model and a topology")
    p.add_argument("file", metavar="JSON")
    p.add_argument("--topology", required=True, metavar="FILE")
    p.add_argument("--devices", metavar="PATTERNS",
                   help="the SoCs of logical devices 0, 1, ... (default: topology order)")
    p.add_argument("--rule", action="append", metavar="PATTERN=SPLIT",
                   help="split GEMMs of graphs by name, e.g. 'MatMul_*=M' (repeatable)")
    _workload_options(p)
    p.set_defaults(func=cmd_mdp_validate)

    p = sub.add_parser("run", help="simulate an experiment: a table, then reports/<name>/")
    p.add_argument("file", metavar="EXPERIMENT", help="an experiment YAML file")
    p.add_argument("--variant", action="append", metavar="NAME",
                   help="run only this variant (repeat for more)")
    p.add_argument("--ci", action="store_true",
                   help="the experiment's reduced CI size (its 'ci:' block); the report goes "
                        "to reports/<name>-ci/")
    p.add_argument("--reports", default="reports", metavar="DIR",
                   help="where reports/<name>/ goes (default: reports)")
    p.add_argument("--no-report", action="store_true", help="print the table only")
    p.add_argument("--all-figures", action="store_true",
                   help="figures and trace for every variant (default: the first and the "
                        "first P2P/host pair)")
    p.add_argument("--json", action="store_true", help="print summary.json instead of a table")
    p.add_argument("-q", "--quiet", action="store_true", help="no table, no progress")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="the sizing advisor (no layout given: every layout that "
                                    "fits, simulated and ranked), or one layout's plan and "
                                    "memory fit")
    p.add_argument("--topology", required=True, metavar="FILE")
    p.add_argument("--tp", type=int, help="tensor-parallel size (gives one layout)")
    p.add_argument("--mode", choices=("weight", "batch"), help="tensor-parallel mode")
    p.add_argument("--pp", type=int, help="pipeline stages")
    p.add_argument("--replicas", type=int)
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
    p.add_argument("--generate", type=int,
                   help="advisor: tokens generated (default context - prompt)")
    p.add_argument("--socs", type=int, help="advisor: use at most this many SoCs")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="advisor: local processes")
    p.add_argument("--all", action="store_true",
                   help="advisor: list every layout, kept and dropped")
    _workload_options(p)
    p.set_defaults(func=cmd_plan)

    cli_check.register(sub)
    cli_sweep.register(sub)
    cli_advisor.register(sub)
    cli_whatif.register(sub)
    p = sub.add_parser("errors", help="every error class with example messages (docs)")
    p.add_argument("-o", "--output", metavar="MARKDOWN", help="write here (docs/errors.md)")
    p.set_defaults(func=cmd_errors)

    p = topo.add_parser("route", help="the route of one transfer")
    p.add_argument("file", metavar="FILE")
    p.add_argument("src", help="SoC or storage id, socket id, or 'host'")
    p.add_argument("dst", help="SoC or storage id, socket id, or 'host'")
    p.add_argument("--mode", choices=("p2p", "host"), default="p2p")
    p.add_argument("--staging", help="host mode: 'src', 'dst' or a socket id")
    p.set_defaults(func=cmd_route)
    return parser


def cmd_errors(args: argparse.Namespace) -> int:
    from .error_catalog import markdown
    from .io import write_text_atomic

    text = markdown()
    if args.output:
        write_text_atomic(args.output, text)
        _out(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SimtopoError as err:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {err}\n")
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): not an error
        return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130

