"""Expert parallelism: a mixture-of-experts layer's routed experts split over a stage's devices.

Each of ``n`` devices holds ``E / n`` of the ``E`` experts (``E`` must divide). Two splits:

- ``E`` (the default): every device holds ``1 / n`` of the tokens (layout ``T``), sends each to
  the devices holding its ``k`` chosen experts (an all-to-all, the dispatch), runs its
  experts on the tokens it receives, and sends the results back (a second all-to-all, the
  combine). The residual stream stays split by token between layers: a K-split GEMM's partial
  sums are reduce-scattered into it instead of all-reduced, and an op that needs the tokens
  whole (the next QKV projection) all-gathers them, so a layer trades one all-reduce for two
  all-to-alls. The traffic pattern where PCIe topology matters most.
- ``K``: the tokens are already on every device (after tensor-sliced attention), so each
  device runs its experts on the tokens routed to them and the partial outputs add up (an
  all-reduce, as a K-split GEMM's): no all-to-all.

A stage runs in lock step, so what counts is the busiest device. With ``u`` the expert load
imbalance (its routed tokens over the mean, ``plan.expert_imbalance``, at least 1) it runs
``T = max(u k rows / n, 1)`` token-expert pairs (at least one: at small batches a device that
holds a chosen expert runs it whole), on ``e = E / n`` experts of which it touches
``e (1 - (1 - 1 / e)^T)`` (tokens spread uniformly over its experts, an assumption), and reads
those experts' weights: FLOPs ``T`` pairs' worth, bytes the touched experts plus ``T`` tokens
in and out. Decode at batch 1 on 8 devices thus reads one whole expert on the busiest device,
not an eighth of two. Each all-to-all moves, per device, ``rows / n x k x hidden``
activations (the mean; the busiest device's extra traffic is left out).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PlanError
from ..workload.opgraph import Op, experts_touched

EXPERT_SPLITS = ("E", "K")


@dataclass(frozen=True)
class ExpertShard:
    """One device's part of the routed experts."""

    flops: float
    bytes: float
    stored_bytes: float
    mxfp6_weights: float
    activation_bytes: float
    all_to_all_bytes: float
    """Each device's send buffer of one all-to-all (0 for the ``K`` split)."""


def batch_expert_weights(op: Op, share: float) -> tuple[float, float]:
    """(bytes, mxfp6 weights) of the experts that ``share`` of the tokens touch, on a device
    holding every expert (one SoC, or batch mode's slice of the batch)."""
    touched = experts_touched(int(op.extra["experts"]), int(op.extra["top_k"]),
                              op.rows * share)
    return (touched * op.stored_bytes / op.extra["experts"],
            touched * op.extra["expert_matrices"])


def expert_shard(op: Op, split: str, n: int, imbalance: float, act_bytes: float,
                 mxfp6: bool) -> ExpertShard:
    """Device ``0``'s part of the routed experts ``op`` (the busiest, with ``imbalance``)."""
    experts = int(op.extra["experts"])
    if split not in EXPERT_SPLITS:
        raise PlanError(f"{op.name}: routed experts split as E (all-to-all) or K (all-reduce), "
                        f"not {split}")
    if experts % n:
        raise PlanError(f"{op.name}: {experts} experts do not divide over {n} devices (the "
                        "tensor-parallel size must divide the experts)")
    top_k = op.extra["top_k"]
    local = experts / n
    # token-expert pairs on the busiest device: at least one, at most every token on every
    # expert it holds
    pairs = min(max(imbalance * op.rows * top_k / n, 1.0), op.rows * min(top_k, local))
    touched = local * (1.0 - (1.0 - 1.0 / local) ** pairs) if local > 1 else 1.0
    activations = 2 * pairs * op.k_in * act_bytes
    weights = touched * op.stored_bytes / experts
    dispatch = op.rows / n * top_k * op.k_in * act_bytes if split == "E" else 0.0
    mx = touched * op.extra["expert_matrices"] if mxfp6 else 0.0
    return ExpertShard(op.flops * pairs / (op.rows * top_k), weights + activations,
                       op.stored_bytes / n, mx, activations, dispatch)
