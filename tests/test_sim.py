"""The simulation against closed forms.

The end-to-end cases run on an *ideal* server: links so fast and latencies so small that
communication is free, an SoC model at efficiency 1 with no fixed costs unless a test adds
them, and 100 GB/s of DRAM per SoC. Decode of llama-2-7b is then DRAM time alone, and its bytes
follow from the model's published dimensions by hand.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simtopo.constants import SocModel
from simtopo.results.run import run
from simtopo.sim.pipeline import Pipeline, run_pipeline
from simtopo.sim.profiles import PassProfile, StagePass

DRAM_BW = 100e9
IDEAL_SOC = SocModel(compute_efficiency=1.0, dram_efficiency=1.0, op_launch_s=0.0,
                     mxfp6_expand_ops_per_weight=0.0, host_step_s=0.0)
FREE = "100TB/s"  # the plausible maximum stands in for free: a step of a decode moves at most
# a few MB over it, nanoseconds against milliseconds

IDEAL = {
    "name": "ideal",
    "description": "8 single-SoC cards, communication free",
    "platform": {"root_complex_p2p": True, "max_p2p_group": 16, "bar_space": "1TiB"},
    "transfer": {"dma_setup": "0s", "reduction_traffic": 0.0, "collective_launch": "0s",
                 "collective_step": "0s"},
    "host": {"handoff_latency": "0s",
             "sockets": [{"id": "cpu0", "cores": 8, "memory": "1TB", "memory_bw": FREE,
                          "root_complexes": [{"id": "rc0", "hop_latency": "0s"}]}]},
    "card_types": {"solo": {"name": "Solo", "host_link": {"bandwidth": FREE},
                            "soc": {"cores": 16, "peak_flops": {"fp16": "1000000TFLOPS"},
                                    "dram": "64GB", "dram_bw": "100GB/s",
                                    "bar_size": "2GiB"}}},
    "switches": [{"id": "sw0", "parent": "rc0", "uplink": {"bandwidth": FREE},
                  "hop_latency": "0s"}],
    "cards": [{"type": "solo", "parent": "sw0", "count": 8}],
}

# llama-2-7b by hand (its Hugging Face config): d 4096, 32 layers, 32 heads (no GQA),
# ffn 11008 (gated: up and gate and down), vocab 32000, fp16.
D, LAYERS, FFN, VOCAB, CONTEXT = 4096, 32, 11008, 32000, 2048
GEMM_WEIGHTS = (LAYERS * (4 * D * D + 3 * D * FFN) + D * VOCAB) * 2  # QKV, O, MLP, LM head
KV_BYTES = LAYERS * 2 * CONTEXT * D * 2  # K and V over the compiled context, fp16
ACTIVATION_BOUND = 2e-3  # activations are a small share of a batch-1 decode step's bytes


def experiment(tmp_path: Path, plan: dict, workload: dict | None = None,
               model: str = "llama-2-7b", variants: list | None = None) -> Path:
    topo = tmp_path / "ideal.yaml"
    topo.write_text(yaml.safe_dump(IDEAL))
    doc = {"name": "t", "topology": str(topo), "model": model,
           "workload": {"batch": 1, "prompt": 16, "generate": 4, "context": CONTEXT,
                        **(workload or {})},
           "plan": plan}
    if variants:
        doc["variants"] = variants
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_one_soc_decode_is_bytes_over_dram_bandwidth_plus_stated_overheads(tmp_path):
    path = experiment(tmp_path, {"tp": 1})
    bare = run(path, soc_model=IDEAL_SOC).variants[0]
    step = bare.metrics["tpot_mean_s"]
    # weights and KV by hand, activations a small remainder
    assert step * DRAM_BW == pytest.approx(GEMM_WEIGHTS + KV_BYTES, rel=ACTIVATION_BOUND)
    assert step * DRAM_BW > GEMM_WEIGHTS + KV_BYTES
    # exactly the bytes the SoC moves in a step, and the host round trip (a few nanoseconds)
    (soc,) = bare.socs
    round_trip = bare.metrics["host_round_trip_s"]
    assert round_trip < 1e-8
    assert step == pytest.approx(soc["step_dram_bytes"] / DRAM_BW + round_trip, rel=1e-9)
    # the overheads, added explicitly: 2 us per op (323 ops: 1 embedding, 32 x 10 per layer,
    # the final norm and the LM head) and 150 us of host time per token
    launch, host = 2e-6, 150e-6
    with_costs = SocModel(compute_efficiency=1.0, dram_efficiency=1.0, op_launch_s=launch,
                          mxfp6_expand_ops_per_weight=0.0, host_step_s=host)
    costly = run(path, soc_model=with_costs).variants[0].metrics["tpot_mean_s"]
    assert costly == pytest.approx(step + 323 * launch + host, rel=1e-9)


def test_dram_efficiency_scales_the_step(tmp_path):
    path = experiment(tmp_path, {"tp": 1})
    full = run(path, soc_model=IDEAL_SOC).variants[0].metrics["tpot_mean_s"]
    half = SocModel(compute_efficiency=1.0, dram_efficiency=0.5, op_launch_s=0.0,
                    mxfp6_expand_ops_per_weight=0.0, host_step_s=0.0)
    rt = run(path, soc_model=IDEAL_SOC).variants[0].metrics["host_round_trip_s"]
    assert run(path, soc_model=half).variants[0].metrics["tpot_mean_s"] == pytest.approx(
        2 * (full - rt) + rt, rel=1e-9)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_tensor_slicing_with_free_communication_divides_the_weights_time(tmp_path, n):
    path = experiment(tmp_path, {"tp": n})
    v = run(path, soc_model=IDEAL_SOC).variants[0]
    step = v.metrics["tpot_mean_s"]
    # every SoC reads 1/n of the weights and of the KV cache (32 KV heads divide by n)
    assert step * DRAM_BW == pytest.approx((GEMM_WEIGHTS + KV_BYTES) / n,
                                           rel=n * ACTIVATION_BOUND)
    assert step * DRAM_BW > (GEMM_WEIGHTS + KV_BYTES) / n
    # communication at 100 TB/s: the step is compute and a few nanoseconds more
    assert step == pytest.approx(v.metrics["step_compute_s"] + v.metrics["step_comm_s"],
                                 rel=1e-9)
    assert v.metrics["step_comm_s"] < 1e-6


def test_one_sequence_through_stages_takes_the_sum_of_the_stage_times(tmp_path):
    path = experiment(tmp_path, {"pp": 4})
    v = run(path, soc_model=IDEAL_SOC).variants[0]
    decode = v.profiles[f"decode@{CONTEXT}"]
    stage_sum = sum(s.seconds for s in decode.stages)
    assert len(decode.stages) == 4
    outside = sum(decode.handoff_s) + v.metrics["host_round_trip_s"]  # nanoseconds here
    assert outside < 1e-8
    assert v.metrics["tpot_mean_s"] == pytest.approx(stage_sum + outside, rel=1e-9)
    # each stage is its bytes over DRAM bandwidth; together, the one-SoC step's bytes
    for stage in decode.stages:
        assert stage.seconds == pytest.approx(stage.bytes / DRAM_BW, rel=1e-9)
    one = run(experiment(tmp_path, {"tp": 1}), soc_model=IDEAL_SOC).variants[0]
    assert stage_sum == pytest.approx(one.metrics["tpot_mean_s"]
                                      - one.metrics["host_round_trip_s"], rel=1e-9)


def test_pipeline_stages_on_a_real_fabric_add_hand_offs_and_the_host_round_trip():
    """On ultra8 nothing is free: TPOT = stage times + hand-offs + logits out + token in."""
    root = Path(__file__).resolve().parent.parent
    result = run(root / "experiments" / "ultra8.yaml", variants=["pp2-tp16-p2p"])
    v = result.variants[0]
    decode = v.profiles[f"decode@{CONTEXT}"]
    one_group = sum(s.seconds for s in decode.stages) + sum(decode.handoff_s) + \
        v.metrics["host_round_trip_s"]
    assert decode.handoff_s[1] > 0
    # two request groups share the stages; with stages this unequal neither waits for long,
    # so the first group's step is the sum or a little more (a bubble behind the other group)
    assert v.metrics["step_s"] >= one_group * (1 - 1e-9)
    assert v.metrics["step_s"] == pytest.approx(one_group + v.metrics["step_bubble_s"],
                                                rel=1e-9)


# -- the pass pipeline alone, on synthetic profiles --------------------------------------------

def profile(stage_seconds: list[float], handoff_s: float = 0.0) -> PassProfile:
    stages = [StagePass(t, t, []) for t in stage_seconds]
    handoffs = [0.0] + [handoff_s] * (len(stage_seconds) - 1)
    return PassProfile(stages, handoffs, [0.0] * len(stage_seconds), Counter())


def forward(stages: int, micro: int, step: PassProfile):
    """One forward pass of ``micro`` micro-batches through ``stages`` stages."""
    return run_pipeline(Pipeline(stages, forward_passes=micro, kind="inference"),
                        {"forward": step})


def llm(prefill: PassProfile, decode: PassProfile) -> dict[str, PassProfile]:
    """Profiles of an LLM pipeline whose decode steps all cost ``decode``."""
    return {"prefill": prefill, "decode@17": decode}


@pytest.mark.parametrize("stages,micro", [(1, 1), (1, 5), (4, 1), (4, 8), (3, 16)])
def test_micro_batches_through_equal_stages(stages, micro):
    t = 2e-3
    timeline = forward(stages, micro, profile([t] * stages))
    assert timeline.makespan == pytest.approx((stages + micro - 1) * t, rel=1e-12)


def test_micro_batches_with_hand_offs():
    t, h, stages, micro = 2e-3, 0.5e-3, 4, 8
    timeline = forward(stages, micro, profile([t] * stages, h))
    # hand-offs delay every micro-batch by the same latency, they hold no stage
    assert timeline.makespan == pytest.approx((stages + micro - 1) * t + (stages - 1) * h)


def test_unequal_stages_are_paced_by_the_slowest():
    times = [1e-3, 3e-3, 2e-3]
    micro = 10
    timeline = forward(3, micro, profile(times))
    assert timeline.makespan == pytest.approx(sum(times) + (micro - 1) * max(times))


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_request_groups_fill_a_pipeline_of_decode_steps(groups):
    """S equal stages of t, a round trip r outside the stages: one group steps every S t + r;
    G groups share each stage, so a step cannot come faster than G t."""
    stages, t, r_out, r_in, steps = 4, 1e-3, 0.2e-3, 0.1e-3, 40
    step = profile([t] * stages)
    timeline = run_pipeline(Pipeline(stages, groups=groups, steps=steps), llm(step, step),
                            (r_out, r_in))
    period = max(stages * t + r_out + r_in, groups * t)
    for times in timeline.token_times[0]:
        gaps = [b - a for a, b in zip(times[-10:], times[-9:], strict=False)]
        assert gaps == pytest.approx([period] * 9, rel=1e-9)


def test_prefill_chunks_pipeline_through_the_stages():
    """C prefill chunks through S equal stages end after (S + C - 1) t, then the first token
    comes after the logits' trip."""
    stages, chunks, t, r_out = 3, 4, 1e-3, 0.25e-3
    timeline = run_pipeline(Pipeline(stages, forward_passes=chunks),
                            llm(profile([t] * stages), profile([t] * stages)), (r_out, 0.0))
    assert timeline.prefill_end[0][0] == pytest.approx((stages + chunks - 1) * t)
    assert timeline.token_times[0][0] == [pytest.approx((stages + chunks - 1) * t + r_out)]


def test_replicas_do_not_share_stages():
    step = profile([1e-3, 1e-3])
    one = run_pipeline(Pipeline(2, steps=10), llm(step, step))
    two = run_pipeline(Pipeline(2, replicas=2, steps=10), llm(step, step))
    assert two.token_times[1][0] == pytest.approx(one.token_times[0][0])


# -- the shortcuts against the reference simulation --------------------------------------------

@pytest.mark.parametrize("variant,changes", [
    ("tp4-host", {}),
    ("tp2-p2p", {"shapes": "dynamic", "prompt": 64, "generate": 24}),
    ("tp1x4", {}),
])
def test_memoized_simulation_matches_the_full_one(variant, changes):
    """Layers run once and repeated, decode steps sampled at a few contexts: the same numbers
    as simulating every layer and step on one fabric (docs/metrics.md lists the cases where
    they part, with benchmarks/approximations.py's measurements)."""
    from dataclasses import replace

    from simtopo.results.run import run_variant
    from simtopo.spec.experiment import load_experiment

    root = Path(__file__).resolve().parent.parent
    (chosen,) = [v for v in load_experiment(root / "experiments" / "ultra-card-llama2-7b.yaml")
                 .variants if v.name == variant]
    chosen = replace(chosen, workload=chosen.workload.model_copy(
        update={"prompt": 128, "generate": 6, **changes}))
    fast = run_variant(chosen, mode="memoized").metrics
    full = run_variant(chosen, mode="full").metrics
    for metric in ("ttft_s", "tpot_mean_s", "e2e_s"):
        assert fast[metric] == pytest.approx(full[metric], rel=1e-6), metric


def _same_timeline(fast, slow):
    assert fast.makespan == pytest.approx(slow.makespan, rel=1e-9)
    for a, b in zip(fast.token_times, slow.token_times, strict=True):
        for x, y in zip(a, b, strict=True):
            assert x == pytest.approx(y, rel=1e-9)

    def flat(rows):
        return [x for row in rows for x in row]

    assert flat(fast.decode_steps) == pytest.approx(flat(slow.decode_steps), rel=1e-9)
    assert flat(fast.stage_busy) == pytest.approx(flat(slow.stage_busy), rel=1e-9)
    assert fast.passes == slow.passes and fast.prefill_end == slow.prefill_end


def _both(shape, profiles, trip):
    """(with the periodic shortcut, every step simulated, whether the shortcut ran)."""
    from simtopo.sim import pipeline

    stretched = []
    original = pipeline._stretched

    def counted(*args):
        stretched.append(True)
        return original(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "_stretched", counted)
        fast = run_pipeline(shape, profiles, trip)
        patch.setattr(pipeline, "TAIL", 10**6)  # simulate every step
        slow = run_pipeline(shape, profiles, trip)
    return fast, slow, bool(stretched)


@settings(max_examples=80, deadline=None)
@given(stages=st.integers(1, 6), groups=st.integers(1, 8), replicas=st.integers(1, 2),
       chunks=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_a_periodic_decode_schedule_is_stretched_as_simulating_it_would(
        stages, groups, replicas, chunks, seed):
    """Compiled decode steps all cost the same, so the schedule becomes periodic once no
    prefill is pending; putting the periods back into a shorter run gives every token time,
    step, busy time, pass count and the makespan that simulating each step gives, queues
    filling and groups finishing included (continuous random stage times)."""
    import random

    rnd = random.Random(seed)
    decode = profile([rnd.uniform(0.5e-3, 3.5e-3) for _ in range(stages)],
                     rnd.choice([0.0, rnd.uniform(0.1e-3, 0.7e-3)]))
    prefill = profile([rnd.uniform(5e-3, 20e-3) for _ in range(stages)], 1e-3)
    shape = Pipeline(stages, replicas=replicas, groups=groups, forward_passes=chunks,
                     steps=60)
    trip = (rnd.choice([0.0, rnd.uniform(0.1e-3, 2e-3)]), rnd.choice([0.0, 0.1e-3]))
    fast, slow, _ = _both(shape, llm(prefill, decode), trip)
    _same_timeline(fast, slow)


@pytest.mark.parametrize("stages, groups, replicas, chunks, times, handoff, prefill, trip", [
    # a reviewer's case: equal token gaps for a while as a stage's queue still grows
    (3, 8, 2, 2, [1.959e-3, 2.064e-3, 1.933e-3], 0.658e-3, [5.519e-3, 5.226e-3, 6.635e-3],
     (2e-3, 0.0)),
    # and one where the last steps speed up as groups finish
    (4, 7, 1, 1, [1.782e-3, 2.122e-3, 0.653e-3, 2.828e-3], 0.591e-3, [8e-3] * 4, (0.0, 0.0)),
    (32, 32, 1, 1, [2e-3] * 32, 0.1e-3, [10e-3] * 32, (1e-3, 0.1e-3)),  # the advisor's pp32
    # a group decoding while another's prefill chunks are still in the stages
    (4, 2, 1, 7, [0.0019350733943076573, 0.0009654231211598681, 0.0006642719811925324,
                  0.0018731749452897762], 0.0,
     [0.06831583023039099, 0.09155610846349847, 0.06578325115795852, 0.0019511881471269599],
     (0.0, 0.0)),
    (4, 6, 1, 3, [0.0, 0.0, 0.0, 1e-3], 0.0, [8e-3] * 4, (0.0, 0.0)),  # free stages
])
def test_known_hard_pipelines_are_stretched_exactly(stages, groups, replicas, chunks, times,
                                                   handoff, prefill, trip):
    shape = Pipeline(stages, replicas=replicas, groups=groups, forward_passes=chunks,
                     steps=400)
    fast, slow, ran = _both(shape, llm(profile(prefill, 1.63e-3), profile(times, handoff)),
                            trip)
    assert ran
    _same_timeline(fast, slow)
