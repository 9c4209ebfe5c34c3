"""Benchmark mode: the shapes of p2pBandwidthLatencyTest, nccl-tests and bandwidthTest."""

from __future__ import annotations

import json

import numpy as np
import pytest

import simtopo
from simtopo.calibration import bench
from simtopo.calibration.bench_report import bench_json, collect_bench
from simtopo.cli import main

from .conftest import TOPOLOGIES, tiny_spec

PAIR = ["card0.soc0", "card0.soc1"]


def test_unidirectional_and_bidirectional_by_hand(ultra8):
    m = bench.p2p_matrices(ultra8, PAIR, p2p=True)
    route = ultra8.route(*PAIR)
    setup, size = ultra8.transfer.dma_setup, bench.MATRIX_BYTES
    one_way = size / (setup + route.latency_s + size / route.bottleneck_Bps)
    assert m.uni_Bps[0, 1] == pytest.approx(one_way, rel=1e-9)
    # the two directions use opposite link directions, together at most d x both: each runs
    # at d x the bottleneck, both finish together, 2S counted
    d = ultra8.transfer.duplex_efficiency
    both = size / (setup + route.latency_s + size / (d * route.bottleneck_Bps))
    assert m.bi_Bps[0, 1] == pytest.approx(2 * both, rel=1e-9)
    assert not m.staged.any()


def test_latency_matrix_is_per_copy_of_queued_copies(ultra8):
    m = bench.p2p_matrices(ultra8, PAIR, p2p=True)
    route = ultra8.route(*PAIR)
    setup, n = ultra8.transfer.dma_setup, bench.LATENCY_REPEAT
    per_copy = setup + bench.LATENCY_BYTES / route.bottleneck_Bps
    # n copies back to back, the last one's route latency at the end
    assert m.latency_s[0, 1] == pytest.approx((n * per_copy + route.latency_s) / n, rel=1e-9)


def test_p2p_on_falls_back_to_staging_where_p2p_is_refused(ultra16_2s):
    devices = ["card0.soc0", "card8.soc0"]
    on = bench.p2p_matrices(ultra16_2s, devices, p2p=True)
    off = bench.p2p_matrices(ultra16_2s, devices, p2p=False)
    assert on.staged[0, 1] and on.staged[1, 0]
    assert on.uni_Bps[0, 1] == pytest.approx(off.uni_Bps[0, 1])
    assert "* host-staged" in bench.format_matrices(on)


def test_host_to_device_sweep_by_hand(ultra8):
    rows = bench.copy_sweep(ultra8, "card0.soc0", sizes=[4e3, 256e6])
    route = ultra8.route("host", "card0.soc0")
    for size, h2d, d2h in rows:
        expected = size / (ultra8.transfer.dma_setup + route.latency_s
                           + size / route.bottleneck_Bps)
        assert h2d == pytest.approx(expected, rel=1e-9)
        assert d2h == pytest.approx(expected, rel=1e-9)


def test_collective_table_shape(ultra8):
    group = list(ultra8.socs[:4])
    p2p = bench.collective_sweep(ultra8, "all_reduce", group, "p2p", sizes=[16384, 2**26])
    host = bench.collective_sweep(ultra8, "all_reduce", group, "host", sizes=[16384, 2**26])
    text = bench.format_collective_table("all_reduce", p2p, host)
    lines = text.splitlines()
    assert lines[0] == "all_reduce over 4 devices (card0.soc0 .. card0.soc3)"
    assert lines[2].split()[0] == "16384" and lines[3].split()[0] == "67108864"
    speedup = float(lines[2].split()[-1].rstrip("x"))
    assert speedup == pytest.approx(host[0].time_s / p2p[0].time_s, abs=0.006)
    # a longer algorithm name widens its column: rows stay aligned, within 80 columns
    from dataclasses import replace

    long = [replace(r, algorithm="hierarchical") for r in p2p]
    rows = bench.format_collective_table("all_reduce", long, host).splitlines()[1:4]
    assert len({len(r) for r in rows}) == 1 and len(rows[0]) <= 80
    assert rows[0].index("p2p alg") + len("p2p alg") == rows[1].index("hierarchical") + 12


def test_dma_engine_cap_limits_a_device():
    spec = tiny_spec()
    spec["card_types"]["duo"]["soc"] = {**spec["card_types"]["duo"]["soc"], "dma_bw": "5GB/s"}
    topo = simtopo.topology_from_dict(spec)
    rows = bench.copy_sweep(topo, "card0.soc0", sizes=[1e9])
    setup = topo.transfer.dma_setup
    latency = topo.route("host", "card0.soc0").latency_s
    assert rows[0][1] == pytest.approx(1e9 / (setup + latency + 1e9 / 5e9), rel=1e-9)


def test_host_memory_is_shared_by_host_to_device_copies():
    spec = tiny_spec()
    spec["host"]["sockets"][0]["memory_bw"] = "6GB/s"
    topo = simtopo.topology_from_dict(spec)
    # two host-to-device copies to different cards: memory (6 GB/s) serving two streams keeps
    # e(2) = c + (1 - c) / 2 of it, split evenly
    t, _ = bench.timed_copies(topo, [("host", "card0.soc0"), ("host", "card2.soc0")], 3e9,
                              "p2p")
    latency = max(topo.route("host", d).latency_s for d in ("card0.soc0", "card2.soc0"))
    c = topo.transfer.concurrency_efficiency
    rate = 6e9 * (c + (1 - c) / 2) / 2
    assert t == pytest.approx(topo.transfer.dma_setup + latency + 3e9 / rate, rel=1e-9)


def test_report_json_rounds_to_12_digits(ultra8):
    report = collect_bench(ultra8, PAIR, [True], [2], [16384], ["matrices", "collectives"])
    data = json.loads(bench_json(report))
    value = data["matrices"]["p2p"]["uni_GBps"][0][1]
    assert value == float(f"{value:.12g}")
    assert data["matrices"]["p2p"]["uni_GBps"][0][0] is None
    assert data["collectives"][0]["rows"][0]["p2p"]["algorithm"] in ("ring", "tree", "direct")


def test_bench_cli(capsys):
    path = str(TOPOLOGIES / "ultra8.yaml")
    assert main(["bench", path, "--devices", "card0.*", "--groups", "2,4", "--sizes",
                 "16KiB", "--what", "matrices,collectives"]) == 0
    out = capsys.readouterr().out
    assert "Unidirectional P2P=Enabled Bandwidth Matrix (GB/s)" in out
    assert "P2P=Disabled Latency Matrix (us)" in out
    assert "all_reduce over 4 devices" in out and "all_gather over 2 devices" in out
    assert main(["bench", path, "--devices", "card0.soc0,card0.soc1", "--what", "copies",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["copies"]) == len(bench.COPY_SIZES)


@pytest.mark.parametrize(("args", "message"), [
    (["--groups", "2,x"], "error: --groups: expected comma-separated integers (got '2,x')\n"),
    (["--sizes", "16KX"], "error: --sizes: expected a size such as '32GB' (got '16KX')\n"),
    (["--sizes=-1KiB"], "error: --sizes: expected sizes from 1B to 1TB such as 16KiB,64MiB "
                        "(got '-1KiB')\n"),
    (["--sizes", "1e30B"], "error: --sizes: expected sizes from 1B to 1TB such as "
                           "16KiB,64MiB (got '1e30B')\n"),
    (["--groups", "0"], "error: --groups: expected integers from 1 to 2048 (got '0')\n"),
    (["--what", "all"], "error: --what: unknown part 'all' (expected matrices, collectives, "
                        "copies)\n"),
])
def test_bench_cli_errors(args, message, capsys):
    assert main(["bench", str(TOPOLOGIES / "ultra8.yaml"), *args]) == 2
    assert capsys.readouterr().err == message


def test_symmetric_pairs_share_one_simulation(ultra8):
    cache: dict = {}
    for a, b in [("card0.soc0", "card0.soc1"), ("card3.soc2", "card3.soc0")]:
        bench.timed_copies(ultra8, [(a, b)], 1e6, "p2p", cache=cache)
    assert len(cache) == 1
    assert np.isfinite(next(iter(cache.values())))


def test_benchmarks_write_nothing_unless_asked(tmp_path):
    """Every benchmark script takes --output and has no default: running one as documented
    never rewrites the recorded figures in benchmarks/results/."""
    import ast

    from .conftest import ROOT

    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(scripts) >= 7
    for script in scripts:
        if script.name == "record.py":
            continue
        tree = ast.parse(script.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", None) in ("add_output", "record")]
        assert {c.func.id for c in calls} == {"add_output", "record"}, script.name
        assert '"results"' not in script.read_text(), script.name  # no default path there
