"""All-to-all over the topology: max-min on a switch, the concurrency efficiency, host paths."""

from __future__ import annotations

import pytest

import simtopo
from simtopo.engine import protocols
from simtopo.engine.idle_collective import run_collective

from .conftest import TOPOLOGIES

CARD = ["card0.soc0", "card0.soc1", "card0.soc2", "card0.soc3"]


def test_four_socs_behind_one_switch_by_hand(ultra8):
    size = 256e6  # each SoC's send buffer: 64 MB to each of the 4 (3 over the wire)
    result = run_collective(ultra8, "all_to_all", CARD, size)
    params = ultra8.transfer
    assert result.algorithm == "direct" and result.protocol == "simple"
    launch, step, _ = protocols.costs(params, "simple")
    # each SoC's Gen4 x8 link carries 3 flows each way; its send and receive sides are
    # endpoints behind a switch, which keep e(3) = c + (1 - c) / 3 of the link with 3 flows
    c = params.concurrency_efficiency
    rate = ultra8.graph.edges["card0.soc0", "card0.sw"]["bw_Bps"] * (c + (1 - c) / 3) / 3
    latency = ultra8.route("card0.soc0", "card0.soc1").latency_s
    assert result.time_s == pytest.approx(launch + step + latency + size / 4 / rate, rel=1e-9)
    assert result.busbw_Bps == pytest.approx(result.algbw_Bps * 3 / 4)


def test_max_min_alone_over_predicts_what_the_efficiency_brings_back():
    # calibration/rtx6kpro-wrx90-2switch-flat-gen5.yaml: 4 GPUs on one switch exchanging all
    # to all moved 148.9 GB/s in total; max-min alone gives 4 x 53.4 = 213.6 (p2pmark's ideal)
    topo = simtopo.load_topology(TOPOLOGIES / "calibration" / "rtx6kpro-wrx90.yaml")
    gpus = [f"gpu{i}.soc0" for i in range(4)]
    size = 4e9
    fitted = run_collective(topo, "all_to_all", gpus, size)
    pure = run_collective(topo, "all_to_all", gpus, size,
                          params=topo.transfer.model_copy(update={"concurrency_efficiency": 1}))
    # every GPU sends 3/4 of its buffer: the total rate is 4 x 3/4 x size / time = 4 x busbw
    assert 4 * pure.busbw_Bps == pytest.approx(
        4 * topo.graph.edges["gpu0.soc0", "sw0"]["bw_Bps"], rel=0.02)
    assert 4 * fitted.busbw_Bps == pytest.approx(148.9e9, rel=0.10)
    assert 4 * pure.busbw_Bps > 1.3 * 4 * fitted.busbw_Bps


def test_host_routed_all_to_all_takes_the_faster_host_algorithm(ultra8):
    size = 64e6
    host = run_collective(ultra8, "all_to_all", CARD, size, mode="host")
    p2p = run_collective(ultra8, "all_to_all", CARD, size)
    assert host.algorithm in ("direct", "host-staged") and host.mode == "host"
    assert host.time_s > p2p.time_s
    # either way every byte crosses card0's Gen4 x16 link up and back down: bounced pieces
    # 3/4 of each buffer (host-staged: all of it), 4 SoCs' worth, so at least 3 x size / link
    card = ultra8.graph.edges["card0.sw", "sw0"]["bw_Bps"]
    assert host.time_s > 3 * size / card


def test_a_fixed_host_algorithm_without_an_all_to_all_runs_direct(ultra8):
    # host_allreduce: ring names the all-reduce's algorithm; an all-to-all has no ring and
    # runs (and says it runs) its first host algorithm
    params = ultra8.transfer.model_copy(update={"host_allreduce": "ring"})
    result = run_collective(ultra8, "all_to_all", CARD, 1e6, mode="host", params=params)
    assert result.algorithm == "direct"


def test_host_staged_all_to_all_moves_only_the_pieces_for_others(ultra8):
    params = ultra8.transfer.model_copy(update={"host_allreduce": "host-staged"})
    staged = run_collective(ultra8, "all_to_all", CARD[:2], 64e6, mode="host", params=params)
    gather = run_collective(ultra8, "all_gather", CARD[:2], 64e6, mode="host", params=params)
    assert staged.algorithm == gather.algorithm == "host-staged"
    # two SoCs: an all-to-all copies half of each buffer in and half back; an all-gather
    # copies half in and the whole buffer back, so it takes longer
    assert staged.time_s < gather.time_s
