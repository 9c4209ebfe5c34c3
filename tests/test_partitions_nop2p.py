"""Switch chips split into partitions, and devices and switches that cannot do P2P."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

import simtopo
from simtopo.calibration import bench
from simtopo.cli import main
from simtopo.engine.transfers import Fabric
from simtopo.topology.checks import check_p2p_domains
from simtopo.topology.routing import HOST_HINT

from .conftest import SOC, payload_rate
from .test_matrix import assert_matrix_matches_routes

GEN4_X16 = payload_rate(16e9, 16, 24)
GEN4_X8 = payload_rate(16e9, 8, 24)
SETUP, LINK, HOP, RC_HOP = 2e-6, 40e-9, 200e-9, 300e-9
SIZE = 40e6  # p2pBandwidthLatencyTest's copy

SPLIT: dict[str, Any] = {
    "name": "split",
    "pcie": {"tlp_overhead": 24},
    "transfer": {"dma_setup": "2us"},
    "platform": {"root_complex_p2p": False},
    "host": {
        "handoff_latency": "10us",
        "sockets": [{"id": "cpu0", "cores": 8, "memory": "64GB", "memory_bw": "400GB/s",
                     "root_complexes": [{"id": "rc0", "hop_latency": "300ns"},
                                        {"id": "rc1", "hop_latency": "300ns"}]}],
    },
    "card_types": {"solo": {"name": "Solo", "host_link": {"gen": 4, "lanes": 16,
                                                          "latency": "40ns"}, "soc": SOC}},
    "switches": [
        {"id": "vs0", "parent": "rc0", "uplink": {"gen": 4, "lanes": 8}, "hop_latency": "200ns",
         "chip": "pex0"},
        {"id": "vs1", "parent": "rc1", "uplink": {"gen": 4, "lanes": 8}, "hop_latency": "200ns",
         "chip": "pex0"},
    ],
    "cards": [{"type": "solo", "parent": "vs0", "count": 2},  # card0, card1
              {"type": "solo", "parent": "vs1", "count": 2}],  # card2, card3
}
"""One switch chip split into two partitions, each up a Gen4 x8 uplink to its own root port
(of two root complexes that do not carry P2P between them), each with two Gen4 x16 SoCs."""


def split(**changes: Any) -> simtopo.Topology:
    spec = copy.deepcopy(SPLIT)
    for key, value in changes.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    return simtopo.topology_from_dict(spec)


def finish_times(topo: simtopo.Topology,
                 copies: dict[str, tuple[str, str, float]]) -> dict[str, float]:
    """Start every copy at once on one fabric; when each one ends."""
    fab = Fabric.create(topo)
    done: dict[str, float] = {}

    def run(name: str, src: str, dst: str, size: float) -> Any:
        yield fab.copy(src, dst, size)
        done[name] = fab.env.now

    for name, (src, dst, size) in copies.items():
        fab.env.process(run(name, src, dst, size))
    fab.env.run()
    return done


# -- partitions of one switch chip -----------------------------------------------------------

def test_between_partitions_the_route_crosses_the_chip():
    topo = split()
    route = topo.route("card0.soc0", "card2.soc0")
    assert route.path_class == "chip"
    assert route.nodes == ("card0.soc0", "vs0", "vs1", "card2.soc0")
    # no uplink, no root complex (which refuses P2P here), nothing bounded between partitions
    assert not {"rc0", "rc1"} & set(route.nodes)
    assert route.link_bw_Bps[1] == float("inf")
    # the chip is one switch: one hop (the entry partition's), and the two SoC links
    assert route.hop_latency_s == pytest.approx((HOP, 0.0), rel=1e-12)
    assert route.latency_s == pytest.approx(LINK + HOP + LINK, rel=1e-12)
    assert route.bottleneck_Bps == pytest.approx(GEN4_X16, rel=1e-12)
    back = topo.route("card2.soc0", "card0.soc0")
    assert back.nodes == route.nodes[::-1] and back.latency_s == route.latency_s
    assert topo.route("card0.soc0", "card1.soc0").path_class == "switch"


def test_a_copy_across_the_chip_is_not_slowed_by_a_saturated_uplink():
    topo = split()
    done = finish_times(topo, {"across": ("card0.soc0", "card2.soc0", SIZE),
                               "to host": ("card1.soc0", "host", SIZE)})
    # the device-to-host copy fills vs0's Gen4 x8 uplink (it alone would get all of it)...
    assert done["to host"] == pytest.approx(SETUP + SIZE / GEN4_X8 + LINK + HOP + RC_HOP,
                                            rel=1e-9)
    # ...and the copy across the chip runs at its own Gen4 x16 links' rate all the same
    assert done["across"] == pytest.approx(SETUP + SIZE / GEN4_X16 + LINK + HOP + LINK,
                                           rel=1e-9)


def test_without_the_chip_the_same_copy_shares_the_uplink():
    spec = copy.deepcopy(SPLIT)
    for switch in spec["switches"]:
        del switch["chip"]
    spec["platform"]["root_complex_p2p"] = True
    topo = simtopo.topology_from_dict(spec)
    assert topo.route("card0.soc0", "card2.soc0").path_class == "rc"
    done = finish_times(topo, {"across": ("card0.soc0", "card2.soc0", SIZE),
                               "to host": ("card1.soc0", "host", SIZE)})
    # both flows split vs0's uplink (max-min: half each) and move their bytes together
    rc_latency = LINK + HOP + RC_HOP + RC_HOP + HOP + LINK  # the socket node adds no hop
    assert done["across"] == pytest.approx(SETUP + 2 * SIZE / GEN4_X8 + rc_latency, rel=1e-9)


def test_the_path_matrix_agrees_with_route_on_partitions():
    topo = split()
    matrix = topo.path_matrix()
    # within a partition 2 x 2 ordered pairs; across the chip 2 x 2 x 2
    assert matrix.counts() == {"switch": 4, "chip": 8}
    i, j = matrix.index("card1.soc0"), matrix.index("card3.soc0")
    assert matrix.latency_s[i, j] == pytest.approx(LINK + HOP + LINK, rel=1e-12)
    assert_matrix_matches_routes(topo, list(topo.socs))


def test_acs_on_a_partition_sends_peer_traffic_up_the_tree():
    topo = split(switches=[{**SPLIT["switches"][0], "acs": True}, SPLIT["switches"][1]])
    with pytest.raises(simtopo.RouteError) as info:
        topo.route("card0.soc0", "card2.soc0")
    assert "root complex rc0" in str(info.value)  # the ordinary route, and its refusal
    allowed = split(switches=[{**SPLIT["switches"][0], "acs": True}, SPLIT["switches"][1]],
                    platform={"root_complex_p2p": True})
    route = allowed.route("card0.soc0", "card2.soc0")
    assert route.path_class == "rc"
    assert ("vs0", "rc0") in route.links and ("rc1", "vs1") in route.links
    assert allowed.path_matrix().counts() == {"switch": 2, "acs": 2, "rc": 8}
    assert_matrix_matches_routes(allowed, list(allowed.socs))


def test_the_crossing_edge_is_not_a_tree_link():
    topo = split()
    edge = topo.graph.edges["vs0", "vs1"]
    assert edge["direction"] == "chip" and edge["chip"] == "pex0"
    assert topo.children("vs0") == ["card0.soc0", "card1.soc0"]
    assert topo.ancestors("card2.soc0") == ["card2.soc0", "vs1", "rc1", "cpu0"]
    uplinks = [f.message for f in topo.checks() if f.check == "uplink"]
    assert uplinks and uplinks[0].startswith("vs0, vs1: 2 x Gen4 x16")
    assert "partition of chip pex0" in topo.show()


def test_the_drawing_joins_the_partitions():
    from simtopo.report.draw import draw_topology

    legend = draw_topology(split()).axes[0].get_legend()
    assert "partitions of one switch chip" in [t.get_text() for t in legend.get_texts()]


@pytest.mark.parametrize(("change", "message"), [
    ({"hop_latency": "90ns"}, "<dict>: switches[1].hop_latency: switch 'vs1' has hop latency "
     "90 ns but 'vs0', a partition of the same chip 'pex0', has 200 ns; a chip is one switch: "
     "give its partitions one hop_latency"),
    ({"parent": "vs0"}, "<dict>: switches[1].chip: switch 'vs1' is below 'vs0', a partition "
     "of the same chip 'pex0'; a chip's partitions sit side by side, each with its own uplink"),
])
def test_bad_partitions_are_refused_in_one_line(change, message):
    with pytest.raises(simtopo.TopologyError) as info:
        split(switches=[SPLIT["switches"][0], {**SPLIT["switches"][1], **change}])
    assert str(info.value) == message


def test_one_partition_alone_is_a_switch():
    topo = split(switches=[SPLIT["switches"][0], {**SPLIT["switches"][1], "chip": "other"}])
    assert "chip" not in topo.path_matrix().counts()


# -- no P2P: card types and switches -----------------------------------------------------------

def no_p2p_spec() -> dict[str, Any]:
    spec = copy.deepcopy(SPLIT)
    del spec["switches"][1]["chip"]
    spec["switches"][0].pop("chip")
    spec["platform"]["root_complex_p2p"] = True
    spec["card_types"]["rtx-5090"] = {**spec["card_types"]["solo"], "name": "RTX 5090",
                                      "p2p": False}
    spec["cards"][1]["type"] = "rtx-5090"  # card2, card3
    return spec


def test_a_card_type_without_p2p_is_refused_naming_its_key():
    topo = simtopo.topology_from_dict(no_p2p_spec())
    for src, dst, device in [("card2.soc0", "card3.soc0", "card2.soc0"),
                             ("card0.soc0", "card3.soc0", "card3.soc0")]:
        with pytest.raises(simtopo.RouteError) as info:
            topo.route(src, dst)
        assert str(info.value) == (f"no P2P route from {src} to {dst}: {device} cannot be a "
                                   "peer-to-peer endpoint (card_types.rtx-5090.p2p is off); "
                                   f"{HOST_HINT}")
    assert topo.route("card0.soc0", "card1.soc0").path_class == "switch"
    assert topo.route("card2.soc0", "card3.soc0", mode="host").path_class == "host"
    assert topo.route("host", "card2.soc0").path_class == "h2d"
    # 2 P2P-capable SoCs reach each other; every pair with an RTX is host-routed
    assert topo.path_matrix().counts() == {"switch": 2, "host": 10}
    assert_matrix_matches_routes(topo, list(topo.socs))


def test_a_switch_without_p2p_is_refused_naming_its_key():
    spec = no_p2p_spec()
    spec["cards"][1]["type"] = "solo"
    spec["switches"][1]["p2p"] = False
    topo = simtopo.topology_from_dict(spec)
    for src, dst in [("card2.soc0", "card3.soc0"), ("card0.soc0", "card2.soc0")]:
        with pytest.raises(simtopo.RouteError) as info:
            topo.route(src, dst)
        assert str(info.value) == (f"no P2P route from {src} to {dst}: it must pass through "
                                   "switch vs1, which does not carry peer-to-peer traffic "
                                   f"(switches[1].p2p is off); {HOST_HINT}")
    assert topo.path_matrix().counts() == {"switch": 2, "host": 10}
    assert_matrix_matches_routes(topo, list(topo.socs))


def test_an_acs_hairpin_up_through_a_switch_without_p2p_is_refused():
    spec = no_p2p_spec()
    spec["cards"][1]["type"] = "solo"
    spec["switches"][0]["p2p"] = False  # vs0, above ...
    spec["switches"].append({"id": "low", "parent": "vs0", "uplink": {"gen": 4, "lanes": 16},
                             "acs": True})  # ... an ACS-on switch holding card4, card5
    spec["cards"].append({"type": "solo", "parent": "low", "count": 2})
    topo = simtopo.topology_from_dict(spec)
    with pytest.raises(simtopo.RouteError) as info:
        topo.route("card4.soc0", "card5.soc0")
    assert "switch vs0" in str(info.value) and "(switches[0].p2p is off)" in str(info.value)
    assert_matrix_matches_routes(topo, list(topo.socs))
    spec["switches"][-1]["acs"] = False  # turning at 'low' never reaches vs0
    assert simtopo.topology_from_dict(spec).route("card4.soc0", "card5.soc0").path_class == \
        "switch"


def test_a_crossing_avoids_a_switch_without_p2p_above_the_partitions():
    spec = copy.deepcopy(SPLIT)
    spec["switches"].insert(0, {"id": "top", "parent": "rc0", "uplink": {"gen": 4, "lanes": 16},
                                "p2p": False})
    for switch in spec["switches"][1:]:
        switch["parent"] = "top"
    topo = simtopo.topology_from_dict(spec)
    assert topo.route("card0.soc0", "card2.soc0").path_class == "chip"
    assert_matrix_matches_routes(topo, list(topo.socs))


def test_the_p2p_domain_check_names_what_has_no_p2p():
    finding = check_p2p_domains(simtopo.topology_from_dict(no_p2p_spec()))
    assert finding.message.startswith("3 P2P domains (sizes 2, 1, 1; P2P off by "
                                      "card_types.rtx-5090.p2p)")


# -- bench on a topology where no pair can use P2P ----------------------------------------------

NO_P2P_YAML = """name: rtx4
host:
  handoff_latency: 10us
  sockets: [{id: cpu0, cores: 32, memory: 256GB, memory_bw: 400GB/s}]
switches:
  - {id: sw0, parent: rc0, uplink: {gen: 5, lanes: 16}}
card_types:
  rtx-5090:
    name: RTX 5090
    p2p: false
    host_link: {gen: 5, lanes: 16}
    soc: {cores: 170, peak_flops: {fp16: 209TFLOPS}, dram: 32GB, dram_bw: 1792GB/s}
cards: [{type: rtx-5090, parent: sw0, count: 4}]
"""


@pytest.fixture
def rtx4(tmp_path):
    path = tmp_path / "rtx4.yaml"
    path.write_text(NO_P2P_YAML)
    return str(path)


def test_bench_runs_host_routed_everywhere_without_p2p(rtx4, capsys):
    assert main(["bench", rtx4, "--groups", "2,4", "--sizes", "16KiB,4MiB",
                 "--what", "matrices,collectives"]) == 0
    out = capsys.readouterr().out
    assert "Unidirectional P2P=Enabled Bandwidth Matrix (GB/s)" in out
    assert "P2P=Disabled Latency Matrix (us)" in out
    assert "(* host-staged: this pair has no P2P path on this platform)" in out
    for op, n in [("all_reduce", 2), ("all_gather", 4)]:
        assert f"{op} over {n} devices (card0.soc0 .. card{n - 1}.soc0)" in out
    assert out.count("fallback") == 4  # the P2P algorithm column of every table
    assert "(card_types.rtx-5090.p2p is off))" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_bench_json_says_the_p2p_runs_fell_back(rtx4, capsys):
    assert main(["bench", rtx4, "--groups", "4", "--sizes", "64KiB", "--what", "collectives",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    topo = simtopo.load_topology(rtx4)
    for entry in data["collectives"]:
        assert "card_types.rtx-5090.p2p is off" in entry["p2p_fallback"]
        (row,) = entry["rows"]
        assert row["p2p"]["mode"] == row["host"]["mode"] == "host"
        assert row["p2p_speedup"] == 1.0
        # what the fallback ran is the host-routed collective itself
        (alone,) = bench.collective_sweep(topo, entry["op"], entry["group"], "host", [65536])
        assert row["p2p"]["time_s"] == pytest.approx(alone.time_s, rel=1e-11)


@pytest.mark.parametrize(("p2p", "fallback"), [("on", True), ("off", False)])
def test_bench_collectives_honour_the_p2p_setting(rtx4, p2p, fallback, capsys):
    assert main(["bench", rtx4, "--p2p", p2p, "--groups", "2", "--sizes", "16KiB",
                 "--what", "matrices,collectives"]) == 0
    out = capsys.readouterr().out
    assert ("P2P=Enabled" in out) == (p2p == "on")
    assert ("P2P=Disabled" in out) == (p2p == "off")
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("16384")]
    assert len(rows) == 2 and all(row[1] == "host" for row in rows)  # the 'via' column
    assert ("as NCCL falls back" in out) == fallback


def test_a_p2p_group_over_the_platform_limit_falls_back():
    group = list(split().socs)
    runs, why = bench.group_sweep(split(platform={"max_p2p_group": 2}), "all_reduce", group,
                                  True, [16384])
    assert why == "4 SoCs is over split's P2P limit of 2 (platform.max_p2p_group)"
    assert runs[0].mode == "host"
    runs, why = bench.group_sweep(split(), "all_reduce", group, True, [16384])
    assert why is None and runs[0].mode == "p2p"  # the chip joins the two partitions
