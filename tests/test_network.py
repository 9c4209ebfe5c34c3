"""The flow engine in SimPy: closed forms, contention, and conservation of bytes.

The small topology ``LINE``: one socket, root complex rc0, switch sw0 under it with an explicit
uplink, and three single-SoC cards a0, a1, a2 under sw0; all hop and link latencies zero.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simtopo
from simtopo.engine.transfers import Fabric

from .conftest import ROOT


def line(uplink="10GB/s", card_link="100GB/s", a0_link=None, memory="1000GB/s",
         transfer=None) -> simtopo.Topology:
    soc = {"cores": 1, "peak_flops": {"fp16": "1TFLOPS"}, "dram": "1GB", "dram_bw": "1000GB/s"}
    types = {"fast": {"name": "F", "host_link": {"bandwidth": card_link}, "soc": soc}}
    cards = [{"type": "fast", "parent": "sw0", "count": 3, "prefix": "a"}]
    if a0_link is not None:
        types["slow"] = {"name": "S", "host_link": {"bandwidth": a0_link}, "soc": soc}
        cards = [{"type": "slow", "parent": "sw0", "prefix": "a"},
                 {"type": "fast", "parent": "sw0", "count": 2, "prefix": "a"}]
    return simtopo.topology_from_dict({
        "name": "line",
        "platform": {"root_complex_p2p": True},
        "transfer": {"dma_setup": "0us", "concurrency_efficiency": 1.0,
                     "duplex_efficiency": 1.0, **(transfer or {})},
        "host": {"handoff_latency": "100us", "handoff_threads": 1,
                 "sockets": [{"id": "cpu0", "cores": 1, "memory": "1GB", "memory_bw": memory,
                              "root_complexes": [{"id": "rc0", "hop_latency": "0ns"}]}]},
        "switches": [{"id": "sw0", "parent": "rc0", "uplink": {"bandwidth": uplink},
                      "hop_latency": "0ns"}],
        "card_types": types,
        "cards": cards,
    })


def run(topo, copies, record=True):
    """Start (src, dst, size, mode) copies at t=0; return {label: end time}."""
    fab = Fabric.create(topo, record=record)
    ends = {}
    for k, (src, dst, size, mode) in enumerate(copies):
        label = f"f{k}"
        event = fab.copy(src, dst, size, mode=mode, label=label)
        event.callbacks.append(lambda _e, label=label: ends.__setitem__(label, fab.env.now))
    fab.env.run()
    return ends, fab


def test_one_flow_is_setup_plus_latency_plus_size_over_bandwidth(ultra8):
    route = ultra8.route("card0.soc0", "card0.soc1")
    ends, _ = run(ultra8, [("card0.soc0", "card0.soc1", 64e6, "p2p")])
    setup = ultra8.transfer.dma_setup
    # rate: the Gen4 x8 SoC link; latency: one on-card switch hop
    expected = setup + route.latency_s + 64e6 / route.bottleneck_Bps
    assert ends["f0"] == pytest.approx(expected, rel=1e-12)
    assert route.latency_s == ultra8.node("card0.sw")["hop_latency_s"]


def test_two_flows_on_one_link_each_get_half():
    # a0 -> host and a1 -> host share sw0's 10 GB/s uplink: 5 GB/s each, 1 GB takes 0.2 s
    ends, _ = run(line(), [("a0.soc0", "host", 1e9, "p2p"), ("a1.soc0", "host", 1e9, "p2p")])
    assert ends == pytest.approx({"f0": 0.2, "f1": 0.2}, rel=1e-12)


def test_opposite_directions_do_not_slow_each_other():
    # up and down the same 10 GB/s uplink: 10 GB/s each, 1 GB takes 0.1 s
    ends, _ = run(line(), [("a0.soc0", "host", 1e9, "p2p"), ("host", "a0.soc0", 1e9, "p2p")])
    assert ends == pytest.approx({"f0": 0.1, "f1": 0.1}, rel=1e-12)


def test_duplex_efficiency_limits_both_directions_together_not_one():
    # d = 0.9: up + down of the 10 GB/s uplink carry at most 0.9 x 20 = 18 GB/s together, so
    # opposite copies get 9 GB/s each (1 GB in 1/9 s); one direction alone still gets 10 GB/s
    topo = line(transfer={"duplex_efficiency": 0.9})
    ends, _ = run(topo, [("a0.soc0", "host", 1e9, "p2p"), ("host", "a0.soc0", 1e9, "p2p")])
    assert ends == pytest.approx({"f0": 1 / 9, "f1": 1 / 9}, rel=1e-12)
    ends, _ = run(topo, [("a0.soc0", "host", 1e9, "p2p")])
    assert ends == pytest.approx({"f0": 0.1}, rel=1e-12)


def test_three_flows_with_different_bottlenecks():
    # a0's link is 12 GB/s, the uplink 10 GB/s.
    # f0: a0 -> a1 (a0's link only); f1: a0 -> host (a0's link and the uplink);
    # f2: a2 -> host (the uplink). The uplink saturates first: f1 = f2 = 5 GB/s; a0's link has
    # 12 - 5 = 7 GB/s left for f0. 1 GB each: f0 ends at 1/7 s, f1 and f2 at 1/5 s (f0's end
    # frees a0's link but f1 stays held at 5 by the uplink).
    ends, _ = run(line(a0_link="12GB/s"), [("a0.soc0", "a1.soc0", 1e9, "p2p"),
                                          ("a0.soc0", "host", 1e9, "p2p"),
                                          ("a2.soc0", "host", 1e9, "p2p")])
    assert ends == pytest.approx({"f0": 1 / 7, "f1": 0.2, "f2": 0.2}, rel=1e-12)


def test_rates_change_when_a_flow_ends():
    # both share the uplink at 5 GB/s; the 0.5 GB flow ends at 0.1 s, then the other has the
    # whole 10 GB/s for its remaining 0.5 GB: 0.1 + 0.05 = 0.15 s
    ends, _ = run(line(), [("a0.soc0", "host", 0.5e9, "p2p"), ("a1.soc0", "host", 1e9, "p2p")])
    assert ends == pytest.approx({"f0": 0.1, "f1": 0.15}, rel=1e-12)


def test_concurrency_efficiency_derates_a_shared_endpoint():
    # two flows out of a0 (100 GB/s link) to a1 and a2: with c = 0.5 the endpoint delivers
    # 0.5 + 0.5/2 = 0.75 of 100 GB/s, 37.5 GB/s each: 1 GB in 1/37.5 s
    topo = line(transfer={"concurrency_efficiency": 0.5})
    ends, _ = run(topo, [("a0.soc0", "a1.soc0", 1e9, "p2p"), ("a0.soc0", "a2.soc0", 1e9, "p2p")])
    assert ends == pytest.approx({"f0": 1 / 37.5, "f1": 1 / 37.5}, rel=1e-12)


def test_one_class_of_identical_flows_shares_a_derated_endpoint():
    # three copies a0 -> a1 are one class (the closed-form solve): with c = 0.5, a0's sending
    # side and a1's receiving side deliver 0.5 + 0.5/3 = 2/3 of 100 GB/s, 22.2 GB/s each.
    # The 0.5 GB copy ends at 0.5 / (200/9) = 0.0225 s; then two share e(2) = 0.75 of it,
    # 37.5 GB/s each, for their last 0.5 GB: 0.0225 + 0.5 / 37.5 s
    topo = line(transfer={"concurrency_efficiency": 0.5})
    ends, fab = run(topo, [("a0.soc0", "a1.soc0", size, "p2p") for size in (0.5e9, 1e9, 1e9)])
    second = 0.0225 + 0.5 / 37.5
    assert ends == pytest.approx({"f0": 0.0225, "f1": second, "f2": second}, rel=1e-12)
    assert fab.net.solves == 2  # the start and the first end (the last two leave nothing)


def test_flows_starting_together_are_solved_once(ultra8):
    fab = Fabric.create(ultra8)
    socs = ultra8.socs
    for i in range(16):
        fab.copy(socs[i], socs[(i + 5) % 32], 1e6)
    fab.env.run(until=1e-4)
    assert fab.net.solves == 1


# -- host-routed copies ------------------------------------------------------------------------

def test_host_routed_copy_closed_form_two_buffers():
    # a0 writes at 2 GB/s, a1 reads at 8 GB/s; 1 MB chunks: a = 500 us, b = 125 us; h = 100 us.
    # (a + h + b) / 2 = 362.5 us < a, so k = 8 chunks take s + a + h + b + 7 x max(a, b, h)
    topo = line(a0_link="2GB/s", card_link="8GB/s", uplink="100GB/s",
                transfer={"chunk": "1MB", "staging_buffers": 2, "dma_setup": "3us"})
    ends, _ = run(topo, [("a0.soc0", "a1.soc0", 8e6, "host")])
    a, b, h, s = 500e-6, 125e-6, 100e-6, 3e-6
    assert ends["f0"] == pytest.approx(s + a + h + b + 7 * max(a, b, h), rel=1e-9)


def test_host_routed_copy_limited_by_the_buffer_ring():
    # balanced legs, a = b = 500 us, h = 100 us, 2 buffers: chunk i + 2 waits for the read of
    # chunk i, so reads end at (k + 1) a + ceil(k / 2) h; k = 5: 6 a + 3 h
    topo = line(card_link="2GB/s", uplink="100GB/s",
                transfer={"chunk": "1MB", "staging_buffers": 2})
    ends, _ = run(topo, [("a0.soc0", "a1.soc0", 5e6, "host")])
    assert ends["f0"] == pytest.approx(6 * 500e-6 + 3 * 100e-6, rel=1e-9)


def test_concurrent_bounces_queue_for_the_hand_off_thread():
    # one hand-off thread, two one-chunk bounces started together (a0 -> a1, a2 -> a0): the
    # second hand-off waits for the first
    topo = line(card_link="10GB/s", uplink="100GB/s", transfer={"chunk": "1MB"})
    ends, _ = run(topo, [("a0.soc0", "a1.soc0", 1e6, "host"), ("a2.soc0", "a0.soc0", 1e6,
                                                                  "host")])
    # writes: a0 up and a2 up, separate links, 100 us each; hand-offs 100 us, serialised:
    # ends at 200 and 300 us; reads 1 MB over a1's and a0's down links (10 GB/s): +100 us
    assert sorted(ends.values()) == pytest.approx([300e-6, 400e-6], rel=1e-9)


def test_host_latency_is_at_least_the_hand_off(ultra8):
    ends, _ = run(ultra8, [("card0.soc0", "card4.soc1", 4, "host")])
    bounce = ultra8.route("card0.soc0", "card4.soc1", mode="host")
    assert ends["f0"] >= ultra8.handoff_latency_s
    setup = ultra8.transfer.dma_setup
    # one tiny chunk: s + leg latency + h + leg latency (+ 4 bytes over each leg)
    tiny = 4 / bounce.to_host.bottleneck_Bps + 4 / bounce.from_host.bottleneck_Bps
    assert ends["f0"] == pytest.approx(setup + bounce.latency_s + tiny, rel=1e-9)


# -- P2P against host-routed on ultra8, by hand --------------------------------------------

def test_one_large_copy_is_about_as_fast_either_way(ultra8):
    p2p, _ = run(ultra8, [("card0.soc0", "card0.soc1", 512e6, "p2p")])
    host, _ = run(ultra8, [("card0.soc0", "card0.soc1", 512e6, "host")])
    # both bottleneck on the SoCs' x8 links (the two legs use opposite uplink directions)
    assert host["f0"] / p2p["f0"] == pytest.approx(1.0, abs=0.10)


def test_four_copies_around_a_card(ultra8):
    ring = [(f"card0.soc{i}", f"card0.soc{(i + 1) % 4}", 256e6) for i in range(4)]
    x8 = ultra8.graph.edges["card0.sw", "card0.soc0"]["bw_Bps"]
    x16 = ultra8.graph.edges["card0.sw", "sw0"]["bw_Bps"]
    p2p, _ = run(ultra8, [(s, d, n, "p2p") for s, d, n in ring])
    host, _ = run(ultra8, [(s, d, n, "host") for s, d, n in ring])
    # P2P: each copy has its own x8 links, each SoC link busy both ways (duplex d: d x8 each);
    # host-routed: all four writes climb the card's one x16 uplink and all four reads come
    # down it, d x16 / 4 each, unless the hand-offs pace the chunks (one thread per bounce:
    # a chunk per hand-off at most)
    d = ultra8.transfer.duplex_efficiency
    paced = ultra8.transfer.chunk / ultra8.handoff_latency_s
    for label in p2p:
        assert 256e6 / p2p[label] == pytest.approx(d * x8, rel=0.01)
        assert 256e6 / host[label] == pytest.approx(min(d * x16 / 4, paced), rel=0.05)


# -- invariants over random traffic -----------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 25))
def test_capacity_and_bytes_on_random_traffic(seed, n_flows):
    rng = random.Random(seed)
    topo = line(a0_link="12GB/s", transfer={"concurrency_efficiency": 0.6})
    env_fab = Fabric.create(topo, record=True)
    env, net = env_fab.env, env_fab.net
    ends = ["a0.soc0", "a1.soc0", "a2.soc0", "host"]
    sizes = []

    def starter(delay, src, dst, size):
        yield env.timeout(delay)
        yield env_fab.copy(src, dst, size)

    for _ in range(n_flows):
        src, dst = rng.sample(ends, 2)
        size = rng.choice([1e3, 1e6, 5e7, 2e8])
        sizes.append(size)
        env.process(starter(rng.choice([0.0, 1e-3, 2.5e-3]), src, dst, size))
    moved = np.zeros(len(net.capacity))  # integral of each resource's load over time
    last, load = 0.0, net.load()
    while env.peek() != float("inf"):
        env.step()
        moved += load * (env.now - last)
        last, load = env.now, net.load()
        if not net._solve_pending:
            assert np.all(load <= net.effective_capacity() * (1 + 1e-9))
    assert sorted(r.size_bytes for r in net.records) == sorted(sizes)
    expected = np.zeros(len(net.capacity))
    for record in net.records:
        for name in record.resources:
            expected[net.index[name]] += record.size_bytes
    assert moved == pytest.approx(expected, rel=1e-6, abs=1e-3)


def _solved_from_scratch(net) -> tuple[np.ndarray, np.ndarray]:
    """(active class ids, their max-min rates) solved anew over every active class."""
    from simtopo.engine.maxmin import max_min_rates

    ids = np.flatnonzero([len(m) > 0 for m in net.classes.members])
    if not len(ids):
        return ids, np.zeros(0)
    counts = np.array([len(net.classes.members[c]) for c in ids], dtype=float)
    flow_of = np.concatenate([[i] * len(net.classes.res[c]) for i, c in enumerate(ids)])
    resource_of = np.concatenate([net.classes.res[c] for c in ids])
    load = np.bincount(resource_of, weights=counts[flow_of], minlength=len(net.capacity))
    capacity = net.capacity * net._endpoint_scale(load)
    return ids, max_min_rates(capacity, flow_of.astype(np.int64), resource_of, len(ids),
                              counts)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(60, 120))
def test_rates_after_every_solve_are_the_max_min_of_all_flows_in_flight(seed, n_flows):
    # the engine solves only what changed: a component, a dense fabric all at once without
    # searching, and after ends only the classes at or above the lowest finished rate; after
    # every solve the rates must be those of a solve from scratch over every flow in flight
    # (ultra8: 64 SoCs, enough classes to take every path; some flows start together; P2P,
    # host-routed and host <-> device copies, so socket memory and the engines' host-memory
    # limit take part)
    topo = simtopo.load_topology(ROOT / "topologies" / "ultra8.yaml")
    rng = random.Random(seed)
    fab = Fabric.create(topo, topo.transfer.model_copy(
        update={"dma_setup": 0.0, "concurrency_efficiency": 0.6}))
    env, net = fab.env, fab.net
    socs = list(topo.socs)
    checked = [0]
    solve = net._solve

    def checked_solve(event=None):
        solve(event)
        ids, rates = _solved_from_scratch(net)
        if len(ids):
            assert net.classes.rate[ids] == pytest.approx(rates, rel=1e-9)
            checked[0] += 1

    net._solve = checked_solve

    def starter(delay, src, dst, size, mode):
        yield env.timeout(delay)
        yield fab.copy(src, dst, size, mode=mode)

    for _ in range(n_flows):
        src, dst = rng.sample(socs, 2)
        kind = rng.random()
        if kind < 0.15:
            src = "cpu0"
        elif kind < 0.3:
            dst = "cpu0"
        env.process(starter(rng.choice([0.0, 0.0, 1e-4, 3e-4]), src, dst,
                            rng.choice([1e4, 1e6, 4e6, 3e7]), "host" if kind > 0.85 else "p2p"))
    env.run()
    assert checked[0] == net.solves > 0  # every solve was checked


def test_resources_are_built_once_and_every_network_has_its_own(ultra8):
    """A network's resources are a copy of those built once for the topology and settings:
    the same names and capacities as building them afresh, and a cross-socket share one
    network adds on first use is not in another's."""
    from simtopo.engine.resources import Resources

    params = ultra8.transfer
    a, b = Resources.of(ultra8, params), Resources.of(ultra8, params)
    fresh = Resources(ultra8, params)
    assert a.names == fresh.names and np.array_equal(a.capacity, fresh.capacity)
    assert a is not b and a.index is not b.index
    a._add("xs:test|only", 1e9)
    assert "xs:test|only" in a.index and "xs:test|only" not in b.index
    assert len(b.capacity) == len(fresh.capacity)
    assert Resources.of(ultra8, params).names == fresh.names
