"""``simtopo sizing``: the advisor's sizing table, models x topologies."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import limits
from .common import console, counted, emit


def _builtin(path: str) -> Any:
    """A built-in topology: under the working folder, else next to the package (a checkout
    installed in editable mode)."""
    from pathlib import Path

    here = Path(path)
    beside = Path(__file__).resolve().parents[2] / path
    return here if here.is_file() or not beside.is_file() else beside


def cmd_sizing(args: argparse.Namespace) -> int:
    """``simtopo sizing``: the advisor's table over models and topologies."""
    from ..analysis.sizing import MODELS, TOPOLOGIES, sizing_markdown
    from ..io.atomic import check_output

    if args.output is not None:
        check_output(args.output)  # before sixteen minutes of work, not after
    models = args.model or list(MODELS)
    topologies = args.topology or [str(_builtin(t)) for t in TOPOLOGIES]
    command = "simtopo sizing" + "".join(f" --model {m}" for m in args.model or []) + "".join(
        f" --topology {t}" for t in args.topology or []) + (
        f" -o {args.output}" if args.output is not None else "")
    err = console(sys.stderr)

    def progress(text: str) -> None:
        if sys.stderr.isatty():
            err.print(f"sizing {text} ...")

    text = sizing_markdown(models, topologies, jobs=args.jobs, command=command,
                           progress=progress)
    emit(text + "\n", args.output)
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
    p.add_argument("-j", "--jobs", type=counted(limits.MAX_THREADS), metavar="N",
                   help="local processes")
    p.set_defaults(func=cmd_sizing)
