"""Weight loading: closed forms on a machine simple enough to time by hand, the vendor's
ordering of the strategies on the shipped experiments, and bad input.

The hand-made machine: one socket (memory far faster than anything else), one root complex
with no hop latency, one storage device and one single-SoC card, links with explicit
bandwidths, no DMA set-up. A rank's shard of W bytes moves in k chunks; with a read stage of
r = W / read bandwidth and a transfer stage of t = W / link bandwidth, two overlapped stages
take max(r, t) + min(r, t) / k.
"""

from __future__ import annotations

import math

import pytest

from simtopo.errors import ConfigError, RouteError
from simtopo.results.run import run
from simtopo.sim.loading import Rank, map_ranks, simulate_load, simulate_loads
from simtopo.spec.load import LoadSpec
from simtopo.topology import routing
from simtopo.topology.files import topology_from_dict

from .conftest import ROOT

W = 8e9
K = 8
FAST = 1e-4
"""Relative tolerance where a stage the closed form leaves out runs at the plausible maximum
of 100 TB/s (sharding, the copies through host memory): 2 W / K / 100 TB/s = 20 us a
chunk, at most 1.2e-5 of these loads, where the forms compared differ by a few percent."""
SOC = {"cores": 16, "peak_flops": {"fp16": "100TFLOPS"}, "dram": "64GB", "dram_bw": "1TB/s"}


def machine(read_Bps: float, link_Bps: float, latency: str = "0s",
            memory: str = "1TB", memory_Bps: float = 1e14) -> object:
    spec = {
        "name": "loader",
        "transfer": {"dma_setup": "0s"},
        "host": {"sockets": [{"id": "cpu0", "cores": 8, "memory": memory,
                              "memory_bw": memory_Bps,
                              "root_complexes": [{"id": "rc0", "hop_latency": "0s"}]}]},
        "card_types": {"one": {"name": "One", "host_link": {"bandwidth": link_Bps},
                               "soc": SOC}},
        "cards": [{"type": "one", "parent": "rc0"}],
        "storage": [{"id": "disk", "kind": "nvme", "parent": "rc0",
                     "link": {"bandwidth": 1e14}, "read_bw": read_Bps,
                     "write_bw": read_Bps, "latency": latency}],
    }
    return topology_from_dict(spec)


def one_rank(topo) -> list[Rank]:
    return [Rank(0, topo.socs[0], "cpu0")]


def load(topo, strategy: str, cache: float = 1e15, **spec) -> object:
    settings = {"sources": ["disk"], "chunks": K,
                "host": {"shard_rate": 1e14, "serialize_rate": 1e14, "copy_rate": 1e14,
                         **spec.pop("host", {})}, **spec}
    return simulate_load(topo, topo.transfer, LoadSpec(**settings), "disk", strategy,
                         one_rank(topo), W, cache)


def test_bound_by_the_storage_read():
    topo = machine(read_Bps=2e9, link_Bps=100e9)
    r, t = W / 2e9, W / 100e9
    out = load(topo, "shard-on-compile")
    assert out.total_s == pytest.approx(r + t / K, rel=1e-9)
    assert out.bottleneck == "storage read"
    assert out.phases["storage read"]["bytes"] == pytest.approx(W)


def test_bound_by_the_host_link():
    topo = machine(read_Bps=100e9, link_Bps=1e9)
    r, t = W / 100e9, W / 1e9
    out = load(topo, "shard-on-compile")
    assert out.total_s == pytest.approx(t + r / K, rel=1e-9)
    assert out.bottleneck == "host to device"


@pytest.mark.parametrize(("read", "link"), [(3e9, 2e9), (2e9, 3e9), (5e9, 5e9)])
def test_shard_on_load_overlaps_reading_and_transfer_in_k_chunks(read, link):
    topo = machine(read_Bps=read, link_Bps=link)
    r, t = W / read, W / link
    out = load(topo, "shard-on-load")
    assert out.total_s == pytest.approx(max(r, t) + min(r, t) / K, rel=FAST)


def test_a_per_request_latency_is_a_fixed_cost_of_every_chunk_read():
    latency = 2e-3
    topo = machine(read_Bps=3e9, link_Bps=2e9, latency="2ms")
    a, b = latency + W / K / 3e9, W / K / 2e9   # one chunk's read and transfer
    out = load(topo, "shard-on-load")
    assert out.total_s == pytest.approx(a + b + (K - 1) * max(a, b), rel=FAST)


def test_sharding_on_one_worker_and_serialising_bound_the_first_run():
    topo = machine(read_Bps=50e9, link_Bps=50e9)
    shard, serialize = 2e9, 4e9
    first = load(topo, "shard-on-compile-first",
                 host={"shard_rate": shard, "serialize_rate": serialize, "compile_workers": 1})
    # one worker shards and serialises every byte: at least W / shard + W / serialize
    assert first.total_s >= W / shard + W / serialize
    later = load(topo, "shard-on-compile")
    on_load = load(topo, "shard-on-load", host={"shard_rate": shard, "workers": 1})
    assert later.total_s < on_load.total_s < first.total_s
    # shard on load with one worker: sharding is the slowest stage, W / shard plus the fill
    assert on_load.total_s == pytest.approx(W / shard + 2 * (W / 50e9) / K, rel=1e-9)


def test_pageable_buffers_add_a_host_copy_per_chunk():
    topo = machine(read_Bps=100e9, link_Bps=1e9)
    pinned = load(topo, "shard-on-compile")
    pageable = load(topo, "shard-on-compile",
                    host={"buffers": "pageable", "copy_rate": 4e9})
    # a third stage of W / 4 GB/s overlaps the link-bound transfer except for one chunk
    assert pageable.total_s == pytest.approx(pinned.total_s + W / K / 4e9, rel=1e-9)
    assert pageable.phases["pageable copy"]["bytes"] == pytest.approx(W)


def test_a_page_cache_smaller_than_the_checkpoint_streams_the_rest():
    topo = machine(read_Bps=2e9, link_Bps=100e9)
    cache = 0.3 * W
    out = simulate_load(topo, topo.transfer, LoadSpec(sources=["disk"], chunks=K, cache="warm",
                                                 host={"copy_rate": 1e14}),
                        "disk", "shard-on-compile", one_rank(topo), W, cache)
    warm = math.floor(K * cache / W)  # whole chunks found in the page cache
    assert out.phases["storage read"]["bytes"] == pytest.approx(W * (K - warm) / K)
    assert out.phases["page-cache read"]["bytes"] == pytest.approx(W * warm / K)
    assert any("streams from storage" in n for n in out.notes)


def test_the_shipped_experiments_keep_the_vendors_order():
    """AWS: a pre-sharded load beats shard on load, and a first shard-on-compile run (which
    shards and serialises before it loads) is the slowest."""
    for name in ("load-llama-405b", "load-ultra8"):
        result = run(ROOT / "experiments" / f"{name}.yaml", variants=["cold"])
        (load_result,) = result.loads
        for source in load_result.inputs["load"]["sources"]:
            first, later, on_load = (load_result.outcome(source, s).total_s for s in (
                "shard-on-compile-first", "shard-on-compile", "shard-on-load"))
            assert later < on_load < first, (name, source)


def test_ranks_map_onto_devices_by_logical_core_size():
    topo = topology_from_dict({
        "name": "n", "host": {"sockets": [{"id": "cpu0", "cores": 8, "memory": "64GB",
                                           "memory_bw": "100GB/s"}]},
        "card_types": {"c": {"name": "C", "host_link": {"gen": 5, "lanes": 16},
                             "soc": dict(SOC, cores=8)}},
        "cards": [{"type": "c", "parent": "rc0", "count": 4}]})
    ranks = map_ranks(topo, 16, 2, topo.socs)
    assert [r.device for r in ranks[:5]] == ["card0.soc0"] * 4 + ["card1.soc0"]
    with pytest.raises(ConfigError, match=r"load: 32 ranks need 8 devices \(4 ranks of 2 "
                                          r"cores each\); the plan has 4"):
        map_ranks(topo, 32, 2, topo.socs)
    assert len({r.device for r in map_ranks(topo, 4, None, topo.socs)}) == 4
    with pytest.raises(ConfigError, match=r"load\.virtual_core_size: 3 does not divide the 8"):
        map_ranks(topo, 4, 3, topo.socs)


def test_bad_sources_are_one_line_errors(monkeypatch):
    topo = machine(read_Bps=2e9, link_Bps=2e9)
    ranks = one_rank(topo)
    with pytest.raises(ConfigError, match=r"load\.sources\[0\]: 'nope' is not a storage "
                                          r"device of loader \(storage devices: disk\)"):
        simulate_loads(topo, topo.transfer, LoadSpec(sources=["nope"]), ranks, W)

    def no_route(*args, **kwargs):
        raise RouteError("disk is cut off")

    monkeypatch.setattr(routing, "route", no_route)
    with pytest.raises(ConfigError, match=r"load\.sources\[0\]: disk has no route to the "
                                          r"host memory of cpu0 \(disk is cut off\)"):
        simulate_loads(topo, topo.transfer, LoadSpec(sources=["disk"]), ranks, W)


def test_host_copies_load_host_memory_bandwidth():
    """A page-cache read copies its bytes (read and write): at 10 GB/s of host memory, 8 GB
    take at least 1.6 s of copying, even with threads that could copy faster."""
    topo = machine(read_Bps=100e9, link_Bps=100e9, memory_Bps=10e9)
    warm = simulate_load(topo, topo.transfer, LoadSpec(sources=["disk"], chunks=K, cache="warm",
                                                       host={"copy_rate": 1e14}),
                         "disk", "shard-on-compile", one_rank(topo), W, 1e15)
    assert warm.phases["page-cache read"]["busy_s"] >= 2 * W / 10e9 * (1 - 1e-9)


def test_more_logical_ranks_on_a_device_move_the_same_bytes_in_the_same_time():
    topo = topology_from_dict({
        "name": "n", "transfer": {"dma_setup": "0s"},
        "host": {"sockets": [{"id": "cpu0", "cores": 8, "memory": "1TB", "memory_bw": 1e14,
                              "root_complexes": [{"id": "rc0", "hop_latency": "0s"}]}]},
        "card_types": {"c": {"name": "C", "host_link": {"bandwidth": 1e9},
                             "soc": dict(SOC, cores=8)}},
        "cards": [{"type": "c", "parent": "rc0", "count": 2}],
        "storage": [{"id": "disk", "kind": "nvme", "parent": "rc0", "link": {"bandwidth": 1e14},
                     "read_bw": 1e12, "write_bw": 1e12}]})
    spec = LoadSpec(sources=["disk"], chunks=K, host={"copy_rate": 1e14})
    whole = simulate_load(topo, topo.transfer, spec, "disk", "shard-on-compile",
                          map_ranks(topo, 2, None, topo.socs), W / 2, 1e15)
    split = simulate_load(topo, topo.transfer, spec, "disk", "shard-on-compile",
                          map_ranks(topo, 8, 2, topo.socs), W / 8, 1e15)
    assert split.total_s == pytest.approx(whole.total_s, rel=1e-9)
    # each device: W/2 over its own 1 GB/s link; the two share the 1 TB/s drive
    assert whole.total_s == pytest.approx(W / 2 / 1e9 + W / 2 / 0.5e12 / K, rel=1e-9)


def test_host_memory_bounds_the_pieces_in_flight():
    """With memory for two pieces, reading cannot run ahead of one slow sharding thread."""
    topo = machine(read_Bps=8e9, link_Bps=100e9)
    spec = LoadSpec(sources=["disk"], chunks=K, host={"workers": 1, "shard_rate": 1e9,
                                                      "copy_rate": 1e14})
    free = simulate_load(topo, topo.transfer, spec, "disk", "shard-on-load", one_rank(topo),
                         W, 1e15)
    tight = simulate_load(topo, topo.transfer, spec, "disk", "shard-on-load", one_rank(topo),
                          W, 1e15, memory_bytes=2 * W / K)
    assert free.phases["storage read"]["end_s"] == pytest.approx(W / 8e9, rel=1e-9)
    # the last piece is read only when the piece two before it has reached the device
    assert tight.phases["storage read"]["end_s"] > (K - 2) * W / K / 1e9
    assert any("holds 2 of each device's 8 pieces" in n for n in tight.notes)


def test_the_cli_refuses_bad_load_sections_in_one_line(tmp_path, capsys):
    import yaml

    from simtopo.cli import main

    base = yaml.safe_load((ROOT / "experiments" / "load-ultra8.yaml").read_text())
    base["topology"] = str(ROOT / "topologies" / "ultra8.yaml")
    base["variants"] = [{"name": "cold", "workload": {"kind": "load"}}]
    cases = [({"tp": 64}, "load: 64 ranks need 64 devices (one rank each); the plan has 16"),
             ({"sources": ["card0.soc0"]}, "'card0.soc0' is not a storage device of ultra8"),
             ({"sources": ["nvme0", "nvme0"]}, "sources lists 'nvme0' twice"),
             ({"virtual_core_size": 3}, "load.virtual_core_size: 3 does not divide the 16")]
    for change, message in cases:
        spec = dict(base, load={**base["load"], **change})
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(spec))
        assert main(["run", str(path), "--no-report"]) == 2, change
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_a_sweep_of_a_loading_only_variant_records_its_load_times(tmp_path):
    from simtopo.analysis.executors import run_sweep
    from simtopo.analysis.sweep import parse_set

    result = run_sweep(ROOT / "experiments" / "load-ultra8.yaml", [parse_set("load.chunks=4,8")],
                       ["warm"], folder=tmp_path, executor="serial", figures=False)
    from simtopo.results.run import run_load
    from simtopo.spec.experiment import load_experiment

    (variant,) = load_experiment(ROOT / "experiments" / "load-ultra8.yaml",
                                 overrides={"load": {"chunks": 8}}, only="warm").variants
    alone = run_load(variant)
    rec = result.records[1]  # chunks 8
    assert rec["status"] == "ok"
    for o in alone.outcomes:
        assert rec["metrics"][f"load_{o.strategy}@{o.source}_s"] == \
            pytest.approx(o.total_s, rel=1e-11)
    assert set(rec["metrics"]) == {f"load_{s}@{src}_s" for s in (
        "shard-on-compile-first", "shard-on-compile", "shard-on-load") for src in ("nvme0", "vol0")}


def test_a_bad_load_section_is_refused_before_anything_is_simulated(tmp_path, no_simulation):
    # the load variant inherits the base plan's tp 64, which trn2-16's 16 chips cannot hold;
    # the decode variant listed before it would take seconds: it must not start
    path = tmp_path / "e.yaml"
    path.write_text(f"name: e\ntopology: {ROOT / 'topologies' / 'trn2-16-lnc2.yaml'}\n"
                    "model: llama-3.1-405b\nworkload: {batch: 1, prompt: 64, generate: 4, "
                    "precision: bf16, activations: bf16}\nplan: {tp: 64}\nvariants:\n"
                    "  - {name: decode}\n"
                    f"  - {{name: load, topology: {ROOT / 'topologies' / 'trn2-16.yaml'}, "
                    "workload: {kind: load}, plan: {connection: host}, "
                    "load: {sources: [nvme0], strategies: [shard-on-load]}}\n")
    with pytest.raises(ConfigError, match=r"variant 'load': plan: the plan needs 64 SoCs "
                                          r"\(tp 64 x pp 1 x replicas 1\); trn2-16 has 16"):
        run(path, band=False)
    path.write_text(path.read_text().replace("plan: {connection: host}",
                                             "plan: {tp: 16, connection: host}")
                    .replace("sources: [nvme0]", "sources: [nvme9]"))
    with pytest.raises(ConfigError, match=r"variant 'load': load.sources\[0\]: 'nvme9' is not "
                                          r"a storage device of trn2-16"):
        run(path, band=False)
