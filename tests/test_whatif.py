"""`simtopo whatif`: elasticities against closed forms, the band against second runs, the CLI.

Cases are small enough to derive by hand: a two-op pipeline whose hand-off crawls over a
1 GB/s on-card link (the latency is that transfer, almost all of it), a llama-2-7b decode on
one SoC (every op reads DRAM: the step is DRAM time plus fixed costs), and a 2-SoC slice
P2P against host-routed on one Ultra card.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

import simtopo
from simtopo import cli
from simtopo.analysis.whatif import whatif
from simtopo.analysis.whatif_settings import extra_switch, gen5_uplinks
from simtopo.constants import DEFAULT_SOC_MODEL, LinkModel
from simtopo.errors import ConfigError
from simtopo.results.bands import UNMEASURED, value_at
from simtopo.topology.files import load_topology

from .conftest import ROOT

STEP = 0.1
TRANSFER_BYTES = 100e6
SOC_LINK_BPS = 1e9


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Op A on card0.soc0 writes 100 MB that op B on card0.soc1 needs; P2P through the
    on-card switch over two 1 GB/s SoC links (explicit bandwidth: no PCIe efficiency)."""
    folder = tmp_path_factory.mktemp("pipe")
    soc = {"cores": 16, "peak_flops": {"fp16": "72.5TFLOPS"}, "dram": "32GB",
           "dram_bw": "137GB/s"}
    topo = {"name": "slow-card",
            "host": {"sockets": [{"id": "cpu0", "cores": 8, "memory": "64GB",
                                  "memory_bw": "100GB/s"}]},
            "card_types": {"duo": {"name": "Duo", "host_link": {"gen": 4, "lanes": 16},
                                   "switch": {}, "soc_link": {"bandwidth": "1GB/s"},
                                   "socs": 2, "soc": soc}},
            "cards": [{"type": "duo", "parent": "rc0"}]}
    graph = {"name": "pipe", "nodes": [
        {"name": "A", "kind": "elementwise", "flops": 1.0, "bytes_written": TRANSFER_BYTES},
        {"name": "B", "kind": "elementwise", "flops": 1.0, "inputs": ["A"]}]}
    mdp = {"connections": [{"devices": [0, 1], "type": "p2p"}],
           "partitions": [{"name": f"P{i}", "devices": [{"deviceId": i, "numCores": 16}],
                           "nodeList": [node]} for i, node in enumerate("AB")]}
    (folder / "topo.yaml").write_text(yaml.safe_dump(topo))
    (folder / "pipe.yaml").write_text(yaml.safe_dump(graph))
    (folder / "pipe.json").write_text(json.dumps(mdp))
    (folder / "exp.yaml").write_text(yaml.safe_dump({
        "name": "pipe", "topology": "topo.yaml", "model": "pipe.yaml",
        "workload": {"kind": "inference", "batch": 1}, "plan": {"mdp": "pipe.json"}}))
    return folder / "exp.yaml"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """llama-2-7b, short: a 2-SoC slice of card0 P2P and host-routed, and one SoC."""
    path = tmp_path_factory.mktemp("small") / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "small", "topology": str(ROOT / "topologies" / "ultra4-direct.yaml"),
        "model": "llama-2-7b",
        "workload": {"batch": 1, "prompt": 64, "generate": 4, "context": 128},
        "plan": {"tp": 2, "devices": ["card0.soc0", "card0.soc1"]},
        "variants": [{"name": "tp2-p2p"}, {"name": "tp2-host", "plan": {"connection": "host"}},
                     {"name": "tp1", "plan": {"tp": 1, "devices": ["card0.soc0"]}}]}))
    return path


@pytest.fixture(scope="module")
def small_whatif(small: Path) -> Any:
    return whatif(small)


def outcomes(result: Any, variant: str) -> tuple[Any, dict[str, Any]]:
    """A variant's what-if and its outcomes by perturbation key."""
    v = next(v for v in result.variants if v.variant == variant)
    return v, {o.perturbation.key: o for o in v.outcomes}


def test_a_transfer_bound_latency_has_elasticity_minus_one_over_one_plus_step(pipe):
    v, by_key = outcomes(whatif(pipe), "pipe")
    base = v.base["latency_s"]
    # the hand-off's bandwidth term is bytes / rate; 10% more rate takes 1 - 1/1.1 of it off
    # the latency, so elasticity = -(transfer share) / 1.1 (-1/1.1 if the transfer were all)
    transfer = TRANSFER_BYTES / SOC_LINK_BPS
    assert transfer / base > 0.98
    soc = by_key["soc-link"]
    assert soc.elasticity(v.base, "latency_s") == pytest.approx(
        -(transfer / base) / (1 + STEP), rel=1e-9)
    assert soc.elasticity(v.base, "latency_s") == pytest.approx(-1 / (1 + STEP), rel=0.02)
    # throughput is 1 / latency: its gain is 1 / (1 + relative latency change) - 1
    rel = soc.relative(v.base, "latency_s")
    assert soc.gain(v.base, "inferences_per_s") == pytest.approx(1 / (1 + rel) - 1, rel=1e-9)
    assert v.outcomes[0].perturbation.key == "soc-link"  # the only big lever: ranked first
    # the hand-off stays on the card: the card's host link, host memory and the host hand-off
    # are not on its path, so they move nothing at all
    for key in ("card-link", "host-memory", "handoff"):
        assert by_key[key].elasticity(v.base, "latency_s") == 0.0
        assert by_key[key].metrics["latency_s"] == base


def test_dram_efficiency_elasticity_is_minus_the_dram_share_of_a_decode_step(small,
                                                                            small_whatif):
    plain = simtopo.run(small, ["tp1"]).variant("tp1")
    v, by_key = outcomes(small_whatif, "tp1")
    assert v.base == plain.metrics
    (soc,) = plain.socs
    # batch-1 decode reads every weight and the KV cache once: each op is DRAM-bound, so a
    # step's DRAM time is its bytes over 137 GB/s (16 cores draw all of it) x efficiency
    dram_s = soc["step_dram_bytes"] / (137e9 * DEFAULT_SOC_MODEL.dram_efficiency)
    step = plain.metrics["tpot_mean_s"]
    share = dram_s / step
    assert 0.9 < share < 1
    eff = by_key["dram-efficiency"]
    assert eff.perturbation.relative_change == pytest.approx(STEP)
    # DRAM time / 1.1, the rest unchanged: elasticity = -share / 1.1
    assert eff.elasticity(v.base, "tpot_mean_s") == pytest.approx(-share / (1 + STEP), rel=1e-6)


def test_the_band_brackets_the_plain_speedup_and_matches_runs_with_the_link_model(small,
                                                                                 small_whatif):
    (pair,) = simtopo.run(small, ["tp2-p2p", "tp2-host"]).comparisons()
    (band,) = small_whatif.bands
    assert (band.p2p, band.host) == ("tp2-p2p", "tp2-host")
    for metric, speedup in band.base.items():
        assert speedup == pair[f"{metric}_speedup"]
        low, high = band.span(metric)
        assert low <= speedup <= high
    rows = {r.key: r for r in band.rows}
    # a second method: the constants the link model holds, through the link model (the
    # topology leaves them to it); relative ranges scale the value in effect
    model_keys = {"handoff_s": "handoff_s", "dma_setup": "dma_setup_s",
                  "collective_launch": "collective_launch_s",
                  "collective_step": "collective_step_s"}
    for item in UNMEASURED:
        if item.key not in model_keys:
            continue
        name = model_keys[item.key]
        for end, point in zip(("low", "high"), rows[item.key].points, strict=True):
            value = value_at(item, end, getattr(LinkModel(), name))
            model = LinkModel().with_values(**{name: value})
            (again,) = simtopo.run(small, ["tp2-p2p", "tp2-host"], link_model=model,
                                   band=False).comparisons()
            for metric in band.base:
                assert point.speedups[metric] == pytest.approx(again[f"{metric}_speedup"],
                                                               rel=1e-12)
    # the corners are the two ends `simtopo run` bands every headline with
    (pair_band,) = simtopo.run(small, ["tp2-p2p", "tp2-host"]).bands
    favour_host, favour_p2p = rows["corners"].points
    for metric in band.base:
        assert pair_band[f"{metric}_speedup_band"] == sorted(
            [favour_host.speedups[metric], favour_p2p.speedups[metric]])
    # P2P between two SoCs of one card turns at the on-card switch: refusing P2P at the root
    # complex changes nothing; hand-offs only slow the host-routed side
    (refused,) = rows["rc_p2p"].points
    assert refused.speedups == band.base
    at_5us, at_50us = rows["handoff_s"].points
    assert at_5us.speedups["tpot_mean_s"] < band.base["tpot_mean_s"] \
        < at_50us.speedups["tpot_mean_s"]


def test_gen5_doubles_a_gen4_uplink_and_one_more_switch_takes_half_its_cards():
    topo = load_topology(ROOT / "topologies" / "ultra8.yaml")
    gen5 = gen5_uplinks(topo, DEFAULT_SOC_MODEL)
    assert not isinstance(gen5, str)
    new = gen5.setting.topology.graph
    # same encoding (128b/130b) and packet overhead: Gen5 is exactly twice Gen4 per lane
    for sw in ("sw0", "sw1"):
        assert new.edges[sw, "rc0"]["bw_Bps"] == 2 * topo.graph.edges[sw, "rc0"]["bw_Bps"]
        assert new.edges["rc0", sw]["gen"] == 5
    assert new.edges["sw0", "card0.sw"]["bw_Bps"] == topo.graph.edges["sw0", "card0.sw"]["bw_Bps"]
    # an 8-SoC slice on card0-card1 behind sw0: one used and one idle card move
    slice8 = SimpleNamespace(plan=SimpleNamespace(replicas=[[SimpleNamespace(
        devices=[f"card{c}.soc{s}" for c in (0, 1) for s in range(4)])]]), links=[])
    split = extra_switch(topo, ROOT / "topologies" / "ultra8.yaml", slice8, DEFAULT_SOC_MODEL)
    assert not isinstance(split, str)
    after = split.setting.topology
    parents = {c.id: c.parent for c in after.cards.values()}
    assert parents == {"card0": "sw0", "card1": "sw0-b", "card2": "sw0", "card3": "sw0-b",
                       "card4": "sw1", "card5": "sw1", "card6": "sw1", "card7": "sw1"}
    assert after.socs == topo.socs  # every SoC keeps its id and place in the order
    assert after.graph.edges["sw0-b", "rc0"]["bw_Bps"] == topo.graph.edges["sw0", "rc0"]["bw_Bps"]
    assert after.source == topo.source  # nothing refers to the temporary file


def test_one_more_switch_for_a_host_routed_slice_equals_a_gen5_uplink(tmp_path):
    # host-staged, every SoC's copies to and from host memory share its server switch's
    # uplink; 8 SoCs on each of two Gen4 uplinks get the rates 16 SoCs get on one Gen5 uplink
    # (twice Gen4), hop for hop (a tree of bounces would pair SoCs across the two switches
    # differently from one)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "u8", "topology": str(ROOT / "topologies" / "ultra8.yaml"),
        "model": "llama-2-7b",
        "workload": {"batch": 1, "prompt": 64, "generate": 4, "context": 128},
        "plan": {"tp": 16, "connection": "host"},
        "transfer": {"host_allreduce": "host-staged"}}))
    v, by_key = outcomes(whatif(path, with_band=False), "u8")
    assert "card2, card3: sw0 -> new sw0-b" in by_key["extra-switch"].perturbation.changed
    for metric in v.metrics:
        assert by_key["extra-switch"].metrics[metric] == pytest.approx(
            by_key["gen5-uplinks"].metrics[metric], rel=1e-12)
    assert by_key["extra-switch"].gain(v.base, "ttft_s") > 0.1


def test_ranking_notes_and_determinism(pipe, small_whatif):
    v, _ = outcomes(small_whatif, "tp2-host")
    gains = [o.gain(v.base, "tpot_mean_s") for o in v.outcomes]
    assert gains == sorted(gains, reverse=True)
    # ultra4-direct has no server switch: no Gen5 uplink and no switch to split
    assert any(n.startswith("Gen5 uplinks: no server switch") for n in v.notes)
    assert any(n.startswith("one more switch: no server switch") for n in v.notes)
    assert whatif(pipe).to_json() == whatif(pipe).to_json()
    with pytest.raises(ConfigError, match="step must be between 0 and 1"):
        whatif(pipe, step=1.5)


def _main(argv: list[str]) -> int:
    return cli.main(argv)


def test_cli_tables_json_and_a_one_line_error(pipe, capsys):
    assert _main(["whatif", str(pipe)]) == 0
    out = capsys.readouterr().out
    assert "pipe: ranked by latency" in out and "SoC links (on-card switch to SoC) +10%" in out
    assert "no P2P/host pair" in out
    assert _main(["whatif", str(pipe), "--json", "--step", "0.2"]) == 0
    data = json.loads(capsys.readouterr().out)
    (variant,) = data["variants"]
    assert data["step"] == 0.2 and variant["ranking"][0]["key"] == "soc-link"
    assert variant["ranking"][0]["metrics"]["latency_s"]["elasticity"] == pytest.approx(
        -1 / 1.2, rel=0.02)
    assert _main(["whatif", str(pipe), "--variant", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ") and "unknown variant 'nope'" in err and "pipe" in err


def test_each_constant_moves_the_tpot_speedup_the_way_the_band_assumes(small_whatif):
    """`simtopo run` bands a headline by setting every constant at the end that favours one
    path at once; each constant alone (a second method, one run per end) must move the TPOT
    speed-up that way, or not at all."""
    (band,) = small_whatif.bands
    rows = {r.key: r for r in band.rows}
    for item in UNMEASURED:
        low, high = (p.speedups["tpot_mean_s"] for p in rows[item.key].points)
        raised, lowered = (high, low) if item.raises == "high" else (low, high)
        assert raised >= lowered * (1 - 1e-9), (item.key, low, high)
