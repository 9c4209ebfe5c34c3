"""Baselines: committed summaries that the predictions of an experiment must keep.

A baseline file (``reports/baselines/<experiment>.json``) holds the summary of one
experiment and how to reproduce and compare it::

    {"baseline": {"experiment": "../../experiments/ultra8.yaml",   # relative to this file
                  "reduced": false,                 # true: the experiment's ci: size
                  "variants": null,                 # or the names it covers
                  "tolerance": {"default": 1e-6, "ttft_s": 0.01}},
     "summary": {...}}                              # Result.summary()

:func:`check` re-runs the experiment and compares every number with the relative tolerance
of its key (the command line's, else the file's, else :data:`simtopo.regress.DEFAULT_RELATIVE`);
:func:`update` rewrites the summary deliberately; :func:`add` writes a new baseline and never
overwrites one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.atomic import write_text_atomic
from ..io.documents import Document, read_json, validate_document
from ..io.paths import ALLOW, allowed_roots, child_path, confined, display_path, is_file
from ..spec.baseline import BaselineFile, BaselineHeader
from .regress import DEFAULT_RELATIVE, Difference, compare_summaries

DEFAULT_KEY = "default"


@dataclass(frozen=True)
class Baseline:
    """A baseline read from ``path``; ``experiment`` is resolved."""

    path: Path
    header: BaselineHeader
    summary: dict[str, Any]

    @property
    def name(self) -> str:
        """The file's stem (``ultra8``)."""
        return self.path.stem

    @property
    def experiment(self) -> Path:
        """The experiment file, resolved against the baseline's folder."""
        return (self.path.parent / self.header.experiment).resolve()


@dataclass(frozen=True)
class Check:
    """One baseline compared with a fresh run."""

    baseline: Baseline
    differences: list[Difference]
    summary: dict[str, Any]

    @property
    def passed(self) -> bool:
        """No difference beyond tolerance."""
        return not self.differences


def read_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline file; its experiment must exist."""
    path = Path(path)
    doc = read_json(path)
    spec = validate_document(doc, BaselineFile)
    for key, value in spec.baseline.tolerance.items():
        if not (value >= 0 and math.isfinite(value)):
            raise doc.error(f"a relative tolerance must be a finite number, at least 0 (got "
                            f"{value})", ("baseline", "tolerance", key))
    _check_values(doc, spec.summary)
    variants = spec.summary.get("variants")
    if not isinstance(variants, list) or not all(
            isinstance(v, dict) and isinstance(v.get("name"), str) for v in variants):
        raise doc.error("expected a list of variant summaries, each with a 'name' (the "
                        "'variants' of a summary.json)", ("summary", "variants"))
    baseline = Baseline(path, spec.baseline, spec.summary)
    if not confined(baseline.experiment, allowed_roots(path)):
        raise doc.error(f"experiment file {spec.baseline.experiment!r} lies outside the "
                        f"baseline's folder and the working folder (allow more folders with "
                        f"{ALLOW})", ("baseline", "experiment"))
    if not is_file(baseline.experiment):
        raise doc.error(f"experiment file {spec.baseline.experiment!r} not found (looked for "
                        f"{display_path(baseline.experiment)})", ("baseline", "experiment"))
    return baseline


def _leaves(data: Any) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every value of ``data`` that is not a mapping or a list (or is an empty one), with its
    key path, without recursion."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict) and value:
            stack.extend((item, (*where, key)) for key, item in value.items())
        elif isinstance(value, list) and value:
            stack.extend((item, (*where, i)) for i, item in enumerate(value))
        else:
            yield where, value


def _check_values(doc: Document, summary: Mapping[str, Any]) -> None:
    """Every number of a baseline's summary is finite; every metric is a number (a tampered
    or hand-edited baseline is refused, not compared)."""
    for where, value in _leaves(summary):
        path = ("summary", *where)
        if "metrics" in where[:-1]:  # variants[i].metrics.<name>: a number, nothing deeper
            metric = len(where) - where[::-1].index("metrics") + 1
            if metric != len(where) or not _is_number(value):
                raise doc.error(f"a metric must be a finite number (got "
                                f"{json.dumps(value)[:40]})", path[:metric + 1])
        if isinstance(value, float) and not math.isfinite(value):
            raise doc.error(f"a number must be finite (got {value})", path)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)


def check_tolerance_keys(baseline: Baseline, keys: Iterable[str]) -> None:
    """Every tolerance key names numbers of ``baseline`` (a last key or a dotted tail of a
    path, list items left out); an unknown one is refused, naming the keys there are."""
    paths = {".".join(str(k) for k in where if isinstance(k, str))
             for where, value in _leaves(baseline.summary) if _is_number(value)}
    for key in keys:
        if key == DEFAULT_KEY:
            continue
        if not any(path == key or path.endswith("." + key) for path in paths):
            known = sorted({p.rsplit(".", 1)[-1] for p in paths if ".metrics." in f".{p}"})
            raise ConfigError(f"--tolerance: {key!r} names no number of this baseline "
                              f"(metrics: {', '.join(known[:12])}, ...; or a dotted tail such "
                              "as socs.comm_s)", file=display_path(baseline.path))


def find_baselines(paths: Iterable[str | Path]) -> list[Path]:
    """Baseline files: each folder's ``*.json`` (sorted) and each file as given."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                raise ConfigError("no baseline files (*.json) in this folder",
                                  file=display_path(path))
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise ConfigError("no such baseline file or folder", file=display_path(path))
    return out


def _only(summary: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``summary`` restricted to the variants ``names`` (and the comparisons among them)."""
    keep = set(names)
    out = dict(summary)
    out["variants"] = [v for v in summary.get("variants", []) if v.get("name") in keep]
    out["comparisons"] = [c for c in summary.get("comparisons", [])
                          if c.get("p2p") in keep and c.get("host") in keep]
    if not out["comparisons"]:
        out.pop("band", None)  # the band's constants come with its pairs
    for key in ("loads", "servings"):
        if key in summary:
            out[key] = [v for v in summary[key] if v.get("name") in keep]
    return out


def tolerances(baseline: Baseline, overrides: Mapping[str, float] | None = None
               ) -> tuple[float, dict[str, float]]:
    """The default relative tolerance and the per-key ones: ``overrides`` (the command line)
    over the file's."""
    merged = {**baseline.header.tolerance, **(overrides or {})}
    default = merged.pop(DEFAULT_KEY, DEFAULT_RELATIVE)
    return default, merged


def run_baseline(baseline: Baseline, variants: Sequence[str] | None = None) -> dict[str, Any]:
    """A fresh summary of what ``baseline`` covers (or of ``variants`` of it)."""
    from ..results.run import run

    names = list(variants or baseline.header.variants or []) or None
    if names:
        known = list(dict.fromkeys(v.get("name") for key in ("variants", "loads", "servings")
                                   for v in baseline.summary.get(key, [])))
        for name in names:
            if name not in known:
                raise ConfigError(f"variant {name!r} is not in this baseline (expected one "
                                  f"of: {', '.join(map(str, known))})",
                                  file=display_path(baseline.path))
    return run(baseline.experiment, names, reduced=baseline.header.reduced).summary()


def check(baseline: Baseline, overrides: Mapping[str, float] | None = None,
          variants: Sequence[str] | None = None) -> Check:
    """Re-run ``baseline``'s experiment and compare (only ``variants`` if given)."""
    check_tolerance_keys(baseline, [*baseline.header.tolerance, *(overrides or {})])
    summary = run_baseline(baseline, variants)
    expected = _only(baseline.summary, variants) if variants else baseline.summary
    default, per_key = tolerances(baseline, overrides)
    return Check(baseline, compare_summaries(expected, summary, per_key, default), summary)


def _text(header: BaselineHeader, summary: Mapping[str, Any]) -> str:
    data = {"baseline": header.model_dump(exclude_defaults=True) | {
        "experiment": header.experiment}, "summary": summary}
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def update(result: Check) -> Path:
    """Rewrite ``result``'s baseline with its fresh summary (header kept), atomically."""
    return write_text_atomic(result.baseline.path, _text(result.baseline.header, result.summary))


def add(experiment: str | Path, folder: str | Path, reduced: bool = False,
        variants: Sequence[str] | None = None,
        tolerance: Mapping[str, float] | None = None) -> Path:
    """Write ``folder/<experiment name>.json`` from a run; refuses to overwrite one."""
    from ..results.run import run
    from ..spec.experiment import load_experiment

    exp = load_experiment(experiment, reduced)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError("--add writes into a folder of baselines; this is a file",
                          file=display_path(folder))
    target = child_path(folder, f"{exp.name}.json", "the experiment name")
    if target.exists():
        raise ConfigError("a baseline for this experiment exists; rerun it with "
                          "'simtopo check --update' to rewrite it deliberately",
                          file=display_path(target))
    summary = run(exp, variants, reduced=reduced).summary()  # errors before any folder
    folder.mkdir(parents=True, exist_ok=True)
    relative = Path(_relative(Path(experiment).resolve(), folder.resolve()))
    header = BaselineHeader(experiment=relative.as_posix(), reduced=reduced,
                            variants=list(variants) if variants else None,
                            tolerance=dict(tolerance or {}))
    return write_text_atomic(target, _text(header, summary))


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)
