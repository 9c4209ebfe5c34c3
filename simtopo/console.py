"""Rich consoles for the command line: the terminal's width, or a fixed one in pipes."""

from __future__ import annotations

import os
from typing import Any


def console(stream: Any) -> Any:
    """A rich console on ``stream``: the terminal's width, or ``$COLUMNS`` (default 120)
    when writing to a file or pipe, so that output in CI and logs does not depend on it."""
    from rich.console import Console

    width = None if getattr(stream, "isatty", lambda: False)() else int(
        os.environ.get("COLUMNS", "120"))
    return Console(file=stream, width=width, highlight=False)
