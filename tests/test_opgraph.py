"""Op graphs: FLOPs and bytes by hand formula, GQA, compiled shapes, precisions."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from simtopo.workload.decoders import load_model
from simtopo.workload.opgraph import Precision, build_graph, decode_shape, ops, prefill_shapes


@pytest.fixture(scope="module")
def llama7():
    return load_model("llama-2-7b")


def test_stable_names_and_order(llama7):
    graph = build_graph(llama7, decode_shape(1, 9, compiled_context=16))
    order = list(nx.topological_sort(graph))
    assert order[0] == "embed" and order[-1] == "lm_head"
    assert "layers.12.attn.qkv" in graph and "layers.31.mlp.down" in graph
    assert list(graph.predecessors("layers.12.attn.core")) == ["layers.12.attn.qkv"]


def test_gemm_flops_are_twice_weights_times_tokens(llama7):
    shape = prefill_shapes(2, 128, compiled=False)[0]
    for op in ops(build_graph(llama7, shape)):
        if op.is_gemm:
            # batch 2 x 128 tokens; the LM head only at each sequence's last position
            tokens = 2 if op.kind == "lm_head" else 256
            assert op.flops == 2 * op.k_in * op.n_out * tokens


def test_gemm_shapes_by_hand(llama7):
    graph = build_graph(llama7, decode_shape(1, 0, compiled_context=8))
    qkv = graph.nodes["layers.0.attn.qkv"]["op"]
    assert (qkv.k_in, qkv.n_out) == (4096, 3 * 4096)
    up = graph.nodes["layers.0.mlp.up"]["op"]
    assert (up.k_in, up.n_out) == (4096, 2 * 11008)  # gate and up, fused
    down = graph.nodes["layers.0.mlp.down"]["op"]
    assert (down.k_in, down.n_out) == (11008, 4096)


def test_decode_reads_every_gemm_weight_and_the_kv_cache(llama7):
    graph = build_graph(llama7, decode_shape(1, 2047, compiled_context=2048))
    weights = sum(o.weight_bytes for o in ops(graph) if o.is_gemm)
    # GEMM weights: 32 layers x (4 x 4096^2 + 3 x 4096 x 11008) + head 4096 x 32000, fp16
    assert weights == 2 * (32 * (4 * 4096**2 + 3 * 4096 * 11008) + 4096 * 32000)
    kv = sum(o.kv_read_bytes for o in ops(graph))
    # 32 layers x 2048 positions x K and V x 4096 wide x 2 bytes
    assert kv == 32 * 2048 * 2 * 4096 * 2


def test_grouped_query_attention_reduces_kv_bytes():
    m70 = load_model("llama-2-70b")
    graph = build_graph(m70, decode_shape(4, 999, compiled_context=1000))
    core = graph.nodes["layers.0.attn.core"]["op"]
    # 4 sequences x 1000 positions x K and V x 8 KV heads x 128 x 2 bytes (not 64 heads)
    assert core.kv_read_bytes == 4 * 1000 * 2 * 8 * 128 * 2


def test_compiled_decode_attends_the_whole_buffer(llama7):
    compiled = decode_shape(1, 10, compiled=True, compiled_context=2048)
    dynamic = decode_shape(1, 10, compiled=False)
    assert (compiled.context, dynamic.context) == (2048, 11)


def test_compiled_prefill_runs_in_chunks(llama7):
    chunks = prefill_shapes(1, 1000, compiled=True, compiled_prompt=256, compiled_context=2048)
    assert len(chunks) == math.ceil(1000 / 256) == 4
    assert all(c.tokens == 256 and c.attended == 2048 for c in chunks)
    (dynamic,) = prefill_shapes(1, 1000, compiled=False)
    assert dynamic.tokens == 1000 and dynamic.attended == pytest.approx(500.5)


def test_attention_flops_by_hand(llama7):
    (shape,) = prefill_shapes(1, 100, compiled=False)
    core = build_graph(llama7, shape).nodes["layers.0.attn.core"]["op"]
    pairs = 100 * 32 * 50.5  # queries x heads x positions each attends on average
    assert core.flops == pytest.approx(4 * pairs * 128 + 5 * pairs)


def test_mxfp6_weights_are_6_25_bits(llama7):
    shape = decode_shape(1, 0, compiled_context=8)
    fp16 = build_graph(llama7, shape).nodes["layers.0.mlp.up"]["op"]
    mx = build_graph(llama7, shape, Precision(weights="mxfp6")).nodes["layers.0.mlp.up"]["op"]
    assert mx.weight_bytes == pytest.approx(fp16.weight_bytes * 6.25 / 16)
    assert mx.precision == "fp16"  # arithmetic stays fp16
    embed16 = build_graph(llama7, shape).nodes["embed"]["op"]
    embed_mx = build_graph(llama7, shape, Precision(weights="mxfp6")).nodes["embed"]["op"]
    assert embed_mx.weight_bytes == embed16.weight_bytes  # embeddings are not GEMM weights


def test_gpt_j_parallel_block():
    graph = build_graph(load_model("gpt-j-6b"), decode_shape(1, 0, compiled_context=8))
    assert list(graph.predecessors("layers.0.mlp.up")) == ["layers.0.attn_norm"]
    assert sorted(graph.predecessors("layers.0.residual")) == [
        "embed", "layers.0.attn.o", "layers.0.mlp.down"]


def test_graph_weights_add_up_to_the_parameters():
    for name in ("llama-2-70b", "opt-2.7b", "gpt-j-6b"):
        m = load_model(name)
        graph = build_graph(m, decode_shape(1, 0, compiled_context=8))
        assert sum(o.weight_params for o in ops(graph)) == m.parameters()


def test_bad_precision():
    with pytest.raises(ValueError) as info:
        Precision(weights="fp4")
    assert str(info.value) == ("weights precision must be one of fp32, fp16, bf16, int8, "
                               "mxfp6 (got 'fp4')")


def test_a_sliding_window_caps_what_attention_reads_and_attends():
    """Mistral 7B attends the last 4,096 positions: a decode step over an 8,192-position
    buffer reads and scores what one over 4,096 does; llama-2-7b (no window) twice that."""
    mistral = load_model("mistral-7b")
    assert mistral.sliding_window == 4096

    def core(model, context):
        graph = build_graph(model, decode_shape(2, context - 1, compiled_context=context))
        return graph.nodes["layers.0.attn.core"]["op"]

    long, short = core(mistral, 8192), core(mistral, 4096)
    # 2 sequences x 4,096 positions x K and V x 8 KV heads x 128 x 2 bytes
    assert long.kv_read_bytes == short.kv_read_bytes == 2 * 4096 * 2 * 8 * 128 * 2
    assert long.flops == short.flops == (2 * 2 * 2 * 32 * 4096 * 128 + 5 * 2 * 32 * 4096)
    llama = load_model("llama-2-7b")
    assert core(llama, 8192).kv_read_bytes == 2 * core(llama, 4096).kv_read_bytes


def test_a_causal_prefill_longer_than_the_window_attends_by_hand():
    """A window of 4 over a causal prefill of 8 tokens: the queries attend 1, 2, 3, 4, 4, 4,
    4, 4 positions, 26 / 8 on average (without the window: 4.5)."""
    tiny = load_model("llama-2-7b").model_copy(update={"sliding_window": 4})
    (shape,) = prefill_shapes(1, 8, compiled=False)
    op = build_graph(tiny, shape).nodes["layers.0.attn.core"]["op"]
    scores = 8 * 32 * 26 / 8
    assert op.flops == pytest.approx(2 * 2 * scores * 128 + 5 * scores, rel=1e-15)
    assert op.kv_read_bytes == 1 * 4 * 2 * 32 * 128 * 2  # the 4 positions the buffer keeps


def test_an_encoder_attends_the_whole_sequence_without_a_cache():
    from simtopo.workload.decoders import load_model
    from simtopo.workload.opgraph import Shape, build_graph

    m = load_model("bert-base")
    graph = build_graph(m, Shape("prefill", 2, 384, 384, 192.5))
    attn = graph.nodes["layers.0.attn.core"]["op"]
    assert attn.kv_read_bytes == 0 and attn.kv_write_bytes == 0
    # QK^T and AV: 2 x 2 x (2 x 384 queries x 12 heads x 384 keys) x 64, softmax 5 per score
    scores = 2 * 384 * 12 * 384
    assert attn.flops == 4 * scores * 64 + 5 * scores
    head = graph.nodes["qa_head"]["op"]
    assert (head.k_in, head.n_out, head.rows) == (768, 2, 2 * 384)
    assert "lm_head" not in graph
