"""``simtopo schema KIND``: the JSON Schema of an input file format, for editors
(docs/schemas/)."""

from __future__ import annotations

import argparse
from typing import Any

from ..spec.schemas import KINDS
from .common import EXIT_OK, emit


def cmd_schema(args: argparse.Namespace) -> int:
    """``simtopo schema``: one kind's JSON Schema as indented JSON with sorted keys."""
    from ..spec.schemas import schema_text

    emit(schema_text(args.kind), args.output)
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``schema`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("schema", help="the JSON Schema of an input file format (for editors)",
                       description="The JSON Schema (draft 2020-12) of one kind of input file: "
                                   + "; ".join(f"{kind}: {what}" for kind, what in KINDS.items()))
    p.add_argument("kind", metavar="KIND", choices=tuple(KINDS),
                   help=f"one of: {', '.join(KINDS)}")
    p.add_argument("-o", "--output", metavar="JSON",
                   help="write here (docs/schemas/KIND.schema.json)")
    p.set_defaults(func=cmd_schema)
