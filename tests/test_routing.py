"""Routes against hand-computed paths, bottlenecks and latencies.

ultra8: SoC -(Gen4 x8)- card switch -(Gen4 x16)- server switch -(Gen4 x16)- rc0 - cpu0.
Its hop latencies and packet overhead are the calibrated link model's (SW per switch, RC per
root complex, TLP bytes per packet); link latencies 0.
"""

from __future__ import annotations

import pytest

import simtopo
from simtopo import RouteError
from simtopo import constants as calibrated

from .conftest import payload_rate, tiny_spec

TLP = calibrated.TLP_OVERHEAD_BYTES
GEN4_X8 = payload_rate(16e9, 8, TLP)
SW, RC, HANDOFF = calibrated.SWITCH_HOP_S, calibrated.RC_HOP_S, calibrated.HANDOFF_S
GEN3_X8_TINY = 7.20175824e9  # tiny pins 24 B: 8 GT/s x 8 x 128/130 / 8 x 256/280


def test_ultra8_takes_the_calibrated_link_model(ultra8):
    assert ultra8.node("sw0")["hop_latency_s"] == ultra8.node("card0.sw")["hop_latency_s"] == SW
    assert ultra8.node("rc0")["hop_latency_s"] == RC
    assert ultra8.handoff_latency_s == HANDOFF


def test_two_socs_on_one_ultra_card(ultra8):
    route = ultra8.route("card0.soc0", "card0.soc1")
    assert route.path_class == "card"
    assert route.links == (("card0.soc0", "card0.sw"), ("card0.sw", "card0.soc1"))
    assert route.bottleneck_Bps == pytest.approx(GEN4_X8, rel=1e-8)
    assert route.latency_s == pytest.approx(SW)
    assert route.memory is None


def test_cards_on_one_server_switch(ultra8):
    route = ultra8.route("card0.soc0", "card3.soc2")
    assert route.path_class == "switch"
    assert route.links == (("card0.soc0", "card0.sw"), ("card0.sw", "sw0"),
                           ("sw0", "card3.sw"), ("card3.sw", "card3.soc2"))
    assert route.bottleneck_Bps == pytest.approx(GEN4_X8, rel=1e-8)
    assert route.latency_s == pytest.approx(3 * SW)


def test_between_switches_through_the_root_complex(ultra8):
    route = ultra8.route("card0.soc0", "card4.soc0")
    assert route.path_class == "rc"
    assert route.nodes == ("card0.soc0", "card0.sw", "sw0", "rc0", "sw1", "card4.sw",
                           "card4.soc0")
    assert route.bottleneck_Bps == pytest.approx(GEN4_X8, rel=1e-8)
    assert route.latency_s == pytest.approx(4 * SW + RC)


def test_acs_hairpins_through_the_root_port_loading_the_uplink_both_ways(ultra8_acs):
    route = ultra8_acs.route("card0.soc0", "card1.soc0")
    assert route.path_class == "acs"
    assert ("sw0", "rc0") in route.links and ("rc0", "sw0") in route.links
    assert route.nodes == ("card0.soc0", "card0.sw", "sw0", "rc0", "sw0", "card1.sw",
                           "card1.soc0")
    # hops: card0.sw, sw0, rc0, sw0 again, card1.sw
    assert route.latency_s == pytest.approx(4 * SW + RC)
    # even two SoCs of one card hairpin when the on-card switch has ACS on
    same_card = ultra8_acs.route("card0.soc0", "card0.soc1")
    assert same_card.path_class == "acs"
    assert ("card0.sw", "sw0") in same_card.links and ("sw0", "card0.sw") in same_card.links


def test_p2p_across_sockets_refused_by_default_naming_the_socket_link(ultra16_2s):
    with pytest.raises(RouteError) as info:
        ultra16_2s.route("card0.soc0", "card8.soc0")
    assert str(info.value) == (
        "no P2P route from card0.soc0 to card8.soc0: it would cross the socket link "
        "cpu0-cpu1, and cross-socket P2P is off (platform.cross_socket_p2p); route it through "
        "host memory instead (connection: host in a plan, --mode host on the command line, "
        "mode='host' in Python)")


def two_socket_spec(cross: bool) -> dict:
    spec = tiny_spec(platform={"cross_socket_p2p": cross})
    spec["host"]["sockets"].append(
        {"id": "cpu1", "cores": 8, "memory": "64GB", "memory_bw": "80GB/s",
         "root_complexes": [{"id": "rc1", "hop_latency": "300ns"}]})
    spec["host"]["socket_link"] = {"bandwidth": "20GB/s", "latency": "120ns"}
    spec["switches"][1]["parent"] = "rc1"
    return spec


def test_p2p_across_sockets_when_allowed():
    topo = simtopo.topology_from_dict(two_socket_spec(cross=True))
    route = topo.route("card0.soc0", "card2.soc0")
    assert route.path_class == "socket"
    assert route.nodes == ("card0.soc0", "card0.sw", "sw0", "rc0", "cpu0", "cpu1", "rc1",
                           "sw1", "card2.soc0")
    # bottleneck: sw1 uplink Gen3 x8 (7.20 GB/s) under the 20 GB/s socket link
    assert route.bottleneck_Bps == pytest.approx(GEN3_X8_TINY, rel=1e-8)
    # hops: card0.sw 100 + sw0 200 + rc0 300 + rc1 300 + sw1 200; socket link 120
    assert route.latency_s == pytest.approx((100 + 200 + 300 + 300 + 200 + 120) * 1e-9)


def test_a_root_complex_refusing_p2p_is_named_with_its_key():
    spec = tiny_spec()
    spec["host"]["sockets"][0]["root_complexes"] = [{"id": "rcA"}, {"id": "rcB", "p2p": False}]
    spec["switches"][0]["parent"] = "rcA"
    spec["switches"][1]["parent"] = "rcB"
    topo = simtopo.topology_from_dict(spec)
    with pytest.raises(RouteError) as info:
        topo.route("card0.soc0", "card2.soc0")
    # rcA carries P2P (the platform default); rcB refuses by its own key
    assert "root complex rcB" in str(info.value)
    assert "host.sockets[0].root_complexes[1].p2p is off" in str(info.value)


def test_staging_without_host_mode_is_refused(ultra8):
    with pytest.raises(RouteError) as info:
        ultra8.route("card0.soc0", "card1.soc0", staging="dst")
    assert str(info.value) == ("staging applies only to mode='host' (a bounce through host "
                               "memory)")


def test_root_complex_without_p2p_is_named():
    topo = simtopo.topology_from_dict(tiny_spec(platform={"root_complex_p2p": False}))
    assert topo.route("card0.soc0", "card1.soc1").path_class == "switch"  # below rc0: fine
    with pytest.raises(RouteError) as info:
        topo.route("card0.soc0", "card2.soc0")
    assert "root complex rc0" in str(info.value)
    assert "platform.root_complex_p2p is off" in str(info.value)


def test_host_routed_legs(ultra8):
    bounce = ultra8.route("card0.soc0", "card4.soc1", mode="host")
    assert bounce.path_class == "host"
    assert bounce.to_host.links == (("card0.soc0", "card0.sw"), ("card0.sw", "sw0"),
                                    ("sw0", "rc0"), ("rc0", "cpu0"))
    assert bounce.from_host.links == (("cpu0", "rc0"), ("rc0", "sw1"), ("sw1", "card4.sw"),
                                      ("card4.sw", "card4.soc1"))
    assert bounce.staging == "cpu0"
    assert bounce.to_host.memory == bounce.from_host.memory == "cpu0"
    assert bounce.handoff_s == pytest.approx(HANDOFF)
    assert bounce.handoff_threads == 4
    # each leg: card switch + server switch + root complex; plus the hand-off
    assert bounce.latency_s == pytest.approx(2 * (2 * SW + RC) + HANDOFF)
    # one-way steady rate: the x8 SoC link on both legs; memory 460.8/2 GB/s is far above
    assert bounce.bottleneck_Bps == pytest.approx(GEN4_X8, rel=1e-8)


def test_host_routed_bounce_is_limited_by_half_the_memory_bandwidth():
    spec = tiny_spec()
    spec["host"]["sockets"][0]["memory_bw"] = "20GB/s"
    topo = simtopo.topology_from_dict(spec)
    bounce = topo.route("card0.soc0", "card1.soc0", mode="host")
    assert bounce.bottleneck_Bps == pytest.approx(10e9)  # written then read: 20 / 2


def test_staging_on_the_other_socket_crosses_the_socket_link():
    topo = simtopo.topology_from_dict(two_socket_spec(cross=False))
    bounce = topo.route("card0.soc0", "card1.soc0", mode="host", staging="cpu1")
    assert bounce.to_host.nodes[-3:] == ("rc0", "cpu0", "cpu1")
    assert bounce.from_host.nodes[:3] == ("cpu1", "cpu0", "rc0")
    assert bounce.memory_bw_Bps == 80e9
    default = topo.route("card0.soc0", "card2.soc0", mode="host")
    assert default.staging == "cpu0"
    assert ("cpu0", "cpu1") in default.from_host.links
    assert topo.route("card0.soc0", "card2.soc0", mode="host", staging="dst").staging == "cpu1"


def test_host_to_device_and_back(ultra8):
    h2d = ultra8.route("host", "card2.soc3")
    assert h2d.path_class == "h2d"
    assert h2d.links == (("cpu0", "rc0"), ("rc0", "sw0"), ("sw0", "card2.sw"),
                         ("card2.sw", "card2.soc3"))
    assert h2d.memory == "cpu0"
    d2h = ultra8.route("card2.soc3", "cpu0")
    assert d2h.path_class == "d2h"
    assert d2h.links == tuple((v, u) for u, v in reversed(h2d.links))
    assert h2d.latency_s == pytest.approx(d2h.latency_s) == pytest.approx(2 * SW + RC)


def test_storage_routes(ultra8):
    read = ultra8.route("nvme0", "host")
    # Gen4 x4: half of Gen4 x8
    assert read.bottleneck_Bps == pytest.approx(GEN4_X8 / 2, rel=1e-8)
    assert read.links == (("nvme0", "rc0"), ("rc0", "cpu0"))


@pytest.mark.parametrize(("src", "dst", "kwargs", "message"), [
    ("card0.soc0", "card0.soc0", {}, "a route needs two different endpoints (got card0.soc0 "
                                     "twice)"),
    ("sw0", "card0.soc0", {}, "sw0 is a switch, not an endpoint: routes join SoCs, storage "
                              "devices and host memory (a socket id or 'host')"),
    ("card0.soc0", "card1.soc0", {"mode": "dma"}, "unknown route mode 'dma' (expected 'p2p' "
                                                  "or 'host')"),
    ("host", "card0.soc0", {"mode": "host"}, "mode='host' bounces between two devices; a "
                                             "transfer to or from host memory is direct "
                                             "(use mode='p2p')"),
    ("card0.soc0", "card1.soc0", {"mode": "host", "staging": "cpu7"},
     "staging must be 'src', 'dst' or a socket id (cpu0); got 'cpu7'"),
])
def test_route_errors(ultra8, src, dst, kwargs, message):
    with pytest.raises(RouteError) as info:
        ultra8.route(src, dst, **kwargs)
    assert str(info.value) == message


def test_unknown_device_is_a_topology_error(ultra8):
    with pytest.raises(simtopo.TopologyError) as info:
        ultra8.route("card9.soc0", "card0.soc0")
    assert str(info.value).startswith("unknown device 'card9.soc0' in topology 'ultra8'")
