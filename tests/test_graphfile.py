"""Hand-written YAML graphs."""

from __future__ import annotations

import pytest

from simtopo import ConfigError
from simtopo.constants import OP_LAUNCH_S
from simtopo.workload.graphfile import load_graph

from .conftest import ROOT


def test_pipelined_example_graph():
    graph = load_graph(ROOT / "experiments" / "mdp" / "pipelined-graph.yaml")
    assert len(graph) == 13 and next(iter(graph)) == "Add_1105"
    assert graph.edges["Add_1105", "Div_1115"]["bytes"] == 8 * 2**20


@pytest.mark.parametrize(("nodes", "message"), [
    ("  - {name: a}\n  - {name: a}\n", "t.yaml:3: nodes[1].name: duplicate node name 'a' "
                                       "(also nodes[0])"),
    ("  - {name: a, inputs: [z]}\n", "t.yaml:2: nodes[0].inputs[0]: unknown input 'z' (no node "
                                     "has that name)"),
    ("  - {name: a, inputs: [b]}\n  - {name: b, inputs: [a]}\n",
     "t.yaml:1: nodes: the graph has a cycle: a -> b -> a"),
    ("  - {name: a, flops: -1}\n", "t.yaml:2: nodes[0].flops: expected greater than or equal "
                                   "to 0 (got -1)"),
])
def test_bad_graphs(tmp_path, monkeypatch, nodes, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text("nodes:\n" + nodes)
    with pytest.raises(ConfigError) as info:
        load_graph("t.yaml")
    assert str(info.value) == message


def _graph_run(tmp_path, graph_batch, batch, micro):
    import yaml

    from simtopo.results.run import run

    text = (ROOT / "experiments" / "mdp" / "pipelined-graph.yaml").read_text()
    (tmp_path / "g.yaml").write_text(text.replace("\nnodes:", f"\nbatch: {graph_batch}\nnodes:"))
    (tmp_path / "e.yaml").write_text(yaml.safe_dump({
        "name": "e", "topology": str(ROOT / "topologies" / "ultra8.yaml"), "model": "g.yaml",
        "workload": {"kind": "inference", "batch": batch, "micro_batches": micro},
        "plan": {"mdp": str(ROOT / "experiments" / "mdp" / "mdp_pipelined.json")}}))
    return run(tmp_path / "e.yaml", band=False).variants[0].metrics


def test_a_graph_declares_the_batch_of_its_pass(tmp_path):
    """Each micro-batch is one pass of the graph: the same passes reported for a graph that
    declares batch 4 serve 4 times the samples (the ops, and so the times, are the same)."""
    assert load_graph(ROOT / "experiments" / "mdp" / "pipelined-graph.yaml").graph["batch"] == 1
    one = _graph_run(tmp_path, 1, 2, 2)
    four = _graph_run(tmp_path, 4, 8, 2)
    assert four["latency_s"] == one["latency_s"]
    assert four["inferences_per_s"] == pytest.approx(4 * one["inferences_per_s"], rel=1e-12)
    assert four["inferences_per_s"] * four["latency_s"] == pytest.approx(8, rel=1e-12)


def test_a_batch_the_graph_does_not_process_is_refused(tmp_path):
    """A batch-4 graph asked for batch 8 in one micro-batch would report twice the samples it
    simulated: refused, naming the key and what would be right."""
    with pytest.raises(ConfigError) as info:
        _graph_run(tmp_path, 4, 8, 1)
    assert str(info.value) == (
        f"{tmp_path / 'e.yaml'}: workload.batch: variant 'e': {tmp_path / 'g.yaml'} processes "
        "4 sample(s) a pass (the graph's 'batch:'), so 1 micro-batch(es) make a batch of 4, "
        "not 8")


def _spec_run(tmp_path, plan, workload=None):
    import yaml

    from simtopo.results.run import run

    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "name": "s", "topology": str(ROOT / "topologies" / "ultra8.yaml"),
        "model": str(ROOT / "experiments" / "mdp" / "pipelined-graph.yaml"),
        "workload": {"kind": "inference", "batch": 1, **(workload or {})}, "plan": plan}))
    return run(tmp_path / "s.yaml", band=False).variants[0]


def test_a_graph_runs_from_a_parallel_spec_without_an_mdp_config(tmp_path):
    """One SoC, replicas and a pipeline, no MDP file: replicas that share nothing serve
    R times the samples in the same time, and a pipeline's stages split the ops (their
    compute adds up to the one SoC's, plus a launch for the first op of each later stage: its
    producer ran on another SoC, so it cannot fuse into it)."""
    one = _spec_run(tmp_path, {})
    four = _spec_run(tmp_path, {"replicas": 4})
    assert four.metrics["latency_s"] == one.metrics["latency_s"]
    assert four.metrics["inferences_per_s"] == pytest.approx(
        4 * one.metrics["inferences_per_s"], rel=1e-12)
    piped = _spec_run(tmp_path, {"pp": 4}, {"batch": 4, "micro_batches": 4})
    stages = [s.compute_s for s in piped.profiles["forward"].stages]
    assert len(stages) == 4 and all(s > 0 for s in stages)
    assert sum(stages) == pytest.approx(one.profiles["forward"].stages[0].compute_s
                                        + 3 * OP_LAUNCH_S, rel=1e-12)


@pytest.mark.parametrize(("plan", "message"), [
    ({"tp": 2}, "tensor slicing a graph over 2 devices needs rules that split some of its "
                "GEMMs (plan: {rules: {'MatMul_*': M}}); as it is, every device would compute "
                "every op"),
    ({"tp": 2, "rules": {"MatMul_*": "M"}}, "as it is, every device would compute every op"),
    ({"tp": 2, "mode": "batch"}, "batch mode splits the batch, but a graph's pass has a fixed "
                                 "batch (give the graph that batch and use replicas)"),
    ({"pp": 14}, "a pipeline of 14 stages needs at least 14 ops (mdp-pipelined-example has 13)"),
])
def test_what_a_parallel_spec_cannot_do_with_a_graph(tmp_path, plan, message):
    from simtopo import PlanError

    with pytest.raises(PlanError) as info:
        _spec_run(tmp_path, plan)
    assert str(info.value).endswith(message)


def test_replicas_of_an_mdp_config_take_the_next_socs(tmp_path, ultra8):
    """Replica r maps the config's logical devices onto the next SoCs: a one-device config
    four times serves four times the samples of one, on four SoCs in order."""
    import json

    (tmp_path / "one.json").write_text(json.dumps({"partitions": [
        {"name": "p0", "devices": [{"deviceId": 0, "numCores": 16}]}]}))
    mdp = str(tmp_path / "one.json")
    one = _spec_run(tmp_path, {"mdp": mdp})
    four = _spec_run(tmp_path, {"mdp": mdp, "replicas": 4})
    assert [r[0].devices for r in four.plan.replicas] == [(s,) for s in ultra8.socs[:4]]
    assert four.metrics["inferences_per_s"] == pytest.approx(
        4 * one.metrics["inferences_per_s"], rel=1e-12)
    from simtopo import PlanError

    # the device list is checked as a parallel spec's is (map_devices)
    with pytest.raises(PlanError) as info:
        _spec_run(tmp_path, {"mdp": mdp, "replicas": 33})
    assert str(info.value).endswith("variant 's': the plan needs 33 SoCs (33 replica(s) of an "
                                    "MDP config over 1 device(s)); ultra8 has 32")
    twice = [ultra8.socs[0], ultra8.socs[0]]
    with pytest.raises(PlanError) as info:
        _spec_run(tmp_path, {"mdp": mdp, "replicas": 2, "devices": twice})
    assert str(info.value).endswith("variant 's': a device is listed twice")
    with pytest.raises(PlanError) as info:
        _spec_run(tmp_path, {"mdp": mdp, "devices": ["card0.sw"]})
    assert str(info.value).endswith("variant 's': device card0.sw is a switch, not a SoC")
    # sparse device ids: a config over devices 0 and 2 spans 3 SoCs a replica
    (tmp_path / "sparse.json").write_text(json.dumps({"partitions": [
        {"name": "p0", "devices": [{"deviceId": 0, "numCores": 16}], "nodeList": ["Add_1105"]},
        {"name": "p1", "devices": [{"deviceId": 2, "numCores": 16}],
         "nodeList": list(load_graph(ROOT / "experiments" / "mdp" / "pipelined-graph.yaml"))[1:]},
    ]}))
    sparse = _spec_run(tmp_path, {"mdp": str(tmp_path / "sparse.json"), "replicas": 2})
    assert [[s.devices for s in r] for r in sparse.plan.replicas] == [
        [(ultra8.socs[0],), (ultra8.socs[2],)], [(ultra8.socs[3],), (ultra8.socs[5],)]]


def test_a_pipeline_over_a_graph_follows_the_file_where_the_order_is_free(tmp_path):
    """Two independent chains joining at the end: topological order alone would interleave
    them; the stages take the ops in the file's order."""
    from simtopo.plan.stages import file_order

    (tmp_path / "b.yaml").write_text("nodes:\n" + "".join(
        f"  - {{name: {n}, kind: elementwise, flops: 1e6, bytes_read: 1MB, bytes_written: 1MB"
        + (f", inputs: [{i}]" if i else "") + "}\n"
        for n, i in [("a1", ""), ("a2", "a1"), ("a3", "a2"), ("b1", ""), ("b2", "b1"),
                     ("b3", "b2"), ("c", "a3, b3")]))
    graph = load_graph(tmp_path / "b.yaml")
    assert file_order(graph) == ["a1", "a2", "a3", "b1", "b2", "b3", "c"]


def test_simtopo_plan_lays_a_graph_out_from_a_layout(capsys):
    from simtopo.cli import main

    args = ["plan", "--model", str(ROOT / "experiments" / "mdp" / "pipelined-graph.yaml"),
            "--topology", str(ROOT / "topologies" / "ultra8.yaml")]
    assert main([*args, "--pp", "2"]) == 0
    printed = capsys.readouterr().out
    # the 13 ops in two contiguous stages of the file's order, balanced by cost. Every working
    # set (16 or 24 MiB) fits in 16 cores' 128 MB of VTCM, so no op touches DRAM; Add_1105
    # has no producer and launches its own kernel (2 us), the 12 others fuse into theirs and
    # cost their vector work alone: 4.19 MFLOP at 0.75 x 72.5 TFLOP/s = 77 ns each, 0.93 us
    # together. Any split but 1 | 12 adds to the 2 us stage
    assert printed.startswith("plan for mdp-pipelined-example: 2 stage(s) x 1 device(s)")
    assert "1 ops Add_1105 .. Add_1105" in printed and "12 ops Div_1115 .. Add_3172" in printed
    # on one core (8 MB of VTCM) every op spills (Adds 24 MiB - 8 MB, Divs 16 MiB - 8 MB) and
    # none fuses: the ops are memory-bound again, and 6 | 7 and 7 | 6 tie with 5 Adds and 2
    # Divs in the heavier stage; the split keeps the first
    assert main([*args, "--pp", "2", "--cores", "1"]) == 0
    spilled = capsys.readouterr().out
    assert "6 ops Add_1105 .. Add_1790" in spilled and "7 ops Add_2473 .. Add_3172" in spilled
    assert main([*args, "--tp", "2"]) == 2
    assert "error: tensor slicing a graph over 2 devices needs rules" in capsys.readouterr().err
