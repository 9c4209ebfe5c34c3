"""Serving: request streams, schedulers against queueing closed forms, Little's law, runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import simtopo
from simtopo import ConfigError
from simtopo.results.serving import serving_metrics
from simtopo.sim.serving import IterationTimes, serve
from simtopo.spec.experiment import load_experiment
from simtopo.spec.serving import ServingSpec
from simtopo.workload.requests import generate

from .conftest import ROOT, TOPOLOGIES

SERVING = ROOT / "experiments" / "serving-ultra8.yaml"


def spec(**fields) -> ServingSpec:
    return ServingSpec.model_validate({"arrivals": {"process": "poisson", "rate": 1.0},
                                       **fields})


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_one_slot_is_an_md1_queue(rho):
    # batch 1, fixed lengths: every request is served in S = prefill + one decode step, so a
    # replica is an M/D/1 queue: mean wait rho / (2 mu (1 - rho)) (Pollaczek-Khinchine)
    times = IterationTimes(chunk=128, prefill_s=0.1, batch_prefill_s=0.3, decode_s=0.05,
                           slots=1)
    service = 0.1 + 0.05
    requests = generate(spec(arrivals={"process": "poisson", "rate": rho / service},
                             prompt_tokens={"value": 100}, output_tokens={"value": 2},
                             requests=100_000, seed=3))
    records = serve(requests, times, 1)
    wait = float(np.mean(records.start_s - requests.arrival_s))
    assert wait == pytest.approx(rho / (2 * (1 / service) * (1 - rho)), rel=0.03)
    # and nobody waits for anything but the queue: service is exactly S
    assert np.allclose(records.finish_s - records.start_s, service)


def test_static_batching_saturates_at_batch_over_batch_time():
    times = IterationTimes(chunk=128, prefill_s=0.1, batch_prefill_s=0.4, decode_s=0.05,
                           slots=8)
    # far more than it can serve; prompts of 200 tokens are 2 chunks, 10 tokens out
    requests = generate(spec(arrivals={"process": "poisson", "rate": 1000.0},
                             prompt_tokens={"value": 200}, output_tokens={"value": 10},
                             requests=4000))
    records = serve(requests, times, 1, scheduler="static")
    batch_time = 2 * 0.4 + 9 * 0.05
    # back to back full batches: 8 requests end together every batch time
    ends, counts = np.unique(np.round(records.finish_s, 9), return_counts=True)
    assert np.allclose(np.diff(ends), batch_time) and set(counts) == {8}
    served = len(requests) / (ends[-1] - ends[0] + batch_time)
    assert served == pytest.approx(8 / batch_time, rel=1e-9)


def test_continuous_batching_serves_each_request_its_steps():
    times = IterationTimes(chunk=128, prefill_s=0.1, batch_prefill_s=0.4, decode_s=0.05,
                           slots=4)
    from simtopo.workload.requests import Requests

    # two requests at once: the second prefills (3 chunks) after the first (1 chunk)
    requests = Requests(np.array([0.0, 0.0]), np.array([100, 300]), np.array([3, 1]))
    records = serve(requests, times, 1)
    assert records.first_token_s.tolist() == pytest.approx([0.1, 0.1 + 3 * 0.1])
    # the first decodes its 2 remaining tokens after the second's prefill
    assert records.finish_s.tolist() == pytest.approx([0.4 + 2 * 0.05, 0.4])


def test_little_s_law_holds_on_every_shipped_serving_run():
    result = simtopo.run(SERVING, reduced=True, band=False)
    assert result.servings
    for serving in result.servings:
        m = serving.metrics
        if m["requests_per_s"] > 0.98 * m["offered_per_s"]:  # a stable queue
            assert m["littles_law_relative_error"] < 0.01, serving.name


def test_continuous_batching_lowers_p99_ttft_against_static():
    result = simtopo.run(SERVING, reduced=True, band=False)
    by_name = {s.name: s.metrics for s in result.servings}
    assert by_name["tp16-p2p"]["ttft_p99_s"] < by_name["tp16-p2p-static"]["ttft_p99_s"]


def test_identical_seeds_give_identical_summaries():
    one = simtopo.run(SERVING, reduced=True, band=False).to_json()
    two = simtopo.run(SERVING, reduced=True, band=False).to_json()
    assert one == two
    data = json.loads(one)
    assert data["servings"][0]["metrics"]["requests"] > 0


def test_request_streams_have_the_asked_rates_and_lengths():
    q = generate(spec(arrivals={"process": "gamma", "rate": 4.0, "cv": 2.0},
                      prompt_tokens={"dist": "uniform", "low": 10, "high": 20},
                      output_tokens={"dist": "lognormal", "median": 50, "sigma": 0.5},
                      requests=200_000, seed=5))
    gaps = np.diff(q.arrival_s)
    assert gaps.mean() == pytest.approx(0.25, rel=0.01)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.02)
    assert q.prompt_tokens.min() == 10 and q.prompt_tokens.max() == 20
    assert np.median(q.output_tokens) == pytest.approx(50, abs=1)


def test_metrics_by_hand():
    from simtopo.sim.serving import Records
    from simtopo.workload.requests import Requests

    q = Requests(np.array([0.0, 1.0]), np.array([10, 10]), np.array([3, 1]))
    r = Records(np.array([0, 0]), np.array([0.0, 1.5]), np.array([0.5, 2.0]),
                np.array([1.5, 2.0]))
    m = serving_metrics(q, r, 0, 0.6, 0.4, slots=1)
    assert m["ttft_mean_s"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["tpot_mean_s"] == pytest.approx(0.5)  # (1.5 - 0.5) / 2 tokens
    assert m["queue_p50_s"] == pytest.approx(0.25)
    # the first meets TTFT 0.6 s but not TPOT 0.4 s; the second misses TTFT
    assert m["slo_attainment"] == 0.0 and m["requests_per_s"] == pytest.approx(2 / 2.0)


def test_a_trace_and_its_errors(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,100,10\n0.1,50,5\n")
    path = tmp_path / "e.yaml"
    path.write_text(f"name: e\ntopology: {TOPOLOGIES / 'ultra8.yaml'}\nmodel: llama-2-7b\n"
                    "workload: {kind: serving, batch: 2, prompt: 128, context: 256}\n"
                    "serving: {arrivals: {process: trace, trace: t.csv}, requests: 2}\n")
    (variant,) = load_experiment(path).variants
    q = generate(variant.serving)
    assert q.arrival_s.tolist() == [0.1, 0.5] and q.output_tokens.tolist() == [5, 10]
    trace.write_text("arrival_s,prompt_tokens\n0.5,100\n")
    with pytest.raises(ConfigError, match="a trace needs the columns arrival_s, "
                                          "prompt_tokens, output_tokens"):
        generate(variant.serving)


def test_requests_longer_than_the_compiled_context_are_refused(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(f"name: e\ntopology: {TOPOLOGIES / 'ultra8.yaml'}\nmodel: llama-2-7b\n"
                    "workload: {kind: serving, batch: 2, prompt: 128, context: 256}\n"
                    "serving: {arrivals: {rate: 1}, prompt_tokens: {value: 200}, "
                    "output_tokens: {value: 100}, requests: 5}\n")
    with pytest.raises(ConfigError, match="5 of 5 requests need more than the compiled "
                                          "context of 256 positions"):
        simtopo.run(path, band=False)
