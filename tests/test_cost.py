"""The roofline cost of an op, by hand."""

from __future__ import annotations

import pytest

from simtopo.constants import SocModel
from simtopo.workload.cost import Work, dram_bandwidth, op_cost, peak_flops

IDEAL = SocModel(compute_efficiency=1.0, dram_efficiency=1.0, op_launch_s=0.0,
                 mxfp6_expand_ops_per_weight=0.0)


def test_memory_bound_op(ultra8):
    soc = ultra8.node("card0.soc0")
    # 1 GB over 137 GB/s (the NoC's 186 GB/s across 16 cores is not the limit)
    cost = op_cost(Work(flops=1e9, bytes=1e9), soc, 16, IDEAL)
    assert cost.time_s == pytest.approx(1e9 / 137e9) and cost.bound == "memory"


def test_compute_bound_op(ultra8):
    soc = ultra8.node("card0.soc0")
    # 72.5 TFLOP/s fp16 per Ultra SoC; 8 cores of 16 give half
    cost = op_cost(Work(flops=72.5e12, bytes=1.0), soc, 8, IDEAL)
    assert cost.time_s == pytest.approx(2.0) and cost.bound == "compute"


def test_few_cores_draw_less_dram_bandwidth(ultra8):
    soc = ultra8.node("card0.soc0")
    assert dram_bandwidth(soc, 16) == 137e9
    assert dram_bandwidth(soc, 1) == pytest.approx(186e9 / 16)
    assert dram_bandwidth(soc, 8) == pytest.approx(93e9)


def test_efficiencies_launch_and_expansion(ultra8):
    soc = ultra8.node("card0.soc0")
    model = SocModel(compute_efficiency=0.5, dram_efficiency=0.8, op_launch_s=3e-6,
                     mxfp6_expand_ops_per_weight=290.0)
    cost = op_cost(Work(flops=0.0, bytes=137e6, mxfp6_weights=1e9), soc, 16, model)
    # 137 MB at 0.8 x 137 GB/s = 1.25 ms; 1e9 weights x 290 ops at 72.5 TFLOP/s (16 cores of
    # 4.53 TFLOP/s) = 4 ms; 3 us launch
    assert cost.expand_s == pytest.approx(4e-3)
    # overlapped (the default form): the longer of the stream and the cores' work
    assert cost.time_s == pytest.approx(max(1.25e-3, 4e-3) + 3e-6)
    serial = op_cost(Work(flops=0.0, bytes=137e6, mxfp6_weights=1e9), soc, 16,
                     SocModel(compute_efficiency=0.5, dram_efficiency=0.8, op_launch_s=3e-6,
                              mxfp6_expand_ops_per_weight=290.0, mxfp6_overlap=False))
    assert serial.time_s == pytest.approx(1.25e-3 + 4e-3 + 3e-6)  # in series: the sum
    half = op_cost(Work(flops=0.0, bytes=137e6, mxfp6_weights=1e9), soc, 8, model)
    assert half.expand_s == pytest.approx(8e-3)  # half the cores: twice the expansion time


def test_int8_uses_the_int8_peak(ultra8):
    soc = ultra8.node("card0.soc0")
    assert peak_flops(soc, 16, "int8") == pytest.approx(217.5e12)
    assert peak_flops(soc, 16, "bf16") == pytest.approx(72.5e12)  # no bf16 unit: fp16


def test_cores_out_of_range(ultra8):
    with pytest.raises(ValueError) as info:
        dram_bandwidth(ultra8.node("card0.soc0"), 17)
    assert str(info.value) == "cores must be between 1 and 16 (got 17)"
