"""Dynamic-shape serving: iterations against direct simulation and closed forms, chunked
prefill, decode or prefill priority, the KV pool and preemption, specializations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import simtopo
from simtopo import ConfigError
from simtopo.constants import DEFAULT_SOC_MODEL
from simtopo.plan.memory import kv_positions, memory_use
from simtopo.results.run import run_variant
from simtopo.results.serving_run import iteration_model, iteration_times, variant_llm
from simtopo.sim.blocks import host_round_trip
from simtopo.sim.chunked import serve_dynamic
from simtopo.sim.iterations import IterationModel, interpolation_error, iteration_seconds
from simtopo.sim.serving import CompiledShape, IterationTimes, serve
from simtopo.sim.setup import setup_variant
from simtopo.spec.experiment import load_experiment
from simtopo.spec.serving import ServingSpec
from simtopo.workload.modelref import resolve_model
from simtopo.workload.requests import Requests, generate

from .conftest import TOPOLOGIES


def constant(seconds: float, slots: int, budget: int, pool: int = 1 << 40) -> IterationModel:
    """Every iteration takes ``seconds``, whatever it holds."""
    return IterationModel((1.0, 2.0), (seconds, seconds), (1.0, 2.0), (0.0, 0.0), (1.0, 2.0),
                          (1.0, 2.0), ((0.0, 0.0), (0.0, 0.0)), 1, slots, budget, pool)


def requests(arrival, prompt, output) -> Requests:
    return Requests(np.array(arrival, dtype=float), np.array(prompt), np.array(output))


def experiment(tmp_path, body: str, name: str = "e.yaml"):
    path = tmp_path / name
    path.write_text(f"name: e\ntopology: {TOPOLOGIES / 'ultra8.yaml'}\n{body}")
    return path


SMALL = """model: llama-2-7b
workload: {kind: serving, batch: 8, context: 2048, shapes: dynamic}
plan: {tp: 4, connection: CONN}
serving:
  arrivals: {process: poisson, rate: 2.0}
  prompt_tokens: {dist: uniform, low: 64, high: 512}
  output_tokens: {dist: uniform, low: 16, high: 128}
  requests: 300
  token_budget: 256
"""


def small(tmp_path, connection: str = "p2p", extra: str = ""):
    path = experiment(tmp_path, SMALL.replace("CONN", connection) + extra)
    (variant,) = load_experiment(path).variants
    return variant


def test_a_prompt_runs_in_chunks_of_the_budget():
    # 1,000 prompt tokens at a budget of 256: chunks of 256, 256, 256, 232, the first token at
    # the fourth iteration's end; then 2 decodes for the 3-token output
    records = serve_dynamic(requests([0.0], [1000], [3]), constant(0.5, 4, 256), 1)
    assert records.first_token_s.tolist() == [2.0]
    assert records.finish_s.tolist() == [3.0]
    assert records.iterations.prefill_tokens.tolist() == [256, 256, 256, 232, 0, 0]
    assert records.iterations.decodes.tolist() == [0, 0, 0, 0, 1, 1]


def test_decode_priority_piggybacks_chunks_where_prefill_priority_stalls_decodes():
    # A (100 tokens in, 5 out) at 0; B (300 in, 3 out) at 0.5; 1 s iterations, budget 128.
    # Decode first: A's decodes ride with B's chunks of 127, 127, 46; A is done at 5.
    # Prefill first: B's chunks of 128, 128, 44 run alone; A's 4 decodes wait until 4.
    q = requests([0.0, 0.5], [100, 300], [5, 3])
    decode = serve_dynamic(q, constant(1.0, 4, 128), 1, priority="decode")
    assert decode.first_token_s.tolist() == [1.0, 4.0]
    assert decode.finish_s.tolist() == [5.0, 6.0]
    assert decode.iterations.prefill_tokens.tolist() == [100, 127, 127, 46, 0, 0]
    prefill = serve_dynamic(q, constant(1.0, 4, 128), 1, priority="prefill")
    assert prefill.first_token_s.tolist() == [1.0, 4.0]
    assert prefill.finish_s.tolist() == [8.0, 6.0]
    assert prefill.iterations.prefill_tokens.tolist() == [100, 128, 128, 44, 0, 0, 0, 0]


def test_a_full_kv_pool_preempts_the_newest_sequence():
    # a pool of 10 positions; A (4 in, 5 out) and B (4 in, 3 out) at 0, 1 s iterations.
    # [0, 1]: both prompts (8 held). [1, 2]: both decode (10). At 2 both need a position and
    # none is free: B, the newer, is preempted (its 5 freed), and no prompt is admitted in
    # that step; A decodes alone ([2, 3], 6 held; then 7, 8) while B waits to recompute its
    # prompt and 2 tokens (6 positions, which only fit once A is done at 5); B's recompute
    # gives it its third and last token at 6.
    q = requests([0.0, 0.0], [4, 4], [5, 3])
    records = serve_dynamic(q, constant(1.0, 4, 16, pool=10), 1)
    assert records.preempted.tolist() == [0, 1]
    assert records.first_token_s.tolist() == [1.0, 1.0]
    assert records.finish_s.tolist() == [5.0, 6.0]
    assert records.iterations.kv_positions.tolist() == [8, 10, 6, 7, 8, 6]
    assert records.iterations.prefill_tokens.tolist() == [8, 0, 0, 0, 0, 6]


def test_a_small_pool_never_overflows_and_every_request_ends():
    spec = ServingSpec.model_validate({
        "arrivals": {"process": "poisson", "rate": 20.0},
        "prompt_tokens": {"dist": "uniform", "low": 10, "high": 300},
        "output_tokens": {"dist": "uniform", "low": 1, "high": 200}, "requests": 2000,
        "seed": 4})
    q = generate(spec)
    records = serve_dynamic(q, constant(0.05, 16, 256, pool=2000), 2, "least-outstanding")
    assert records.iterations.kv_positions.max() <= 2000
    assert records.preempted.sum() > 0  # the pool binds
    assert np.isfinite(records.finish_s).all()
    assert (q.arrival_s <= records.start_s).all() and \
        (records.start_s < records.first_token_s).all() and \
        (records.first_token_s <= records.finish_s).all()


def test_one_slot_with_one_token_out_is_an_md1_queue():
    # a request is one iteration of S = 0.2 s: M/D/1, mean wait rho / (2 mu (1 - rho)); and
    # the compiled scheduler with a one-chunk prefill of S serves it at the same instants
    rho, service = 0.8, 0.2
    spec = ServingSpec.model_validate({
        "arrivals": {"process": "poisson", "rate": rho / service},
        "prompt_tokens": {"value": 100}, "output_tokens": {"value": 1},
        "requests": 100_000, "seed": 3})
    q = generate(spec)
    records = serve_dynamic(q, constant(service, 1, 512), 1)
    wait = float(np.mean(records.start_s - q.arrival_s))
    assert wait == pytest.approx(rho / (2 * (1 / service) * (1 - rho)), rel=0.03)
    compiled = serve(q, IterationTimes(128, service, service, 1.0, 1), 1)
    assert np.array_equal(compiled.finish_s, records.finish_s)


def test_an_iteration_is_a_decode_step_or_a_prefill_of_the_llm_run(tmp_path):
    # a second method: the LLM run's own decode step and prefill (dynamic shapes) against
    # the iteration of the same rows, positions and pairs
    variant = small(tmp_path)
    for batch, prompt in ((4, 300), (1, 200)):
        llm = variant_llm(variant, batch, prompt)
        metrics = run_variant(llm, spans=False).metrics
        setup = setup_variant(llm)
        step = iteration_seconds(setup, DEFAULT_SOC_MODEL, batch, batch,
                                 batch * (prompt + 1), batch * (prompt + 1), {})
        assert step == pytest.approx(metrics["tpot_mean_s"], rel=1e-9)
        if batch == 1:  # TTFT ends at the sampled token; an iteration, once it is back in
            first = iteration_seconds(setup, DEFAULT_SOC_MODEL, prompt, 1, prompt,
                                      prompt * (prompt + 1) / 2, {})
            _, token_in, _ = host_round_trip(setup.plan, setup.topo, setup.params, 0.0, 4.0,
                                             0.0)
            assert first == pytest.approx(metrics["ttft_s"] + token_in, rel=1e-9)


@pytest.mark.parametrize("connection, bound", [("p2p", 0.01), ("host", 0.03)])
def test_interpolated_iterations_match_direct_simulation(tmp_path, connection, bound):
    variant = small(tmp_path, connection)
    model = iteration_model(variant)
    setup = setup_variant(variant_llm(variant, 1, model.budget))
    # a second method off the grids: the LLM run's decode step of 5 sequences at 700
    step = run_variant(variant_llm(variant, 5, 699), spans=False).metrics["tpot_mean_s"]
    assert model.seconds(5, 5, 5 * 700, 5 * 700) == pytest.approx(step, rel=bound)
    error = interpolation_error(setup, DEFAULT_SOC_MODEL, model, samples=12, seed=1)
    assert error["max"] < bound


def test_the_kv_pool_is_what_dram_leaves_by_hand(tmp_path):
    variant = small(tmp_path)
    model = iteration_model(variant)
    setup = setup_variant(variant_llm(variant, 1, model.budget))
    m = resolve_model("llama-2-7b").decoder
    per_position = m.layers * 2 * m.kv_width * 2 / 4  # K and V, fp16, heads split 4 ways
    (use, *_) = memory_use(setup.plan, setup.topo,
                        [setup.forward_graph], 0, 0)
    room = use.capacity - use.weights - use.activations - use.reserve
    assert model.kv_positions == int(room // per_position)
    assert kv_positions(setup.plan, setup.topo, [setup.forward_graph]) == model.kv_positions


def test_a_request_longer_than_the_pool_is_refused(tmp_path):
    # 600,000 positions for one request: within the model's context, beyond the pool
    path = experiment(tmp_path, SMALL.replace("CONN", "p2p").replace(
        "context: 2048", "context: 900000").replace(
        "{dist: uniform, low: 16, high: 128}", "{dist: fixed, value: 600000}"))
    with pytest.raises(ConfigError, match=r"a request needs 600,\d+ KV positions; a "
                                          r"replica's pool holds [\d,]+: shorten"):
        simtopo.run(path, band=False)


@pytest.mark.parametrize("workload, serving, message", [
    ("{kind: serving, batch: 64, context: 2048, shapes: dynamic}", "token_budget: 32",
     "token_budget 32 is below the 64 slots (workload.batch)"),
    ("{kind: serving, batch: 8, prompt: 256, context: 2048}",
     "specializations: [{batch: 1, prompt: 256}, {batch: 4, prompt: 256}]",
     "the largest specialization's batch is the program's slots: make it workload.batch (8)"),
    ("{kind: serving, batch: 8, prompt: 256, context: 2048}", "priority: decode",
     "priority 'decode' mixes decodes and prompt chunks in one iteration, which needs "
     "dynamic shapes"),
    ("{kind: serving, batch: 8, prompt: 256, context: 2048}", "token_budget: 256",
     "token_budget is for dynamic shapes"),
    ("{kind: serving, batch: 8, context: 2048, shapes: dynamic}", "scheduler: static",
     "dynamic shapes are served by continuous batching with a token budget"),
    ("{kind: serving, batch: 8, prompt: 256, context: 2048}",
     "specializations: [{batch: 8, prompt: 2047}]",
     "specialization (batch 8, prompt 2047) leaves no room for a decode step"),
])
def test_serving_options_the_program_cannot_run(tmp_path, workload, serving, message):
    path = experiment(tmp_path, f"model: llama-2-7b\nworkload: {workload}\nplan: {{tp: 4}}\n"
                      f"serving:\n  arrivals: {{rate: 1.0}}\n  {serving}\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert message in str(err.value)


def test_static_batches_run_at_the_smallest_specialization_that_holds_them():
    shapes = (CompiledShape(1, 128, 0.05, 0.02), CompiledShape(4, 128, 0.1, 0.03),
              CompiledShape(4, 512, 0.3, 0.03), CompiledShape(8, 512, 0.5, 0.05))
    times = IterationTimes(chunk=128, prefill_s=0.05, batch_prefill_s=0.5, decode_s=0.05,
                           slots=8, shapes=shapes)
    # 3 requests, longest prompt 400: batch 4, where 4 chunks of 128 (0.4 s) lose to one of
    # 512 (0.3 s); then 2 decode steps at batch 4
    assert times.static_batch(3, 400) == (0.3, 0.03)
    assert times.static_batch(3, 100) == (0.1, 0.03)
    assert times.static_batch(5, 100) == (0.5, 0.05)
    assert times.prefill_one(300) == pytest.approx(3 * 0.05)
    q = requests([0.0, 0.0, 0.0], [400, 10, 10], [3, 3, 3])
    records = serve(q, times, 1, scheduler="static")
    assert records.finish_s.tolist() == pytest.approx([0.36] * 3)


def test_specializations_are_simulated_as_their_own_programs(tmp_path):
    path = experiment(tmp_path, "model: llama-2-7b\nworkload: {kind: serving, batch: 8, "
                      "prompt: 256, context: 2048}\nplan: {tp: 4}\nserving:\n  arrivals: "
                      "{rate: 1.0}\n  scheduler: static\n  specializations: [{batch: 1, "
                      "prompt: 256}, {batch: 8, prompt: 256}, {batch: 8, prompt: 1024}]\n")
    (variant,) = load_experiment(path).variants
    times = iteration_times(variant)
    plain = iteration_times(replace(variant, serving=variant.serving.model_copy(
        update={"specializations": None})))
    by_shape = {(x.batch, x.chunk): x for x in times.shapes}
    # the default program is the (1, 256) and (8, 256) specializations
    assert by_shape[(1, 256)].prefill_s == plain.prefill_s
    assert by_shape[(8, 256)].prefill_s == plain.batch_prefill_s
    assert by_shape[(8, 256)].decode_s == plain.decode_s
    assert by_shape[(8, 1024)].prefill_s > by_shape[(8, 256)].prefill_s
    assert times.slots == 8


def test_records_and_iterations_as_data_frames(tmp_path):
    result = simtopo.run(experiment(tmp_path, SMALL.replace("CONN", "p2p")), band=False)
    (serving,) = result.servings
    requests, iterations = serving.to_dataframe(), serving.iterations_dataframe()
    assert len(requests) == 300 and (requests.preempted == 0).all()
    # every prompt token prefilled once, every later token decoded once (nothing preempted)
    assert iterations.prefill_tokens.sum() == requests.prompt_tokens.sum()
    assert iterations.decodes.sum() == (requests.output_tokens - 1).sum()
    # an iteration's seconds are its start's distance to the replica's next one, or less
    gaps = iterations.start_s.diff().dropna()
    assert (gaps >= iterations.seconds[:-1].to_numpy() - 1e-9).all()


@pytest.mark.parametrize("offset, tokens, window", [
    (0, 10, 1 << 62), (100, 37, 1 << 62), (0, 9, 4), (3, 9, 4), (10, 5, 4), (2, 1, 4)])
def test_chunk_pairs_against_counting(offset, tokens, window):
    from simtopo.sim.chunked import chunk_pairs

    counted = sum(min(offset + j, window) for j in range(1, tokens + 1))
    assert chunk_pairs(offset, tokens, window) == counted


def test_an_iteration_reads_exactly_its_positions():
    from simtopo.workload.opgraph import iteration_shape, ops

    m = resolve_model("llama-2-7b").decoder
    graph = resolve_model("llama-2-7b").graph_for(iteration_shape(12, 8, 100, 300))
    (attention, *_) = [op for op in ops(graph) if op.kind == "attention"]
    # 100 positions of K and V at fp16, and 300 pairs over 12 rows (not 8 x round(100 / 8))
    assert attention.kv_read_bytes == 100 * 2 * m.kv_width * 2
    assert attention.extra["attended"] == 300 / 12
