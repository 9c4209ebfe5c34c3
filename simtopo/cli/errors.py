"""``simtopo errors``: every error class with example messages (docs/errors.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_OK, echo


def cmd_errors(args: argparse.Namespace) -> int:
    """``simtopo errors``: the error catalogue as markdown."""
    from ..analysis.error_catalog import markdown
    from ..io.atomic import write_text_atomic

    text = markdown()
    if args.output is not None:
        write_text_atomic(args.output, text)
        echo(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``errors`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("errors", help="every error class with example messages (docs)")
    p.add_argument("-o", "--output", metavar="MARKDOWN", help="write here (docs/errors.md)")
    p.set_defaults(func=cmd_errors)
