"""The all-pairs path matrix: hand-counted classes, and agreement with route() pair by pair."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simtopo
from simtopo import constants as calibrated
from simtopo.report.text import matrix_json, render_matrix
from simtopo.topology.matrix import PATH_CLASSES

from .conftest import BUILTIN, payload_rate

GEN4_X8 = payload_rate(16e9, 8, calibrated.TLP_OVERHEAD_BYTES)
SW, RC, HANDOFF = calibrated.SWITCH_HOP_S, calibrated.RC_HOP_S, calibrated.HANDOFF_S


def test_ultra8_pair_counts_by_hand(ultra8):
    # 8 cards x 4 SoCs x 3 others on the card = 96 ordered pairs; per server switch
    # 16 x 15 - 4 cards x 12 = 192, twice = 384; across the two switches 16 x 16 x 2 = 512.
    assert ultra8.path_matrix().counts() == {"card": 96, "switch": 384, "rc": 512}


def test_ultra16_2s_splits_at_the_socket(ultra16_2s):
    counts = ultra16_2s.path_matrix().counts()
    assert counts["host"] == 32 * 32 * 2
    assert sum(counts.values()) == 64 * 63


def test_host_class_carries_the_bounce_figures(ultra16_2s):
    matrix = ultra16_2s.path_matrix()
    i, j = matrix.index("card0.soc0"), matrix.index("card8.soc0")
    assert matrix.class_of("card0.soc0", "card8.soc0") == "host"
    # leg 1: card switch, sw0, rc0; the hand-off; leg 2: the socket link (150 ns in the
    # file), rc1, sw2, card switch
    link = ultra16_2s.graph.edges["cpu0", "cpu1"]["latency_s"]
    assert link == pytest.approx(150e-9)
    expected = (2 * SW + RC) + HANDOFF + (link + RC + 2 * SW)
    assert matrix.latency_s[i, j] == pytest.approx(expected)
    assert matrix.bottleneck_Bps[i, j] == pytest.approx(GEN4_X8, rel=1e-8)


def test_acs_matrix(ultra8_acs):
    assert ultra8_acs.path_matrix().counts() == {"acs": 96 + 384, "rc": 512}


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: p.name)
def test_matrix_agrees_with_route_on_builtin_topologies(path):
    topo = simtopo.load_topology(path)
    assert_matrix_matches_routes(topo, [*topo.socs, *topo.storage])


def assert_matrix_matches_routes(topo: simtopo.Topology, devices: list[str]) -> None:
    matrix = topo.path_matrix(devices)
    for i, a in enumerate(devices):
        for j, b in enumerate(devices):
            if i == j:
                assert PATH_CLASSES[matrix.path_class[i, j]] == "self"
                continue
            try:
                route = topo.route(a, b)
            except simtopo.RouteError:
                route = topo.route(a, b, mode="host")
            assert PATH_CLASSES[matrix.path_class[i, j]] == route.path_class, (a, b)
            assert matrix.bottleneck_Bps[i, j] == pytest.approx(route.bottleneck_Bps, rel=1e-12)
            assert matrix.latency_s[i, j] == pytest.approx(route.latency_s, rel=1e-12, abs=0)


def test_dataframe_and_json(ultra8):
    matrix = ultra8.path_matrix(["card0.soc0", "card0.soc1", "card4.soc0"])
    frame = matrix.to_dataframe("class")
    assert frame.loc["card0.soc0", "card0.soc1"] == "CARD"
    assert frame.loc["card0.soc1", "card4.soc0"] == "RC"
    data = json.loads(matrix_json(matrix))
    assert data["path_class"][0] == ["self", "card", "rc"]
    assert data["bottleneck_Bps"][0][0] is None
    assert data["latency_s"][0][2] == pytest.approx(4 * SW + RC)


def test_render_matrix_rows_and_summary(ultra8):
    text = render_matrix(ultra8.path_matrix(["card0.soc0", "card0.soc1", "card4.soc0"]))
    lines = text.splitlines()
    assert lines[1].split() == ["card0.soc0", "[0]", "X", "CARD", "RC"]
    assert any(line.startswith("CARD") and " 2 " in line for line in lines)


# -- property: the vectorised matrix equals route() on random trees --------------------------

LINKS = st.one_of(
    st.fixed_dictionaries({"gen": st.sampled_from([3, 4, 5]),
                           "lanes": st.sampled_from([4, 8, 16])}),
    st.fixed_dictionaries({"bandwidth_up": st.sampled_from(["5GB/s", "12GB/s", "30GB/s"]),
                           "bandwidth_down": st.sampled_from(["6GB/s", "12GB/s", "25GB/s"]),
                           "latency": st.sampled_from(["0ns", "40ns", "1us"])}),
)
LATENCY = st.sampled_from(["0ns", "100ns", "250ns"])


@st.composite
def random_topology(draw: st.DrawFn, extras: bool = True) -> dict:
    """A random tree; ``extras`` adds partitioned switch chips, switches without P2P and a
    card type without P2P (which can make P2P reachability intransitive)."""
    rc_p2p = draw(st.booleans())
    platform = {"root_complex_p2p": rc_p2p, "cross_socket_p2p": rc_p2p and draw(st.booleans()),
                "acs": draw(st.booleans())}
    sockets, parents = [], []
    for s in range(draw(st.integers(1, 3))):
        rcs = [{"id": f"r{s}x{k}", "p2p": draw(st.none() | st.booleans()),
                "hop_latency": draw(LATENCY)} for k in range(draw(st.integers(1, 2)))]
        parents += [rc["id"] for rc in rcs]
        sockets.append({"id": f"s{s}", "cores": 4, "memory": "8GB",
                        "memory_bw": draw(st.sampled_from(["10GB/s", "400GB/s"])),
                        "root_complexes": rcs})
    switches: list[dict] = []
    chip_of: dict[str, str] = {}  # switch -> chip
    parent_of: dict[str, str] = {}
    chip_hop: dict[str, str] = {}
    for i in range(draw(st.integers(0, 6 if extras else 5))):
        parent = draw(st.sampled_from(parents))
        switch = {"id": f"sw{i}", "parent": parent, "uplink": draw(LINKS),
                  "acs": draw(st.none() | st.booleans()), "hop_latency": draw(LATENCY)}
        chip = draw(st.sampled_from([None, "k0", "k0", "k1"])) if extras else None
        above, node = set(), parent
        while node in parent_of:  # a partition may not sit below another of its chip
            above.add(chip_of.get(node))
            node = parent_of[node]
        if chip is not None and chip not in above:
            switch["chip"] = chip_of[switch["id"]] = chip
            switch["hop_latency"] = chip_hop.setdefault(chip, switch["hop_latency"])
            switch["acs"] = draw(st.sampled_from([False, False, True]))  # crossings mostly
        if extras and draw(st.integers(0, 7)) == 0:
            switch["p2p"] = False
        parent_of[switch["id"]] = parent
        switches.append(switch)
        parents.append(f"sw{i}")
    if extras and draw(st.booleans()):  # a chip of two partitions, maybe below another chip
        hop = draw(LATENCY)
        for part in ("pa", "pb"):
            switches.append({"id": part, "parent": draw(st.sampled_from(parents)),
                             "uplink": draw(LINKS), "chip": "kx", "hop_latency": hop,
                             "acs": draw(st.sampled_from([False, False, True]))})
        parents += ["pa", "pb"]
    soc = {"cores": 1, "peak_flops": {"fp16": "1TFLOPS"}, "dram": "1GB", "dram_bw": "1GB/s"}
    card_types = {
        "multi": {"name": "M", "host_link": draw(LINKS), "soc_link": draw(LINKS),
                  "switch": {"acs": draw(st.none() | st.booleans()),
                             "hop_latency": draw(LATENCY)},
                  "socs": draw(st.integers(2, 3)), "soc": soc},
        "single": {"name": "S", "host_link": draw(LINKS), "soc": soc},
    }
    if extras and draw(st.integers(0, 3)) == 0:
        card_types["single"]["p2p"] = False
    partitions = [sw["id"] for sw in switches if "chip" in sw]
    homes = parents + 4 * partitions  # cards under partitions, so that chips are crossed
    cards = [{"type": draw(st.sampled_from(["multi", "single"])),
              "parent": draw(st.sampled_from(homes)), "count": draw(st.integers(1, 2))}
             for _ in range(draw(st.integers(1, 4)))]
    host = {"sockets": sockets, "handoff_latency": "7us"}
    if len(sockets) > 1:
        host["socket_link"] = draw(LINKS)
    storage = [{"id": "disk", "kind": "nvme", "parent": draw(st.sampled_from(parents)),
                "link": draw(LINKS), "read_bw": "3GB/s", "write_bw": "2GB/s"}]
    return {"name": "random", "platform": platform, "host": host, "switches": switches,
            "card_types": card_types, "cards": cards, "storage": storage}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_topology())
def test_matrix_equals_routes_on_random_trees(spec):
    topo = simtopo.topology_from_dict(spec)
    assert_matrix_matches_routes(topo, [*topo.socs, *topo.storage])


@settings(max_examples=100, deadline=None)
@given(random_topology())
def test_p2p_routes_are_symmetric_walks(spec):
    topo = simtopo.topology_from_dict(spec)
    matrix = topo.path_matrix()
    assert np.array_equal(matrix.path_class, matrix.path_class.T)
    for a in topo.socs:
        for b in topo.socs:
            if a == b or matrix.class_of(a, b) == "host":
                continue
            route = topo.route(a, b)
            back = topo.route(b, a)
            assert route.nodes == back.nodes[::-1]
            assert all(topo.graph.has_edge(u, v) for u, v in route.links)
            kinds = [topo.graph.nodes[n]["kind"] for n in route.nodes]
            assert (kinds.count("socket") >= 2) == (route.path_class == "socket")
            assert ("root_complex" in kinds) == (route.path_class in ("acs", "rc", "socket"))


@settings(max_examples=100, deadline=None)
@given(random_topology(extras=False))
def test_p2p_reachability_is_an_equivalence(spec):
    """On a tree (no partitioned chips), check_p2p_domains' domains are exactly the classes:
    compare with connected components."""
    import networkx as nx

    topo = simtopo.topology_from_dict(spec)
    matrix = topo.path_matrix()
    linked = matrix.path_class != PATH_CLASSES.index("host")
    # transitive: a~b and b~c imply a~c
    assert not np.any((linked.astype(int) @ linked.astype(int) > 0) & ~linked)
    graph = nx.Graph()
    graph.add_nodes_from(range(len(matrix.devices)))
    graph.add_edges_from(zip(*np.nonzero(linked), strict=True))
    components = sorted((len(c) for c in nx.connected_components(graph)), reverse=True)
    _, counts = np.unique(linked.argmax(axis=1), return_counts=True)
    assert sorted(counts.tolist(), reverse=True) == components


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_topology())
def test_p2p_domains_are_groups_that_all_reach_each_other(spec):
    """With partitioned chips reachability may be intransitive: the domains of
    check_p2p_domains (SoCs with identical rows) are still groups joined pair by pair."""
    from simtopo.topology.checks import check_p2p_domains

    topo = simtopo.topology_from_dict(spec)
    linked = topo.path_matrix().path_class != PATH_CLASSES.index("host")
    rows, domain = np.unique(linked, axis=0, return_inverse=True)
    for k in range(len(rows)):
        members = np.flatnonzero(domain.ravel() == k)
        assert linked[np.ix_(members, members)].all()
    assert f"{len(rows)} P2P domain" in check_p2p_domains(topo).message
