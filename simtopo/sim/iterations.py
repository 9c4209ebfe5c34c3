"""Iteration times of dynamic-shape continuous batching: profiles on the topology, interpolated.

A dynamic-shape server (vLLM, Sarathi-Serve) runs *iterations* that mix decode tokens and
prefill chunks of many sequences. What one costs depends on three totals
(:func:`simtopo.workload.opgraph.iteration_shape`): its token rows n (every GEMM, norm and
collective scales with them), the KV-cache positions S it reads and the query-key pairs P it
computes (attention alone sees these two). Simulating each of the hundreds of thousands of
iterations of a serving run would take minutes; instead :func:`profile_iterations` simulates a
grid of them on the topology (every replica at once, as :mod:`simtopo.sim.blocks` profiles any
pass: P2P or host-routed collectives, shared uplinks) and :class:`IterationModel` interpolates:

    T(n, m, S, P) = G(n) + L(m) - L(min(n, slots)) + H(S, P / S) - H(n, 1)

- G(n): iterations of n rows of min(n, slots) sequences with the least attention (each row
  attending one position),
  on a grid of n (1, 2, ... 8, 10, 12, 14, 16, 20, ...: four points an octave, up to the
  largest iteration; refined by bisection where its midpoint is off the line, down to the row
  where a host-staged collective adds a chunk), piecewise linear;
- L(m): what m sequences' logits cost (the LM head's rows, the copy to the host, the next
  tokens back) at ``slots`` rows, on a grid of m up to ``slots``, piecewise linear;
- H(S, q): what attention adds at ``reference`` rows when S positions are read and each
  computes q pairs on average (q = 1 for decodes; a long prefill chunk has more), against
  S = q = 1; S on an even grid up to the KV pool, q on a grid of ratio sqrt 2; bilinear.

The split is exact where attention's time depends on S and P alone, the logits' on m alone,
and both add to the rest (neither moves data between SoCs); its error against direct
simulation of random mixed iterations is measured by :func:`interpolation_error` and stated in
docs/metrics.md.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..workload.opgraph import ACTIVATION_BYTES, iteration_shape
from .blocks import SPREAD, host_round_trip, profile_pass
from .setup import TOKEN_ID_BYTES, Setup

POSITION_POINTS = 5
"""Points of the grid of KV positions read (attention's time is close to linear in them)."""

REFINE_TOLERANCE = 1e-3
"""G(n)'s grid is refined where the midpoint of an interval is further than this (relative)
from the line between its ends: a host-staged collective steps up with every staged chunk of
its size, and bisection finds such a step to the row (steps at a regular spacing can leave a
midpoint on the line: the measured error of docs/metrics.md includes what they cost)."""


def _rows_grid(largest: int) -> list[int]:
    """1, 2, 3, ... 8, 10, 12, 14, 16, 20, 24, 28, 32, ... (four points an octave: collective
    algorithms change with the size) and ``largest``."""
    out = {largest}
    v = 1
    while v < largest:
        out.update(x for x in (v, v + v // 4, v + v // 2, v + 3 * v // 4) if x < largest)
        v *= 2
    return sorted(out)


def _refined(grid: list[int], f: Callable[[int], float]) -> tuple[list[int], list[float]]:
    """``f`` on ``grid``, with midpoints added (recursively) wherever the line between an
    interval's ends misses ``f`` at its midpoint by more than :data:`REFINE_TOLERANCE`."""
    values = {n: f(n) for n in grid}
    pending = list(itertools.pairwise(grid))
    while pending:
        a, b = pending.pop()
        if b - a < 2:
            continue
        mid = (a + b) // 2
        values[mid] = f(mid)
        line = values[a] + (values[b] - values[a]) * (mid - a) / (b - a)
        if abs(line - values[mid]) > REFINE_TOLERANCE * values[mid]:
            pending += [(a, mid), (mid, b)]
    rows = sorted(values)
    return rows, [values[n] for n in rows]


def _depth_grid(largest: float) -> list[float]:
    """Mean pairs per position read, 1 to ``largest`` in steps of sqrt 2."""
    steps = max(1, math.ceil(2 * math.log2(max(largest, 1.0))))
    return [float(x) for x in np.geomspace(1.0, max(largest, 1.0 + 1e-9), steps + 1)]


def _interp(grid: tuple[float, ...], values: tuple[float, ...], x: float) -> float:
    """Piecewise linear on ``grid``, extended linearly past either end."""
    i = min(max(bisect.bisect_right(grid, x) - 1, 0), len(grid) - 2)
    x0, x1 = grid[i], grid[i + 1]
    return values[i] + (values[i + 1] - values[i]) * (x - x0) / (x1 - x0)


@dataclass(frozen=True)
class IterationModel:
    """Interpolated iteration times of a program on its topology (module docstring)."""

    rows: tuple[float, ...]
    base_s: tuple[float, ...]
    """G(n) at each grid point of ``rows``."""
    sequences: tuple[float, ...]
    logits_s: tuple[float, ...]
    """L(m) at each grid point of ``sequences``."""
    positions: tuple[float, ...]
    depths: tuple[float, ...]
    attention_s: tuple[tuple[float, ...], ...]
    """H(S, q): ``attention_s[i][j]`` at ``positions[i]``, ``depths[j]``."""
    reference_rows: int
    slots: int
    """Sequences an iteration may hold (decoding or prefilling)."""
    budget: int
    """Token rows an iteration may hold (the token budget)."""
    kv_positions: int
    """KV-cache positions one replica holds (all its sequences together)."""
    socs: int = 0
    """SoCs the replicas occupy together."""

    def attention(self, positions: float, depth: float) -> float:
        """H(S, q), bilinear, q kept within its grid, S extended linearly."""
        depths = self.depths
        j = min(max(bisect.bisect_right(depths, depth) - 1, 0), len(depths) - 2)
        w = min(max((depth - depths[j]) / (depths[j + 1] - depths[j]), 0.0), 1.0)
        columns = [row[j] + w * (row[j + 1] - row[j]) for row in self.attention_s]
        return _interp(self.positions, tuple(columns), positions)

    def seconds(self, rows: int, sequences: int, positions: float, pairs: float) -> float:
        """T(n, m, S, P): one iteration of ``rows`` token rows of ``sequences`` sequences
        reading ``positions`` KV positions and computing ``pairs`` query-key pairs."""
        base = _interp(self.rows, self.base_s, rows)
        logits = _interp(self.sequences, self.logits_s, sequences) - _interp(
            self.sequences, self.logits_s, min(rows, self.slots))
        return (base + logits + self.attention(positions, pairs / positions)
                - self.attention(rows, 1.0))

    def summary(self) -> dict[str, Any]:
        """Plain data for the summary: the grids' extent and the ends of G."""
        return {"slots": self.slots, "token_budget": self.budget,
                "kv_positions": self.kv_positions, "socs": self.socs,
                "grid_points": len(self.rows) + len(self.sequences)
                + len(self.positions) * len(self.depths),
                "one_row_s": self.base_s[0], "budget_rows_s": self.base_s[-1]}


def iteration_seconds(setup: Setup, soc_model: Any, rows: int, sequences: int,
                      positions: float, pairs: float, memo: dict[Any, Any]) -> float:
    """One iteration simulated directly: every stage's pass (all replicas at once) and
    hand-off, the logits of ``sequences`` sequences to the host, its sampling, and their
    next tokens back."""
    graph = setup.ref.graph_for(iteration_shape(rows, sequences, positions, pairs),
                                setup.precision)
    profile = profile_pass(setup.plan, graph, setup.topo, setup.params, soc_model,
                           record_spans=False, memo=memo, phases=SPREAD)
    decoder = setup.ref.decoder
    assert decoder is not None
    act = ACTIVATION_BYTES[setup.precision.activations]
    out_s, in_s, _ = host_round_trip(setup.plan, setup.topo, setup.params,
                                     sequences * decoder.vocab * act,
                                     sequences * TOKEN_ID_BYTES, setup.host_step_s(soc_model))
    return (sum(s.seconds for s in profile.stages) + sum(profile.handoff_s) + out_s + in_s)


def profile_iterations(setup: Setup, soc_model: Any, slots: int, budget: int,
                       kv_positions: int, memo: dict[Any, Any] | None = None
                       ) -> IterationModel:
    """Simulate the grids of the module docstring and return their interpolation."""
    memo = {} if memo is None else memo
    largest = max(budget, slots)
    rows, base = _refined(_rows_grid(largest), lambda n: iteration_seconds(
        setup, soc_model, n, min(n, slots), n, n, memo))
    sequences = _rows_grid(slots) if slots > 1 else [1, 2]
    wide = max(slots, 2)
    logits = [iteration_seconds(setup, soc_model, wide, m, wide, wide, memo)
              for m in sequences]
    reference = min(slots, largest)
    top = max(kv_positions, largest, 2)
    positions = sorted({round(x) for x in np.linspace(1, top, POSITION_POINTS)})
    depths = _depth_grid(largest)
    attention = []
    zero = iteration_seconds(setup, soc_model, reference, 1, 1, 1, memo)
    for s in positions:
        attention.append(tuple(
            iteration_seconds(setup, soc_model, reference, 1, s, q * s, memo) - zero
            for q in depths))
    return IterationModel(tuple(float(n) for n in rows), tuple(base),
                          tuple(float(m) for m in sequences), tuple(logits),
                          tuple(float(s) for s in positions), tuple(depths), tuple(attention),
                          reference, slots, budget, kv_positions,
                          sum(s.tp for s in setup.plan.stages) * len(setup.plan.replicas))


def interpolation_error(setup: Setup, soc_model: Any, model: IterationModel,
                        samples: int = 40, seed: int = 0) -> dict[str, float]:
    """Relative error of :meth:`IterationModel.seconds` against direct simulation over random
    iterations a server runs: d decodes at contexts up to the pool's share, and a prefill chunk
    filling part of the budget after a random offset."""
    rng = np.random.default_rng(seed)
    errors = []
    memo: dict[Any, Any] = {}
    share = max(2, model.kv_positions // max(model.slots, 1))
    for _ in range(samples):
        decodes = int(rng.integers(0, model.slots + 1))
        chunk = int(rng.integers(0, model.budget - decodes + 1)) if decodes < model.slots else 0
        if decodes + chunk == 0:
            decodes = 1
        contexts = rng.integers(1, share + 1, size=decodes)
        offset = int(rng.integers(0, share)) if chunk else 0
        positions = float(contexts.sum()) + (offset + chunk if chunk else 0)
        pairs = float(contexts.sum()) + (chunk * (offset + (chunk + 1) / 2) if chunk else 0)
        rows, sequences = decodes + chunk, decodes + (1 if chunk else 0)
        direct = iteration_seconds(setup, soc_model, rows, sequences, positions, pairs, memo)
        errors.append(abs(model.seconds(rows, sequences, positions, pairs) - direct) / direct)
    values = np.array(errors)
    return {"samples": float(samples), "median": float(np.median(values)),
            "p90": float(np.percentile(values, 90)), "max": float(values.max())}
