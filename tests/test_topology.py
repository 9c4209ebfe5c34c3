"""Building topologies: the built-ins, node ids and attributes, repetition, extends, include."""

from __future__ import annotations

import pytest

import simtopo
from simtopo.constants import DEFAULT_MAX_PAYLOAD_BYTES, TLP_OVERHEAD_BYTES

from .conftest import BUILTIN, TOPOLOGIES, payload_rate, tiny_spec

GEN4_X8 = payload_rate(16e9, 8, TLP_OVERHEAD_BYTES)  # built-ins take the calibrated overhead
GEN4_X16 = payload_rate(16e9, 16, TLP_OVERHEAD_BYTES)


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: p.name)
def test_builtin_topologies_load(path):
    topo = simtopo.load_topology(path)
    assert topo.socs, "every built-in topology has SoCs"
    for soc in topo.socs:  # every SoC reaches a socket
        assert topo.graph.nodes[topo.ancestors(soc)[-1]]["kind"] == "socket"


@pytest.mark.parametrize(("name", "sockets", "switches", "cards", "socs"), [
    ("ultra8", 1, 2 + 8, 8, 32),
    ("ultra8-acs", 1, 2 + 8, 8, 32),
    ("ultra4-direct", 1, 4, 4, 16),
    ("std8", 1, 1, 8, 8),
    ("ultra16-2s", 2, 4 + 16, 16, 64),
])
def test_builtin_counts(name, sockets, switches, cards, socs):
    topo = simtopo.load_topology(TOPOLOGIES / f"{name}.yaml")
    assert (len(topo.sockets), len(topo.switches), len(topo.cards), len(topo.socs)) == (
        sockets, switches, cards, socs)


def test_ultra_card_is_placed_with_readable_ids(ultra8):
    card = ultra8.cards["card3"]
    assert card.parent == "sw0" and card.switch == "card3.sw"
    assert card.socs == ("card3.soc0", "card3.soc1", "card3.soc2", "card3.soc3")
    assert ultra8.cards["card4"].parent == "sw1"
    assert ultra8.socs[:5] == ("card0.soc0", "card0.soc1", "card0.soc2", "card0.soc3",
                               "card1.soc0")


def test_ultra_soc_numbers(ultra8):
    soc = ultra8.node("card3.soc1")
    assert soc["cores"] == 16
    assert soc["dram_bytes"] == 32e9  # 128 GB per card / 4
    assert soc["dram_bw_Bps"] == 137e9  # 548 GB/s per card / 4
    assert soc["peak_flops_per_core"]["fp16"] == pytest.approx(290e12 / 4 / 16)
    assert soc["bar_bytes"] == 2 * 2**30


def test_ultra_links_are_full_duplex_gen4(ultra8):
    graph = ultra8.graph
    for u, v in [("card3.sw", "card3.soc1"), ("card3.soc1", "card3.sw")]:
        assert graph.edges[u, v]["bw_Bps"] == pytest.approx(GEN4_X8, rel=1e-8)
    assert graph.edges["sw0", "card3.sw"]["direction"] == "down"
    assert graph.edges["card3.sw", "sw0"]["direction"] == "up"
    assert graph.edges["card3.sw", "sw0"]["bw_Bps"] == pytest.approx(GEN4_X16, rel=1e-8)


def test_standard_card_soc_hangs_off_the_server_switch():
    topo = simtopo.load_topology(TOPOLOGIES / "std8.yaml")
    assert topo.cards["card5"].switch is None
    assert topo.node("card5.soc0")["parent"] == "sw0"
    assert topo.node("card5.soc0")["cores"] == 16
    assert topo.graph.edges["sw0", "card5.soc0"]["bw_Bps"] == pytest.approx(GEN4_X8, rel=1e-8)


def test_extends_changes_only_what_it_says(ultra8, ultra8_acs):
    assert ultra8_acs.name == "ultra8-acs"
    assert all(ultra8_acs.node(s)["acs"] for s in ultra8_acs.switches)
    assert not any(ultra8.node(s)["acs"] for s in ultra8.switches)
    assert list(ultra8_acs.graph.edges) == list(ultra8.graph.edges)


def test_placement_numbering_continues_per_prefix(tiny):
    assert list(tiny.cards) == ["card0", "card1", "card2"]
    spec = tiny_spec(cards=[{"type": "duo", "parent": "sw0", "count": 2, "prefix": "acc"},
                            {"type": "solo", "parent": "sw1", "prefix": "acc"}])
    topo = simtopo.topology_from_dict(spec)
    assert list(topo.cards) == ["acc0", "acc1", "acc2"]
    assert topo.socs == ("acc0.soc0", "acc0.soc1", "acc1.soc0", "acc1.soc1", "acc2.soc0")


def test_acs_precedence(tiny):
    # placement acs > card type switch acs > platform acs
    spec = tiny_spec(platform={"acs": True},
                     cards=[{"type": "duo", "parent": "sw0", "acs": False}])
    spec["card_types"]["duo"]["switch"]["acs"] = True
    topo = simtopo.topology_from_dict(spec)
    assert topo.node("card0.sw")["acs"] is False
    assert topo.node("sw0")["acs"] is True  # platform default
    assert not tiny.node("sw0")["acs"]


def test_explicit_asymmetric_link():
    spec = tiny_spec()
    spec["switches"][1]["uplink"] = {"bandwidth_up": "10GB/s", "bandwidth_down": "5GB/s",
                                     "latency": "1us"}
    topo = simtopo.topology_from_dict(spec)
    assert topo.graph.edges["sw1", "rc0"]["bw_Bps"] == 10e9
    assert topo.graph.edges["rc0", "sw1"]["bw_Bps"] == 5e9
    assert topo.graph.edges["rc0", "sw1"]["latency_s"] == pytest.approx(1e-6)


def test_topology_pcie_defaults_apply_to_every_link():
    topo = simtopo.topology_from_dict(tiny_spec(pcie={"max_payload": 512}))
    # Gen4 x8 with MPS 512: 15.7538462 GB/s x 512/536 = 15.0484501 GB/s
    assert topo.graph.edges["card0.sw", "card0.soc0"]["bw_Bps"] == pytest.approx(
        15.0484501e9, rel=1e-8)
    assert DEFAULT_MAX_PAYLOAD_BYTES == 256


def test_include_brings_card_types(tmp_path):
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "lib.yaml").write_text(
        "card_types:\n  one:\n    name: One\n    host_link: {gen: 4, lanes: 8}\n"
        "    soc: {cores: 2, peak_flops: {fp16: 1TFLOPS}, dram: 1GB, dram_bw: 1GB/s}\n")
    (tmp_path / "t.yaml").write_text(
        "name: t\ninclude: [cards/lib.yaml]\n"
        "host: {sockets: [{id: cpu0, cores: 1, memory: 1GB, memory_bw: 1GB/s}]}\n"
        "cards: [{type: one, parent: rc0, count: 3}]\n")
    topo = simtopo.load_topology(tmp_path / "t.yaml")
    assert topo.socs == ("card0.soc0", "card1.soc0", "card2.soc0")
    assert topo.node("card1.soc0")["peak_flops_per_core"] == {"fp16": 0.5e12}


def test_card_library_loads():
    types = simtopo.load_card_library(TOPOLOGIES / "cards" / "ai100-ultra.yaml")
    assert list(types) == ["ai100-ultra"] and types["ai100-ultra"].socs == 4


def test_repr_is_one_line(ultra8):
    assert repr(ultra8) == ("<Topology ultra8: 1 socket, 10 switches, 8 cards, 32 SoCs, "
                            "2 storage devices>")
    assert "<pre>" in ultra8._repr_html_()


def test_depths_layer_the_tree(ultra8):
    depth = {n: d["depth"] for n, d in ultra8.graph.nodes(data=True)}
    assert (depth["cpu0"], depth["rc0"], depth["sw0"], depth["card0.sw"],
            depth["card0.soc0"], depth["nvme0"]) == (0, 1, 2, 3, 4, 2)
