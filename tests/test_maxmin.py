"""The max-min solver: hand-computed allocations and the defining invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simtopo.engine.maxmin import max_min_rates


def solve(capacity, flows, weight=None):
    flow_of = np.array([f for f, res in enumerate(flows) for _ in res], dtype=int)
    resource_of = np.array([r for res in flows for r in res], dtype=int)
    return max_min_rates(np.array(capacity, dtype=float), flow_of, resource_of, len(flows),
                         weight)


def test_two_flows_on_one_link_get_half_each():
    assert solve([10.0], [[0], [0]]).tolist() == [5.0, 5.0]


def test_three_flows_with_different_bottlenecks():
    # link A (10) carries f0 and f1; link B (4) carries f1 and f2.
    # B's fair share 4/2 = 2 < A's 10/2 = 5: f1 = f2 = 2; A has 10 - 2 = 8 left for f0.
    assert solve([10.0, 4.0], [[0], [0, 1], [1]]).tolist() == [8.0, 2.0, 2.0]


def test_weighted_class_counts_its_members():
    # three identical flows on A (weight 3) and one on A and B: A's share 10/4 = 2.5
    assert solve([10.0, 4.0], [[0], [0, 1]], weight=np.array([3.0, 1.0])).tolist() == [2.5, 2.5]


def test_unlimited_resources_do_not_limit():
    assert solve([np.inf, 6.0], [[0], [0, 1]]).tolist() == [np.inf, 6.0]


ROUND_CAPACITIES = st.sampled_from([1.0, 2.5, 4.0, 10.0, 33.0])


@st.composite
def problems(draw, max_resources=6, max_flows=8, capacity=ROUND_CAPACITIES, max_crossed=None,
             max_weight=3):
    """Random weighted max-min problems: capacities, each flow's resources, weights."""
    n_res = draw(st.integers(1, max_resources))
    capacities = [draw(capacity) for _ in range(n_res)]
    flows = [sorted(draw(st.sets(st.integers(0, n_res - 1), min_size=1,
                                 max_size=max_crossed or n_res)))
             for _ in range(draw(st.integers(1, max_flows)))]
    weight = np.array([draw(st.integers(1, max_weight)) for _ in flows], dtype=float)
    return capacities, flows, weight


@settings(max_examples=300, deadline=None)
@given(problems())
def test_max_min_invariants(problem):
    capacity, flows, weight = problem
    rates = solve(capacity, flows, weight)
    load = np.zeros(len(capacity))
    for f, res in enumerate(flows):
        load[res] += rates[f] * weight[f]
    # no resource over capacity
    assert np.all(load <= np.array(capacity) * (1 + 1e-9))
    saturated = load >= np.array(capacity) * (1 - 1e-9)
    for f, res in enumerate(flows):
        # the max-min condition: a saturated resource on which nobody gets more than f
        assert any(saturated[r] and all(rates[g] <= rates[f] * (1 + 1e-9)
                                        for g, other in enumerate(flows) if r in other)
                   for r in res), (f, rates)
    assert np.all(rates > 0)


def test_single_resource_is_equal_split():
    rates = solve([12.0], [[0]] * 4)
    assert rates == pytest.approx([3.0] * 4)


def one_level_at_a_time(capacity, flows, weight):
    """Textbook progressive filling in plain Python, one saturation level per step: the
    second method the round-based solver is checked against."""
    rates = [None] * len(flows)
    left = list(capacity)
    while any(r is None for r in rates):
        users = {r: sum(weight[f] for f, res in enumerate(flows) if rates[f] is None and r in res)
                 for r in range(len(capacity))}
        level = min(left[r] / n for r, n in users.items() if n > 0)
        full = {r for r, n in users.items() if n > 0 and left[r] / n <= level * (1 + 1e-12)}
        for f, res in enumerate(flows):
            if rates[f] is None and full & set(res):
                rates[f] = level
                for r in res:
                    if math.isfinite(level):  # (unlimited flows take nothing measurable)
                        left[r] -= weight[f] * level
    return rates


ANY_CAPACITIES = st.one_of(st.floats(0.5, 100.0), ROUND_CAPACITIES,
                          st.sampled_from([0.0, math.inf]))
"""Continuous capacities, repeated ones (ties), zero and unlimited ones."""


@settings(max_examples=300, deadline=None)
@given(problems(max_resources=12, max_flows=30, capacity=ANY_CAPACITIES, max_crossed=4,
               max_weight=4))
def test_rounds_agree_with_one_level_at_a_time(problem):
    # larger problems than above, with ties, zero and unlimited capacities
    capacity, flows, weight = problem
    expected = one_level_at_a_time(capacity, flows, weight)
    assert solve(capacity, flows, weight) == pytest.approx(expected, rel=1e-9)


def test_a_chain_of_bottlenecks_resolves_in_order():
    # A (6) carries f0, f1; B (10) carries f1, f2; C (12) carries f2, f3.
    # Round 1: A's share 3 is the lowest its flows see: f0 = f1 = 3. B (5) and C (6) wait,
    # each has a flow that sees a lower share elsewhere. Round 2: B has 7 left for f2, C's
    # share 6 is now the lowest f2 and f3 see: f2 = f3 = 6 (B keeps 1 spare).
    assert solve([6.0, 10.0, 12.0], [[0], [0, 1], [1, 2], [2]]).tolist() == [3.0, 3.0, 6.0,
                                                                            6.0]
