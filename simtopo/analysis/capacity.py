"""Capacity planning: the fewest SoCs that serve a request rate within its SLOs, and the
highest rate a layout serves within them (:func:`max_rate`).

``simtopo capacity EXPERIMENT --variant V --rate R`` takes a serving variant as the template
(its model, topology, compiled program, request lengths, scheduler, router and SLOs) and tries
layouts on its topology, or on each of a family of topologies (``--topology``, repeated): a
tensor-parallel size ``tp`` (of those the model's heads allow), ``replicas`` copies of it,
P2P and host-routed. A layout meets the SLOs when at least
``attainment`` of the requests (after the warm-up) meet every SLO at the offered rate
(:mod:`simtopo.results.serving`). For each ``tp`` and connection the replicas grow from one
until the layout meets them, the topology runs out of SoCs, or the layout cannot run (it does
not fit, the P2P limit); the answer per connection is the meeting layout with the fewest
SoCs (ties: fewer replicas, then the smaller ``tp``, then the topology listed first), over
the family or on one topology of it. Every layout tried is kept, with its metrics or why it
could not run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SimtopoError
from ..io.paths import display_path, is_file
from ..results.parallel import Forked
from ..results.serving_run import run_serving
from ..spec.experiment import Variant, load_experiment
from ..topology.files import load_topology

TP_SIZES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Trial:
    """One layout at the rate: its metrics, or why it could not run."""

    tp: int
    replicas: int
    connection: str
    socs: int
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    topology: str = ""
    """The topology file's name."""

    def meets(self, attainment: float) -> bool:
        """Whether enough of its requests met every SLO."""
        return not self.error and self.metrics.get("slo_attainment", 0.0) >= attainment


@dataclass(frozen=True)
class Capacity:
    """What ``simtopo capacity`` found."""

    variant: str
    rate: float
    attainment: float
    trials: tuple[Trial, ...]
    topologies: tuple[str, ...] = ()
    """The family's file names, in the order given."""

    def best(self, connection: str, topology: str | None = None) -> Trial | None:
        """The layout with the fewest SoCs that meets the SLOs over ``connection`` (on
        ``topology`` alone, if given)."""
        meeting = [t for t in self.trials if t.connection == connection
                   and t.meets(self.attainment) and topology in (None, t.topology)]
        order = list(self.topologies)
        return min(meeting, key=lambda t: (t.socs, t.replicas, t.tp,
                                           order.index(t.topology) if t.topology in order
                                           else 0), default=None)


def capacity(experiment: str | Path, variant: str, rate: float, attainment: float = 0.99,
             tp_sizes: Sequence[int] = TP_SIZES, reduced: bool = False,
             progress: Callable[[str], None] | None = None, jobs: int = 1,
             topologies: Sequence[str | Path] = ()) -> Capacity:
    """Find the fewest SoCs per connection that serve ``rate`` requests/s (module
    docstring), on the variant's topology or on each of ``topologies``. Each (topology,
    connection, ``tp``) series of replicas runs in its own forked process when ``jobs`` > 1;
    the answer is the same."""
    if not 0 < attainment <= 1:
        raise ConfigError(f"attainment must be above 0 and at most 1 (got {attainment:g})")
    exp = load_experiment(experiment, reduced=reduced, only=variant)
    if not exp.variants:
        raise ConfigError(f"unknown variant {variant!r}", file=str(experiment))
    (base,) = exp.variants
    if base.workload.kind != "serving" or base.serving is None:
        raise ConfigError(f"variant {variant!r} is not a serving variant (workload.kind: "
                          "serving)", file=str(experiment))
    serving = base.serving.model_copy(update={"arrivals": base.serving.arrivals.model_copy(
        update={"rate": rate})})
    family = [Path(t).resolve() for t in topologies] or [base.topology]
    for path in family:
        if not is_file(path):
            raise ConfigError(f"topology file {display_path(path)!r} not found")
    if len({p.name for p in family}) != len(family):
        raise ConfigError("the topologies of a family need distinct file names (they name "
                          "the layouts)")
    socs = {path: len(load_topology(path).socs) for path in family}
    series = [(path, connection, tp) for path in family for connection in ("p2p", "host")
              for tp in tp_sizes if tp <= socs[path]]
    memo: dict[str, Any] = {}

    def grow(i: int) -> list[Trial]:
        """Replicas of series ``i`` from one until they meet the SLOs or cannot run."""
        path, connection, tp = series[i]
        trials = []
        for replicas in range(1, socs[path] // tp + 1):
            plan = base.plan.model_copy(update={"tp": tp, "replicas": replicas,
                                                "connection": connection, "pp": 1,
                                                "devices": None})
            trial = replace(_try(replace(base, topology=path, plan=plan, serving=serving),
                                 tp, replicas, connection, memo), topology=path.name)
            trials.append(trial)
            if trial.error or trial.meets(attainment):
                break  # more replicas of a layout that cannot run, or already meets
        return trials

    with Forked(grow, len(series), jobs if jobs > 1 else 0) as forked:
        found = forked.results(progress and (
            lambda i: progress(f"{series[i][0].name}: tp{series[i][2]} {series[i][1]}")))
    return Capacity(variant, rate, attainment, tuple(t for trials in found for t in trials),
                    tuple(p.name for p in family))


RATE_TOLERANCE = 0.01
"""Relative width at which the search for the highest rate stops."""


def max_rate(experiment: str | Path, variant: str, attainment: float = 0.99,
             reduced: bool = False) -> tuple[float, dict[str, float]]:
    """The highest request rate the variant's own layout serves with ``attainment`` of its
    requests within every SLO, and the metrics there (MLPerf's server scenario asks this of a
    latency bound). The program's times are simulated once; each rate tried is a playback of
    the variant's request stream at that rate (the same seed, so the same stream scaled in
    time). The rate doubles from the variant's own until it fails, then is bisected to within
    :data:`RATE_TOLERANCE`; a rate that fails where a lower one met is taken as the limit."""
    exp = load_experiment(experiment, reduced=reduced, only=variant)
    if not exp.variants or exp.variants[0].workload.kind != "serving":
        raise ConfigError(f"variant {variant!r} is not a serving variant (workload.kind: "
                          "serving)", file=str(experiment))
    (base,) = exp.variants
    assert base.serving is not None
    if base.serving.arrivals.process == "trace":
        raise ConfigError("the highest rate scales a generated stream; a trace fixes its own "
                          "times", file=str(experiment))
    memo: dict[str, Any] = {}

    def at(rate: float) -> dict[str, float]:
        arrivals = base.serving.arrivals.model_copy(update={"rate": rate})
        serving = base.serving.model_copy(update={"arrivals": arrivals})
        return run_serving(replace(base, serving=serving), memo=memo).metrics

    lo, hi = 0.0, float(base.serving.arrivals.rate or 1.0)
    best: dict[str, float] = {}
    while (found := at(hi))["slo_attainment"] >= attainment:
        lo, best, hi = hi, found, 2 * hi
        if hi > 1e6:
            raise ConfigError("the SLOs are met at every rate up to 1e6 requests/s")
    while hi - lo > RATE_TOLERANCE * hi:
        mid = (lo + hi) / 2
        found = at(mid)
        if found["slo_attainment"] >= attainment:
            lo, best = mid, found
        else:
            hi = mid
    return lo, best


def _try(variant: Variant, tp: int, replicas: int, connection: str,
         memo: dict[str, Any]) -> Trial:
    try:
        result = run_serving(variant, memo=memo)
    except SimtopoError as err:
        return Trial(tp, replicas, connection, tp * replicas,
                     error=str(err).replace("\n", " "))
    return Trial(tp, replicas, connection, int(result.metrics["socs"]), result.metrics)
