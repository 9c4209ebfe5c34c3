"""``simtopo errors``: every error class with example messages (docs/errors.md)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, emit


def cmd_errors(args: argparse.Namespace) -> int:
    """``simtopo errors``: the error catalogue as markdown."""
    from ..analysis.error_catalog import markdown

    emit(markdown(), args.output)
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``errors`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("errors", help="every error class with example messages (docs)")
    p.add_argument("-o", "--output", metavar="MARKDOWN", help="write here (docs/errors.md)")
    p.set_defaults(func=cmd_errors)
