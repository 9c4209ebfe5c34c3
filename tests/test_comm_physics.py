"""Closed forms of the communication model's mechanisms beyond the wire: collective software
costs and protocols, a device engine pushing and pulling host memory at once, the duplex
limit, a cross-socket P2P stream, the host sum's threads, and polled host relays.

The topology ``TWO``: two sockets joined by a 40 GB/s socket link (50 ns), each socket with
one root complex and two single-SoC cards on 20 GB/s links; zero hop and link latencies
unless a test sets them. Every number below is worked out by hand from these figures.
"""

from __future__ import annotations

import pytest

import simtopo
from simtopo import constants
from simtopo.engine.collectives import Collectives
from simtopo.engine.idle_collective import run_collective
from simtopo.engine.transfers import Fabric

C = 20e9
"""Each card's link, both ways."""
S = 64e6


def two(b_setup: str | None = None, **transfer) -> simtopo.Topology:
    """``b_setup``: the b cards' SoCs state their own DMA set-up (a card type of their own)."""
    soc = {"cores": 1, "peak_flops": {"fp16": "1TFLOPS"}, "dram": "1GB", "dram_bw": "1000GB/s"}
    b_soc = soc if b_setup is None else {**soc, "dma_setup": b_setup}
    socket = {"cores": 8, "memory": "1GB", "memory_bw": "1000GB/s"}
    return simtopo.topology_from_dict({
        "name": "two",
        "platform": {"root_complex_p2p": True, "cross_socket_p2p": True},
        "transfer": {"dma_setup": "1us", "concurrency_efficiency": 1.0,
                     "duplex_efficiency": 1.0, "host_duplex_efficiency": 1.0,
                     "socket_p2p_efficiency": 1.0, "collective_launch": "0us",
                     "collective_step": "0us", "reduction_traffic": 0.0, **transfer},
        "host": {"handoff_latency": "10us", "handoff_threads": 2,
                 "socket_link": {"bandwidth": "40GB/s", "latency": "50ns"},
                 "sockets": [{**socket, "id": "cpu0",
                              "root_complexes": [{"id": "rc0", "hop_latency": "0ns"}]},
                             {**socket, "id": "cpu1",
                              "root_complexes": [{"id": "rc1", "hop_latency": "0ns"}]}]},
        "card_types": {"c": {"name": "C", "host_link": {"bandwidth": "20GB/s"}, "soc": soc},
                       "e": {"name": "E", "host_link": {"bandwidth": "20GB/s"}, "soc": b_soc}},
        "cards": [{"type": "c", "parent": "rc0", "count": 2, "prefix": "a"},
                  {"type": "e", "parent": "rc1", "count": 2, "prefix": "b"}],
    })


def ends(topo, copies):
    """Start (src, dst, size, mode, poll) copies at once; their end times."""
    fab = Fabric.create(topo)
    events = [fab.copy(s, d, n, mode=m, poll=p) for s, d, n, m, p in copies]
    done = {}
    for i, event in enumerate(events):
        event.callbacks.append(lambda _e, i=i: done.__setitem__(i, fab.env.now))
    fab.env.run()
    return [done[i] for i in range(len(events))]


# -- collective software costs and protocols -------------------------------------------------

def test_a_large_ring_all_reduce_pays_the_bandwidth_protocols_costs():
    # launch L and step s scaled by NCCL's Simple ratios, then the wire: 2 (n - 1) = 2 steps
    # of S / 2 at 20 GB/s; the route has no latency, and a collective's copies pay no DMA
    # set-up (the 1 us of this topology): the step cost stands for it
    topo = two(collective_launch="10us", collective_step="1us")
    launch, step = 10e-6 * constants.SIMPLE_LAUNCH_RATIO, 1e-6 * constants.SIMPLE_STEP_RATIO
    result = run_collective(topo, "all_reduce", ["a0.soc0", "a1.soc0"], S, algorithm="ring")
    assert result.protocol == "simple"
    assert result.time_s == pytest.approx(launch + 2 * (step + S / 2 / C), rel=1e-9)


def test_a_small_all_reduce_takes_the_low_latency_protocol_at_a_quarter_bandwidth():
    # 1 KiB over two devices: LL costs L + 2 (s + 4 x 512 B / C), below Simple's
    topo = two(collective_launch="10us", collective_step="1us")
    result = run_collective(topo, "all_reduce", ["a0.soc0", "a1.soc0"], 1024.0,
                            algorithm="ring")
    assert result.protocol == "LL"
    expected = 10e-6 + 2 * (1e-6 + 512 / (C * constants.LL_BANDWIDTH_SHARE))
    assert result.time_s == pytest.approx(expected, rel=1e-9)


def test_the_software_floor_dominates_small_all_reduces():
    # an 8-byte all-reduce over four devices costs the launch plus 2 (n - 1) steps, each as
    # slow as its socket-crossing send (50 ns), and 2 B pieces (negligible)
    topo = two(collective_launch="20us", collective_step="2us")
    group = ["a0.soc0", "a1.soc0", "b0.soc0", "b1.soc0"]
    result = run_collective(topo, "all_reduce", group, 8.0, algorithm="ring")
    assert result.time_s == pytest.approx(20e-6 + 6 * (2e-6 + 50e-9), rel=1e-4)


def test_a_send_is_a_copy_without_collective_costs():
    topo = two(collective_launch="20us", collective_step="2us")
    result = run_collective(topo, "send", ["a0.soc0", "a1.soc0"], S)
    assert result.time_s == pytest.approx(1e-6 + S / C, rel=1e-9)


# -- engines, links and sockets --------------------------------------------------------------

def test_a_device_pushing_and_pulling_host_memory_at_once_shares_its_engine():
    # h = 0.75: writes and reads of a0's engine together carry 0.75 x (20 + 20) = 30 GB/s,
    # 15 GB/s each; one direction alone keeps the link's 20 GB/s
    topo = two(host_duplex_efficiency=0.75)
    both = ends(topo, [("a0.soc0", "cpu0", S, "p2p", False), ("cpu0", "a0.soc0", S, "p2p",
                                                                 False)])
    assert both == pytest.approx([1e-6 + S / 15e9] * 2, rel=1e-9)
    assert ends(topo, [("a0.soc0", "cpu0", S, "p2p", False)]) == pytest.approx(
        [1e-6 + S / C], rel=1e-9)


def test_a_staged_copy_both_ways_shares_each_devices_engine():
    # a0 -> a1 and a1 -> a0 through host memory, 64 chunks of c = 256 KiB each way, no set-up,
    # hand-off or latency: both devices first write a chunk alone at C, then each writes the
    # next chunk of its copy while reading the other's, both through its engine: h x 2C
    # shared by two flows, h C each; the last read runs alone at C again
    c, k, h = 256 * 1024, 64, 0.75
    topo = two(host_duplex_efficiency=h, dma_setup="0us")
    topo = simtopo.topology_from_dict({**topo.spec.model_dump(mode="json", exclude_none=True),
                                       "host": {**topo.spec.host.model_dump(
                                           mode="json", exclude_none=True),
                                           "handoff_latency": "0us"}})
    both = ends(topo, [("a0.soc0", "a1.soc0", k * c, "host", False),
                       ("a1.soc0", "a0.soc0", k * c, "host", False)])
    expected = 2 * c / C + (k - 1) * c / (h * C)
    assert both == pytest.approx([expected] * 2, rel=1e-9)
    # one way, the same copy runs at the link's rate: the engine only pushes or only pulls
    (alone,) = ends(topo, [("a0.soc0", "a1.soc0", k * c, "host", False)])
    assert alone == pytest.approx(c / C + k * c / C, rel=1e-9)


def test_p2p_both_ways_is_limited_by_the_duplex_efficiency_only():
    # P2P writes both ways between a0 and a1: d = 0.9 of 40 GB/s per link, 18 GB/s each;
    # the engine limit (h = 0.6) does not apply: no host memory is touched
    topo = two(duplex_efficiency=0.9, host_duplex_efficiency=0.6)
    pair = ends(topo, [("a0.soc0", "a1.soc0", S, "p2p", False),
                       ("a1.soc0", "a0.soc0", S, "p2p", False)])
    assert pair == pytest.approx([1e-6 + S / 18e9] * 2, rel=1e-9)


def test_a_cross_socket_p2p_copy_keeps_its_share_and_pays_the_socket_link():
    # a0 -> b0 crosses rc0, the socket link (50 ns) and rc1: the stream runs at
    # e x 20 GB/s = 15 GB/s (below the 40 GB/s socket link), then the route latency
    topo = two(socket_p2p_efficiency=0.75)
    route = topo.route("a0.soc0", "b0.soc0")
    assert route.path_class == "socket"
    assert route.latency_s == pytest.approx(50e-9, rel=1e-12)
    assert ends(topo, [("a0.soc0", "b0.soc0", S, "p2p", False)]) == pytest.approx(
        [1e-6 + S / 15e9 + 50e-9], rel=1e-9)
    # within a socket the share does not apply
    assert ends(topo, [("a0.soc0", "a1.soc0", S, "p2p", False)]) == pytest.approx(
        [1e-6 + S / C], rel=1e-9)


def test_a_copy_pays_the_set_up_of_the_engine_that_runs_it():
    # the b SoCs' engines cost 3 us a copy, the a SoCs' the transfer setting's 1 us: a copy
    # runs on its source's engine, and a copy to or from host memory on the device's; each
    # then moves 1 MB at 20 GB/s (the b pair's route has no latency)
    topo = two(b_setup="3us")
    wire = 1e6 / C
    got = ends(topo, [("b0.soc0", "b1.soc0", 1e6, "p2p", False)])
    assert got == [pytest.approx(3e-6 + wire, rel=1e-9)]
    got = ends(topo, [("a0.soc0", "a1.soc0", 1e6, "p2p", False)])
    assert got == [pytest.approx(1e-6 + wire, rel=1e-9)]
    # an a SoC pushing to a b SoC runs on its own engine, not the destination's (and crosses
    # the 50 ns socket link)
    got = ends(topo, [("a0.soc0", "b0.soc0", 1e6, "p2p", False)])
    assert got == [pytest.approx(1e-6 + wire + 50e-9, rel=1e-9)]
    got = ends(topo, [("cpu1", "b0.soc0", 1e6, "p2p", False),
                      ("a1.soc0", "cpu0", 1e6, "p2p", False)])
    assert got == [pytest.approx(3e-6 + wire, rel=1e-9), pytest.approx(1e-6 + wire, rel=1e-9)]


def test_queued_tiny_copies_take_their_engines_set_up_each():
    # the latency tests' number: N copies of 4 B back to back, each its engine's set-up and
    # 4 B at 20 GB/s
    topo = two(b_setup="3us")
    fab = Fabric.create(topo)
    done = fab.queue("b0.soc0", "b1.soc0", 4.0, 100)
    fab.env.run()
    assert done.triggered
    assert fab.env.now / 100 == pytest.approx(3e-6 + 4 / C, rel=1e-9)


# -- the host path ---------------------------------------------------------------------------

def test_a_polled_relay_waits_one_flag_read_instead_of_a_hand_off():
    # one chunk (chunk >= size): set-up, the write leg, the flag's read round trip (twice the
    # 25 ns leg latency set on the card links), the read leg; no hand-off thread is used
    topo = simtopo.topology_from_dict({
        **two().spec.model_dump(mode="json", exclude_none=True),
        "card_types": {t: {"name": t, "host_link": {"bandwidth": "20GB/s", "latency": "25ns"},
                           "soc": {"cores": 1, "peak_flops": {"fp16": "1TFLOPS"},
                                   "dram": "1GB", "dram_bw": "1000GB/s"}} for t in "ce"}})
    size = 128e3
    leg = size / C + 25e-9
    polled = ends(topo, [("a0.soc0", "a1.soc0", size, "host", True)])
    handed = ends(topo, [("a0.soc0", "a1.soc0", size, "host", False)])
    assert polled == pytest.approx([1e-6 + leg + 2 * 25e-9 + leg], rel=1e-9)
    assert handed == pytest.approx([1e-6 + leg + 10e-6 + leg], rel=1e-9)


def test_the_host_sum_runs_on_the_hand_off_threads():
    # a host-staged all-reduce of two devices sums S x (n - 1) = S bytes with 3 bytes of
    # memory traffic each, on 2 threads of 10 GB/s: 3 S / 20 GB/s (below the 1000 GB/s memory)
    params = dict(host_allreduce="host-staged", host_thread_bw="10GB/s")
    with_sum = two(reduction_traffic=3.0, **params)
    without = two(**params)
    group = ["a0.soc0", "a1.soc0"]
    took = [run_collective(t, "all_reduce", group, S, mode="host").time_s
            for t in (with_sum, without)]
    assert took[0] - took[1] == pytest.approx(3 * S / 20e9, rel=1e-9)


def test_protocol_choice_is_the_lower_estimate():
    topo = two(collective_launch="10us", collective_step="1us")
    coll = Collectives(Fabric.create(topo))
    ring = ["a0.soc0", "a1.soc0"]
    for size in (1e3, 1e5, 1e7):
        _, protocol = coll.choose(ring, size, "ring")
        launch = {"LL": 10e-6, "simple": 10e-6 * constants.SIMPLE_LAUNCH_RATIO}
        step = {"LL": 1e-6, "simple": 1e-6 * constants.SIMPLE_STEP_RATIO}
        share = {"LL": constants.LL_BANDWIDTH_SHARE, "simple": 1.0}
        by_hand = {p: launch[p] + 2 * (step[p] + size / 2 / (C * share[p]))
                   for p in launch}
        assert protocol == min(by_hand, key=by_hand.__getitem__), size


def test_hand_off_steps_pay_the_launch_but_no_step_cost():
    # host-routed collectives synchronised by host hand-offs: the launch once, then the
    # hand-offs are the steps' synchronisation (a step cost would count them twice)
    group = ["a0.soc0", "a1.soc0"]
    for algorithm in ("ring", "host-staged"):
        bare = two(host_allreduce=algorithm)
        costly = two(host_allreduce=algorithm, collective_launch="10us", collective_step="3us")
        took = [run_collective(t, "all_reduce", group, S, mode="host") for t in (bare, costly)]
        assert took[1].protocol == "handoff"
        assert took[1].time_s - took[0].time_s == pytest.approx(10e-6, rel=1e-9), algorithm



def test_the_one_shot_estimate_applies_the_concurrency_efficiency_only_below_a_switch():
    # the cards sit on root ports, where the network applies no concurrency loss, so the
    # estimate of a direct (one-shot) all-reduce over three of them is the same for c = 0.3
    # and c = 1: L + s + the slowest neighbour route's latency (the 50 ns socket link) + a
    # fan-out of 2 x S at the full 20 GB/s link rate (bandwidth protocol)
    from simtopo.engine import protocols

    ring = ["a0.soc0", "a1.soc0", "b0.soc0"]
    launch, step = 10e-6 * constants.SIMPLE_LAUNCH_RATIO, 1e-6 * constants.SIMPLE_STEP_RATIO
    for c in (0.3, 1.0):
        topo = two(concurrency_efficiency=c, collective_launch="10us", collective_step="1us")
        table = protocols.estimates(topo, topo.transfer, ring, S, lambda _d: 0.0)
        assert table[("direct", "simple")] == pytest.approx(
            launch + step + 50e-9 + 2 * S / C, rel=1e-9), c
