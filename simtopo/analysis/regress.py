"""Compare a summary with a golden one: relative tolerance per metric, exact for the rest.

Summaries are plain data (see :meth:`simtopo.results.result.Result.summary`). A number moves
when ``|actual - expected|`` exceeds both its relative tolerance times ``|expected|`` (the
baseline is the reference) and an absolute floor set by its unit (:func:`floor`: 1 ns for a
time, 1 byte for a size), below which a difference is float noise. The tolerance is chosen by
the number's key: its last key (``ttft_s``) or a dotted tail of its path with list items left
out (``socs.comm_s``, ``metrics.ttft_s``), the longest match winning, else the default.
Strings, booleans and the shape of the data (keys, list lengths) compare exactly.
``simtopo_version`` is ignored, so a release does not invalidate every golden file.

    differences = compare_summaries(golden, result.summary())
    for d in differences:
        print(d)      # variants[tp16-p2p].metrics.tpot_mean_s: 0.0911 -> 0.0934 (+2.5%, ...)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_RELATIVE = 1e-6
"""Relative tolerance of a number without its own: predictions are deterministic, so any
drift beyond float noise (across numpy versions, platforms) is a change to look at."""

FLOORS = (("_s", 1e-9), ("bytes", 1.0), ("_Bps", 1.0), ("utilization", 1e-9))
"""Absolute floors by the end of a key: differences below them are noise (1 ns, 1 byte,
1 B/s, a billionth of a link)."""

ABSOLUTE_FLOOR = 1e-12
"""The floor of a number without a unit (counts, ratios)."""


def floor(key: str) -> float:
    """The absolute difference below which a number of ``key`` has not moved."""
    return next((value for end, value in FLOORS if key.endswith(end)), ABSOLUTE_FLOOR)


def generic(path: str) -> str:
    """A path with its list items left out: ``variants[x].socs[y].comm_s`` ->
    ``variants.socs.comm_s`` (what a tolerance key matches the tail of)."""
    return re.sub(r"\[[^\]]*\]", "", path.removesuffix(" (length)"))


def tolerance_for(path: str, tolerances: Mapping[str, float], default: float) -> float:
    """The tolerance of the number at ``path``: the longest key that is a dotted tail of its
    generic path (:func:`generic`), else ``default``."""
    name = generic(path)
    matches = [key for key in tolerances if name == key or name.endswith("." + key)]
    return tolerances[max(matches, key=len)] if matches else default

IGNORED = frozenset({"simtopo_version"})


@dataclass(frozen=True)
class Difference:
    """One place where the actual summary departs from the golden one."""

    path: str
    expected: Any
    actual: Any
    tolerance: float | None = None

    @property
    def relative(self) -> float | None:
        """The change relative to the baseline, ``|actual - expected| / |expected|`` (None
        for other values; inf from zero)."""
        if not _is_number(self.expected) or not _is_number(self.actual):
            return None
        change = abs(self.actual - self.expected)
        if self.expected == 0:
            return 0.0 if change == 0 else math.inf
        return change / abs(self.expected)

    @property
    def key(self) -> str:
        """The last key of the path (``ttft_s``), the one tolerances are chosen by."""
        return re.split(r"[.\[]", self.path.removesuffix(" (length)"))[-1].rstrip("]")

    @property
    def variant(self) -> str | None:
        """The variant the difference is in, if any."""
        match = re.match(r"(?:variants|loads|servings)\[([^\]]+)\]", self.path)
        return match.group(1) if match else None

    @property
    def verdict(self) -> str:
        """``better`` or ``worse`` for a metric with a direction, else ``up``, ``down`` or
        ``changed``."""
        if self.relative is None or self.actual == self.expected:
            return "changed"
        up = self.actual > self.expected
        good = better_when(self.key)
        if good is None:
            return "up" if up else "down"
        return "better" if up == (good == "higher") else "worse"

    def __str__(self) -> str:
        if self.relative is not None and self.tolerance is not None:
            sign = "+" if self.actual >= self.expected else "-"
            return (f"{self.path}: {self.expected:.6g} -> {self.actual:.6g} "
                    f"({sign}{100 * self.relative:.3g}%, tolerance {100 * self.tolerance:.3g}%)")
        return f"{self.path}: expected {_show(self.expected)}, got {_show(self.actual)}"


def better_when(key: str) -> str | None:
    """``lower`` for a time (``*_s``), ``higher`` for a rate (``*_per_s``), else None."""
    if key.endswith("_per_s") or key.endswith("_speedup"):
        return "higher"
    if key.endswith("_s"):
        return "lower"
    return None


def _show(value: Any) -> str:
    return "nothing" if value is _MISSING else json.dumps(value, sort_keys=True)[:80]


_MISSING = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _label(item: Any, index: int) -> str:
    """A list item's name in a path: its ``name``, ``link`` or ``soc`` if it has one."""
    if isinstance(item, Mapping):
        for key in ("name", "link", "soc"):
            if isinstance(item.get(key), str):
                return item[key]
    return str(index)


def _named(items: list[Any]) -> bool:
    """Are these mappings with distinct string names?"""
    names = [x.get("name") if isinstance(x, Mapping) else None for x in items]
    return all(isinstance(n, str) for n in names) and len(set(names)) == len(names)


def compare_summaries(expected: Any, actual: Any, tolerances: Mapping[str, float] | None = None,
                      default: float = DEFAULT_RELATIVE) -> list[Difference]:
    """Every difference between ``expected`` and ``actual`` beyond tolerance.

    ``tolerances`` maps a key (the last part of a path, ``ttft_s``, or a dotted tail of it,
    ``socs.comm_s``) to a relative tolerance; other numbers use ``default`` (module
    docstring).
    """
    tolerances = dict(tolerances or {})
    out: list[Difference] = []

    def walk(a: Any, b: Any, path: str, key: str) -> None:
        if key in IGNORED:
            return
        if _is_number(a) and _is_number(b):
            tol = tolerance_for(path, tolerances, default)
            if abs(b - a) <= max(tol * abs(a), floor(key)):
                return
            out.append(Difference(path, a, b, tol))
        elif isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b), key=str):
                sub = f"{path}.{k}" if path else str(k)
                if k in IGNORED:
                    continue
                if k not in a or k not in b:
                    out.append(Difference(sub, a.get(k, _MISSING), b.get(k, _MISSING)))
                else:
                    walk(a[k], b[k], sub, str(k))
        elif isinstance(a, list) and isinstance(b, list) and _named(a) and _named(b):
            # variants, loads, servings: paired by name, wherever they moved in the list
            by_name = {x["name"]: x for x in b}
            for x in a:
                sub = f"{path}[{x['name']}]"
                if x["name"] in by_name:
                    walk(x, by_name[x["name"]], sub, key)
                else:
                    out.append(Difference(sub, x, _MISSING))
            known = {x["name"] for x in a}
            out.extend(Difference(f"{path}[{y['name']}]", _MISSING, y) for y in b
                       if y["name"] not in known)
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                out.append(Difference(f"{path} (length)", len(a), len(b), 0.0))
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                walk(x, y, f"{path}[{_label(x, i)}]", key)
        elif a != b:
            out.append(Difference(path, a, b))

    walk(expected, actual, "", "")
    return out


def read_golden(path: str | Path) -> dict[str, Any]:
    """A golden summary file."""
    return json.loads(Path(path).read_text())

