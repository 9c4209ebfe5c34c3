"""``simtopo validate``: check input files of every kind."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SimtopoError
from .common import EXIT_BAD_INPUT, EXIT_OK, echo


def _file_kind(path: Path) -> str:
    """'topology', 'cards', 'decoder', 'graph', 'mdp' or 'onnx', judged from the suffix and
    the top-level keys."""
    from ..io.documents import read_yaml

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
    """``simtopo validate``: load every file; one line each."""
    from ..topology.files import load_card_library, load_topology

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
                from ..plan.mdp import read_mdp

                config, _ = read_mdp(path)
                what = (f"MDP config: {len(config.partitions)} partition(s), "
                        f"{len(config.logical_devices())} device(s)")
            else:
                from ..workload.modelref import resolve_model

                ref = resolve_model(path)
                graph = ref.graph_for()
                what = f"{kind} {ref.name}: {len(graph)} ops"
            echo(f"ok     {name}: {what}")
        except SimtopoError as err:
            if args.debug:
                traceback.print_exc()
            sys.stderr.write(f"error  {err}\n")
            failed += 1
    return EXIT_BAD_INPUT if failed else EXIT_OK


def register(sub: Any) -> None:
    """Add ``validate`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("validate", help="validate topology and card files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)
