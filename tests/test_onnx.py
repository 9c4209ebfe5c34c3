"""ONNX import: small models built with onnx.helper, FLOPs and bytes by hand, names kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from simtopo import ConfigError  # noqa: E402
from simtopo.io.documents import Document  # noqa: E402
from simtopo.plan.mdp import parse_mdp_text, plan_from_mdp  # noqa: E402
from simtopo.workload.onnx_import import load_onnx  # noqa: E402


def save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def mlp(tmp_path):
    """x[batch, 8] -> MatMul W1[8, 16] -> Add b1 -> Relu -> Gemm W2[16, 4] (transB) -> Softmax
    -> LayerNormalization; the Relu node has no name."""
    w1 = numpy_helper.from_array(np.ones((8, 16), np.float32), "w1")
    b1 = numpy_helper.from_array(np.ones((16,), np.float32), "b1")
    w2 = numpy_helper.from_array(np.ones((4, 16), np.float32), "w2")  # transposed
    b2 = numpy_helper.from_array(np.ones((4,), np.float32), "b2")
    scale = numpy_helper.from_array(np.ones((4,), np.float32), "scale")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="fc1_bias"),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1),
        helper.make_node("Softmax", ["y"], ["p"], name="softmax"),
        helper.make_node("LayerNormalization", ["p", "scale"], ["out"], name="ln", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])],
        [w1, b1, w2, b2, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, tmp_path)


def test_mlp_flops_bytes_and_names(tmp_path):
    graph = load_onnx(mlp(tmp_path), dims={"batch": 3})
    # the model's batch: its input x[batch, 8], the symbolic dimension as given (else 1)
    assert graph.graph["batch"] == 3 and load_onnx(mlp(tmp_path)).graph["batch"] == 1
    assert graph.graph["batch_source"] == "the first dimension of its input 'x' [3, 8]"
    assert list(graph) == ["fc1", "fc1_bias", "Relu_2", "fc2", "softmax", "ln"]
    fc1 = graph.nodes["fc1"]["op"]
    assert fc1.kind == "gemm" and fc1.flops == 2 * 3 * 8 * 16
    assert (fc1.k_in, fc1.n_out, fc1.rows) == (8, 16, 3)
    # reads x (3 x 8) and W1 (8 x 16) floats; writes 3 x 16
    assert fc1.bytes_read == (3 * 8 + 8 * 16) * 4 and fc1.bytes_written == 3 * 16 * 4
    assert fc1.weight_bytes == 8 * 16 * 4
    fc2 = graph.nodes["fc2"]["op"]
    assert fc2.flops == 2 * 3 * 16 * 4 + 3 * 4  # transB respected, plus the bias
    assert graph.nodes["fc1_bias"]["op"].flops == 3 * 16
    assert graph.nodes["softmax"]["op"].flops == 5 * 3 * 4
    assert graph.nodes["ln"]["op"].flops == 8 * 3 * 4
    assert graph.edges["fc1", "fc1_bias"]["bytes"] == 3 * 16 * 4


def test_conv_flops(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv")
    graph = helper.make_graph(
        [node], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path)
    op = load_onnx(path).nodes["conv"]["op"]
    # output 1 x 4 x 6 x 6 = 144 elements, each 3 x 3 x 3 multiply-adds
    assert op.kind == "conv" and op.flops == 2 * 144 * 27


def test_mdp_node_lists_refer_to_onnx_names(tmp_path, ultra8):
    graph = load_onnx(mlp(tmp_path), dims={"batch": 3})
    text = json.dumps({"connections": [{"devices": [0, 1], "type": "p2p"}], "partitions": [
        {"name": "A", "devices": [{"deviceId": 0, "numCores": 16}],
         "nodeList": ["fc1", "fc1_bias", "Relu_2"]},
        {"name": "B", "devices": [{"deviceId": 1, "numCores": 16}],
         "nodeList": ["fc2", "softmax", "ln"]}]})
    plan = plan_from_mdp(parse_mdp_text(text), Document(None, "x"), graph, None, ultra8)
    assert [h.after for h in plan.handoffs] == ["Relu_2"]


def test_unreadable_onnx(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(ConfigError) as info:
        load_onnx(path)
    assert str(info.value).startswith(f"{path}: not a readable ONNX model")


def test_too_many_nodes_and_huge_tensors_are_refused(tmp_path, monkeypatch):
    from simtopo import limits

    path = mlp(tmp_path)
    monkeypatch.setattr(limits, "MAX_GRAPH_NODES", 5)
    with pytest.raises(ConfigError) as info:
        load_onnx(path, dims={"batch": 3})
    assert str(info.value) == f"{path}: 6 nodes; a model may have at most 5"
    monkeypatch.undo()
    # a batch of 2**50 makes the MatMul output 2**54 elements: more than a float holds exactly
    with pytest.raises(ConfigError) as info:
        load_onnx(path, dims={"batch": 2**50})
    assert str(info.value) == (f"{path}: a tensor of shape [{2**50}, 16] has 1.8e+16 elements; "
                               "at most 9.01e+15")


def test_the_batch_of_an_onnx_model_skips_weights_and_vectors(tmp_path):
    """A one-dimensional first input (a vector of 784) is no batch; the first input of two
    dimensions or more gives it, here a static 5."""
    w = numpy_helper.from_array(np.ones((784, 10), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["v", "v"], ["v2"], name="vec"),
         helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "two",
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, [784]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 10])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert load_onnx(save(model, tmp_path)).graph["batch"] == 5


def test_the_model_s_own_precision_and_a_workload_s(tmp_path):
    from simtopo.workload.opgraph import Precision
    from simtopo.workload.precision import at_precision

    graph = load_onnx(mlp(tmp_path), dims={"batch": 3})
    assert graph.graph["precision"] == Precision("fp32", "fp32", "fp32")
    assert graph.nodes["fc1"]["op"].precision == "fp16"  # fp32 arithmetic runs in fp16
    # the AI 100 default: fp16 weights and activations halve every byte
    half = at_precision(graph, Precision())
    fc1 = half.nodes["fc1"]["op"]
    assert fc1.bytes_read == (3 * 8 + 8 * 16) * 2 and fc1.bytes_written == 3 * 16 * 2
    assert fc1.weight_bytes == 8 * 16 * 2 and half.edges["fc1", "fc1_bias"]["bytes"] == 3 * 16 * 2
    # int8 weights and activations: a quarter, and the GEMMs at the int8 rate
    q = at_precision(graph, Precision("int8", "int8", "int8"))
    assert q.nodes["fc1"]["op"].bytes_read == 3 * 8 + 8 * 16
    assert q.nodes["fc1"]["op"].precision == "int8"
    assert q.nodes["softmax"]["op"].precision == "int8"
    assert at_precision(graph, Precision("fp32", "fp32", "fp32")) is graph
