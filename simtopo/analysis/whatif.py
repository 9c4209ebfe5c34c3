"""``simtopo whatif``: change one thing at a time and see how much each headline metric moves.

For each variant, every perturbation of :mod:`simtopo.analysis.whatif_settings` is simulated
and ranked by the *gain* of the primary metric (TPOT for an LLM, latency for a forward pass):
the relative change in the metric's better direction (time down, throughput up). Continuous
perturbations also get an *elasticity*, ``(relative change of the metric) / (relative change of
the parameter)``. For every P2P/host pair among the variants (:meth:`Result.comparisons`), the
*band* re-runs the pair with the link constants no public measurement pins down for the AI 100
at the ends of documented ranges and reports the P2P-over-host speed-ups there. Definitions,
ranges and their sources: ``docs/whatif.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..constants import DEFAULT_SOC_MODEL, SocModel
from ..errors import ConfigError, SimtopoError
from ..results import bands
from ..results.bands import speedups
from ..results.result import Result, VariantResult, round12
from ..spec.experiment import Experiment, Variant, load_experiment
from ..topology.files import load_topology
from ..topology.graph import Topology
from .whatif_settings import (
    Perturbation,
    Setting,
    continuous_perturbations,
    extra_switch,
    gen5_uplinks,
    mxfp6_other_form,
    onchip_off,
    run_setting,
    with_root_complexes,
)

DEFAULT_STEP = 0.1
"""Relative step of the continuous perturbations (10%)."""

METRICS = {"llm": ("tpot_mean_s", "ttft_s", "tokens_per_s", "e2e_s"),
           "inference": ("latency_s", "inferences_per_s")}
"""Headline metrics by workload kind, the primary one (the ranking's) first."""

HIGHER_IS_BETTER = frozenset({"tokens_per_s", "inferences_per_s"})

RC_HOP = ("rc_hop_s", "root-complex hop", 50e-9, 700e-9)
"""The root-complex hop's range, besides :data:`simtopo.results.bands.UNMEASURED`."""


@dataclass(frozen=True)
class Outcome:
    """A perturbation's metrics (or why it could not run)."""

    perturbation: Perturbation
    metrics: dict[str, float] | None
    error: str = ""

    def relative(self, base: dict[str, float], metric: str) -> float | None:
        """(perturbed - base) / base, or None."""
        if self.metrics is None or not base.get(metric):
            return None
        return (self.metrics[metric] - base[metric]) / base[metric]

    def gain(self, base: dict[str, float], metric: str) -> float | None:
        """The relative change in the metric's better direction (positive: an improvement)."""
        rel = self.relative(base, metric)
        return None if rel is None else (rel if metric in HIGHER_IS_BETTER else -rel)

    def elasticity(self, base: dict[str, float], metric: str) -> float | None:
        """Relative change of the metric / relative change of the parameter (continuous)."""
        rel, change = self.relative(base, metric), self.perturbation.relative_change
        return None if rel is None or not change else rel / change


@dataclass(frozen=True)
class VariantWhatIf:
    """The ranked perturbations of one variant."""

    variant: str
    metrics: tuple[str, ...]
    base: dict[str, float]
    outcomes: tuple[Outcome, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BandPoint:
    """The pair run at some values of the band's constants (SI; ``rc_p2p`` a flag)."""

    values: dict[str, float | bool]
    speedups: dict[str, float] | None
    error: str = ""


@dataclass(frozen=True)
class BandRow:
    """One constant over its range (or all of them at the corners, or root-complex P2P off)."""

    key: str
    label: str
    base_value: float | bool | None
    points: tuple[BandPoint, ...]


@dataclass(frozen=True)
class Band:
    """The P2P-over-host speed-ups of one pair over the ranges of the unpinned constants."""

    p2p: str
    host: str
    base: dict[str, float]
    rows: tuple[BandRow, ...]

    def span(self, metric: str, rows: Sequence[BandRow] | None = None) -> tuple[float, float]:
        """(min, max) of the speed-up over the base and every point that ran."""
        values = [self.base[metric]] + [p.speedups[metric] for r in (rows or self.rows)
                                        for p in r.points if p.speedups is not None]
        return min(values), max(values)


@dataclass(frozen=True)
class WhatIf:
    """Everything ``simtopo whatif`` found for an experiment."""

    experiment: str
    step: float
    """The relative step of every change (0.1: each value 10% better)."""
    reduced: bool
    """Run at the experiment's CI size."""
    variants: tuple[VariantWhatIf, ...]
    bands: tuple[Band, ...]
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """Plain data (SI floats at 12 significant digits)."""
        return round12({"experiment": self.experiment, "step": self.step,
                        "reduced": self.reduced, "notes": list(self.notes),
                        "variants": [_variant_data(v) for v in self.variants],
                        "bands": [_band_data(b) for b in self.bands]})

    def to_json(self) -> str:
        """The summary as JSON with sorted keys."""
        return json.dumps(self.summary(), indent=1, sort_keys=True) + "\n"


def _variant_data(v: VariantWhatIf) -> dict[str, Any]:
    rows = []
    for rank, o in enumerate(v.outcomes, 1):
        p = o.perturbation
        rows.append({"rank": rank, "key": p.key, "label": p.label, "changed": p.changed,
                     "parameter_relative_change": p.relative_change, "error": o.error,
                     "metrics": {m: {"value": o.metrics[m] if o.metrics else None,
                                     "relative_change": o.relative(v.base, m),
                                     "gain": o.gain(v.base, m),
                                     "elasticity": o.elasticity(v.base, m)}
                                 for m in v.metrics}})
    return {"variant": v.variant, "primary": v.metrics[0], "notes": list(v.notes),
            "base": {m: v.base[m] for m in v.metrics}, "ranking": rows}


def _band_data(b: Band) -> dict[str, Any]:
    return {"p2p": b.p2p, "host": b.host,
            "speedups": {m: dict(zip(("min", "base", "max"),
                                     (b.span(m)[0], b.base[m], b.span(m)[1]), strict=True))
                         for m in b.base},
            "rows": [{"key": r.key, "label": r.label, "base_value": r.base_value,
                      "points": [{"values": p.values, "speedups": p.speedups, "error": p.error}
                                 for p in r.points]} for r in b.rows]}


# -- running ------------------------------------------------------------------------------

def run_base(variant: Variant, source: Path, setting: Setting) -> VariantResult:
    """The unperturbed run; errors name the experiment and the variant (as ``simtopo run``)."""
    try:
        return run_setting(variant, setting)
    except ConfigError as err:
        raise type(err)(f"variant {variant.name!r}: {err.message}", file=err.file or str(source),
                        path=err.path, line=err.line) from None
    except SimtopoError as err:
        raise type(err)(f"{source}: variant {variant.name!r}: {err}") from None


def evaluate(variant: Variant, perturbations: Sequence[Perturbation], base: VariantResult,
             notes: Sequence[str] = (),
             progress: Callable[[str], None] | None = None) -> VariantWhatIf:
    """Run every perturbation; rank by the gain of the primary metric (then catalogue order)."""
    metrics = tuple(m for m in METRICS[variant.workload.kind] if m in base.metrics)
    outcomes = []
    for p in perturbations:
        if progress:
            progress(f"{variant.name}: {p.label}")
        try:
            outcomes.append(Outcome(p, run_setting(variant, p.setting).metrics))
        except SimtopoError as err:
            outcomes.append(Outcome(p, None, str(err)))
    order = {p.key: i for i, p in enumerate(perturbations)}

    def rank(o: Outcome) -> tuple[bool, float, int]:
        gain = o.gain(base.metrics, metrics[0])
        # at 12 significant digits, so that float noise does not reorder equal gains
        return gain is None, -float(f"{gain or 0.0:.12g}"), order[o.perturbation.key]

    return VariantWhatIf(variant.name, metrics, dict(base.metrics),
                         tuple(sorted(outcomes, key=rank)), tuple(notes))


def band_setting(topo: Topology, variant: Variant, soc_model: SocModel,
                 values: dict[str, float | bool]) -> Setting:
    """The setting with band constants at ``values`` (absent ones stay as they are)."""
    if "rc_hop_s" in values or "rc_p2p" in values:
        p2p = bool(values["rc_p2p"]) if "rc_p2p" in values else None
        topo = with_root_complexes(topo, values.get("rc_hop_s"), p2p)
    numbers = {k: float(v) for k, v in values.items() if k not in ("rc_hop_s", "rc_p2p")}
    topo, changed = bands.with_values(topo, variant, numbers)
    transfer = {k: v for k, v in changed.transfer.items() if variant.transfer.get(k) != v}
    return Setting(topo, transfer, soc_model)


def band(p2p: Variant, host: Variant, topo: Topology, base: dict[str, float],
         soc_model: SocModel = DEFAULT_SOC_MODEL,
         progress: Callable[[str], None] | None = None) -> Band:
    """The pair's speed-ups at each end of each range, at the two corners (every constant at
    the end that favours one path, as ``simtopo run`` bands the headline), and with the root
    complexes refusing P2P."""

    def point(values: dict[str, float | bool], favour: str | None = None) -> BandPoint:
        # a corner puts each variant's own values at the favoured ends, as `simtopo run` does
        try:
            runs = [run_setting(v, band_setting(topo, v, soc_model, values if favour is None
                                                else dict(bands.corner(topo, v, favour))))
                    .metrics for v in (p2p, host)]
        except SimtopoError as err:
            return BandPoint(values, None, str(err))
        return BandPoint(values, speedups(*runs))

    rows = []
    for item in bands.UNMEASURED:
        if progress:
            progress(f"band {host.name} vs {p2p.name}: {item.label}")
        current = bands.in_effect(topo, p2p, item.key)
        rows.append(BandRow(item.key, item.label, current, tuple(
            point({item.key: bands.value_at(item, end, current)}) for end in ("low", "high"))))
    hops = sorted({topo.graph.nodes[rc]["hop_latency_s"] for rc in topo.root_complexes})
    key, label, low, high = RC_HOP
    rows.append(BandRow(key, label, hops[0] if len(hops) == 1 else None,
                        (point({key: low}), point({key: high}))))
    if progress:
        progress(f"band {host.name} vs {p2p.name}: corners")
    rows.append(BandRow("corners", "all at the ends that favour the host path, then P2P",
                        None, tuple(point(dict(bands.corner(topo, p2p, favour)), favour)
                                    for favour in ("host", "p2p"))))
    carries = all(topo.graph.nodes[rc]["p2p"] for rc in topo.root_complexes)
    rows.append(BandRow("rc_p2p", "root complexes carry P2P", carries,
                        (point({"rc_p2p": not carries}),)))
    return Band(p2p.name, host.name, base, tuple(rows))


def select(experiment: str | Path, variants: Sequence[str] | None,
           reduced: bool) -> tuple[Experiment, list[Variant]]:
    """Load the experiment and pick the variants asked for (all by default), in file order."""
    exp = load_experiment(experiment, reduced)
    known = [v.name for v in exp.variants]
    for name in variants or ():
        if name not in known:
            raise ConfigError(f"unknown variant {name!r} (expected one of: {', '.join(known)})",
                              file=str(exp.source))
    return exp, [v for v in exp.variants if not variants or v.name in variants]


def whatif(experiment: str | Path, variants: Sequence[str] | None = None,
           reduced: bool = False, step: float = DEFAULT_STEP,
           soc_model: SocModel = DEFAULT_SOC_MODEL, with_band: bool = True,
           progress: Callable[[str], None] | None = None) -> WhatIf:
    """Perturb each variant one thing at a time; band the P2P-over-host pairs among them.

    ``variants`` restricts the analysis (and the pairs) to those names; ``reduced`` applies
    the file's ``ci:`` block; ``step`` is the relative step of continuous perturbations.
    """
    if not 0 < step < 1:
        raise ConfigError(f"step must be between 0 and 1, e.g. 0.1 for 10% (got {step:g})")
    exp, chosen = select(experiment, variants, reduced)
    loads = [v.name for v in chosen if v.workload.kind == "load"]
    if loads:
        raise ConfigError(f"variant {loads[0]!r} only loads weights: what-if analysis covers "
                          "inference (pick other variants with --variant)", file=str(exp.source))
    served = [v.name for v in chosen if v.workload.kind == "serving"]
    if served:
        raise ConfigError(f"variant {served[0]!r} serves a request stream: what-if analysis "
                          "covers single runs (sweep serving.arrivals.rate instead)",
                          file=str(exp.source))
    topologies: dict[Path, Topology] = {}
    bases: dict[str, VariantResult] = {}
    results = []
    for v in chosen:
        if v.topology not in topologies:
            topologies[v.topology] = load_topology(v.topology)
        topo = topologies[v.topology]
        if not v.plan.fabric:  # as the run's set-up: no perturbation of links it leaves out
            topo = topo.without_fabric
        if progress:
            progress(f"{v.name}: base")
        base = bases[v.name] = run_base(v, exp.source, Setting(topo, soc_model=soc_model))
        perturbations, notes = continuous_perturbations(topo, v, soc_model, step)
        for found in (gen5_uplinks(topo, soc_model), extra_switch(topo, v.topology, base,
                                                                 soc_model),
                      onchip_off(topo, soc_model), mxfp6_other_form(topo, v, soc_model)):
            if found is None:
                continue
            if isinstance(found, str):
                notes.append(found)
            else:
                perturbations.append(found)
        results.append(evaluate(v, perturbations, base, notes, progress))
    by_name = {v.name: v for v in chosen}
    pairs = Result(exp.name, exp.description, str(exp.source), list(bases.values())).comparisons()
    bands = tuple(band(by_name[c["p2p"]], by_name[c["host"]],
                       topologies[by_name[c["p2p"]].topology],
                       speedups(bases[c["p2p"]].metrics, bases[c["host"]].metrics),
                       soc_model, progress) for c in pairs) if with_band else ()
    notes = () if pairs or not with_band else (
        "no P2P/host pair among these variants (variants that differ only in the connection): "
        "no band",)
    return WhatIf(exp.name, step, reduced, tuple(results), bands, notes)
