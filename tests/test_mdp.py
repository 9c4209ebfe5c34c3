"""MDP partition configs: the seed examples round trip; every bad config has its own error."""

from __future__ import annotations

import json

import pytest

from simtopo import ConfigError, PlanError
from simtopo.io.documents import Document
from simtopo.plan.mdp import (
    dump_mdp,
    mdp_from_plan,
    mdp_json,
    parse_mdp_text,
    plan_from_mdp,
    read_mdp,
    validate_mdp,
)
from simtopo.plan.stages import make_plan
from simtopo.spec.experiment import PlanSpec
from simtopo.workload.decoders import load_model
from simtopo.workload.graphfile import load_graph
from simtopo.workload.opgraph import build_graph, decode_shape

from .conftest import ROOT

MDP = ROOT / "experiments" / "mdp"
SEEDS = ["mdp_4soc_p2p.json", "mdp_2soc_host.json", "mdp_pipelined.json",
         "mdp_2soc_tensor_sliced.json"]


@pytest.fixture(scope="module")
def l7():
    m = load_model("llama-2-7b")
    return m, build_graph(m, decode_shape(1, 0, compiled_context=8))


@pytest.mark.parametrize("name", SEEDS)
def test_seed_examples_round_trip(name, tmp_path):
    original = json.loads((MDP / name).read_text())
    config, _ = read_mdp(MDP / name)
    assert json.loads(mdp_json(config)) == original
    (tmp_path / name).write_text(mdp_json(config))
    again, _ = read_mdp(tmp_path / name)
    assert again == config


def test_seed_examples_validate(l7, ultra8):
    m, graph = l7
    for name in ("mdp_4soc_p2p.json", "mdp_2soc_host.json", "mdp_2soc_tensor_sliced.json"):
        config, doc = read_mdp(MDP / name)
        plan = plan_from_mdp(config, doc, graph, m, ultra8)
        assert plan.stages[0].tp == len(config.partitions[0].devices)
    config, doc = read_mdp(MDP / "mdp_pipelined.json")
    pipeline = load_graph(MDP / "pipelined-graph.yaml")
    plan = plan_from_mdp(config, doc, pipeline, None, ultra8)
    assert [s.cores for s in plan.stages] == [(10,), (8,), (16,), (1,)]
    assert plan.connection(0, 2) == "p2p" and plan.connection(2, 3) == "host"
    assert plan.connection(0, 3) == "host"  # undeclared pairs go through the host


def test_plan_round_trips_through_mdp(l7, ultra8):
    m, graph = l7
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=4, pp=2))
    config = mdp_from_plan(plan)
    back = plan_from_mdp(parse_mdp_text(mdp_json(config)), Document(None, "x"), graph, m, ultra8)
    assert [(s.name, s.logical, s.cores, s.ops) for s in back.stages] == [
        (s.name, s.logical, s.cores, s.ops) for s in plan.stages]
    assert back.p2p_pairs == plan.p2p_pairs
    assert back.comms == plan.comms


def test_dump_lists_every_node(l7, ultra8):
    _, graph = l7
    config = dump_mdp(graph, cores=16)
    assert len(config.partitions) == 1 and config.partitions[0].nodeList == list(graph)
    validate_mdp(config, Document(None, "dump"), graph, ultra8)


def bad(text: str):
    return parse_mdp_text(text, name="bad.json")


PIPE = {"partitions": [
    {"name": "P0", "devices": [{"deviceId": 0, "numCores": 16}], "nodeList": ["Add_1105"]},
    {"name": "P1", "devices": [{"deviceId": 1, "numCores": 16}], "nodeList": ["Div_1115"]},
]}


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["partitions"][1]["nodeList"].append("Add_9999"),
     "bad.json: partitions[1].nodeList[12]: unknown node 'Add_9999' (not in graph "
     "mdp-pipelined-example; names look like 'Add_1105')"),
    (lambda c: c["partitions"][1]["nodeList"].append("Add_1105"),
     "bad.json: partitions[1].nodeList[12]: node 'Add_1105' is also in P0"),
    (lambda c: c["partitions"][1]["devices"][0].update(deviceId=0),
     "bad.json: partitions[1].devices[0].deviceId: device 0 is already in P0"),
    (lambda c: c["partitions"][0]["devices"][0].update(numCores=17),
     "bad.json: partitions[0].devices[0].numCores: numCores 17 exceeds the 16 cores of "
     "card0.soc0 (device 0)"),
    (lambda c: c["partitions"].reverse(),
     "bad.json: partitions: node 'Div_1115' in P1 consumes 'Add_1105' from the later P0: the "
     "partitions form a cycle (P1 -> P0 -> P1); data must flow from earlier partitions to "
     "later ones"),
    (lambda c: c["partitions"][1]["nodeList"].pop(),
     "bad.json: partitions: 1 node is in no partition (first: 'Add_3172'); every node must "
     "belong to exactly one"),
    (lambda c: c.update(connections=[{"devices": [0, 5], "type": "p2p"}]),
     "bad.json: connections[0].devices[1]: device 5 is in no partition"),
])
def test_bad_configs(change, message, ultra8):
    graph = load_graph(MDP / "pipelined-graph.yaml")
    data = json.loads(json.dumps(PIPE))
    names = list(graph)
    data["partitions"][0]["nodeList"] = names[:1]
    data["partitions"][1]["nodeList"] = names[1:]
    change(data)
    config = bad(json.dumps(data))
    with pytest.raises(PlanError) as info:
        validate_mdp(config, Document(data, "bad.json"), graph, ultra8)
    assert str(info.value) == message


def test_num_cores_zero_is_a_schema_error():
    with pytest.raises(ConfigError) as info:
        bad('{"partitions": [{"name": "P", "devices": [{"deviceId": 0, "numCores": 0}]}]}')
    assert str(info.value) == ("bad.json: partitions[0].devices[0].numCores: expected greater "
                               "than or equal to 1 (got 0)")


def test_p2p_across_an_acs_switch(l7, ultra8_acs):
    _, graph = l7
    config, doc = read_mdp(MDP / "mdp_4soc_p2p.json")
    with pytest.raises(PlanError) as info:
        validate_mdp(config, doc, graph, ultra8_acs)
    assert str(info.value).endswith(
        "connections[0]: p2p between devices 0 (card0.soc0) and 1 (card0.soc1) crosses switch "
        "card0.sw with ACS on; Qualcomm MDP P2P needs ACS off (host-routed is the alternative)")


def test_p2p_the_host_cannot_carry(l7, ultra16_2s):
    _, graph = l7
    text = json.dumps({"connections": [{"devices": [0, 1], "type": "p2p"}], "partitions": [
        {"name": "P", "devices": [{"deviceId": 0, "numCores": 16},
                                  {"deviceId": 1, "numCores": 16}]}]})
    config = bad(text)
    with pytest.raises(PlanError) as info:
        validate_mdp(config, Document(None, "bad.json"), graph, ultra16_2s,
                     devices=["card0.soc0", "card8.soc0"])
    assert "socket link cpu0-cpu1" in str(info.value)


def test_malformed_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"partitions": [}')
    with pytest.raises(ConfigError) as info:
        read_mdp(path)
    assert str(info.value).startswith(f"{path}:1: malformed JSON: ")


def test_a_mixed_partition_config_prints_each_stage_width_and_the_replication_note(
        tmp_path, capsys):
    """One 1-device stage, then a 2-device stage, of a graph without split rules: the
    summary gives both widths (not the first one twice) and says the ops run whole."""
    from simtopo.cli import main

    seed = json.loads((ROOT / "experiments" / "mdp" / "mdp_pipelined.json").read_text())
    parts = seed["partitions"]
    mixed = {"connections": [{"devices": [0, 1, 2], "type": "p2p"}], "partitions": [
        {"name": "P0", "devices": [{"deviceId": 0, "numCores": 8}],
         "nodeList": parts[0]["nodeList"]},
        {"name": "P1", "devices": [{"deviceId": 1, "numCores": 8}, {"deviceId": 2,
                                                                      "numCores": 8}],
         "nodeList": [n for p in parts[1:] for n in p["nodeList"]]}]}
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(mixed))
    assert main(["mdp", "validate", str(path), "--model",
                 str(ROOT / "experiments" / "mdp" / "pipelined-graph.yaml"), "--topology",
                 str(ROOT / "topologies" / "ultra8.yaml")]) == 0
    out = capsys.readouterr().out
    assert "plan for mdp-pipelined-example: 2 stages of 1, 2 devices, 1 replica(s)" in out
    assert ("note: without --rule (split rules) every op of a graph model runs whole on each "
            "SoC of a stage: replicated, not tensor-sliced") in out


def test_byte_columns_read_one_way(capsys):
    """model show: every size of the per-kind table in decimal units (no 768 KiB beside
    786.4 kB)."""
    from simtopo.cli import main

    assert main(["model", "show", "llama-2-7b"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ") and not line.startswith("  pass")]
    assert table and not any("iB" in line for line in table)
    assert any("786.4 kB" in line for line in table)  # the decode attention output, 768 KiB
