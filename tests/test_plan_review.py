"""Regressions from the review of plans and memory: each case computed by hand."""

from __future__ import annotations

import json

import pytest

from simtopo import ConfigError, PlanError
from simtopo.cli import main
from simtopo.io.documents import Document
from simtopo.plan.mdp import mdp_from_plan, parse_mdp_text, validate_mdp
from simtopo.plan.memory import check_fit, memory_use
from simtopo.plan.stages import make_plan, split_layers
from simtopo.spec.experiment import PlanSpec
from simtopo.spec.model import GraphSpec
from simtopo.workload.decoders import decoder_from_dict, load_model
from simtopo.workload.graphfile import graph_from_spec
from simtopo.workload.opgraph import Precision, build_graph, decode_shape, prefill_shapes

from .conftest import TOPOLOGIES

ULTRA8 = str(TOPOLOGIES / "ultra8.yaml")


def test_prefill_activations_use_the_prefill_sizes(ultra8):
    m = load_model("llama-2-7b")
    decode = build_graph(m, decode_shape(4, 511, compiled_context=512))
    (shape,) = prefill_shapes(4, 512, compiled=False)
    prefill = build_graph(m, shape)
    plan = make_plan(decode, m, ultra8, PlanSpec(tp=4))
    (use, *_) = memory_use(plan, ultra8, [decode, prefill], batch=4, context=512)
    # the largest prefill working set: a residual add of two whole (replicated) activations
    # into a third, rows 4 x 512 by 4096, 2 bytes each (the FFN shard is smaller:
    # rows x (4096 + 2 x 11008 / 4) x 2)
    rows = 4 * 512
    assert use.activations == pytest.approx(3 * rows * 4096 * 2)
    assert use.activations > rows * (4096 + 2 * 11008 / 4) * 2


def test_embedding_shard_reads_its_rows(ultra8):
    m = load_model("llama-2-70b")
    graph = build_graph(m, decode_shape(1, 0, compiled_context=8))
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=16))
    embed = graph.nodes["embed"]["op"]
    assert plan.shards["embed"].bytes == pytest.approx(embed.bytes_read / 16
                                                       + embed.bytes_written)
    assert plan.shards["embed"].bytes > 0


def test_attention_hands_on_only_its_output(ultra8):
    m = load_model("llama-2-7b")
    graph = build_graph(m, decode_shape(1, 9, compiled_context=16))
    # the KV-cache write stays on the SoC: the edge to the o-projection is batch 1 x 4096 x 2
    assert graph.edges["layers.0.attn.core", "layers.0.attn.o"]["bytes"] == 4096 * 2
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=4, rules={"*.attn.o": "M"}))
    gathers = {c.bytes for c in plan.comms if c.kind == "all_gather"}
    assert 4096 * 2 in gathers


def test_tied_embeddings_in_a_pipeline_and_at_tp(ultra8):
    m = load_model("opt-6.7b")
    graph = build_graph(m, decode_shape(1, 0, compiled_context=8))
    table = 50272 * 4096 * 2
    plan = make_plan(graph, m, ultra8, PlanSpec(pp=2))
    # the last stage multiplies by the table too, so it holds a copy
    assert plan.shards["lm_head"].stored_bytes == pytest.approx(table)
    tp = make_plan(graph, m, ultra8, PlanSpec(tp=4))
    # a tied head splits by vocabulary like the embedding: one shard serves both
    assert tp.shards["lm_head"].split == "M" and tp.shards["lm_head"].stored_bytes == 0
    assert [c.kind for c in tp.comms if c.after == "lm_head"] == ["all_gather"]


def test_a_tied_head_reads_the_fp16_table_under_mxfp6():
    m = load_model("opt-2.7b")
    graph = build_graph(m, decode_shape(1, 0, compiled_context=8), Precision(weights="mxfp6"))
    assert graph.nodes["lm_head"]["op"].weight_bytes == 50272 * 2560 * 2


def test_kv_heads_must_divide(ultra8):
    m = decoder_from_dict({"name": "hd", "hidden": 3072, "layers": 2, "heads": 24,
                           "kv_heads": 6, "head_dim": 128, "ffn": 8192, "vocab": 1000})
    graph = build_graph(m, decode_shape(1, 0, compiled_context=8))
    with pytest.raises(PlanError) as info:
        make_plan(graph, m, ultra8, PlanSpec(tp=4))
    assert "hd has 6 KV heads, which do not divide over 4 devices" in str(info.value)


def test_refusal_searches_with_the_plans_connection(ultra8_acs):
    m = load_model("llama-2-70b")
    graph = build_graph(m, decode_shape(1, 1023, compiled_context=1024))
    plan = make_plan(graph, m, ultra8_acs, PlanSpec(tp=4, connection="host"))
    with pytest.raises(PlanError) as info:
        check_fit(plan, graph, m, ultra8_acs, 1, 1024)
    assert "smallest layouts that fit: tensor parallel (weight mode) on 8 SoCs, a pipeline " \
           "of 5 SoCs" in str(info.value)


def test_graph_gemms_split_by_rules_and_oversized_graphs_are_refused(ultra8):
    spec = GraphSpec.model_validate({"name": "g", "nodes": [
        {"name": "in", "kind": "elementwise", "bytes_written": 1024},
        {"name": "MatMul_1", "kind": "gemm", "flops": 2 * 64 * 4096 * 4096,
         "bytes_read": 4096 * 4096 * 2, "bytes_written": 64 * 4096 * 2,
         "weights": 40e9, "k_in": 4096, "n_out": 4096, "rows": 64, "inputs": ["in"]}]})
    graph = graph_from_spec(spec)
    config = parse_mdp_text(json.dumps({"partitions": [{"name": "P", "devices": [
        {"deviceId": i, "numCores": 16} for i in range(4)]}]}))
    from simtopo.plan.mdp import plan_from_mdp

    plan = plan_from_mdp(config, Document(None, "x"), graph, None, ultra8,
                         rules=(("MatMul_*", "M"),))
    assert plan.shards["MatMul_1"].stored_bytes == pytest.approx(40e9 / 4)
    whole = plan_from_mdp(config, Document(None, "x"), graph, None, ultra8)
    with pytest.raises(PlanError) as info:
        check_fit(whole, graph, None, ultra8, 1, 1)
    assert str(info.value).startswith("g does not fit on 4 SoCs per replica: card0.soc0 "
                                      "needs 41.0 GB of 32.0 GB")


def test_mdp_cannot_express_batch_mode_or_rules(ultra8):
    m = load_model("llama-2-7b")
    graph = build_graph(m, decode_shape(4, 0, compiled_context=8))
    with pytest.raises(PlanError) as info:
        mdp_from_plan(make_plan(graph, m, ultra8, PlanSpec(tp=4, mode="batch")))
    assert "cannot express tensor-parallel batch mode" in str(info.value)
    with pytest.raises(PlanError) as info:
        mdp_from_plan(make_plan(graph, m, ultra8, PlanSpec(tp=4,
                                                               rules={"lm_head": "M"})))
    assert "cannot express custom GEMM split rules (lm_head=M)" in str(info.value)


def test_mdp_messages_name_logical_ids_and_later_entries_win(ultra8_acs, ultra8):
    m = load_model("llama-2-7b")
    graph = build_graph(m, decode_shape(1, 0, compiled_context=8))

    def config(connections, ids=(0, 5)):
        return parse_mdp_text(json.dumps({"connections": connections, "partitions": [
            {"name": "P", "devices": [{"deviceId": i, "numCores": 16} for i in ids]}]}))

    with pytest.raises(PlanError) as info:
        validate_mdp(config([{"devices": [0, 5], "type": "p2p"}]), Document(None, "c"), graph,
                     ultra8_acs)
    assert "p2p between devices 0 (card0.soc0) and 5 (card1.soc1)" in str(info.value)
    overridden = [{"devices": [0, 5], "type": "p2p"}, {"devices": [0, 5], "type": "host"}]
    validate_mdp(config(overridden), Document(None, "c"), graph, ultra8_acs)
    halves = [{"devices": list(range(16)), "type": "p2p"}]
    with pytest.raises(PlanError) as info:
        validate_mdp(config(halves, ids=range(32)), Document(None, "c"), graph, ultra8)
    assert "tensor slicing over 32 devices, some of them P2P, exceeds ultra8's P2P limit" in \
        str(info.value)


@pytest.mark.parametrize(("args", "message"), [
    (["mdp", "dump", "--model", "llama-2-7b", "-o", "x.json", "--cores", "0"],
     "error: simtopo mdp dump: argument --cores: expected an integer from 1 to 4096 (got "
     "'0') (see simtopo mdp dump --help)\n"),
    (["mdp", "validate", str(TOPOLOGIES.parent / "experiments" / "mdp" / "mdp_4soc_p2p.json"),
      "--model", "llama-2-7b", "--topology", ULTRA8, "--devices", "nvme0"],
     "error: --devices: 'nvme0' names no SoC (ids look like card0.soc0)\n"),
    (["plan", "--model", "llama-2-7b", "--topology", ULTRA8, "--tp", "2", "--devices",
      "nvme0"], "error: --devices: 'nvme0' names no SoC (ids look like card0.soc0)\n"),
])
def test_cli_inputs_that_used_to_raise(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert capsys.readouterr().err == message


def test_split_layers_message():
    with pytest.raises(PlanError) as info:
        split_layers([1.0, 1.0], 3)
    assert str(info.value) == "a pipeline of 3 stages needs at least 3 layers (the model has 2)"


def test_onnx_unknown_dimension_and_names(tmp_path):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from simtopo.workload.onnx_import import load_onnx

    w = numpy_helper.from_array(np.ones((128, 8), np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 128], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="n"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="n"),
             helper.make_node("Relu", ["y"], ["z"], name="n_1")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4, 32])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [w, shape])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(path))
    # inference cannot resolve Reshape(-1) under a symbolic batch: refused, not taken as 1
    with pytest.raises(ConfigError) as info:
        load_onnx(path, {"b": 8})
    assert "tensor 'r' has a dimension ONNX shape inference could not resolve" in \
        str(info.value)
    static = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 4, 32])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [w, shape])
    onnx.save(helper.make_model(static, opset_imports=[helper.make_opsetid("", 17)]),
              str(path))
    loaded = load_onnx(path)
    assert list(loaded) == ["n", "n_1_1", "n_1"]  # the real n_1 keeps its name
    assert loaded.nodes["n_1_1"]["op"].flops == 2 * 8 * 128 * 8  # rows 8 x 4 x 32 / 128
