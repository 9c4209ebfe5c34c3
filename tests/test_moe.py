"""Mixture-of-experts decoders: routed experts, expert parallelism and its all-to-alls, by hand."""

from __future__ import annotations

from collections import Counter

import pytest

from simtopo import PlanError
from simtopo.plan.stages import make_plan
from simtopo.spec.experiment import PlanSpec
from simtopo.workload.decoders import load_model
from simtopo.workload.opgraph import Precision, build_graph, decode_shape, experts_touched

MIXTRAL = load_model("mixtral-8x7b")
# one expert: a gated FFN of 4096 x 2 x 14336 up and 14336 x 4096 down, fp16
EXPERT_BYTES = 3 * 4096 * 14336 * 2


def test_experts_touched_closed_form():
    assert experts_touched(8, 2, 1) == pytest.approx(2.0)  # one token: its two experts
    assert experts_touched(8, 2, 2) == pytest.approx(8 * (1 - (6 / 8) ** 2))
    assert experts_touched(64, 6, 10_000) == pytest.approx(64.0)  # every expert, eventually


def test_one_soc_reads_the_experts_a_decode_step_touches():
    graph = build_graph(MIXTRAL, decode_shape(1, 0, compiled_context=1))
    op = graph.nodes["layers.0.moe.experts"]["op"]
    assert op.weights_read_bytes == pytest.approx(2 * EXPERT_BYTES)
    assert op.stored_bytes == pytest.approx(8 * EXPERT_BYTES)
    # one token through 2 experts: 2 x (2 x 4096 x 28672 + 2 x 14336 x 4096 + 5 x 14336)
    assert op.flops == pytest.approx(2 * (2 * 4096 * 28672 + 2 * 14336 * 4096 + 5 * 14336))
    assert "layers.0.mlp.up" not in graph  # no dense FFN beside Mixtral's experts


def test_deepseek_has_a_dense_first_layer_and_shared_experts():
    m = load_model("deepseek-moe-16b")
    graph = build_graph(m, decode_shape(1, 0, compiled_context=1))
    assert "layers.0.moe.experts" not in graph
    assert graph.nodes["layers.0.mlp.up"]["op"].n_out == 2 * 10944
    # layers 1..27: 64 routed experts beside a shared FFN of 2 x 1408
    assert graph.nodes["layers.1.mlp.up"]["op"].n_out == 2 * 2 * 1408
    assert graph.nodes["layers.1.moe.experts"]["op"].extra["experts"] == 64


def test_expert_parallel_decode_by_hand(ultra8):
    graph = build_graph(MIXTRAL, decode_shape(1, 0, compiled_context=1))
    plan = make_plan(graph, MIXTRAL, ultra8, PlanSpec(tp=8))
    shard = plan.shards["layers.0.moe.experts"]
    # one token, two experts, one per SoC: the busiest SoC runs one whole expert on one token
    token = 4096 * 2
    assert shard.bytes == pytest.approx(EXPERT_BYTES + 2 * token)
    assert shard.stored_bytes == pytest.approx(EXPERT_BYTES)
    kinds = Counter(c.kind for c in plan.comms)
    # the residual stream is split by token: per layer the attention output's partial sums
    # are reduce-scattered into it, the QKV projection all-gathers its input, and the experts
    # dispatch and combine by all-to-all; plus the embedding's reduce-scatter, the LM head's
    # gather of its input and the logits' gather
    assert kinds == {"reduce_scatter": 33, "all_gather": 34, "all_to_all": 64}
    a2a = next(c for c in plan.comms if c.kind == "all_to_all")
    assert a2a.bytes == pytest.approx(1 / 8 * 2 * token)  # a SoC's share of tokens x k


def test_the_all_reduce_split_has_no_all_to_all(ultra8):
    graph = build_graph(MIXTRAL, decode_shape(4, 0, compiled_context=1))
    plan = make_plan(graph, MIXTRAL, ultra8, PlanSpec(tp=8, rules={"*.moe.experts": "K"}))
    kinds = Counter(c.kind for c in plan.comms)
    assert kinds["all_to_all"] == 0
    assert kinds["all_reduce"] == 1 + 2 * 32  # embedding; attention and experts per layer


def test_imbalance_loads_the_busiest_device(ultra8):
    graph = build_graph(MIXTRAL, decode_shape(64, 0, compiled_context=1))
    even = make_plan(graph, MIXTRAL, ultra8, PlanSpec(tp=8)).shards["layers.0.moe.experts"]
    skew = make_plan(graph, MIXTRAL, ultra8,
                     PlanSpec(tp=8, expert_imbalance=2.0)).shards["layers.0.moe.experts"]
    # 64 tokens x 2 experts / 8 SoCs = 16 pairs each; the busiest of a skewed router gets 32
    assert skew.flops == pytest.approx(2 * even.flops)
    assert skew.activation_bytes == pytest.approx(2 * even.activation_bytes)


def test_experts_must_divide_over_the_devices(ultra8):
    # heads and KV heads that allow 16 devices; 8 experts do not
    model = MIXTRAL.model_copy(update={"heads": 48, "kv_heads": 16, "head_dim": 128})
    with pytest.raises(PlanError, match="8 experts do not divide over 16 devices"):
        make_plan(build_graph(model, decode_shape(1, 0, compiled_context=1)), model, ultra8,
                  PlanSpec(tp=16))


def test_mxfp6_experts_expand_what_they_read(ultra8):
    graph = build_graph(MIXTRAL, decode_shape(1, 0, compiled_context=1),
                        Precision(weights="mxfp6"))
    plan = make_plan(graph, MIXTRAL, ultra8, PlanSpec(tp=8))
    assert plan.shards["layers.0.moe.experts"].mxfp6_weights == pytest.approx(3 * 4096 * 14336)


def test_batch_mode_reads_the_experts_its_own_tokens_touch(ultra8):
    graph = build_graph(MIXTRAL, decode_shape(8, 0, compiled_context=1))
    plan = make_plan(graph, MIXTRAL, ultra8, PlanSpec(tp=8, mode="batch"))
    # each SoC holds every expert and decodes 1 of the 8 sequences: 2 experts touched
    shard = plan.shards["layers.0.moe.experts"]
    assert shard.weights_read_bytes == pytest.approx(2 * EXPERT_BYTES)


def test_e_is_refused_on_a_gemm(ultra8):
    graph = build_graph(MIXTRAL, decode_shape(1, 0, compiled_context=1))
    with pytest.raises(PlanError, match=r"rule layers.0.attn.qkv=E: E splits routed experts"):
        make_plan(graph, MIXTRAL, ultra8, PlanSpec(tp=8, rules={"*.attn.qkv": "E"}))
