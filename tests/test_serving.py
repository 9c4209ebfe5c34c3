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


@pytest.fixture(scope="module")
def shipped():
    """The shipped serving experiment at its CI size (run once for the tests that read it)."""
    return simtopo.run(SERVING, reduced=True, band=False)


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


def test_little_s_law_holds_on_every_shipped_serving_run(shipped):
    stable = [s for s in shipped.servings
              if s.metrics["requests_per_s"] > 0.98 * s.metrics["offered_per_s"]]
    assert len(stable) >= 4  # an overloaded queue has no steady state to check
    for serving in stable:
        assert serving.metrics["littles_law_relative_error"] < 0.01, serving.name


def test_little_s_law_by_hand():
    from simtopo.sim.serving import Records
    from simtopo.workload.requests import Requests

    # arrivals at 0, 1, 2, 3, each in the system for 0.5 s: over [0, 3] one request is in
    # for half of every second (the last one's stay lies past the window): L = 0.5; lambda =
    # 3 gaps / 3 s = 1; W = 0.5
    q = Requests(np.arange(4.0), np.full(4, 10), np.full(4, 2))
    r = Records(np.zeros(4, dtype=int), np.arange(4.0), np.arange(4.0) + 0.25,
                np.arange(4.0) + 0.5)
    m = serving_metrics(q, r, 0, None, None, slots=1)
    assert m["in_system_mean"] == pytest.approx(0.5)
    assert m["littles_law_relative_error"] == pytest.approx(0.0, abs=1e-12)


def test_continuous_batching_lowers_p99_ttft_against_static(shipped):
    by_name = {s.name: s.metrics for s in shipped.servings}
    assert by_name["tp16-p2p"]["ttft_p99_s"] < by_name["tp16-p2p-static"]["ttft_p99_s"]


def test_identical_seeds_give_identical_summaries(shipped):
    one = shipped.to_json()
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

    q = Requests(np.array([0.0, 1.0, 1.0, 2.0]), np.array([10, 10, 10, 10]),
                 np.array([3, 1, 5, 1]))
    r = Records(np.zeros(4, dtype=int), np.array([0.0, 1.5, 1.0, 2.0]),
                np.array([0.5, 2.0, 1.2, 2.1]), np.array([1.5, 2.0, 2.0, 2.1]))
    m = serving_metrics(q, r, 0, 0.6, 0.4, slots=2)
    assert m["ttft_mean_s"] == pytest.approx((0.5 + 1.0 + 0.2 + 0.1) / 4)
    # TPOT of the two that decode: (1.5 - 0.5) / 2 = 0.5 and (2.0 - 1.2) / 4 = 0.2
    assert m["tpot_mean_s"] == pytest.approx((0.5 + 0.2) / 2)
    assert m["queue_p50_s"] == pytest.approx(0.0)
    # the first misses TPOT, the second TTFT; the third meets both; the fourth (one token:
    # no TPOT) meets TTFT: 2 of 4 in 2.1 s
    assert m["slo_attainment"] == 0.5 and m["goodput_per_s"] == pytest.approx(2 / 2.1)
    # decoding time (1.0 + 0.8) over 2.1 s x 2 slots
    assert m["slot_utilization"] == pytest.approx(1.8 / (2.1 * 2))


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


def test_requests_longer_than_the_compiled_context_are_refused(tmp_path, no_simulation):
    # refused before anything is simulated: the decode variant listed first never starts
    path = tmp_path / "e.yaml"
    path.write_text(f"name: e\ntopology: {TOPOLOGIES / 'ultra8.yaml'}\nmodel: llama-2-7b\n"
                    "workload: {kind: serving, batch: 2, prompt: 128, context: 256}\n"
                    "serving: {arrivals: {rate: 1}, prompt_tokens: {value: 200}, "
                    "output_tokens: {value: 100}, requests: 5}\n"
                    "variants: [{name: decode, workload: {kind: llm, generate: 8}}, "
                    "{name: serve}]\n")
    with pytest.raises(ConfigError, match="variant 'serve': 5 of 5 requests need more than "
                                          "the compiled context of 256 positions"):
        simtopo.run(path, band=False)


def test_static_batches_start_when_the_oldest_has_waited():
    from simtopo.workload.requests import Requests

    times = IterationTimes(chunk=128, prefill_s=0.1, batch_prefill_s=0.2, decode_s=0.05,
                           slots=2)
    q = Requests(np.array([0.0, 3.0, 10.0, 11.0]), np.full(4, 100), np.full(4, 2))
    records = serve(q, times, 1, scheduler="static", batch_wait=1.0)
    # alone after 1 s, alone after 1 s (the batch before has ended), then a full pair
    assert records.start_s.tolist() == pytest.approx([1.0, 4.0, 11.0, 11.0])


def test_least_outstanding_spreads_over_replicas():
    from simtopo.workload.requests import Requests

    times = IterationTimes(chunk=128, prefill_s=1.0, batch_prefill_s=1.0, decode_s=1.0,
                           slots=1)
    q = Requests(np.zeros(4), np.full(4, 100), np.full(4, 1))
    records = serve(q, times, 2, router="least-outstanding")
    assert records.replica.tolist() == [0, 1, 0, 1]
    assert sorted(records.finish_s.tolist()) == [1.0, 1.0, 2.0, 2.0]


@pytest.mark.parametrize(("body", "message"), [
    ("arrival_s,prompt_tokens,output_tokens\n0.5,100,ten\n0.6,100,5\n",
     "output_tokens: whole numbers"),
    ("arrival_s,prompt_tokens,output_tokens\n0.5,100,10\n", "the trace has 1 requests"),
])
def test_bad_traces_get_one_line_errors(tmp_path, body, message):
    (tmp_path / "t.csv").write_text(body)
    path = tmp_path / "e.yaml"
    path.write_text(f"name: e\ntopology: {TOPOLOGIES / 'ultra8.yaml'}\nmodel: llama-2-7b\n"
                    "workload: {kind: serving, batch: 2, prompt: 128, context: 256}\n"
                    "serving: {arrivals: {process: trace, trace: t.csv}, requests: 2}\n")
    (variant,) = load_experiment(path).variants
    with pytest.raises(ConfigError, match=message):
        generate(variant.serving)


def test_a_burst_at_one_instant_is_served():
    from simtopo.workload.requests import Requests

    times = IterationTimes(chunk=128, prefill_s=0.1, batch_prefill_s=0.2, decode_s=0.05,
                           slots=2)
    q = Requests(np.zeros(3), np.full(3, 100), np.full(3, 2))
    m = serving_metrics(q, serve(q, times, 1), 0, None, None, slots=2)
    assert m["offered_per_s"] == 0.0 and m["requests"] == 3.0


def test_serving_needs_its_section(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(f"name: e\ntopology: {TOPOLOGIES / 'ultra8.yaml'}\nmodel: llama-2-7b\n"
                    "workload: {kind: serving}\n")
    with pytest.raises(ConfigError, match="workload kind 'serving' needs a 'serving:' "
                                          "section"):
        load_experiment(path)


def test_sweep_keys_of_the_serving_section():
    from simtopo.analysis.sweep import parse_set

    assert parse_set("serving.arrivals.rate=0.1,0.2").values == (0.1, 0.2)
    with pytest.raises(ConfigError, match=r"serving has no key 'arrivals\.speed'"):
        parse_set("serving.arrivals.speed=1")


def test_the_report_draws_the_serving_figures(shipped):
    from simtopo.report.markdown import figure_files
    from simtopo.report.serving_figures import load_curves

    names = list(figure_files(shipped))
    assert names[:2] == ["latencycdf.png", "loadcurve.png"]
    assert names[2:4] == ["requests-tp16-p2p-r0.05.png", "iterations-tp16-p2p-chunked.png"]
    # five programs ran at two or more rates (tp16 P2P, tp16 host-routed, 2 x tp16 P2P,
    # compiled; tp16 P2P dynamic with 8 and with 64 slots): a line each on both panels
    left, right = load_curves(shipped).axes
    assert len(left.lines) == len(right.lines) == 5
    assert sorted(line.get_label() for line in right.lines) == [
        "tp16 host, continuous, 8 slots", "tp16 p2p, chunked, decode first, 64 slots",
        "tp16 p2p, chunked, decode first, 8 slots", "tp16 p2p, continuous, 8 slots",
        "tp16 x2 p2p, continuous, 8 slots"]
