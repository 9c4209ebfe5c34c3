"""Max-min fair rates by progressive filling (the fluid model of SimGrid).

Every flow crosses a set of resources (directed links, host memory, DMA engines), each with a
capacity. Progressive filling raises all rates together; when a resource saturates, the flows
crossing it are frozen at their current rate and the rest keep rising. The result is the
unique max-min fair allocation: no resource exceeds its capacity, and every flow crosses a
saturated resource on which no flow has a higher rate.

Flows may carry a weight: ``w`` identical flows (same resources) are solved as one class whose
members each get the class rate and together load each resource ``w`` times that rate.

:func:`max_min_rates` freezes many levels per round instead of one. A resource's fair share
(what it has left over the weight of its unfrozen flows) never falls as filling proceeds: a
flow frozen elsewhere takes less than the rising level. So a resource whose share is no larger
than the share of any resource its flows cross (locally lowest) saturates at exactly that
share, whatever happens elsewhere, and all such resources freeze their flows in one round. The
globally lowest share is always locally lowest, so every round freezes something; a round is a
fixed number of array operations, and the rounds are as many as the longest chain of
bottlenecks that wait on each other (a few on a PCIe tree), not as many as distinct levels.
"""

from __future__ import annotations

import numpy as np

RELATIVE_TOLERANCE = 1e-12


def max_min_rates(capacity: np.ndarray, flow_of: np.ndarray, resource_of: np.ndarray,
                  n_flows: int, weight: np.ndarray | None = None) -> np.ndarray:
    """Max-min fair rate of each flow.

    Parameters
    ----------
    capacity
        Capacity of each resource (bytes/s); ``inf`` never limits.
    flow_of, resource_of
        The flow-resource incidence as parallel index arrays: flow ``flow_of[k]`` crosses
        resource ``resource_of[k]`` (each pair at most once).
    n_flows
        Number of flows (flows crossing no finite resource get ``inf``).
    weight
        Members per flow class (default 1 each): whole numbers from 1 (below 2**53), so
        that a resource's load counts down to exactly 0 as its flows freeze.

    Returns
    -------
    numpy.ndarray
        Rate per flow (per member, for weighted classes).
    """
    n_res = len(capacity)
    w = np.ones(n_flows) if weight is None else np.asarray(weight, dtype=float)
    rate = np.full(n_flows, np.inf)
    finite = np.isfinite(capacity[resource_of])
    if not finite.all():
        flow_of, resource_of = flow_of[finite], resource_of[finite]
    if not len(flow_of):
        return rate
    weights = w[flow_of]
    remaining = capacity.astype(float)  # a copy: the caller's capacities stay as they are
    # the weight of each resource's unfrozen flows, inf where none is left: such a share
    # comes out 0 and is never read, as every entry still in play puts weight on its
    # resource (whole weights count down to exactly 0)
    load = np.bincount(resource_of, weights=weights, minlength=n_res)
    unloaded = load == 0
    load[unloaded], remaining[unloaded] = np.inf, 0.0  # (an unlimited resource is unloaded)
    share = np.empty(n_res)
    lowest = np.empty(n_flows)  # each flow's lowest share over its resources
    floor = np.empty(n_res)  # the lowest of those over each resource's flows
    frozen = np.zeros(n_flows, dtype=bool)
    while len(flow_of):
        # each resource's fair share of what it has left
        np.maximum(remaining, 0.0, out=remaining)
        np.divide(remaining, load, out=share)
        entry_share = share[resource_of]
        lowest.fill(np.inf)
        np.minimum.at(lowest, flow_of, entry_share)
        level = lowest[flow_of]
        floor.fill(np.inf)
        np.minimum.at(floor, resource_of, level)
        # every flow crossing a locally lowest resource is frozen at its own lowest share
        ready = floor >= share * (1 - RELATIVE_TOLERANCE)
        frozen[flow_of[ready[resource_of]]] = True
        moving = frozen[flow_of]
        np.copyto(rate, lowest, where=frozen)
        frozen.fill(False)
        on, moved = resource_of[moving], weights[moving]
        remaining -= np.bincount(on, weights=moved * level[moving], minlength=n_res)
        load -= np.bincount(on, weights=moved, minlength=n_res)
        load[load == 0] = np.inf  # every flow of it frozen, here or elsewhere
        keep = ~moving  # drop the frozen flows' entries: later rounds only see the rest
        flow_of, resource_of, weights = flow_of[keep], resource_of[keep], weights[keep]
    return rate


def fill(capacity: np.ndarray, load: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """Max-min fair rates by progressive filling where flow ``i`` puts ``load[i, r]`` on
    resource ``r`` (capacity ``capacity[r]``) per unit of its rate and never exceeds
    ``cap[i]`` (a dense, weighted form of :func:`max_min_rates` for steady-state questions:
    rates in samples/s whose bytes per sample differ by resource). Returns the rates and, per
    flow, the resource that froze it (-1: its own cap)."""
    rate = np.zeros(len(cap))
    bound = np.full(len(cap), -1)
    active = cap > 0
    free = capacity.astype(float)
    while active.any():
        demand = load[active].sum(axis=0)  # what one more unit on every active flow loads
        room = np.full(len(free), np.inf)
        np.divide(free, demand, out=room, where=demand > 0)
        step = min(room.min(initial=np.inf), (cap - rate)[active].min())
        rate[active] += step
        free = free - step * demand
        capped = active & (rate >= cap * (1 - 1e-12))
        full = np.flatnonzero(room <= step * (1 + 1e-12))
        blocked = active & ~capped & (load[:, full] > 0).any(axis=1)
        for i in np.flatnonzero(blocked):
            bound[i] = full[np.argmax(load[i, full] > 0)]
        active &= ~(capped | blocked)
    return rate, bound
