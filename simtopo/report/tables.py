"""Terminal tables in one style that fits an 80-column terminal: no vertical rules, one
space between columns, numbers never wrapped, ids and links folded rather than cut."""

from __future__ import annotations

from typing import Any

NUMBER, NAME, TEXT = "number", "name", "text"
"""Column kinds: right-aligned and never wrapped; a name kept whole where it can be; text
wrapped at spaces (and folded inside a word only when a word is wider than the column)."""


def terminal_table(title: str, columns: list[tuple[str, str]], caption: str = "") -> Any:
    """A rich Table with ``columns`` of (label, kind) (kinds above)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False, caption=caption or None,
                  caption_justify="left")
    for label, kind in columns:
        if kind == NUMBER:
            table.add_column(label, justify="right", no_wrap=True)
        elif kind == NAME:  # kept whole while other columns can give way
            table.add_column(label, no_wrap=True, overflow="fold")
        else:
            table.add_column(label, overflow="fold")
    return table


def link_text(link: str) -> str:
    """A directed link id with room to wrap between its ends (``a -> b``)."""
    return link.replace("->", " -> ")
