"""What the command modules share: exit codes, output, rich consoles, device selection and the
workload options of commands that take a model."""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import limits
from ..errors import ConfigError

if TYPE_CHECKING:
    import networkx as nx

    from ..plan.memory import MemoryUse
    from ..plan.stages import PartitionPlan
    from ..topology.graph import Topology
    from ..workload.modelref import ModelRef
    from ..workload.opgraph import Precision

EXIT_OK, EXIT_FAILED_CHECK, EXIT_BAD_INPUT = 0, 1, 2


def counted(high: int) -> Any:
    """An argparse type: an integer from 1 to ``high`` (``--tp 0`` is refused, not planned
    as 1)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer (got {text!r})") from None
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from 1 to {high} (got "
                                             f"{text!r})")
        return value
    return parse


def console(stream: Any) -> Any:
    """A rich console on ``stream``: the terminal's width, or ``$COLUMNS`` (default 120)
    when writing to a file or pipe, so that output in CI and logs does not depend on it."""
    from rich.console import Console

    width = None if getattr(stream, "isatty", lambda: False)() else int(
        os.environ.get("COLUMNS", "120"))
    return Console(file=stream, width=width, highlight=False)


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int, Any], None] | None]:
    """A transient bar on stderr counting ``label`` (done / total, elapsed, time left) when
    ``enabled`` and stderr is a terminal; yields the ``progress(done, total, record)`` callback
    for :mod:`simtopo.analysis.executors`' runners, or ``None``."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console(sys.stderr), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def progress(done: int, total: int, _record: Any) -> None:
            bar.update(task, completed=done, total=total)

        yield progress


def emit(text: str, output: str | None) -> None:
    """``text`` written atomically to ``output`` (and said so), or on stdout."""
    if output is None:
        sys.stdout.write(text)
        return
    from ..io.atomic import write_text_atomic

    write_text_atomic(output, text)
    echo(f"wrote {output}")


def echo(text: str) -> None:
    """Print ``text`` on stdout, ending it with a newline."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def select_devices(topo: Topology, patterns: str | None) -> list[str]:
    """SoCs (and storage) of ``topo`` matching comma-separated globs; every SoC by default."""
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


def workload_graphs(args: argparse.Namespace) -> tuple[ModelRef, nx.DiGraph, nx.DiGraph, Precision]:
    """The model, its decode and prefill graphs, and the precision the options ask for."""
    from ..workload.modelref import resolve_model
    from ..workload.opgraph import Precision, decode_shape, prefill_shapes

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
    ref = resolve_model(args.model, dims(args.dim))
    decode = ref.graph_for(decode_shape(args.batch, args.context - 1,
                                        compiled_context=args.context), precision)
    prefill = ref.graph_for(prefill_shapes(args.batch, prompt, compiled_prompt=prompt,
                                           compiled_context=args.context)[0], precision)
    return ref, decode, prefill, precision


def dims(items: Sequence[str] | None) -> dict[str, int]:
    """``--dim NAME=VALUE`` options as a mapping."""
    dims = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not name or not value.isdigit() or int(value) < 1:
            raise ConfigError(f"--dim: expected NAME=POSITIVE_INTEGER (got {item!r})")
        dims[name] = int(value)
    return dims


def rules(items: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """``--rule PATTERN=SPLIT`` options as (pattern, split) pairs."""
    rules = []
    for item in items or []:
        pattern, _, split = item.partition("=")
        if not pattern or split not in ("M", "K", "replicate"):
            raise ConfigError(f"--rule: expected PATTERN=M, PATTERN=K or PATTERN=replicate "
                              f"(got {item!r})")
        rules.append((pattern, split))
    return tuple(rules)


def with_model(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the positional model name in ``args.model``."""
    args.model = args.name
    return args


def devices_option(topo: Topology, text: str | None) -> list[str] | None:
    """The SoCs a ``--devices`` option names, in order (None without it)."""
    if text is None:
        return None
    chosen = [d for d in select_devices(topo, text) if topo.node(d)["kind"] == "soc"]
    if not chosen:
        raise ConfigError(f"--devices: {text!r} names no SoC (ids look like {topo.socs[0]})")
    return chosen


def memory_fit(plan: PartitionPlan, decode: nx.DiGraph, prefill: nx.DiGraph, ref: ModelRef,
            topo: Topology, args: argparse.Namespace) -> list[MemoryUse]:
    """The plan's memory per SoC, or its one-line refusal (prefill included for decoders)."""
    from ..plan.memory import check_fit

    extra = [prefill] if ref.decoder is not None else []
    return check_fit(plan, decode, ref.decoder, topo, args.batch, args.context, extra)


def add_workload_options(p: argparse.ArgumentParser, model_required: bool = True) -> None:
    """The options of commands that take a model and a workload shape."""
    p.add_argument("--model", required=model_required, metavar="MODEL",
                   help="a preset (llama-2-70b, gpt-j-6b, ...), a decoder or graph YAML, or "
                        "an .onnx file")
    p.add_argument("--batch", type=counted(limits.MAX_BATCH), default=1)
    p.add_argument("--context", type=counted(limits.MAX_TOKENS), default=2048,
                   help="compiled context length")
    p.add_argument("--prompt", type=counted(limits.MAX_TOKENS),
                   help="compiled prompt length (default context / 2)")
    p.add_argument("--precision", default="fp16",
                   help="GEMM weights: fp32, fp16, bf16, int8, mxfp6 (default fp16)")
    p.add_argument("--activations", default="fp16",
                   help="activations and KV cache: fp32, fp16, bf16 (default fp16)")
    p.add_argument("--dim", action="append", metavar="NAME=VALUE",
                   help="value of a symbolic ONNX dimension, e.g. batch=8 (repeatable)")


def subcommands(sub: Any, name: str, help: str) -> Any:
    """A command with sub-commands of its own (``simtopo topo show``): their subparsers."""
    return sub.add_parser(name, help=help).add_subparsers(
        dest=f"{name}_command", required=True, metavar="SUBCOMMAND")


def add_selection_options(p: argparse.ArgumentParser, variant_help: str,
                          ci_help: str = "at the experiment's reduced ci: size") -> None:
    """``--variant NAME`` (repeatable) and ``--ci``: which variants, at which size."""
    p.add_argument("--variant", action="append", metavar="NAME", help=variant_help)
    p.add_argument("--ci", action="store_true", help=ci_help)


def add_simulation_option(p: argparse.ArgumentParser) -> None:
    """``--simulation auto|memoized|full`` (:mod:`simtopo.sim.driver`)."""
    p.add_argument("--simulation", choices=("auto", "memoized", "full"), default="auto",
                   help="auto (default): the memoized shortcuts, simulated live only where "
                        "they are known to be wrong; memoized: the shortcuts everywhere; full: "
                        "everything live (slow; the reference of docs/metrics.md)")
