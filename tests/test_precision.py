"""Precision per model and per op class: graphs rescaled, int8 at the int8 peak, by hand."""

from __future__ import annotations

import pytest

from simtopo.constants import SocModel
from simtopo.plan.stages import make_plan
from simtopo.sim.tasks import ComputeTask, lower
from simtopo.spec.experiment import PlanSpec
from simtopo.spec.model import GraphSpec
from simtopo.workload.decoders import load_model
from simtopo.workload.graphfile import graph_from_spec
from simtopo.workload.opgraph import Precision, Shape, build_graph, compute_precision
from simtopo.workload.precision import at_precision

IDEAL = SocModel(compute_efficiency=1.0, dram_efficiency=1.0, op_launch_s=0.0,
                 mxfp6_expand_ops_per_weight=0.0, conv_efficiency=1.0)


def conv_graph(**fields) -> object:
    # a 1 TFLOP convolution with 100 MB of fp16 weights, 60 MB of activations in, 40 out
    return graph_from_spec(GraphSpec(name="c", nodes=[
        {"name": "conv", "kind": "conv", "flops": 1e12, "bytes_read": "160MB",
         "bytes_written": "40MB", "weights": "100MB"}], **fields))


def test_compute_precision_of_weights_and_activations():
    assert compute_precision("int8", "int8") == "int8"
    assert compute_precision("int8", "fp16") == "fp16"  # weight-only int8 is dequantised
    assert compute_precision("mxfp6", "fp16") == "fp16"
    assert compute_precision("bf16", "bf16") == "bf16"
    assert compute_precision("fp32", "fp32") == "fp16"


def test_a_graph_takes_the_workload_s_precision():
    graph = conv_graph()
    q = at_precision(graph, Precision("int8", "int8", "int8"))
    op = q.nodes["conv"]["op"]
    assert op.weight_bytes == 50e6 and op.bytes_read == 50e6 + 30e6
    assert op.bytes_written == 20e6 and op.precision == "int8"
    # int8 weights beside fp16 activations: weights halve, activations stay
    w8 = at_precision(graph, Precision("int8", "fp16", "fp16")).nodes["conv"]["op"]
    assert w8.bytes_read == 50e6 + 60e6 and w8.precision == "fp16"
    # a graph written at int8 and run at fp16 doubles
    own = conv_graph(precision="int8")
    assert own.nodes["conv"]["op"].precision == "int8"
    assert at_precision(own, Precision()).nodes["conv"]["op"].bytes_read == 320e6


def test_int8_compute_runs_at_the_int8_peak(ultra8):
    graph = at_precision(conv_graph(), Precision("int8", "int8", "int8"))
    (program,) = lower(make_plan(graph, None, ultra8, PlanSpec()), graph, ultra8, IDEAL)
    (task,) = [t for t in program.head if isinstance(t, ComputeTask)]
    # 1 TOP at an Ultra SoC's 217.5 TOP/s (870 per card / 4); its 50 MB of weights and 50 MB
    # working set fit in 128 MB of VTCM, so nothing comes from DRAM
    assert task.bytes == 0.0
    assert task.seconds == pytest.approx(1e12 / 217.5e12)
    fp16 = conv_graph()
    (program,) = lower(make_plan(fp16, None, ultra8, PlanSpec()), fp16, ultra8, IDEAL)
    (task,) = [t for t in program.head if isinstance(t, ComputeTask)]
    assert task.seconds == pytest.approx(1e12 / 72.5e12)  # the fp16 peak, a third


def test_decoder_gemms_compute_at_the_pair_s_precision():
    model = load_model("llama-2-7b")
    shape = Shape("prefill", 1, 16, 16, 8.5)
    w8a8 = build_graph(model, shape, Precision("int8", "int8", "int8"))
    w8a16 = build_graph(model, shape, Precision("int8", "fp16", "fp16"))
    assert w8a8.nodes["layers.0.mlp.up"]["op"].precision == "int8"
    assert w8a16.nodes["layers.0.mlp.up"]["op"].precision == "fp16"
    # int8 activations halve the KV cache a layer writes: 16 tokens x 2 x 4096 x 1 byte
    assert w8a8.nodes["layers.0.attn.core"]["op"].kv_write_bytes == 16 * 2 * 4096
