"""Max-min fair rates by progressive filling (the fluid model of SimGrid).

Every flow crosses a set of resources (directed links, host memory, DMA engines), each with a
capacity. Progressive filling raises all rates together; when a resource saturates, the flows
crossing it are frozen at their current rate and the rest keep rising. The result is the
unique max-min fair allocation: no resource exceeds its capacity, and every flow crosses a
saturated resource on which no flow has a higher rate.

Flows may carry a weight: ``w`` identical flows (same resources) are solved as one class whose
members each get the class rate and together load each resource ``w`` times that rate.
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
        Members per flow class (default 1 each).

    Returns
    -------
    numpy.ndarray
        Rate per flow (per member, for weighted classes).
    """
    n_res = len(capacity)
    w = np.ones(n_flows) if weight is None else np.asarray(weight, dtype=float)
    rate = np.full(n_flows, np.inf)
    finite = np.isfinite(capacity[resource_of])
    flow_of, resource_of = flow_of[finite], resource_of[finite]
    weights = w[flow_of]
    remaining = capacity.astype(float).copy()
    load = np.bincount(resource_of, weights=weights, minlength=n_res)
    newly = np.zeros(n_flows, dtype=bool)
    share = np.empty(n_res)
    while len(flow_of):
        # each loaded resource's fair share of what it has left; unloaded ones never limit
        share.fill(np.inf)
        np.divide(np.maximum(remaining, 0.0), load, out=share, where=load > 0)
        level = share.min()
        saturated = share <= level * (1 + RELATIVE_TOLERANCE)
        # every unfixed flow crossing a saturated resource is frozen at this level
        newly[flow_of[saturated[resource_of]]] = True
        rate[newly] = level
        moving = newly[flow_of]
        used = np.bincount(resource_of[moving], weights=weights[moving], minlength=n_res)
        remaining -= used * level
        load -= used
        load[saturated] = 0.0  # a saturated resource has no room left for anyone
        keep = ~moving  # drop the frozen flows' entries: later rounds only see the rest
        flow_of, resource_of, weights = flow_of[keep], resource_of[keep], weights[keep]
        newly[:] = False
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
