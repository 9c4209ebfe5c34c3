"""``simtopo model show``: a model's parameters and per-kind totals of one pass."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, add_workload_options, echo, subcommands, with_model, workload_graphs


def cmd_model_show(args: argparse.Namespace) -> int:
    """``simtopo model show``: parameters and per-kind totals of its passes."""
    from ..report.planview import render_model

    ref, decode, prefill, _ = workload_graphs(args)
    echo(render_model(ref.name, decode, ref.decoder))
    if ref.decoder is not None:
        echo(render_model(ref.name, prefill, None).split("\n", 1)[1])
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``model show`` to the ``simtopo`` sub-commands."""
    model = subcommands(sub, "model", "inspect a model")
    p = model.add_parser("show", help="parameters and per-kind totals of one pass")
    p.add_argument("name", metavar="MODEL")
    add_workload_options(p, model_required=False)
    p.set_defaults(func=lambda a: cmd_model_show(with_model(a)))
