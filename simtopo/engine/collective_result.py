"""What one collective did: :class:`CollectiveResult`, with nccl-tests' bus bandwidth."""

from __future__ import annotations

import math
from dataclasses import dataclass

BUS_FACTOR = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "send": lambda n: 1.0,
    "all_to_all": lambda n: (n - 1) / n,
}
"""nccl-tests' bus-bandwidth factors: busbw = algbw x factor(n)."""


@dataclass(frozen=True)
class CollectiveResult:
    """One collective: what ran, with which algorithm, and how long it took."""

    op: str
    algorithm: str
    """``ring``, ``tree``, ``direct``, ``host-staged``, ``chain`` (broadcast)."""
    mode: str
    group: tuple[str, ...]
    """The devices in the order the algorithm visits them."""
    size_bytes: float
    """The per-device buffer, as nccl-tests counts it."""
    time_s: float
    protocol: str = "simple"
    """``LL``, ``simple`` or ``handoff`` (:mod:`simtopo.engine.protocols`)."""

    @property
    def algbw_Bps(self) -> float:
        """Algorithm bandwidth: size / time."""
        return self.size_bytes / self.time_s if self.time_s > 0 else math.inf

    @property
    def busbw_Bps(self) -> float:
        """Bus bandwidth: algbw times the op's factor (2(n-1)/n for all-reduce)."""
        return self.algbw_Bps * BUS_FACTOR[self.op](len(self.group))
