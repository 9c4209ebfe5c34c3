"""Link-model calibration: the fit and leave-one-machine-out over the calibration points.

The fit varies the :class:`~simtopo.constants.LinkModel` parameters of :data:`BOUNDS` to
minimise the mean absolute log error, every (calibration file, category) group weighing the
same; leave-one-machine-out refits without each machine in turn, from the same neutral start,
and predicts it. The points are :mod:`simtopo.calibration.points`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..constants import LinkModel
from .points import Point, all_points, predict, relative_error


def objective(points: Sequence[Point], predicted: Sequence[float]) -> float:
    """Mean absolute log error; each (calibration file, bandwidth or latency) group weighs the
    same, so a file's many bandwidth points do not drown its few latencies."""
    groups: dict[tuple[str, str], list[float]] = {}
    for p, value in zip(points, predicted, strict=True):
        if p.fitted:
            groups.setdefault((p.source, p.kind), []).append(abs(math.log(value / p.measured)))
    return sum(sum(v) / len(v) for v in groups.values()) / len(groups)


BOUNDS = {
    "tlp_overhead_bytes": (4.0, 400.0),
    "dma_setup_s": (1e-8, 1e-4),
    "handoff_s": (1e-7, 1e-3),
    "rc_hop_s": (1e-9, 2e-6),
    "concurrency_efficiency": (0.05, 1.0),
    "duplex_efficiency": (0.5, 1.0),
    "host_duplex_efficiency": (0.5, 1.0),
    "socket_p2p_efficiency": (0.2, 1.0),
    "collective_launch_s": (1e-7, 2e-4),
    "collective_step_s": (1e-8, 5e-5),
}
"""The fitted parameters and their search ranges. The switch hop is not among them: the data
reach it only in one sum with the root-complex hop (a read round trip crosses two root
complexes and a switch), so it stays at its documented assumption."""

NEUTRAL = LinkModel(tlp_overhead_bytes=24.0, dma_setup_s=1e-6, handoff_s=10e-6,
                    rc_hop_s=100e-9, concurrency_efficiency=1.0, duplex_efficiency=1.0,
                    host_duplex_efficiency=1.0,
                    socket_p2p_efficiency=1.0, collective_launch_s=10e-6,
                    collective_step_s=1e-6)
"""Where every fit starts, the full one and each leave-one-out: what one would assume knowing
no measurement (PCIe's minimum per-TLP overhead of header, sequence number, LCRC and framing;
round microsecond costs; no efficiency losses)."""


def fit(points: Sequence[Point], start: LinkModel = NEUTRAL, max_evaluations: int = 800,
        progress: Callable[[int, float], None] | None = None) -> tuple[LinkModel, float, int]:
    """Coordinate search in log space, deterministic; returns (model, objective,
    evaluations)."""
    fitted = [p for p in points if p.fitted]
    best = start
    best_value = objective(fitted, predict(fitted, best))
    evaluations, factor = 1, 2.0
    while factor > 1.01 and evaluations < max_evaluations:
        improved = False
        for name in BOUNDS:
            low, high = BOUNDS[name]
            for direction in (factor, 1 / factor):
                value = min(max(getattr(best, name) * direction, low), high)
                if value == getattr(best, name):
                    continue
                candidate = best.with_values(**{name: value})
                score = objective(fitted, predict(fitted, candidate))
                evaluations += 1
                if score < best_value - 1e-12:
                    best, best_value, improved = candidate, score, True
                    break
            if progress is not None:
                progress(evaluations, best_value)
        if not improved:
            factor = math.sqrt(factor)
    return best, best_value, evaluations


def machines_of(points: Sequence[Point]) -> list[str]:
    """Machine names in first-appearance order (variants count as their base machine)."""
    out: list[str] = []
    for p in points:
        base = base_machine(p.machine)
        if base not in out:
            out.append(base)
    return out


def base_machine(machine: str) -> str:
    """A variant topology belongs to the machine it modifies."""
    return machine.replace("-gen2-uplink", "")


@dataclass(frozen=True)
class LeaveOneOut:
    """A machine's errors when the fit never saw it."""

    machine: str
    model: LinkModel
    """The fit on every other machine, started from :data:`NEUTRAL`."""
    errors: dict[str, tuple[float, ...]]
    """Absolute relative errors of the machine's fitted points under that fit, by kind."""


def leave_one_out(points: Sequence[Point], start: LinkModel = NEUTRAL,
                  max_evaluations: int = 800, workers: int = 1) -> list[LeaveOneOut]:
    """Fit without each machine (from ``start``, not from the full fit, so that a machine that
    alone identifies a parameter really leaves), then predict that machine. With ``workers``
    > 1 the machines are fitted in that many processes (each rebuilds :func:`all_points`;
    ``points`` must then be all of them)."""
    machines = machines_of(points)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(_leave_out, machines, [start] * len(machines),
                                 [max_evaluations] * len(machines)))
    return [_leave_out(machine, start, max_evaluations, points) for machine in machines]


def _leave_out(machine: str, start: LinkModel, max_evaluations: int,
               points: Sequence[Point] | None = None) -> LeaveOneOut:
    points = all_points() if points is None else points
    train = [p for p in points if base_machine(p.machine) != machine]
    test = [p for p in points if base_machine(p.machine) == machine and p.fitted]
    model, _, _ = fit(train, start, max_evaluations)
    predicted = predict(test, model)
    errors: dict[str, list[float]] = {}
    for p, v in zip(test, predicted, strict=True):
        errors.setdefault(p.kind, []).append(abs(relative_error(v, p.measured)))
    return LeaveOneOut(machine, model, {k: tuple(v) for k, v in errors.items()})
