"""Device fabrics beside the PCIe tree: routes, the path matrix, rings over the fabric."""

from __future__ import annotations

import re

import networkx as nx
import pytest

from simtopo.engine.collectives import ring_order
from simtopo.engine.idle_collective import run_collective
from simtopo.errors import PlanError, TopologyError
from simtopo.topology.fabric import fabric_ring, port_runs
from simtopo.topology.files import load_topology
from simtopo.topology.matrix import path_matrix

from .conftest import TOPOLOGIES

# four AI 100 Standard cards of std8 joined in a ring 0 - 2 - 1 - 3 - 0 (not the tree order)
RING = [("card0", "card2"), ("card2", "card1"), ("card1", "card3"), ("card3", "card0")]
BW, LATENCY = 50e9, 1e-6
S = 64e6


def fabric_topology(tmp_path, links=RING, extra: str = ""):
    rows = "".join(f"  - {{between: [{a}, {b}], bandwidth: 50GB/s, latency: 1us, "
                   f"kind: bridge}}\n" for a, b in links)
    path = tmp_path / "fab.yaml"
    path.write_text(f"extends: {(TOPOLOGIES / 'std8.yaml').resolve()}\nname: std8-fab\n"
                    f"fabric:\n{rows}{extra}")
    return load_topology(path)


def test_a_route_takes_the_fabric_before_the_switch(tmp_path):
    topo = fabric_topology(tmp_path)
    over = topo.route("card0.soc0", "card2.soc0")
    assert (over.path_class, over.nodes, over.bottleneck_Bps, over.latency_s) == (
        "fabric", ("card0.soc0", "card2.soc0"), BW, LATENCY)
    # a pair no link joins keeps the tree's route; host-routed copies never use the fabric
    assert topo.route("card0.soc0", "card1.soc0").path_class == "switch"
    bounce = topo.route("card0.soc0", "card2.soc0", mode="host")
    assert bounce.path_class == "host" and "sw0" in {u for u, _ in bounce.links}
    assert ("card0.soc0", "card2.soc0") not in bounce.links


def test_the_path_matrix_agrees_with_every_route(tmp_path):
    topo = fabric_topology(tmp_path)
    matrix = path_matrix(topo)
    for a in topo.socs:
        for b in topo.socs:
            if a == b:
                continue
            r = topo.route(a, b)
            assert matrix.class_of(a, b) == r.path_class, (a, b)
            i, j = matrix.index(a), matrix.index(b)
            assert matrix.bottleneck_Bps[i, j] == pytest.approx(r.bottleneck_Bps)
            assert matrix.latency_s[i, j] == pytest.approx(r.latency_s)
    assert matrix.counts()["fabric"] == 2 * len(RING)


def test_a_ring_all_reduce_runs_over_the_fabric_ring(tmp_path):
    topo = fabric_topology(tmp_path)
    group = ["card0.soc0", "card1.soc0", "card2.soc0", "card3.soc0"]
    assert ring_order(topo, group) == ["card0.soc0", "card2.soc0", "card1.soc0", "card3.soc0"]
    params = topo.transfer.model_copy(update={
        "collective_launch": 0.0, "collective_step": 0.0, "duplex_efficiency": 1.0,
        "host_duplex_efficiency": 1.0, "reduction_traffic": 0.0})
    result = run_collective(topo, "all_reduce", group, S, algorithm="ring", params=params)
    n = 4  # 2 (n - 1) steps of S / n over a 50 GB/s link each, 1 us apiece
    assert result.time_s == pytest.approx(2 * (n - 1) * (LATENCY + S / (n * BW)), rel=1e-9)
    # the same ring without the fabric crosses the 13 GB/s PCIe links of the switch
    plain = load_topology(TOPOLOGIES / "std8.yaml")
    slower = run_collective(plain, "all_reduce", group, S, algorithm="ring",
                            params=plain.transfer.model_copy(update=dict(params)))
    assert slower.time_s > 3 * result.time_s


def test_a_torus_has_a_ring_and_a_chain_has_none():
    torus = nx.DiGraph()
    for r in range(4):
        for c in range(4):
            for v in (r * 4 + (c + 1) % 4, ((r + 1) % 4) * 4 + c):
                torus.add_edge(r * 4 + c, v, direction="fabric")
                torus.add_edge(v, r * 4 + c, direction="fabric")
    nx.set_node_attributes(torus, "soc", "kind")
    ring = fabric_ring(torus, list(range(16)))
    assert sorted(ring) == list(range(16))
    assert all(torus.has_edge(a, b) for a, b in zip(ring, ring[1:] + ring[:1], strict=True))
    chain = nx.DiGraph([(0, 1), (1, 0), (1, 2), (2, 1)])
    nx.set_edge_attributes(chain, "fabric", "direction")
    nx.set_node_attributes(chain, "soc", "kind")
    assert fabric_ring(chain, [0, 1, 2]) is None


@pytest.mark.parametrize("links, message", [
    ([("card0", "nowhere")], "fabric link end 'nowhere' is not a SoC, a card or a fabric "
                             "switch of this topology"),
    ([("card0", "card0.soc0")], "fabric link 0 joins card0.soc0 to itself"),
    ([("card0", "card1"), ("card1.soc0", "card0")], "fabric link 1 joins card1.soc0 and "
                                                    "card0.soc0 again (fabric[0] already "
                                                    "does"),
])
def test_bad_fabric_links_are_refused_with_their_key_path(tmp_path, links, message):
    with pytest.raises(TopologyError) as err:
        fabric_topology(tmp_path, links)
    assert message in str(err.value) and "fabric" in str(err.value)


def ultra8_fabric(tmp_path, rows: str):
    path = tmp_path / "u.yaml"
    path.write_text(f"extends: {(TOPOLOGIES / 'ultra8.yaml').resolve()}\nname: u\nfabric:\n"
                    + rows)
    return load_topology(path)


def test_a_link_between_cards_of_several_socs_serves_all_their_socs(tmp_path):
    # the logical cores of a chip share its links: card0's four SoCs reach card1's over one
    topo = ultra8_fabric(tmp_path, "  - {between: [card0, card1], bandwidth: 10GB/s, "
                                   "latency: 2us}\n")
    graph = topo.graph
    over = topo.route("card0.soc1", "card1.soc2")
    assert over.path_class == "fabric"
    assert over.nodes == ("card0.soc1", "card0.sw", "card1.sw", "card1.soc2")
    on_card = graph.edges["card0.soc1", "card0.sw"]
    assert over.bottleneck_Bps == min(on_card["bw_Bps"], 10e9,
                                      graph.edges["card1.sw", "card1.soc2"]["bw_Bps"])
    assert over.latency_s == pytest.approx(
        2e-6 + on_card["latency_s"] + graph.edges["card1.sw", "card1.soc2"]["latency_s"]
        + graph.nodes["card0.sw"]["hop_latency_s"] + graph.nodes["card1.sw"]["hop_latency_s"])
    assert topo.route("card0.soc1", "card0.soc2").path_class == "card"  # inside the chip
    assert topo.route("card0.soc1", "card2.soc0").path_class != "fabric"
    matrix = path_matrix(topo)
    for a in topo.socs:
        for b in topo.socs:
            if a != b:
                r, i, j = topo.route(a, b), matrix.index(a), matrix.index(b)
                assert matrix.class_of(a, b) == r.path_class, (a, b)
                assert matrix.bottleneck_Bps[i, j] == pytest.approx(r.bottleneck_Bps)
                assert matrix.latency_s[i, j] == pytest.approx(r.latency_s)
    assert matrix.counts()["fabric"] == 2 * 4 * 4
    # a ring through both cards: on-card steps, and the link twice (there and back)
    group = [*topo.cards["card0"].socs, *topo.cards["card1"].socs]
    ring = ring_order(topo, group)
    steps = [topo.route(a, b).path_class for a, b in zip(ring, ring[1:] + ring[:1],
                                                             strict=True)]
    assert sorted(ring) == sorted(group) and steps.count("fabric") == 2
    assert set(steps) == {"fabric", "card"}


@pytest.mark.parametrize("rows, message", [
    ("  - {between: [card0, card1], bandwidth: 10GB/s}\n"
     "  - {between: [card0.soc0, card2.soc0], bandwidth: 10GB/s}\n",
     "fabric link end 'card0.soc0' is a SoC of card 'card0', which other fabric links join as "
     "a whole: name the card in both"),
    ("  - {between: [card0.soc0, card2.soc0], bandwidth: 10GB/s}\n"
     "  - {between: [card0, card1], bandwidth: 10GB/s}\n",
     "fabric link end 'card0' is a card one of whose SoCs other fabric links join: name the "
     "card in both"),
    ("  - {between: [card0, card0.soc1], bandwidth: 10GB/s}\n",
     "fabric link 0 joins card0.sw and card0.soc1, which the tree already joins (a card and "
     "its own SoC)"),
])
def test_a_card_is_joined_whole_or_by_its_socs_not_both(tmp_path, rows, message):
    with pytest.raises(TopologyError, match=re.escape(message)):
        ultra8_fabric(tmp_path, rows)


TRN2 = TOPOLOGIES / "trn2-16.yaml"


def trn2_experiment(tmp_path, topology=TRN2):
    path = tmp_path / "trn.yaml"
    path.write_text(f"name: trn\ntopology: {topology}\nmodel: llama-3-70b\n"
                    "workload: {kind: llm, batch: 1, prompt: 128, generate: 8, precision: bf16,"
                    " activations: bf16}\nplan: {tp: 16}\n"
                    "variants: [{name: p2p}, {name: host, plan: {connection: host}}]\n")
    return path


def test_trn2_neuronlink_is_a_4x4_torus_with_a_ring_through_all_16():
    topo = load_topology(TRN2)
    links = [(u, v) for u, v, d in topo.graph.edges(data=True) if d["direction"] == "fabric"]
    assert len(links) == 2 * 32  # 16 chips x 4 neighbours / 2, both directions
    assert all(topo.graph.out_degree(d) - 1 == 4 for d in topo.socs)  # 4 links and the parent
    ring = ring_order(topo, list(topo.socs))
    assert all(topo.route(a, b).path_class == "fabric"
               for a, b in zip(ring, ring[1:] + ring[:1], strict=True))


def test_a_tensor_parallel_plan_over_neuronlink_needs_no_tree_p2p(tmp_path):
    # the tree refuses P2P between switches (root_complex_p2p off): only the torus ring
    # joins the 16 chips; the ring all-reduces over it beat the host-routed ones
    import simtopo
    from simtopo.calibration.bench import p2p_refusal

    result = simtopo.run(trn2_experiment(tmp_path), band=False)
    p2p, host = (v.metrics for v in result.variants)
    assert p2p["tpot_mean_s"] < host["tpot_mean_s"] / 1.5
    assert p2p_refusal(load_topology(TRN2), list(load_topology(TRN2).socs)) is None
    bare = tmp_path / "bare.yaml"
    bare.write_text(f"extends: {TRN2}\nname: trn2-16-pcie\nfabric: []\n")
    with pytest.raises(PlanError, match=r"p2p between devices 0 \(card0.soc0\) and \d+ "
                                        r"\(card\d+.soc0\) is impossible"):
        simtopo.run(trn2_experiment(tmp_path, bare), band=False, variants=["p2p"])


def test_topo_check_counts_tree_domains_and_names_the_fabric_ring():
    from simtopo.topology.checks import check_p2p_domains

    finding = check_p2p_domains(load_topology(TRN2))
    assert finding.message.startswith(
        "4 P2P domains (sizes 4, 4, 4, 4) over the tree; a device fabric of 32 links joins all "
        "16 SoCs in one ring: a tensor-sliced group of up to 16 SoCs")


def test_an_mdp_config_over_the_fabric_ring_round_trips():
    from simtopo.io.documents import Document
    from simtopo.plan.mdp import mdp_from_plan, mdp_json, parse_mdp_text, plan_from_mdp
    from simtopo.plan.stages import make_plan
    from simtopo.spec.experiment import PlanSpec
    from simtopo.workload.modelref import resolve_model
    from simtopo.workload.opgraph import Precision, decode_shape

    topo = load_topology(TRN2)
    ref = resolve_model("llama-3-70b")
    graph = ref.graph_for(decode_shape(1, 8, False), Precision(weights="bf16",
                                                               activations="bf16"))
    plan = make_plan(graph, ref.decoder, topo, PlanSpec(tp=16))
    back = plan_from_mdp(parse_mdp_text(mdp_json(mdp_from_plan(plan))), Document(None, "x"),
                         graph, ref.decoder, topo)
    assert back.p2p_pairs == plan.p2p_pairs and len(back.p2p_pairs) == 16 * 15 // 2


def test_what_if_scales_the_fabric_links_as_a_class():
    from simtopo.analysis.whatif_settings import bandwidth_perturbations

    topo = load_topology(TRN2)
    (fabric,) = [p for p in bandwidth_perturbations(topo, 0.1) if p.key == "fabric-link"]
    scaled = fabric.setting.topology.graph
    assert scaled.edges["card0.soc0", "card1.soc0"]["bw_Bps"] == pytest.approx(1.1 * 160e9)
    assert scaled.edges["card0.soc0", "sw0"]["bw_Bps"] == \
        topo.graph.edges["card0.soc0", "sw0"]["bw_Bps"]


def test_a_hierarchical_all_reduce_over_two_cards_in_closed_form(tmp_path):
    # k = 4 SoCs on each of c = 2 cards a 10 GB/s link joins: a reduce-scatter inside each card
    # (3 steps of S/4 over its on-card links), 4 rings across at once (2 steps of S/8, the
    # four sharing the link: 2.5 GB/s each), an all-gather inside each card (3 steps of S/4)
    topo = ultra8_fabric(tmp_path, "  - {between: [card0, card1], bandwidth: 10GB/s, "
                                   "latency: 2us}\n")
    group = [*topo.cards["card0"].socs, *topo.cards["card1"].socs]
    params = topo.transfer.model_copy(update={
        "collective_launch": 0.0, "collective_step": 0.0, "duplex_efficiency": 1.0,
        "host_duplex_efficiency": 1.0, "reduction_traffic": 0.0,
        "concurrency_efficiency": 1.0})
    inside = topo.route("card0.soc0", "card0.soc1")
    across = topo.route("card0.soc0", "card1.soc0")
    expected = 2 * 3 * (inside.latency_s + S / 4 / inside.bottleneck_Bps) \
        + 2 * (across.latency_s + S / 8 / (10e9 / 4))
    result = run_collective(topo, "all_reduce", group, S, algorithm="hierarchical",
                            params=params)
    assert result.algorithm == "hierarchical"
    assert result.time_s == pytest.approx(expected, rel=1e-9)
    # it takes 2 (k - 1) + 2 (c - 1) = 8 steps where a flat ring takes 2 (n - 1) = 14: with
    # only step costs left, the two compare as their step counts
    costly = params.model_copy(update={"collective_step": 1.0})
    flat = run_collective(topo, "all_reduce", group, 8, algorithm="ring", params=costly)
    tiered = run_collective(topo, "all_reduce", group, 8, algorithm="hierarchical",
                            params=costly)
    assert (round(flat.time_s), round(tiered.time_s)) == (14, 8)
    with pytest.raises(ValueError, match="a hierarchical all-reduce needs a P2P ring over two "
                                         "or more cards"):
        run_collective(topo, "all_reduce", group[:6], S, algorithm="hierarchical")


def test_trn2_lnc2_is_64_logical_cores_sharing_their_chips_links():
    topo = load_topology(TOPOLOGIES / "trn2-16-lnc2.yaml")
    chip = load_topology(TRN2)
    assert len(topo.socs) == 64 and all(len(c.socs) == 4 for c in topo.cards.values())
    # a logical core: a quarter of a chip (cards/trainium2.yaml)
    core, whole = topo.node("card0.soc0"), chip.node("card0.soc0")
    for key in ("dram_bytes", "dram_bw_Bps", "dma_bw_Bps"):
        assert core[key] * 4 == pytest.approx(whole[key]), key
    # torus neighbours' cores: over the chips' link (160 GB/s, below the on-chip 875 GB/s)
    over = topo.route("card0.soc3", "card1.soc1")
    assert (over.path_class, over.nodes[1:3], over.bottleneck_Bps) == (
        "fabric", ("card0.sw", "card1.sw"), 160e9)
    assert topo.route("card0.soc3", "card2.soc1").path_class == "switch"  # not neighbours
    assert path_matrix(topo).counts()["fabric"] == 2 * 32 * 4 * 4  # links, ways, core pairs
    # the ring through all 64 visits each chip's cores together, and the chips in a ring
    ring = ring_order(topo, list(topo.socs))
    runs = port_runs(topo.graph, ring)
    assert runs is not None and [len(r) for r in runs] == [4] * 16
    chips = [run[0].split(".")[0] for run in runs]
    assert chips == [d.split(".")[0] for d in ring_order(chip, list(chip.socs))]
    assert all(topo.route(a[-1], b[0]).path_class == "fabric"
               for a, b in zip(runs, runs[1:] + runs[:1], strict=True))


def test_a_plan_can_keep_to_the_pcie_tree_beside_a_fabric(tmp_path, monkeypatch):
    # plan.fabric false: the same machine's P2P over its tree only, exactly as the topology
    # without its fabric links gives it
    import simtopo

    fabric_topology(tmp_path)  # writes fab.yaml: std8 with a ring of bridges over card0..3
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"extends: {tmp_path / 'fab.yaml'}\nname: std8-plain\nfabric: []\n")
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: e\ntopology: {tmp_path / 'fab.yaml'}\nmodel: llama-2-13b\n"
                    "workload: {batch: 1, prompt: 64, generate: 8}\n"
                    "plan: {tp: 4, devices: [card0.soc0, card1.soc0, card2.soc0, card3.soc0]}\n"
                    "variants: [{name: bridges}, {name: pcie, plan: {fabric: false}},\n"
                    f"           {{name: plain, topology: {plain}}}]\n")
    result = simtopo.run(path, band=False)
    bridges, pcie, bare = (v.metrics for v in result.variants)
    assert pcie["tpot_mean_s"] == bare["tpot_mean_s"] and pcie["ttft_s"] == bare["ttft_s"]
    assert bridges["tpot_mean_s"] < pcie["tpot_mean_s"]
    assert result.variants[1].inputs["plan"]["fabric"] is False
    # the speed-up band's runs at the unmeasured constants' ends plan on the same tree
    path.write_text(path.read_text().replace(
        "{name: pcie, plan: {fabric: false}}", "{name: pcie, plan: {fabric: false}}, "
        "{name: pcie-host, plan: {fabric: false, connection: host}}"))
    banded = simtopo.run(path, variants=["pcie", "pcie-host"])
    (row,) = banded.bands
    assert (row["p2p"], row["host"]) == ("pcie", "pcie-host")
    low, high = row["tpot_mean_s_speedup_band"]
    assert low <= banded.variants[1].metrics["tpot_mean_s"] / pcie["tpot_mean_s"] <= high
    # what-if perturbs the fabric links of the variant that uses them, not of the one that
    # leaves them out
    from simtopo.analysis.whatif import whatif

    monkeypatch.setenv("SIMTOPO_PATHS", str(tmp_path))  # its "one more switch" extends fab.yaml
    found = whatif(path, ["bridges", "pcie"], with_band=False)
    keys = {v.variant: {o.perturbation.key for o in v.outcomes} for v in found.variants}
    assert "fabric-link" in keys["bridges"] and "fabric-link" not in keys["pcie"]


def test_a_group_on_cards_no_link_joins_has_no_hierarchical_all_reduce():
    # card0 and card2 of trn2-16-lnc2 are not torus neighbours: no ring over the fabric, so
    # the group's all-reduce is a flat ring of the tree (its pairs all P2P below sw0)
    topo = load_topology(TOPOLOGIES / "trn2-16-lnc2.yaml")
    group = [*topo.cards["card0"].socs, *topo.cards["card2"].socs]
    assert port_runs(topo.graph, ring_order(topo, group)) is None
    assert run_collective(topo, "all_reduce", group, 64e6).algorithm != "hierarchical"
    with pytest.raises(ValueError, match="a hierarchical all-reduce needs"):
        run_collective(topo, "all_reduce", group, 64e6, algorithm="hierarchical")


def switched(tmp_path, count: int = 4, bandwidth: str = "50GB/s"):
    rows = "".join(f"  - {{between: [card{k}, nvs], bandwidth: {bandwidth}, latency: 1us, "
                   "kind: nvlink}\n" for k in range(count))
    path = tmp_path / "nvs.yaml"
    path.write_text(f"extends: {(TOPOLOGIES / 'std8.yaml').resolve()}\nname: std8-nvs\n"
                    "fabric_switches: [{id: nvs, hop_latency: 100ns, kind: nvswitch}]\n"
                    f"fabric:\n{rows}")
    return load_topology(path)


def test_a_fabric_switch_joins_every_pair_it_reaches_and_a_ring_runs_through_it(tmp_path):
    topo = switched(tmp_path)
    over = topo.route("card0.soc0", "card3.soc0")
    assert (over.path_class, over.nodes, over.bottleneck_Bps) == (
        "fabric", ("card0.soc0", "nvs", "card3.soc0"), BW)
    alpha = 2 * LATENCY + 100e-9  # two links and the switch's hop
    assert over.latency_s == pytest.approx(alpha)
    assert topo.route("card0.soc0", "card4.soc0").path_class == "switch"  # not on the switch
    matrix = path_matrix(topo)
    assert matrix.counts()["fabric"] == 4 * 3
    for a in topo.socs:
        for b in topo.socs:
            if a != b:
                assert matrix.class_of(a, b) == topo.route(a, b).path_class
    # a ring of 4 through the switch: each step, every device sends S/4 up its own link and
    # receives S/4 down its own: 2 (n - 1) steps of alpha + S / (n BW), the switch non-blocking
    group = [f"card{k}.soc0" for k in range(4)]
    assert ring_order(topo, group) == group
    params = topo.transfer.model_copy(update={
        "collective_launch": 0.0, "collective_step": 0.0, "duplex_efficiency": 1.0,
        "host_duplex_efficiency": 1.0, "reduction_traffic": 0.0})
    result = run_collective(topo, "all_reduce", group, S, algorithm="ring", params=params)
    assert result.time_s == pytest.approx(6 * (alpha + S / (4 * BW)), rel=1e-9)


@pytest.mark.parametrize("extra, message", [
    ("fabric_switches: [{id: nvs}, {id: sw0}]\nfabric:\n"
     "  - {between: [card0, nvs], bandwidth: 1GB/s}\n  - {between: [card1, nvs], "
     "bandwidth: 1GB/s}\n", "fabric switch id 'sw0' is already a node of this topology"),
    ("fabric_switches: [{id: nvs}]\nfabric:\n  - {between: [card0, nvs], bandwidth: 1GB/s}\n",
     "fabric switch 'nvs' joins 1 devices: link at least two to it"),
    ("fabric_switches: [{id: a}, {id: b}]\nfabric:\n  - {between: [a, b], bandwidth: 1GB/s}\n",
     "fabric link 0 joins two fabric switches (a, b): join devices to one switch"),
    ("fabric_switches: [{id: card5}]\nfabric:\n  - {between: [card0, card5], bandwidth: "
     "1GB/s}\n", "fabric switch id 'card5' is already a node of this topology"),
    ("fabric_switches: [{id: a}, {id: b}]\nfabric:\n"
     + "".join(f"  - {{between: [card{k}, {s}], bandwidth: 1GB/s}}\n" for s in "ab"
               for k in range(3)),
     "fabric switches 'a' and 'b' both join card0.soc0, card1.soc0, card2.soc0: a route "
     "takes one switch, so model parallel planes"),
])
def test_bad_fabric_switches_are_refused(tmp_path, extra, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"extends: {(TOPOLOGIES / 'std8.yaml').resolve()}\nname: bad\n{extra}")
    with pytest.raises(TopologyError, match=re.escape(message)):
        load_topology(path)


def test_a_plan_off_the_fabric_drops_its_switches_too(tmp_path):
    from simtopo.report.draw import draw_topology

    topo = switched(tmp_path)
    tree = topo.without_fabric
    assert "nvs" not in tree.graph and "nvs" in topo.graph
    assert tree.route("card0.soc0", "card3.soc0").path_class == "switch"
    assert draw_topology(tree).get_size_inches()[1] < draw_topology(topo).get_size_inches()[1]
