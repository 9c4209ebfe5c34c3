"""Capacity planning: the fewest SoCs that serve a request rate within its SLOs.

``simtopo capacity EXPERIMENT --variant V --rate R`` takes a serving variant as the template
(its model, topology, compiled program, request lengths, scheduler, router and SLOs) and tries
layouts on its topology: a tensor-parallel size ``tp`` (of those the model's heads allow),
``replicas`` copies of it, P2P and host-routed. A layout meets the SLOs when at least
``attainment`` of the requests (after the warm-up) meet every SLO at the offered rate
(:mod:`simtopo.results.serving`). For each ``tp`` and connection the replicas grow from one
until the layout meets them, the topology runs out of SoCs, or the layout cannot run (it does
not fit, the P2P limit); the answer per connection is the meeting layout with the fewest
SoCs (ties: fewer replicas, then the smaller ``tp``). Every layout tried is kept, with its
metrics or why it could not run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SimtopoError
from ..results.parallel import Forked
from ..results.run import run_serving
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

    def best(self, connection: str) -> Trial | None:
        """The layout with the fewest SoCs that meets the SLOs over ``connection``."""
        meeting = [t for t in self.trials if t.connection == connection
                   and t.meets(self.attainment)]
        return min(meeting, key=lambda t: (t.socs, t.replicas, t.tp), default=None)


def capacity(experiment: str | Path, variant: str, rate: float, attainment: float = 0.99,
             tp_sizes: Sequence[int] = TP_SIZES, reduced: bool = False,
             progress: Callable[[str], None] | None = None, jobs: int = 1) -> Capacity:
    """Find the fewest SoCs per connection that serve ``rate`` requests/s (module
    docstring). Each (connection, ``tp``) series of replicas runs in its own forked process
    when ``jobs`` > 1; the answer is the same."""
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
    socs = len(load_topology(base.topology).socs)
    series = [(connection, tp) for connection in ("p2p", "host") for tp in tp_sizes
              if tp <= socs]
    memo: dict[str, Any] = {}

    def grow(i: int) -> list[Trial]:
        """Replicas of series ``i`` from one until they meet the SLOs or cannot run."""
        connection, tp = series[i]
        trials = []
        for replicas in range(1, socs // tp + 1):
            plan = base.plan.model_copy(update={"tp": tp, "replicas": replicas,
                                                "connection": connection, "pp": 1,
                                                "devices": None})
            trial = _try(replace(base, plan=plan, serving=serving), tp, replicas, connection,
                         memo)
            trials.append(trial)
            if trial.error or trial.meets(attainment):
                break  # more replicas of a layout that cannot run, or already meets
        return trials

    with Forked(grow, len(series), jobs if jobs > 1 else 0) as forked:
        found = forked.results(progress and (
            lambda i: progress(f"tp{series[i][1]} {series[i][0]}")))
    return Capacity(variant, rate, attainment, tuple(t for trials in found for t in trials))


def _try(variant: Variant, tp: int, replicas: int, connection: str,
         memo: dict[str, Any]) -> Trial:
    try:
        result = run_serving(variant, memo=memo)
    except SimtopoError as err:
        return Trial(tp, replicas, connection, tp * replicas,
                     error=str(err).replace("\n", " "))
    return Trial(tp, replicas, connection, int(result.metrics["socs"]), result.metrics)
