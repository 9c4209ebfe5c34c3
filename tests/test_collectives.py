"""Collectives against closed forms on contention-free groups, and their bookkeeping.

The group is the four SoCs of one Ultra card in ultra8: a ring soc0 -> soc1 -> soc2 -> soc3
-> soc0 uses each SoC's x8 link once up and once down, so no two flows of a step share a link.
"""

from __future__ import annotations

import math
import random

import pytest

from simtopo.engine.collectives import CollectiveResult, ring_order
from simtopo.engine.idle_collective import run_collective
from simtopo.spec.topology import TransferSpec

CARD = ["card0.soc0", "card0.soc1", "card0.soc2", "card0.soc3"]
S = 64e6


@pytest.fixture
def alpha_beta(ultra8):
    route = ultra8.route("card0.soc0", "card0.soc1")
    # a collective's copies pay no DMA set-up (its step cost, 0 in plain(), stands for it)
    return route.latency_s, route.bottleneck_Bps


def plain(topo, **changes) -> TransferSpec:
    """The topology's transfer settings without software costs or duplex losses: the wire
    model alone, for the closed forms below (the costs have their own tests)."""
    return topo.transfer.model_copy(update={
        "collective_launch": 0.0, "collective_step": 0.0, "duplex_efficiency": 1.0,
        "host_duplex_efficiency": 1.0, **changes})


def no_reduction(topo, **changes) -> TransferSpec:
    return plain(topo, reduction_traffic=0.0, **changes)


def test_ring_all_reduce_closed_form(ultra8, alpha_beta):
    alpha, bw = alpha_beta
    n = 4
    result = run_collective(ultra8, "all_reduce", CARD, S, algorithm="ring",
                            params=no_reduction(ultra8))
    assert result.algorithm == "ring"
    assert result.time_s == pytest.approx(2 * (n - 1) * (alpha + S / (n * bw)), rel=1e-9)


def test_ring_all_reduce_pays_the_reductions(ultra8, alpha_beta):
    alpha, bw = alpha_beta
    n = 4
    reduce = 3 * (S / n) / ultra8.node("card0.soc0")["dram_bw_Bps"]  # read 2, write 1
    result = run_collective(ultra8, "all_reduce", CARD, S, algorithm="ring",
                            params=plain(ultra8))
    expected = 2 * (n - 1) * (alpha + S / (n * bw)) + (n - 1) * reduce
    assert result.time_s == pytest.approx(expected, rel=1e-9)


def test_all_gather_and_reduce_scatter(ultra8, alpha_beta):
    alpha, bw = alpha_beta
    n = 4
    gather = run_collective(ultra8, "all_gather", CARD, S, params=plain(ultra8))
    assert gather.time_s == pytest.approx((n - 1) * (alpha + S / (n * bw)), rel=1e-9)
    scatter = run_collective(ultra8, "reduce_scatter", CARD, S, params=no_reduction(ultra8))
    assert scatter.time_s == pytest.approx(gather.time_s, rel=1e-12)


def test_tree_all_reduce(ultra8, alpha_beta):
    alpha, bw = alpha_beta
    # binomial: soc1->soc0 and soc3->soc2, then soc2->soc0; broadcast back in two steps
    result = run_collective(ultra8, "all_reduce", CARD, S, algorithm="tree",
                            params=no_reduction(ultra8))
    assert result.time_s == pytest.approx(2 * math.log2(4) * (alpha + S / bw), rel=1e-9)


def test_direct_all_reduce_derates_the_endpoints(ultra8, alpha_beta):
    alpha, bw = alpha_beta
    c = ultra8.transfer.concurrency_efficiency
    # every SoC sends S to three others at once: its x8 link delivers e(3) = c + (1 - c) / 3
    result = run_collective(ultra8, "all_reduce", CARD, S, algorithm="direct",
                            params=no_reduction(ultra8))
    assert result.time_s == pytest.approx(alpha + 3 * S / (bw * (c + (1 - c) / 3)), rel=1e-9)


def test_host_staged_all_reduce(ultra8):
    params = no_reduction(ultra8, host_allreduce="host-staged")
    setup = 0.0  # a collective's copies: the step cost stands for the set-up
    d2h = ultra8.route("card0.soc0", "cpu0")
    x16 = ultra8.graph.edges["card0.sw", "sw0"]["bw_Bps"]
    h = ultra8.handoff_latency_s  # 4 hand-offs on 4 threads: one h per round
    assert ultra8.handoff_threads == 4
    # the four copies to the host share the card's x16 uplink, and back down
    one_way = setup + S / (x16 / 4) + d2h.latency_s
    result = run_collective(ultra8, "all_reduce", CARD, S, mode="host", params=params)
    assert result.algorithm == "host-staged"
    assert result.time_s == pytest.approx(2 * one_way + 2 * h, rel=1e-9)


def test_host_staged_all_gather(ultra8):
    """Each SoC copies its quarter in, one hand-off round, the host releases it (another), and
    each SoC reads the whole buffer back: the card's x16 uplink carries S/4 per SoC up and S
    per SoC down."""
    params = plain(ultra8, host_allreduce="host-staged")
    setup = 0.0
    d2h = ultra8.route("card0.soc0", "cpu0")
    x16 = ultra8.graph.edges["card0.sw", "sw0"]["bw_Bps"]
    h = ultra8.handoff_latency_s
    up = setup + (S / 4) / (x16 / 4) + d2h.latency_s
    down = setup + S / (x16 / 4) + d2h.latency_s
    result = run_collective(ultra8, "all_gather", CARD, S, mode="host", params=params)
    assert result.algorithm == "host-staged"
    assert result.time_s == pytest.approx(up + 2 * h + down, rel=1e-9)
    tree = plain(ultra8, host_allreduce="tree")
    assert run_collective(ultra8, "all_gather", CARD, S, mode="host",
                          params=tree).algorithm == "ring"  # no tree all-gather


def test_host_auto_all_gather_picks_the_faster(ultra8):
    group = list(ultra8.socs[:16])
    for size in (128e3, 64e6):
        auto = run_collective(ultra8, "all_gather", group, size, mode="host")
        times = {name: run_collective(ultra8, "all_gather", group, size, mode="host",
                                      params=ultra8.transfer.model_copy(
                                          update={"host_allreduce": name})).time_s
                 for name in ("ring", "host-staged")}
        assert auto.algorithm == min(times, key=times.__getitem__), (size, times)
        assert auto.time_s == pytest.approx(min(times.values()), rel=1e-12)


def test_host_mode_names_its_algorithm(ultra8):
    params = no_reduction(ultra8, host_allreduce="ring")
    ring = run_collective(ultra8, "all_reduce", CARD, 16e3, mode="host", params=params)
    assert (ring.mode, ring.algorithm) == ("host", "ring")


def test_host_auto_picks_the_fastest_host_algorithm(ultra8):
    group = list(ultra8.socs[:16])
    for size in (16e3, 16e6):
        auto = run_collective(ultra8, "all_reduce", group, size, mode="host")
        times = {}
        for name in ("ring", "tree", "host-staged"):
            params = ultra8.transfer.model_copy(update={"host_allreduce": name})
            times[name] = run_collective(ultra8, "all_reduce", group, size, mode="host",
                                         params=params).time_s
        assert auto.algorithm == min(times, key=times.__getitem__), (size, times)
        assert auto.time_s == pytest.approx(min(times.values()), rel=1e-12)


def test_auto_picks_the_fastest_algorithm(ultra8):
    group = list(ultra8.socs[:8])
    for size in (16e3, 64e6):
        auto = run_collective(ultra8, "all_reduce", group, size)
        times = {a: run_collective(ultra8, "all_reduce", group, size, algorithm=a).time_s
                 for a in ("ring", "tree", "direct")}
        assert auto.time_s == pytest.approx(min(times.values()), rel=1e-9), (size, times)


def test_p2p_beats_host_for_collectives_across_switches(ultra8):
    group = list(ultra8.socs[:16])
    for size in (16e3, 64e6):
        p2p = run_collective(ultra8, "all_reduce", group, size)
        host = run_collective(ultra8, "all_reduce", group, size, mode="host")
        assert host.time_s > p2p.time_s


def test_bus_bandwidth_factor():
    result = CollectiveResult("all_reduce", "ring", "p2p", tuple("abcd"), 8e6, 1e-3)
    assert result.algbw_Bps == pytest.approx(8e9)
    assert result.busbw_Bps == pytest.approx(8e9 * 2 * 3 / 4)


def test_ring_follows_the_topology(ultra8):
    group = list(ultra8.socs[:16])
    shuffled = group[:]
    random.Random(7).shuffle(shuffled)
    assert ring_order(ultra8, shuffled) == group


def test_broadcast_pipelines_chunks(ultra8, alpha_beta):
    alpha, bw = alpha_beta
    params = no_reduction(ultra8, chunk=S / 8)
    # a chain of 3 hops, 8 chunks: (hops + chunks - 1) chunk times when hops do not contend
    result = run_collective(ultra8, "broadcast", CARD, S, params=params)
    assert result.time_s == pytest.approx((3 + 8 - 1) * (alpha + S / 8 / bw), rel=1e-9)


def test_send_over_host(ultra8):
    result = run_collective(ultra8, "send", ["card0.soc0", "card4.soc0"], 16e3, mode="host")
    assert result.time_s > ultra8.handoff_latency_s


@pytest.mark.parametrize(("args", "message"), [
    (("gather", CARD, 1.0), "unknown collective 'gather'"),
    (("all_reduce", CARD, 1.0, "dma"), "mode must be 'p2p' or 'host' (got 'dma')"),
    (("all_reduce", [*CARD, CARD[0]], 1.0), "a collective group lists a device twice"),
])
def test_collective_errors(ultra8, args, message):
    with pytest.raises(Exception) as info:
        run_collective(ultra8, *args)
    assert message in str(info.value)


def test_a_p2p_collective_over_the_platforms_limit_is_refused_as_plans_refuse_it(ultra8):
    from simtopo.engine.idle_collective import run_collective
    from simtopo.errors import RouteError

    socs = list(ultra8.socs)
    assert ultra8.platform.max_p2p_group == 16 and len(socs) == 32
    run_collective(ultra8, "all_reduce", socs[:16], 2**20)  # at the limit: fine
    with pytest.raises(RouteError) as info:
        run_collective(ultra8, "all_reduce", socs, 2**20)
    assert str(info.value).startswith("a P2P all_reduce over 32 SoCs exceeds ultra8's P2P "
                                      "limit of 16 (platform.max_p2p_group): use fewer SoCs, or "
                                      "route it through host memory instead")
    assert run_collective(ultra8, "all_reduce", socs, 2**20, mode="host").time_s > 0


SLICE = [f"card{c}.soc{s}" for c in range(4) for s in range(4)]


def _twice(topo, memo, op, group, size, mode, solo=True):
    """``op`` run twice back to back by one instance, the first after 1 ms: (first time,
    second time, the fabric)."""
    from simtopo.engine.collectives import Collectives
    from simtopo.engine.transfers import Fabric

    fab = Fabric.create(topo, record=True)
    coll = Collectives(fab, memo, label="r", solo=solo)
    fab.env.run(until=1e-3)
    first = coll.run(op, group, size, mode)
    fab.env.run()
    second = coll.run(op, group, size, mode)
    fab.env.run()
    return first.value.time_s, second.value.time_s, fab


@pytest.mark.parametrize("op, size, mode", [("all_reduce", 16 * 2**20, "host"),
                                            ("all_reduce", 1e6, "p2p"),
                                            ("all_gather", 64e3, "host")])
def test_a_solo_collective_is_simulated_alone_once_and_replayed(ultra8, op, size, mode):
    """A collective with the fabric to itself is simulated once, alone from time zero: every
    run of it takes exactly that time (whatever ran first), starts no flow on its own
    fabric, and records the same flows shifted to its start."""
    from simtopo.sim.blocks import link_bytes

    fresh = run_collective(ultra8, op, SLICE, size, mode)
    memo: dict = {}
    first, second, fab = _twice(ultra8, memo, op, SLICE, size, mode)
    assert fab.net.solves == 0
    assert first == second == fresh.time_s
    assert fab.env.now == pytest.approx(1e-3 + 2 * fresh.time_s, rel=1e-12)
    records = fab.net.records
    half = len(records) // 2
    assert len(records) == 2 * half > 0
    for a, b in zip(records[:half], records[half:], strict=True):
        assert (a.label, b.label) == ("r", "r")
        assert (b.size_bytes, b.resources) == (a.size_bytes, a.resources)
        assert b.start_s == pytest.approx(a.start_s + first, rel=1e-12, abs=1e-15)
        assert b.end_s == pytest.approx(a.end_s + first, rel=1e-12, abs=1e-15)
    assert records[0].start_s >= 1e-3
    assert link_bytes(records[half:]) == link_bytes(records[:half])
    # not solo: simulated in place, in about the same time
    again = _twice(ultra8, memo, op, SLICE, size, mode, solo=False)
    assert again[2].net.solves > 0 and again[1] == pytest.approx(fresh.time_s, rel=1e-9)


def test_the_host_algorithm_trials_are_remembered(ultra8):
    """Choosing the host-routed algorithm runs each candidate on a fresh fabric; the winner's
    run is then replayed, not simulated a second time."""
    memo: dict = {}
    _, _, fab = _twice(ultra8, memo, "all_reduce", SLICE, 16 * 2**20, "host")
    assert fab.net.solves == 0 and len(fab.net.records) > 0
    idle = [key for key in memo if key[0] == "idle"]
    chosen = memo[("all_reduce", tuple(SLICE), 16 * 2**20)]
    assert ("idle", "all_reduce", tuple(SLICE), 16 * 2**20, "host", chosen, "handoff") in idle


def test_a_memo_is_never_shared_by_different_topologies(ultra8):
    """The memo of a run is keyed by the topology's content and the transfer settings: a
    what-if change of the graph or of the host is another memo."""
    from simtopo.results.bands import with_host
    from simtopo.sim.setup import memo_for

    memo: dict = {}
    params = ultra8.transfer
    one = memo_for(memo, ultra8, params)
    assert memo_for(memo, ultra8.derived(), params) is one  # the same content
    assert memo_for(memo, with_host(ultra8, handoff_latency=5e-6), params) is not one
    graph = ultra8.graph.copy()
    u, v = next((u, v) for u, v, d in graph.edges(data=True) if d["direction"] == "up")
    graph.edges[u, v]["bw_Bps"] /= 2
    assert memo_for(memo, ultra8.derived(graph=graph), params) is not one
    assert memo_for(memo, ultra8, params.model_copy(update={"chunk": 1e6})) is not one


@pytest.mark.parametrize("mode, size", [("p2p", 16e6), ("host", 16 * 2**20)])
def test_a_ring_on_an_idle_fabric_simulates_one_step_of_each_kind(ultra8, monkeypatch, mode,
                                                                  size):
    """Every step of a ring starts on an idle fabric with the same sends: one reducing and one
    plain step are simulated, the other 2(n - 1) - 2 replayed; the time, the flows and the link
    bytes are those of simulating every step."""
    from simtopo.engine.collectives import Collectives
    from simtopo.engine.network import Network
    from simtopo.engine.transfers import Fabric
    from simtopo.sim.blocks import link_bytes

    n = len(SLICE)
    ref_fab = Fabric.create(ultra8, ultra8.transfer.model_copy(update={"host_allreduce": "ring"}),
                            record=True)
    ref = Collectives(ref_fab).run("all_reduce", SLICE, size, mode, algorithm="ring")
    ref_fab.env.run()
    started = []
    flow = Network.flow
    monkeypatch.setattr(Network, "flow", lambda self, *a, **k: started.append(1) or
                        flow(self, *a, **k))
    fab = Fabric.create(ultra8, ref_fab.params, record=True)
    got = Collectives(fab, solo=True).run("all_reduce", SLICE, size, mode, algorithm="ring")
    fab.env.run()
    assert got.value.algorithm == "ring"
    assert got.value.time_s == pytest.approx(ref.value.time_s, rel=1e-12)
    assert len(fab.net.records) == len(ref_fab.net.records)
    assert link_bytes(fab.net.records) == pytest.approx(link_bytes(ref_fab.net.records))
    per_step = len(ref_fab.net.records) // (2 * (n - 1))
    assert len(started) == 2 * per_step  # one reducing step and one plain step


def test_a_memo_refuses_another_topology_or_setting(ultra8):
    from simtopo.engine.collectives import Collectives
    from simtopo.engine.transfers import Fabric

    memo: dict = {}
    Collectives(Fabric.create(ultra8), memo)
    Collectives(Fabric.create(ultra8), memo)  # the same: shared
    other = ultra8.transfer.model_copy(update={"chunk": 1e6})
    with pytest.raises(ValueError, match="another topology or transfer setting"):
        Collectives(Fabric.create(ultra8, other), memo)
