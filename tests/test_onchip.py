"""On-chip memory: activations kept in VTCM, spills, resident weights and fusion, by hand."""

from __future__ import annotations

import pytest

import simtopo
from simtopo.constants import OP_LAUNCH_S
from simtopo.plan.layouts import Shard
from simtopo.plan.onchip import OnChip, shard_work, spill_bytes
from simtopo.plan.stages import make_plan
from simtopo.sim.tasks import ComputeTask, lower
from simtopo.spec.experiment import PlanSpec
from simtopo.spec.model import GraphSpec
from simtopo.workload.cost import onchip_bytes
from simtopo.workload.graphfile import graph_from_spec
from simtopo.workload.opgraph import Op

from .conftest import TOPOLOGIES

MB = 1e6
VTCM = 8 * MB  # 8 MB per AI 100 core (card files; MB is 1e6 bytes)


def _graph(*nodes: dict) -> object:
    return graph_from_spec(GraphSpec(name="t", nodes=list(nodes)))


def _compute(plan, graph, topo) -> dict[str, ComputeTask]:
    (program,) = lower(plan, graph, topo)
    return {t.op: t for t in program.head if isinstance(t, ComputeTask)}


def test_capacity_is_the_cores_vtcm(ultra8):
    soc = ultra8.node("card0.soc0")
    assert onchip_bytes(soc, 16) == 16 * VTCM
    assert onchip_bytes(soc, 2) == 2 * VTCM
    # a SoC with SRAM but no VTCM figure gets its cores' share of the SRAM
    assert onchip_bytes({"cores": 16, "sram_bytes": 144 * MB}, 4) == 36 * MB
    gpus = simtopo.load_topology(TOPOLOGIES / "calibration" / "genoa-4x5090.yaml")
    assert onchip_bytes(gpus.node(gpus.socs[0]), 1) == 0.0  # the GPU cards list none


def _two_gemms() -> object:
    """Two GEMMs of 100 MB of weights each (200 MB: never resident in 128 MB); 'a' writes
    30 MB of activations, 'b' reads them and writes 10 MB."""
    return _graph(
        {"name": "a", "kind": "gemm", "flops": 1e9, "bytes_read": "100MB",
         "bytes_written": "30MB", "weights": "100MB"},
        {"name": "b", "kind": "gemm", "flops": 1e9, "bytes_read": "130MB",
         "bytes_written": "10MB", "weights": "100MB", "inputs": ["a"]})


def test_an_op_whose_working_set_fits_reads_only_its_weights(ultra8):
    # 'b' reads 30 MB and writes 10 MB of activations: on chip
    graph = _two_gemms()
    tasks = _compute(make_plan(graph, None, ultra8, PlanSpec()), graph, ultra8)
    assert tasks["b"].bytes == pytest.approx(100 * MB)
    assert tasks["a"].bytes == pytest.approx(100 * MB)  # reads nothing else, writes 30 MB


def test_a_spill_charges_exactly_the_overflow(ultra8):
    # 2 cores: 16 MB on chip; 'b' reads 30 MB and writes 10 MB: 40 MB - 16 MB spills
    graph = _two_gemms()
    tasks = _compute(make_plan(graph, None, ultra8, PlanSpec(cores=2)), graph, ultra8)
    assert tasks["b"].bytes == pytest.approx(100 * MB + 40 * MB - 2 * VTCM)
    assert tasks["a"].bytes == pytest.approx(100 * MB + 30 * MB - 2 * VTCM)
    assert spill_bytes(40 * MB, 2 * VTCM) == pytest.approx(40 * MB - 2 * VTCM)
    assert spill_bytes(1 * MB, 2 * VTCM) == 0.0


def test_small_weights_stay_resident_across_passes(ultra8):
    # 20 MB of weights and 10 MB of activations fit in 128 MB: no DRAM traffic at all
    graph = _graph(
        {"name": "conv", "kind": "conv", "flops": 1e9, "bytes_read": "25MB",
         "bytes_written": "5MB", "weights": "20MB"},
        {"name": "relu", "kind": "elementwise", "flops": 1e6, "bytes_read": "5MB",
         "bytes_written": "5MB", "inputs": ["conv"]})
    tasks = _compute(make_plan(graph, None, ultra8, PlanSpec()), graph, ultra8)
    assert tasks["conv"].bytes == 0.0 and tasks["relu"].bytes == 0.0
    # on 2 cores (16 MB) the 20 MB of weights no longer fit: read every pass
    few = _compute(make_plan(graph, None, ultra8, PlanSpec(cores=2)), graph, ultra8)
    assert few["conv"].bytes == pytest.approx(20 * MB)


def test_elementwise_ops_fuse_into_their_producer(ultra8):
    graph = _graph(
        {"name": "x", "kind": "elementwise", "flops": 1e6, "bytes_read": "1MB",
         "bytes_written": "1MB"},
        {"name": "y", "kind": "norm", "flops": 1e6, "bytes_read": "1MB",
         "bytes_written": "1MB", "inputs": ["x"]},
        {"name": "z", "kind": "gemm", "flops": 1e6, "bytes_read": "1MB",
         "bytes_written": "1MB", "inputs": ["y"]})
    tasks = _compute(make_plan(graph, None, ultra8, PlanSpec()), graph, ultra8)
    assert tasks["x"].cost.launch_s == OP_LAUNCH_S  # no producer: a kernel of its own
    assert tasks["y"].cost.launch_s == 0.0
    assert tasks["z"].cost.launch_s == OP_LAUNCH_S  # GEMMs are never fused away


def test_a_spilling_elementwise_op_is_not_fused():
    op = Op(name="add", kind="elementwise", flops=1.0, bytes_read=20 * MB,
            bytes_written=10 * MB)
    shard = Shard("add", "none", "R", "R", 1.0, 30 * MB, 0.0, activation_bytes=30 * MB)
    work = shard_work(op, shard, True, OnChip(16 * MB))
    assert not work.fused and work.bytes == pytest.approx(14 * MB)
    assert shard_work(op, shard, True, OnChip(32 * MB)).fused


def test_kv_cache_and_table_lookups_always_go_to_dram():
    op = Op(name="attn", kind="attention", flops=1.0, bytes_read=7 * MB, bytes_written=1 * MB)
    # 5 MB of KV traffic, 3 MB of activations, no weights
    shard = Shard("attn", "heads", "S", "S", 1.0, 8 * MB, 0.0, activation_bytes=3 * MB,
                  dram_bytes=5 * MB)
    assert shard_work(op, shard, True, OnChip(64 * MB, resident=True)).bytes == 5 * MB


def test_without_on_chip_memory_every_byte_goes_to_dram():
    op = Op(name="g", kind="gemm", flops=1.0, bytes_read=3 * MB, bytes_written=1 * MB,
            weight_bytes=2 * MB)
    shard = Shard("g", "none", "R", "R", 1.0, 4 * MB, 2 * MB, activation_bytes=2 * MB)
    work = shard_work(op, shard, True, OnChip(0.0))
    assert work.bytes == 4 * MB and not work.fused
