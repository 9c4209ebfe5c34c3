"""MLPerf scenarios: offline through the host feed, stream queries, instances per SoC, by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simtopo import ConfigError
from simtopo.engine.maxmin import fill
from simtopo.results.run import run_variant
from simtopo.spec.experiment import load_experiment
from simtopo.workload.vision import resnet50

from .conftest import ROOT, TOPOLOGIES

GRAPH = """\
name: stream
batch: 1
nodes:
  - {name: work, kind: gemm, flops: 5e9, bytes_read: 1MB, bytes_written: 1kB}
"""


def experiment(tmp_path: Path, workload: str, plan: str, topology: str = "ultra8.yaml"):
    (tmp_path / "g.yaml").write_text(GRAPH)
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: e\ntopology: {TOPOLOGIES / topology}\nmodel: g.yaml\n"
                    f"workload: {{kind: inference, {workload}}}\nplan: {{{plan}}}\n"
                    "variants: [{name: v}]\n")
    (variant,) = load_experiment(path).variants
    return variant


def test_fill_is_max_min_with_caps():
    # one resource of 10: a flow capped at 3 takes 3, the other the remaining 7
    rates, bound = fill(np.array([10.0]), np.array([[1.0], [1.0]]), np.array([3.0, 100.0]))
    assert rates.tolist() == pytest.approx([3.0, 7.0]) and bound.tolist() == [-1, 0]
    # a flow loading the resource twice per unit of rate: x + 2x = 12 at the fair point
    rates, _ = fill(np.array([12.0]), np.array([[1.0], [2.0]]), np.array([50.0, 50.0]))
    assert rates.tolist() == pytest.approx([4.0, 4.0])


def test_offline_is_n_instances_until_the_feed_binds(tmp_path):
    # each instance: 1 MB in per sample; one gemm of 5 GFLOP on a whole Ultra SoC
    rate = None
    feed_link = None
    for n in (1, 2, 3, 4):
        variant = experiment(tmp_path, "scenario: offline, input_bytes: 1MB, output_bytes: 0",
                             f"replicas: {n}")
        result = run_variant(variant)
        m = result.metrics
        rate = rate or m["instance_samples_per_s"]
        topo = result.topology
        # the four SoCs of card0 share its Gen4 x16 card link (host memory and the uplink
        # are far larger); each SoC's own x8 link carries one stream
        card = topo.graph.edges["sw0", "card0.sw"]["bw_Bps"]
        feed_link = card / 1e6
        assert rate * 1e6 < topo.graph.edges["card0.sw", "card0.soc0"]["bw_Bps"]
        expected = min(n * rate, feed_link)
        assert m["offline_samples_per_s"] == pytest.approx(expected, rel=1e-9)
        # past the knee the card link and sw0's uplink (both Gen4 x16) fill together
        assert result.scenario["bound"] in (("compute",) if n * rate < feed_link
                                            else ("rc0->sw0", "sw0->card0.sw"))
    assert 2 * rate < feed_link < 4 * rate  # the test crosses the knee


def test_host_preprocessing_rate_binds(tmp_path):
    variant = experiment(tmp_path, "scenario: offline, host_samples_per_s: 100",
                         "replicas: 4")
    result = run_variant(variant)
    assert result.metrics["offline_samples_per_s"] == pytest.approx(100.0)
    assert result.scenario["bound"] == "host preprocessing"


def test_instances_per_soc_share_the_soc(tmp_path):
    small = "scenario: offline, input_bytes: 1kB"  # a feed far from binding
    one = run_variant(experiment(tmp_path, small, "cores: 8")).metrics
    two = run_variant(experiment(tmp_path, small, "per_soc: 2")).metrics
    # two 8-core instances of a compute-bound pass: each at the rate of one 8-core instance
    assert two["instance_samples_per_s"] == pytest.approx(one["instance_samples_per_s"])
    assert two["offline_samples_per_s"] == pytest.approx(2 * one["offline_samples_per_s"])
    assert two["instances"] == 2.0
    with pytest.raises(ConfigError, match="per_soc 3 instances of 8 cores need 24 cores"):
        run_variant(experiment(tmp_path, "scenario: offline", "per_soc: 3, cores: 8"))


def test_a_stream_query_is_copies_plus_the_pass(tmp_path):
    variant = experiment(tmp_path, "scenario: single-stream, input_bytes: 64MB, "
                         "output_bytes: 0, host_samples_per_s: 1000", "")
    result = run_variant(variant)
    topo = result.topology
    route = topo.route("cpu0", "card0.soc0")
    copy = topo.transfer.dma_setup + route.latency_s + 64e6 / route.bottleneck_Bps
    m = result.metrics
    assert m["query_latency_s"] == pytest.approx(1e-3 + copy + m["latency_s"], rel=1e-9)
    assert m["queries_per_s"] == pytest.approx(1 / m["query_latency_s"])


def test_single_stream_is_one_sample(tmp_path):
    with pytest.raises(ConfigError, match="a single-stream query is one sample: batch 1"):
        experiment(tmp_path, "scenario: single-stream, batch: 2", "")


def test_resnet50_is_its_published_size():
    graph = resnet50(1)
    ops = [graph.nodes[n]["op"] for n in graph]
    # torchvision's resnet50: 25,557,032 parameters and 4.089 GMAC (its weights table); batch
    # norms folded into the convolutions keep one bias of their two parameters per channel
    bn_channels = 64 + sum(blocks * (w + w + 4 * w) + 4 * w
                           for w, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)))
    assert sum(op.weight_params for op in ops) == 25_557_032 - bn_channels
    macs = sum((op.flops - op.bytes_written / 2) / 2 for op in ops if op.kind in ("conv",
                                                                                   "gemm"))
    assert macs == pytest.approx(4.089e9, rel=2e-4)
    # its input: one 224 x 224 RGB image at 2 bytes (the graph is written at fp16)
    assert graph.nodes["conv1"]["op"].bytes_read - graph.nodes["conv1"]["op"].weight_bytes \
        == 224 * 224 * 3 * 2
    assert sum(1 for op in ops if op.kind == "conv") == 53


def test_the_mlperf_experiment_ships(tmp_path):
    exp = load_experiment(ROOT / "experiments" / "mlperf-ultra.yaml")
    names = [v.name for v in exp.variants]
    assert {"resnet50-2cards", "resnet50-16cards", "bert99-2cards", "bert99-16cards"} <= \
        set(names)


def test_two_streams_into_one_soc_lose_the_concurrency_efficiency(tmp_path):
    # 2 instances on card0.soc0, 1 MB per sample in: their two streams share the SoC's Gen4 x8
    # receive side, an endpoint behind a switch, which keeps e(2) = c + (1 - c) / 2 of it
    result = run_variant(experiment(tmp_path, "scenario: offline, input_bytes: 1MB, "
                                    "output_bytes: 0", "per_soc: 2"))
    topo = result.topology
    c = topo.transfer.concurrency_efficiency
    rx = topo.graph.edges["card0.sw", "card0.soc0"]["bw_Bps"] * (c + (1 - c) / 2)
    assert 2 * result.metrics["instance_samples_per_s"] * 1e6 > rx  # the feed binds
    assert result.metrics["offline_samples_per_s"] == pytest.approx(rx / 1e6, rel=1e-9)
    assert result.scenario["bound"] == "rx:card0.soc0"


def test_an_encoder_runs_inference_passes_not_llm(tmp_path):
    path = tmp_path / "bert.yaml"
    path.write_text(f"name: b\ntopology: {TOPOLOGIES / 'ultra8.yaml'}\nmodel: bert-base\n"
                    "workload: {kind: inference, batch: 2, prompt: 384}\n"
                    "variants: [{name: pass}, {name: llm, workload: {kind: llm}}]\n")
    passes, llm = load_experiment(path).variants
    result = run_variant(passes)
    assert all(u.kv_cache == 0 for u in result.memory)  # no KV cache
    with pytest.raises(ConfigError, match=r"needs a decoder model .* is an encoder"):
        run_variant(llm)


def test_batch_mode_splits_the_inputs_over_its_socs(tmp_path):
    def query(plan: str) -> float:
        path = tmp_path / "q.yaml"
        path.write_text(f"name: q\ntopology: {TOPOLOGIES / 'ultra8.yaml'}\nmodel: bert-base\n"
                        "workload: {kind: inference, scenario: multi-stream, batch: 2, "
                        "prompt: 16, input_bytes: 64MB, output_bytes: 0}\n"
                        f"plan: {{{plan}}}\nvariants: [{{name: v}}]\n")
        result = run_variant(load_experiment(path).variants[0])
        return result.metrics["query_latency_s"] - result.metrics["latency_s"], result

    batch, result = query("tp: 2, mode: batch")
    weight, _ = query("tp: 2")
    topo = result.topology
    route = topo.route("cpu0", "card0.soc0")
    # batch mode: each SoC gets its own sample (64 MB) over its x8 link; weight mode: both
    # samples (128 MB) to each SoC
    one = topo.transfer.dma_setup + route.latency_s
    assert batch == pytest.approx(one + 64e6 / route.bottleneck_Bps, rel=1e-9)
    assert weight == pytest.approx(one + 128e6 / route.bottleneck_Bps, rel=1e-9)
