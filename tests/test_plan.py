"""Partition plans: shard bytes, derived collectives, modes, pipelines, mapping, refusals."""

from __future__ import annotations

from collections import Counter

import pytest

import simtopo
from simtopo import PlanError
from simtopo.plan.stages import make_plan, split_layers
from simtopo.spec.experiment import PlanSpec
from simtopo.workload.decoders import load_model
from simtopo.workload.opgraph import build_graph, decode_shape, ops, prefill_shapes

from .conftest import TOPOLOGIES


@pytest.fixture(scope="module")
def l70():
    m = load_model("llama-2-70b")
    return m, build_graph(m, decode_shape(1, 1023, compiled_context=1024))


@pytest.fixture(scope="module")
def l7():
    m = load_model("llama-2-7b")
    (shape,) = prefill_shapes(2, 128, compiled=False)
    return m, build_graph(m, shape)


def test_weight_mode_gemm_shards_are_total_over_n(l7, ultra8):
    m, graph = l7
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=4))
    for op in ops(graph):
        if op.is_gemm:
            assert plan.shards[op.name].stored_bytes == pytest.approx(op.stored_bytes / 4)
    assert plan.shards["embed"].stored_bytes == pytest.approx(32000 * 4096 * 2 / 4)


def test_replicated_kv_projections_at_16(l70, ultra8):
    m, graph = l70
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=16))
    qkv = graph.nodes["layers.0.attn.qkv"]["op"]
    # q: 8192 columns / 16; each of K and V: 1024 columns, 8 KV heads over 16 devices: each
    # device holds one head (128 columns), 2/16 of the projection
    q_cols, kv_cols = 8192 / 16, 1024 * 2 / 16
    assert plan.shards[qkv.name].stored_bytes == pytest.approx(8192 * (q_cols + 2 * kv_cols)
                                                               * 2)
    assert kv_cols / 1024 == 2 / 16
    core = plan.shards["layers.0.attn.core"]
    assert core.kv_bytes_per_position == pytest.approx(2 * 1024 * 2 / 8)  # one KV head


def test_two_all_reduces_per_layer(l7, ultra8):
    m, graph = l7
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=4))
    per_layer = Counter(c.after.rsplit(".", 1)[-1] for c in plan.comms
                        if c.after.startswith("layers."))
    assert per_layer == {"o": 32, "down": 32}
    # batch 2 x 128 tokens x hidden 4096 x 2 bytes
    assert {c.bytes for c in plan.comms if c.after.startswith("layers.")} == {2 * 128 * 4096 * 2}
    assert all(c.kind == "all_reduce" for c in plan.comms if c.after != "lm_head")
    # plus the vocabulary-parallel embedding and the LM head's vocabulary slices
    assert sorted(c.after for c in plan.comms if not c.after.startswith("layers.")) == [
        "embed", "lm_head"]


def test_the_lm_head_splits_the_vocabulary_and_gathers_the_logits(l7, ultra8):
    """DESIGN.md's rule: the LM head is an M split whose consumer (the host) needs the logits
    whole, so an all-gather of the logits follows it, not an all-reduce."""
    m, graph = l7
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=4))
    head = [c for c in plan.comms if c.after == "lm_head"]
    # logits of each sequence's last position: batch 2 x vocab 32000 x 2 bytes
    assert [(c.kind, c.bytes) for c in head] == [("all_gather", 2 * 32000 * 2)]
    assert plan.shards["lm_head"].split == "M"
    assert plan.shards["lm_head"].stored_bytes == pytest.approx(4096 * 32000 * 2 / 4)


def test_a_k_split_lm_head_all_reduces_the_partial_logits(l7, ultra8):
    m, graph = l7
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=4, rules={"lm_head": "K"}))
    head = [c for c in plan.comms if c.after == "lm_head"]
    assert [(c.kind, c.bytes) for c in head] == [("all_reduce", 2 * 32000 * 2)]
    assert plan.shards["lm_head"].stored_bytes == pytest.approx(4096 * 32000 * 2 / 4)


def test_batch_mode_has_no_per_layer_collective(l7, ultra8):
    m, graph = l7
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=2, mode="batch"))
    assert plan.comms == ()
    qkv = graph.nodes["layers.0.attn.qkv"]["op"]
    assert plan.shards[qkv.name].stored_bytes == qkv.stored_bytes  # weights replicated
    assert plan.shards[qkv.name].flops == qkv.flops / 2


@pytest.mark.parametrize("n", [2, 4])
def test_batch_mode_reads_the_weights_whole_and_its_own_part_of_the_rest(ultra8, n):
    """Batch mode over n devices: each device reads every GEMM and norm weight (replicated) and
    1/n of everything else a decode step moves: activations, KV cache, and the embedding's
    gathered rows. The embedding table itself is stored, never read whole: its lookup reads
    batch rows."""
    m = load_model("llama-2-7b")
    graph = build_graph(m, decode_shape(4, 99, compiled_context=512))
    one = make_plan(graph, m, ultra8, PlanSpec(tp=1))
    split = make_plan(graph, m, ultra8, PlanSpec(tp=n, mode="batch"))
    # weights a step reads, from the model's own numbers: every parameter but the token
    # embedding table (llama-2-7b's head is untied), fp16
    read_weights = (m.parameters() - m.vocab * m.hidden) * 2
    total_one = sum(s.bytes for s in one.shards.values())
    total_split = sum(s.bytes for s in split.shards.values())
    assert total_split == pytest.approx(read_weights + (total_one - read_weights) / n, rel=1e-12)
    embed = graph.nodes["embed"]["op"]
    assert split.shards["embed"].bytes == pytest.approx(embed.bytes / n)
    assert embed.bytes < 1e6  # 4 rows of 4096 fp16 values, their token ids and the output
    assert split.shards["embed"].activation_bytes > 0


def test_gpt_j_reduces_once_per_layer(ultra8):
    m = load_model("gpt-j-6b")
    graph = build_graph(m, decode_shape(1, 0, compiled_context=8))
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=4))
    assert Counter(c.after.rsplit(".", 1)[-1] for c in plan.comms
                   if c.after.startswith("layers.")) == {"down": 28}


@pytest.mark.parametrize(("spec", "message"), [
    (PlanSpec(tp=3), "llama-2-7b has 32 query heads, which do not divide over 3 devices"),
    (PlanSpec(tp=2, mode="batch"), None),
    (PlanSpec(tp=32, replicas=2, connection="host"),
     "the plan needs 64 SoCs (tp 32 x pp 1 x replicas 2); ultra8 has 32"),
])
def test_plan_refusals(l7, ultra8, spec, message):
    m, graph = l7
    if message is None:
        make_plan(graph, m, ultra8, spec)
        return
    with pytest.raises(PlanError) as info:
        make_plan(graph, m, ultra8, spec)
    assert message in str(info.value)


def test_more_stages_than_layers(l7, ultra16_2s):
    m, graph = l7
    with pytest.raises(PlanError) as info:
        make_plan(graph, m, ultra16_2s, PlanSpec(pp=33))
    assert "a pipeline of 33 stages needs at least 33 layers (llama-2-7b has 32)" in \
        str(info.value)


def test_batch_mode_needs_a_divisible_batch(ultra8):
    m = load_model("llama-2-7b")
    graph = build_graph(m, decode_shape(3, 0, compiled_context=8))
    with pytest.raises(PlanError) as info:
        make_plan(graph, m, ultra8, PlanSpec(tp=2, mode="batch"))
    assert "a batch of 3 does not divide over 2 devices" in str(info.value)


def test_kv_heads_must_replicate_whole(ultra8):
    m = load_model("llama-3-8b")  # 32 heads, 8 KV heads
    graph = build_graph(m, decode_shape(1, 0, compiled_context=8))
    make_plan(graph, m, ultra8, PlanSpec(tp=16))  # 2 devices per KV head: fine
    topo = simtopo.load_topology(TOPOLOGIES / "ultra16-2s.yaml")
    m12 = load_model("llama-2-7b").model_copy(update={"heads": 24, "kv_heads": 8,
                                                      "head_dim": 128, "name": "h24"})
    graph12 = build_graph(m12, decode_shape(1, 0, compiled_context=8))
    with pytest.raises(PlanError) as info:
        make_plan(graph12, m12, topo, PlanSpec(tp=12, connection="host"))
    assert "8 KV heads: 12 devices cannot hold whole copies of them" in str(info.value)


def test_pipeline_stages_are_contiguous_and_balanced(l70, ultra8):
    m, graph = l70
    plan = make_plan(graph, m, ultra8, PlanSpec(pp=5))
    layers = [sorted({graph.nodes[n]["op"].layer for n in s.ops} - {None}) for s in plan.stages]
    assert [len(x) for x in layers] == [16, 16, 16, 16, 16]
    assert [x[0] for x in layers] == [0, 16, 32, 48, 64]
    assert plan.stages[0].ops[0] == "embed" and plan.stages[-1].ops[-1] == "lm_head"
    assert [(h.stage, h.bytes) for h in plan.handoffs] == [(s, 8192 * 2) for s in range(1, 5)]


def test_split_layers_exact():
    # 10 equal layers, an embedding worth 2 layers on stage 0: best is 3 + 4 + 3? no - the
    # heaviest stage is minimised: [3 (+2), 4, 3] -> max 5; or [2 (+2), 4, 4] -> max 4
    assert split_layers([1.0] * 10, 3, first=2.0) == [2, 4, 4]
    assert split_layers([1.0] * 6, 3) == [2, 2, 2]


def test_devices_fill_a_card_then_a_switch(l70, ultra8):
    m, graph = l70
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=16, replicas=2))
    first, second = (stages[0].devices for stages in plan.replicas)
    assert first[0] == "card0.soc0" and first[-1] == "card3.soc3"  # all under sw0
    assert second[0] == "card4.soc0" and second[-1] == "card7.soc3"  # all under sw1


def test_p2p_across_an_acs_switch_is_refused(l7, ultra8_acs):
    m, graph = l7
    with pytest.raises(PlanError) as info:
        make_plan(graph, m, ultra8_acs, PlanSpec(tp=4))
    assert "crosses switch card0.sw with ACS on; Qualcomm MDP P2P needs ACS off" in \
        str(info.value)
    make_plan(graph, m, ultra8_acs, PlanSpec(tp=4, connection="host"))


def test_tensor_slicing_beyond_the_p2p_limit(ultra8):
    m = load_model("llama-3.1-405b")
    graph = build_graph(m, decode_shape(1, 0, compiled_context=8))
    with pytest.raises(PlanError) as info:
        make_plan(graph, m, ultra8, PlanSpec(tp=32))
    assert "tensor slicing over 32 SoCs exceeds ultra8's P2P limit of 16" in str(info.value)


@pytest.mark.parametrize("spec", [PlanSpec(tp=8), PlanSpec(tp=4, pp=2), PlanSpec(pp=4)])
def test_a_plan_remembers_its_own_layout_as_laying_it_out_again_gives(ultra8, spec):
    """make_plan keeps the layout it made for its graph; layout() of the same graph returns
    it, equal to laying the graph out afresh, and another graph is laid out on its own."""
    from simtopo.plan.layouts import shard_stages
    from simtopo.workload.decoders import load_model
    from simtopo.workload.opgraph import Precision, build_graph, decode_shape

    model = load_model("llama-2-70b")
    graph = build_graph(model, decode_shape(1, 100, compiled_context=2048))
    plan = make_plan(graph, model, ultra8, spec)
    def afresh(g):
        shards, comms, handoffs = shard_stages(g, model, plan.stages, Precision(), plan.rules)
        return shards, tuple(comms), tuple(handoffs)

    fresh = afresh(graph)
    assert plan.layout(graph) == fresh
    other = build_graph(model, decode_shape(4, 100, compiled_context=2048))
    assert plan.layout(other) == afresh(other) != fresh


def test_a_layout_is_found_once_per_stage_shape(l7, ultra8):
    """A P2P plan and its host-routed twin share one layout (devices do not change it);
    another size does not, the shared one is what laying it out afresh gives, and a plan's
    shards are its own (changing them changes no other plan)."""
    from simtopo.plan.layouts import shard_stages
    from simtopo.plan.stages import laid_out
    from simtopo.workload.opgraph import Precision

    model, graph = l7
    precision = graph.graph.get("precision") or Precision()
    p2p = make_plan(graph, model, ultra8, PlanSpec(tp=4, connection="p2p"))
    host = make_plan(graph, model, ultra8, PlanSpec(tp=4, connection="host"))
    shared = laid_out(graph, model, p2p.stages, precision)
    assert laid_out(graph, model, host.stages, precision) is shared
    assert p2p.stages[0].devices != host.stages[0].devices or p2p.p2p_pairs != host.p2p_pairs
    assert laid_out(graph, model, make_plan(graph, model, ultra8, PlanSpec(tp=2)).stages,
                    precision) is not shared
    shards, comms, handoffs = shard_stages(graph, model, host.stages, precision)
    assert shards == p2p.shards == host.shards and tuple(comms) == p2p.comms == host.comms
    assert tuple(handoffs) == p2p.handoffs
    del p2p.shards["embed"]
    assert "embed" in host.shards and "embed" in shared[0]
