"""What a simulated pass leaves behind: spans, blocks, stage passes and pass profiles.

A *profile* is one pass shape (a prefill chunk, a decode step at one context, a forward pass)
of every stage of a plan, simulated by :mod:`simtopo.sim.blocks`; the pass-level driver
(:mod:`simtopo.sim.driver`) reuses it wherever that pass runs, and the metrics read it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Span(NamedTuple):
    """Something that happened on a track (a SoC, a stage's group, a link), in seconds."""

    track: str
    name: str
    category: str  # compute | collective | transfer | host
    start_s: float
    end_s: float
    args: tuple[tuple[str, Any], ...] = ()


@dataclass
class BlockRun:
    """A block (a stage program's head, one layer, or its tail) simulated for every replica:
    its time per run, and what one run moved and called."""

    seconds: float
    compute_s: float
    spans: list[Span]
    link_bytes: Counter[str]
    algorithms: Counter[str]
    flows: list[Span] = field(default_factory=list)
    """Each flow on each directed link it crossed (kept when spans are recorded)."""
    free_running: int = 0
    """Runs simulated back to back with the replicas out of step, the most of any phase
    (0: one run, aligned; fewer than the window when every replica settled early)."""


@dataclass
class StagePass:
    """One stage's pass: its time, compute part, and the blocks that made it."""

    seconds: float
    compute_s: float
    blocks: list[tuple[str, BlockRun, int]]
    bytes: float = 0.0
    """DRAM bytes each device of the stage moves in the pass."""

    @property
    def comm_s(self) -> float:
        """Exposed communication: the pass time not spent computing."""
        return self.seconds - self.compute_s


@dataclass
class PassProfile:
    """One pass shape (a prefill chunk, a decode step) of every stage of the plan."""

    stages: list[StagePass]
    handoff_s: list[float]  # into stage s (index 0 unused)
    handoff_bytes: list[float]
    link_bytes: Counter[str] = field(default_factory=Counter)


def sample_contexts(first: int, last: int, samples: int = 5) -> list[int]:
    """Context lengths at which to simulate decode steps (evenly spaced, ends included)."""
    if last <= first or samples < 2:
        return [first]
    step = (last - first) / (samples - 1)
    return sorted({first + round(i * step) for i in range(samples)})


def interpolate(profiles: dict[int, PassProfile], context: int) -> PassProfile:
    """A decode profile at ``context`` from the sampled ones (linear between neighbours)."""
    keys = sorted(profiles)
    if context <= keys[0] or len(keys) == 1:
        return profiles[keys[0]]
    if context >= keys[-1]:
        return profiles[keys[-1]]
    hi = next(k for k in keys if k >= context)
    lo = keys[keys.index(hi) - 1]
    if hi == context:
        return profiles[hi]
    w = (context - lo) / (hi - lo)
    a, b = profiles[lo], profiles[hi]
    stages = [StagePass(x.seconds + w * (y.seconds - x.seconds),
                        x.compute_s + w * (y.compute_s - x.compute_s), x.blocks,
                        x.bytes + w * (y.bytes - x.bytes))
              for x, y in zip(a.stages, b.stages, strict=True)]
    handoff = [x + w * (y - x) for x, y in zip(a.handoff_s, b.handoff_s, strict=True)]
    return PassProfile(stages, handoff, a.handoff_bytes, a.link_bytes)
