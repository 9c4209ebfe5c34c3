"""Design-space sweeps: the cross product of settings over an experiment's variants.

A sweep sets dotted keys of an experiment (``plan.tp``, ``workload.batch``, ``model``...) to
each of a list of values; every variant asked for is run at every combination::

    simtopo sweep experiments/ultra8.yaml --variant tp16-p2p \\
        --set plan.tp=2,4,8,16 --set plan.connection=p2p,host --set workload.batch=1,8

or the same in the experiment file::

    sweep: {variants: [tp16-p2p], plan.tp: [2, 4, 8, 16], plan.connection: [p2p, host]}

A *point* is one variant with one value per key; its *record* (one JSON line in
``points.jsonl``) holds its status, its one-line error if it failed, and its metrics. Records
are appended as points finish, so an interrupted sweep resumes where it stopped: a point is
skipped when a record with its key and the fingerprint of its inputs (the experiment, the
topology file, the resolved settings, the simtopo version) is already there. Executors are in
:mod:`simtopo.analysis.executors`, figures in
:mod:`simtopo.analysis.sweep_figures`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import limits
from ..errors import ConfigError, SimtopoError
from ..spec.experiment import Experiment, Variant, load_experiment
from ..version import __version__

if TYPE_CHECKING:
    import pandas as pd

SWEEPABLE = ("workload", "plan", "transfer", "load", "serving", "model", "topology")
"""The top-level keys a sweep may set (the parts of an experiment a variant may change)."""

LOG = "points.jsonl"
TABLE = "sweep.csv"


@dataclass(frozen=True)
class Axis:
    """One swept key and its values, in the order given."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Point:
    """One variant at one value of every axis."""

    variant: str
    values: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        """A readable, stable id: ``tp16-p2p plan.tp=8 workload.batch=1``."""
        return " ".join([self.variant, *(f"{k}={_show(v)}" for k, v in self.values)])

    def overrides(self) -> dict[str, Any]:
        """The values as a nested mapping to merge onto the variant."""
        out: dict[str, Any] = {}
        for dotted, value in self.values:
            *parents, last = dotted.split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        return out


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _check_key(key: str, where: str) -> None:
    from ..spec.experiment import PlanSpec, WorkloadSpec
    from ..spec.load import LoadSpec
    from ..spec.serving import ServingSpec
    from ..spec.topology import TransferSpec

    sections = {"workload": WorkloadSpec, "plan": PlanSpec, "transfer": TransferSpec,
                "load": LoadSpec}
    parts = key.split(".")
    if parts[0] == "serving" and len(parts) == 3:  # a nested key: serving.arrivals.rate
        nested = ServingSpec.model_fields.get(parts[1])
        spec = nested.annotation if nested is not None else None
        if not isinstance(spec, type) or parts[2] not in getattr(spec, "model_fields", {}):
            raise ConfigError(f"{where}: cannot sweep {key!r} (serving has no key "
                              f"{'.'.join(parts[1:])!r})")
        return
    sections["serving"] = ServingSpec
    if parts[0] not in SWEEPABLE or not all(parts) or (
            parts[0] in ("model", "topology") and len(parts) > 1) or (
            parts[0] in sections and len(parts) != 2):
        raise ConfigError(f"{where}: cannot sweep {key!r} (expected model, topology, or "
                          "workload.KEY, plan.KEY, transfer.KEY, load.KEY, serving.KEY, "
                          "serving.arrivals.rate, e.g. plan.tp)")
    if parts[0] in sections and parts[1] not in sections[parts[0]].model_fields:
        known = ", ".join(sections[parts[0]].model_fields)
        raise ConfigError(f"{where}: cannot sweep {key!r}: {parts[0]} has no key "
                          f"{parts[1]!r} (expected one of: {known})")


def parse_set(text: str) -> Axis:
    """``plan.tp=1,2,4`` -> Axis('plan.tp', (1, 2, 4)); each value read as YAML. A value
    list in YAML flow syntax sweeps list values: ``plan.devices=[[a, b], [c, d]]``."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ConfigError(f"--set: expected KEY=VALUE[,VALUE...], e.g. plan.tp=1,2,4 "
                          f"(got {text!r})")
    _check_key(key, "--set")
    if values.strip().startswith("["):
        try:
            parsed = yaml.safe_load(values)
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, list) or not parsed:
            raise ConfigError(f"--set {key}: expected a non-empty YAML list of values "
                              f"(got {values!r})")
        return make_axis(key, parsed, "--set")
    parsed = []
    for item in values.split(","):
        try:
            parsed.append(yaml.safe_load(item.strip()))
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot read the value {item!r}") from None
    return make_axis(key, parsed, "--set")


def make_axis(key: str, values: Iterable[Any], where: str) -> Axis:
    """An axis of plain values (numpy scalars and ranges accepted); a value given twice is
    refused, since two points would share one key."""
    plain = tuple(v.item() if hasattr(v, "item") and not isinstance(v, str | bytes) else v
                  for v in itertools.islice(values, limits.MAX_SWEEP_POINTS + 1))
    if len(plain) > limits.MAX_SWEEP_POINTS:
        raise ConfigError(f"{where} {key}: more than {limits.MAX_SWEEP_POINTS:,} values")
    seen: set[str] = set()
    for text in (_show(v) for v in plain):
        if text in seen:
            raise ConfigError(f"{where} {key}: the value {text} is given twice")
        seen.add(text)
    if not plain:
        raise ConfigError(f"{where} {key}: no values")
    return Axis(key, plain)


def axes_from_block(block: Mapping[str, Any], file: str) -> tuple[list[str] | None, list[Axis]]:
    """The variants and axes of an experiment file's ``sweep:`` block."""
    variants = block.get("variants")
    if variants is not None and (not isinstance(variants, list) or not all(
            isinstance(v, str) for v in variants)):
        raise ConfigError(f"a list of variant names (got {variants!r})", file=file,
                          path=("sweep", "variants"))
    axes = []
    for key, values in block.items():
        if key == "variants":
            continue
        _check_key(key, f"{file}: sweep")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError("an empty list of values", file=file, path=("sweep", key))
        axes.append(make_axis(key, values, f"{file}: sweep"))
    return variants, axes


def plan_points(experiment: Experiment, axes: Sequence[Axis],
                variants: Sequence[str] | None = None) -> list[Point]:
    """Every variant asked for (all by default) at every combination of the axes."""
    names = [v.name for v in experiment.variants]
    for name in variants or []:
        if name not in names:
            raise ConfigError(f"unknown variant {name!r} (expected one of: "
                              f"{', '.join(names)})", file=str(experiment.source))
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"a key is swept twice: {', '.join(keys)}")
    chosen = [n for n in names if not variants or n in variants]
    count = len(chosen) * math.prod(len(a.values) for a in axes)
    if count > limits.MAX_SWEEP_POINTS:
        raise ConfigError(f"{len(chosen)} variant(s) x " + " x ".join(
            f"{len(a.values)} {a.key}" for a in axes) + f" is {count:,} points; a sweep may "
            f"have at most {limits.MAX_SWEEP_POINTS:,}", file=str(experiment.source))
    return [Point(name, tuple(zip(keys, combo, strict=True)))
            for name in chosen for combo in itertools.product(*(a.values for a in axes))]


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "missing"


def topology_digest(path: Path) -> str:
    """A digest of the built topology (its nodes and links with every attribute, and its
    settings), so that a change in any file it extends or includes shows."""
    from ..topology.files import load_topology

    try:
        topo = load_topology(path)
    except ConfigError:
        return "invalid"
    data = {"spec": topo.spec.model_dump(mode="json"),
            "nodes": sorted((n, sorted(a.items())) for n, a in topo.graph.nodes(data=True)),
            "edges": sorted((u, v, sorted(a.items())) for u, v, a in
                            topo.graph.edges(data=True))}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(source: Path, point: Point, reduced: bool,
            topologies: dict[Path, str] | None = None, mode: str = "auto"
            ) -> tuple[Variant, str]:
    """The point's variant and the fingerprint of its inputs (every file it reads: the
    experiment, the topology with what it includes, the model and MDP files; the simulation
    mode); a bad point raises its error prefixed with the point's key. ``topologies``
    memoizes topology digests within one sweep."""
    try:
        (variant,) = load_experiment(source, reduced, point.overrides(),
                                     only=point.variant).variants
    except ConfigError as err:
        swept = {tuple(k.split(".")): k for k, _ in point.values}
        for parts, key in swept.items():
            if tuple(err.path[-len(parts):]) == parts:
                raise ConfigError(f"{point.key}: --set {key}: {err.message}") from None
        raise ConfigError(f"{point.key}: {err}") from None
    topologies = {} if topologies is None else topologies
    if variant.topology not in topologies:
        topologies[variant.topology] = topology_digest(variant.topology)
    files = [Path(variant.model)] + ([Path(variant.plan.mdp)] if variant.plan.mdp else [])
    if variant.serving is not None and variant.serving.arrivals.trace is not None:
        files.append(Path(variant.serving.arrivals.trace))
    inputs = {"inputs": variant.inputs(), "model": variant.model, "version": __version__,
              "experiment": _digest(source), "topology": topologies[variant.topology],
              "files": [_digest(f) for f in files if f.is_file()], "key": point.key}
    if mode != "auto":
        inputs["mode"] = mode
    text = json.dumps(inputs, sort_keys=True, default=str)
    return variant, hashlib.sha256(text.encode()).hexdigest()[:20]


def record(point: Point, fingerprint: str, summary: Mapping[str, Any] | None = None,
           error: str | None = None) -> dict[str, Any]:
    """A point's record: what a line of ``points.jsonl`` holds."""
    out: dict[str, Any] = {"key": point.key, "variant": point.variant,
                           "values": dict(point.values), "fingerprint": fingerprint,
                           "status": "error" if error else "ok", "error": error}
    if summary is not None:
        links = summary.get("links") or [{}]
        out.update(connection=summary["connection"], metrics=summary["metrics"],
                   busiest_link=links[0].get("link"))
        if summary.get("simulation"):
            out["simulation"] = summary["simulation"]
    return out


MEMO_SETTINGS = 32
"""Topology and transfer settings a process keeps the collective memo of, per topology file
(beyond that it starts afresh: a memo holds every flow of the collectives it remembers)."""

_MEMO: dict[str, dict[str, dict[Any, Any]]] = {}
"""What collectives were found to do (host-routed algorithms chosen, runs on an idle fabric),
shared by the points a process evaluates, by the content digest of their topology file (never
by its path: a changed file is a new topology)."""


_SERVING: dict[str, Any] = {}
"""The compiled programs' times found so far by serving points of this process (points of
offered load share them)."""


def evaluate(point: Point, variant: Variant, fingerprint: str,
             topology: str = "", mode: str = "auto") -> dict[str, Any]:
    """Simulate one point in ``mode``; a SimtopoError becomes the record's one-line error.
    ``topology`` (its digest) lets points on the same topology share what their collectives
    were found to do."""
    from ..results.run import run_load, run_variant
    from ..results.serving_run import run_serving

    memo = _MEMO.setdefault(topology, {}) if topology else {}
    if len(memo) > MEMO_SETTINGS:  # a sweep over transfer settings: keep memory bounded
        memo.clear()
    try:
        if variant.workload.kind == "load":
            return record(point, fingerprint, summary=_load_summary(run_load(variant)))
        if variant.workload.kind == "serving":  # a point of offered load, or of a layout
            if len(_SERVING) > MEMO_SETTINGS:
                _SERVING.clear()
            serving = run_serving(variant, memo=_SERVING).summary()
            return record(point, fingerprint, summary={"connection": "", "links": [],
                                                      "metrics": serving["metrics"]})
        result = run_variant(variant, memo=memo, mode=mode, spans=False)  # a record: no timeline
    except SimtopoError as err:
        message = str(err).replace("\n", " ")
        return record(point, fingerprint, error=f"{point.key}: {message}")
    return record(point, fingerprint, summary=result.summary())


def _load_summary(load: Any) -> dict[str, Any]:
    """A loading-only point as a record: ``load_<strategy>@<source>_s`` per outcome."""
    from ..results.result import round12

    metrics = {f"load_{o.strategy}@{o.source}_s": o.total_s for o in load.outcomes}
    return {"connection": "", "links": [],
            "metrics": round12(dict(sorted(metrics.items())))}


def table(records: Iterable[Mapping[str, Any]], axes: Sequence[Axis]) -> pd.DataFrame:
    """One row per point (in the sweep's order): key, variant, the axes, status, error,
    connection, busiest link, every metric, and tokens per second per SoC."""
    import pandas as pd

    rows = []
    for rec in records:
        row: dict[str, Any] = {"point": rec["key"], "variant": rec["variant"]}
        row.update({a.key: _cell(rec["values"].get(a.key)) for a in axes})
        row.update(status=rec["status"], error=rec.get("error") or "",
                   connection=rec.get("connection", ""), busiest_link=rec.get("busiest_link")
                   or "")
        metrics = rec.get("metrics") or {}
        row.update(metrics)
        if "tokens_per_s" in metrics and metrics.get("socs"):
            row["tokens_per_s_per_soc"] = metrics["tokens_per_s"] / metrics["socs"]
        if "inferences_per_s" in metrics and metrics.get("socs"):
            row["inferences_per_s_per_soc"] = metrics["inferences_per_s"] / metrics["socs"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    fixed = [c for c in frame.columns if not _is_metric(c, axes)]
    return frame[fixed + sorted(c for c in frame.columns if _is_metric(c, axes))]


def _cell(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else _show(value)


def _is_metric(column: str, axes: Sequence[Axis]) -> bool:
    return column not in {"point", "variant", "status", "error", "connection", "busiest_link",
                          *(a.key for a in axes)}
