"""Memory fit: the numbers per SoC, refusals, and the smallest layouts that fit."""

from __future__ import annotations

import pytest

from simtopo import PlanError
from simtopo.plan.memory import (
    RUNTIME_RESERVE_BYTES,
    check_fit,
    memory_use,
    minimum_socs,
    rank_weights,
)
from simtopo.plan.stages import make_plan
from simtopo.spec.experiment import PlanSpec
from simtopo.workload.decoders import load_model
from simtopo.workload.opgraph import build_graph, decode_shape


@pytest.fixture(scope="module")
def l70():
    m = load_model("llama-2-70b")
    return m, build_graph(m, decode_shape(1, 1023, compiled_context=1024))


def test_llama_2_70b_fp16_refused_on_4_socs(l70, ultra8):
    m, graph = l70
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=4))
    with pytest.raises(PlanError) as info:
        check_fit(plan, graph, m, ultra8, batch=1, context=1024)
    text = str(info.value)
    # weights alone: 68.98e9 parameters x 2 bytes / 4 SoCs = 34.49 GB per SoC
    assert "card0.soc0 needs 35.6 GB of 32.0 GB: weights 34.5, KV 0.1" in text
    assert "smallest layouts that fit: tensor parallel (weight mode) on 8 SoCs, a pipeline of " \
           "5 SoCs" in text


@pytest.mark.parametrize("tp", [8, 16])
def test_fits_on_8_and_16(l70, ultra8, tp):
    m, graph = l70
    use = check_fit(make_plan(graph, m, ultra8, PlanSpec(tp=tp)), graph, m, ultra8, 1,
                    1024)
    assert all(u.fits for u in use)
    # every weight / tp, but at 16 the K and V projections (8 KV heads) are held twice:
    # 80 layers x K and V x 8192 x 1024 x 2 bytes, at 1/8 instead of 1/16
    kv_proj = 80 * 2 * 8192 * 1024 * 2
    extra = kv_proj / 8 - kv_proj / 16 if tp == 16 else 0.0
    # and every device keeps the RMSNorm weights whole: (80 x 2 + 1) x 8192 x 2 bytes
    norms = (80 * 2 + 1) * 8192 * 2
    extra += norms * (1 - 1 / tp)
    assert use[0].weights == pytest.approx(m.parameters() * 2 / tp + extra, rel=1e-12)


def test_kv_cache_by_hand(l70, ultra8):
    m, graph = l70
    use = memory_use(make_plan(graph, m, ultra8, PlanSpec(tp=16)), ultra8, [graph],
                     batch=4, context=4096)
    # 80 layers x 4 x 4096 positions x K and V x one 128-wide KV head (8 over 16) x 2 bytes
    assert use[0].kv_cache == 80 * 4 * 4096 * 2 * 128 * 2
    assert use[0].reserve == RUNTIME_RESERVE_BYTES


def test_minimum_socs(l70, ultra8):
    m, graph = l70
    assert minimum_socs(graph, m, ultra8, "tp", 1, 1024) == 8
    assert minimum_socs(graph, m, ultra8, "pp", 1, 1024) == 5


def test_a_rank_loads_the_plans_shard_of_every_weight(l70):
    """llama-2-70b over 16 ranks, counted by hand from its config (hidden 8192, FFN 28672, 64
    query heads and 8 KV heads of 128, vocabulary 32000, untied head, fp16): every GEMM and
    the embedding divided by 16, except the K and V columns, whole per KV head (2 ranks
    share one), and the norms, replicated."""
    m, graph = l70
    h, f, v, layers = 8192, 28672, 32000, 80
    q_cols, kv_cols = h / 16, 2 * 128  # one KV head's K and V columns on each rank
    per_layer = h * (q_cols + kv_cols) + h * h / 16 + h * 2 * f / 16 + f * h / 16 + 2 * h
    expected = 2 * (v * h / 16 + layers * per_layer + h + h * v / 16)
    assert rank_weights(graph, m, 16) == pytest.approx(expected, rel=1e-12)
    # at 8 ranks nothing is replicated but the norms
    norms = 2 * (layers * 2 * h + h)
    total = sum(graph.nodes[n]["op"].stored_bytes for n in graph)
    assert rank_weights(graph, m, 8) == pytest.approx((total - norms) / 8 + norms, rel=1e-12)


def test_the_suggested_smallest_layout_fits_with_the_prefill_too(tmp_path):
    """The refusal's suggestions count the prefill's activations as the refusal does: each
    suggested layout is accepted, one SoC fewer is refused (llama-2-7b, batch 16, an
    8,192-token prompt on Ultra SoCs: 8.7 GB of prefill activations on one SoC)."""
    import simtopo

    from .conftest import ROOT

    def run(plan):
        path = tmp_path / "fit.yaml"
        path.write_text(f"""
name: fit
topology: {ROOT / "topologies" / "ultra8.yaml"}
model: llama-2-7b
workload: {{batch: 16, prompt: 8192, generate: 2, context: 8194}}
plan: {plan}
variants: [{{name: a}}]
""")
        return simtopo.run(path)

    with pytest.raises(PlanError) as info:
        run("{tp: 1}")
    message = str(info.value)
    assert "does not fit on 1 SoC per replica: " in message
    assert message.endswith("smallest layouts that fit: tensor parallel (weight mode) on 4 "
                            "SoCs, a pipeline of 4 SoCs")
    with pytest.raises(PlanError, match="does not fit on 3 SoCs"):
        run("{pp: 3}")
    assert run("{pp: 4}").variants[0].metrics["socs"] == 4
    assert run("{tp: 4}").variants[0].metrics["socs"] == 4


def test_dynamic_shapes_check_the_kv_cache_the_generation_reaches(tmp_path):
    """A 32-token compiled context with dynamic shapes still grows its KV cache to prompt +
    generate positions: 30,000 generated tokens do not fit one Standard SoC either way, and
    both refusals give the same KV cache."""
    import re

    import simtopo

    from .conftest import ROOT

    def refusal(workload: str) -> str:
        path = tmp_path / "kv.yaml"
        path.write_text(f"""
name: kv
topology: {ROOT / "topologies" / "std8.yaml"}
model: llama-2-7b
workload: {workload}
plan: {{tp: 1}}
variants: [{{name: a}}]
""")
        with pytest.raises(PlanError) as info:
            simtopo.run(path)
        return str(info.value)

    dynamic = refusal("{prompt: 16, generate: 30000, context: 32, shapes: dynamic}")
    compiled = refusal("{prompt: 16, generate: 30000, context: 30016}")
    kv = [re.search(r"KV ([\d.]+)", m).group(1) for m in (dynamic, compiled)]
    assert kv[0] == kv[1]
    # 32 layers x 2 (K and V) x 4096 x 2 bytes x 30,016 positions = 15.7 GB
    assert float(kv[0]) == pytest.approx(32 * 2 * 4096 * 2 * 30016 / 1e9, abs=0.05)


@pytest.mark.parametrize("model, precision", [("llama-2-70b", "fp16"), ("llama-2-70b", "mxfp6"),
                                              ("gpt-j-6b", "fp16"), ("opt-13b", "fp16"),
                                              ("llama-3.1-405b", "mxfp6")])
def test_every_plan_holds_every_weight_at_least_once(ultra8, model, precision):
    """The premise of minimum_socs' first candidate: over one replica's SoCs the weights
    add up to at least the model's, whatever the split; so the search from that count finds
    what a search from one SoC finds."""
    from simtopo.plan import memory
    from simtopo.plan.layouts import check_tp
    from simtopo.workload.opgraph import Precision, ops

    m = load_model(model)
    graph = build_graph(m, decode_shape(1, 1023, compiled_context=1024),
                        Precision(weights=precision))
    total = sum(op.stored_bytes for op in ops(graph))
    for spec in [PlanSpec(tp=n) for n in (1, 2, 4, 8, 16, 32)] + \
            [PlanSpec(pp=n) for n in (1, 2, 5, 8, 32)]:
        try:
            check_tp(m, spec.tp)
            plan = make_plan(graph, m, ultra8, spec)
        except PlanError:
            continue
        held = sum(u.weights for u in memory_use(plan, ultra8, [graph], 1, 1024))
        assert held >= total * (1 - 1e-12), spec
    for family in ("tp", "pp"):
        found = minimum_socs(graph, m, ultra8, family, 1, 1024)
        scan = None
        for n in range(1, len(ultra8.socs) + 1):
            spec = PlanSpec(tp=n) if family == "tp" else PlanSpec(pp=n)
            try:
                if family == "tp":
                    check_tp(m, n)
                plan = make_plan(graph, m, ultra8, spec)
            except PlanError:
                continue
            if all(u.fits for u in memory.memory_use(plan, ultra8, [graph], 1, 1024)):
                scan = n
                break
        assert found == scan, family


def test_a_sliding_window_keeps_a_rolling_kv_cache(ultra8):
    """Mistral 7B keeps the last 4,096 positions: its KV cache at a 16,384 context is what it
    is at 4,096, by hand 8 batch x 4,096 x K and V x 8 KV heads x 128 x 2 bytes x 32 layers
    over 4 devices."""
    m = load_model("mistral-7b")
    graph = build_graph(m, decode_shape(8, 4095, compiled_context=4096))
    plan = make_plan(graph, m, ultra8, PlanSpec(tp=4))
    kv = {c: memory_use(plan, ultra8, [graph], 8, c)[0].kv_cache for c in (4096, 16384)}
    assert kv[16384] == kv[4096] == 8 * 4096 * 2 * 8 * 128 * 2 * 32 / 4
