"""ONNX models to op graphs (optional extra: ``pip install simtopo[onnx]``).

Shapes come from ONNX shape inference; symbolic dimensions take values from ``dims`` (default
1, the batch of one inference); a dimension inference cannot resolve is refused, naming the
tensor. Node names are kept (a nameless node becomes ``<OpType>_<index>``, a repeated name
``<name>_<index>``, never colliding with another node's name) so that MDP ``nodeList`` entries
refer to real nodes. FLOPs:

- MatMul ``[..., M, K] x [..., K, N]``: 2 M K N per batch; Gemm likewise plus the bias;
- Conv: 2 x output elements x (input channels / groups) x kernel size;
- elementwise ops: one per output element; Softmax 5, LayerNormalization 8, ReduceMean and
  friends one per input element;
- data movement (Transpose, Gather, Concat, Slice, Cast, ...): none, but their bytes count;
  shape-only ops (Reshape, Shape, Squeeze, Unsqueeze, Flatten, Identity, Constant) move nothing.

Bytes read are every input tensor (initializers are the weights), bytes written every output,
at the model's own types: its precision is its largest weight's type and its first input's
(a workload at another precision rescales them, :mod:`simtopo.workload.precision`; the AI 100
compiles an fp32 model to fp16, the workload's default).
The model's batch (samples one pass processes) is the first dimension of its first input that
is not a weight and has two dimensions or more (a symbolic one takes its value from ``dims``,
default 1); without one, 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx

from .. import limits
from ..errors import ConfigError
from ..io.documents import read_bytes
from .opgraph import Op, Precision, compute_precision
from .precision import MATMUL_KINDS

ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Erf", "Gelu", "Pow",
               "Sqrt", "Exp", "Log", "Neg", "Abs", "Where", "Max", "Min", "Clip", "LeakyRelu",
               "HardSigmoid", "HardSwish", "Mish", "Softplus", "Reciprocal", "Equal", "Less",
               "Greater", "Not", "And", "Or", "Sin", "Cos", "Mod"}
REDUCE = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
          "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool"}
NORMS = {"LayerNormalization": 8.0, "BatchNormalization": 4.0, "InstanceNormalization": 8.0,
         "SimplifiedLayerNormalization": 6.0, "RMSNormalization": 6.0}
SHAPE_ONLY = {"Reshape", "Shape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Constant",
              "ConstantOfShape", "Size"}


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX import needs the onnx package: pip install 'simtopo[onnx]'") \
            from None
    return onnx


def _tensor_info(onnx: Any, model: Any, dims: Mapping[str, int]) -> dict[str, tuple[
        tuple[int, ...], int]]:
    """name -> (shape, bytes per element) for every tensor shape inference knows; a
    dimension that is neither a number nor a named symbol is -1 (unknown)."""
    mapping = onnx.helper.tensor_dtype_to_np_dtype
    info: dict[str, tuple[tuple[int, ...], int]] = {}
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        t = value.type.tensor_type
        if not t.HasField("shape"):
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else _symbol(d.dim_param, dims)
                      for d in t.shape.dim)
        info[value.name] = (shape, mapping(t.elem_type).itemsize)
    for init in graph.initializer:
        info[init.name] = (tuple(init.dims), mapping(init.data_type).itemsize)
    return info


def _symbol(name: str, dims: Mapping[str, int]) -> int:
    """A symbolic dimension's value: given, or 1 for a named one; -1 (unknown) for one that
    shape inference made up (``unk__N``) or left unnamed."""
    if name in dims:
        return dims[name]
    return -1 if not name or name.startswith("unk__") else 1


def _elements(shape: tuple[int, ...]) -> int:
    count = math.prod(shape) if shape else 1
    if count > limits.MAX_TENSOR_ELEMENTS:
        raise ConfigError(f"a tensor of shape {list(shape)} has {count:.3g} elements; at most "
                          f"{limits.MAX_TENSOR_ELEMENTS:.3g}")
    return count


def _batch(model: Any, info: Mapping[str, tuple[tuple[int, ...], int]],
           weights: set[str]) -> tuple[int, str]:
    """The model's batch and where it comes from: the first dimension of the first input
    that is not a weight and has two dimensions or more (1 without one)."""
    for value in model.graph.input:
        shape = info.get(value.name, ((), 0))[0]
        if value.name not in weights and len(shape) >= 2 and shape[0] > 0:
            return shape[0], f"the first dimension of its input {value.name!r} {list(shape)}"
    return 1, "no input of two dimensions or more: one sample"


def load_onnx(path: str | Path, dims: Mapping[str, int] | None = None) -> nx.DiGraph:
    """Read an ONNX file into an op graph (see the module docstring for the cost rules)."""
    onnx = _require_onnx()
    raw = read_bytes(Path(path), str(path), "an ONNX model", limits.MAX_ONNX_BYTES)
    try:
        model = onnx.load_model_from_string(raw)  # weights in external files stay there
        nodes = len(model.graph.node)
        if nodes > limits.MAX_GRAPH_NODES:
            raise ConfigError(f"{nodes:,} nodes; a model may have at most "
                              f"{limits.MAX_GRAPH_NODES:,}", file=str(path))
        model = onnx.shape_inference.infer_shapes(model)
    except ConfigError:
        raise
    except Exception as exc:  # onnx raises a variety of decode errors
        raise ConfigError(f"not a readable ONNX model ({type(exc).__name__}: {exc})",
                          file=str(path)) from None
    try:
        return onnx_graph(model, dims or {}, name=Path(path).stem)
    except ConfigError as exc:
        raise exc.located(str(path)) from None


TYPE_PRECISION = {"float32": "fp32", "float64": "fp32", "float16": "fp16", "int8": "int8",
                  "uint8": "int8"}
"""Our precision of an ONNX tensor type (bfloat16 is matched by name: numpy has none)."""


def _type_precision(onnx: Any, elem_type: int, default: str = "fp32") -> str:
    if elem_type == onnx.TensorProto.BFLOAT16:
        return "bf16"
    return TYPE_PRECISION.get(str(onnx.helper.tensor_dtype_to_np_dtype(elem_type)), default)


FLOATS = ("fp32", "fp16", "bf16")


def _own_precision(onnx: Any, model: Any, weights: set[str]) -> Precision:
    """The precision the model's sizes are written at: its largest weight's type, and its
    first floating-point non-weight input's for the activations (token ids and uint8 images
    say nothing about them), else the weights' if floating-point, else fp32."""
    inits = sorted(model.graph.initializer, key=lambda t: -math.prod(t.dims))
    w = _type_precision(onnx, inits[0].data_type) if inits else "fp32"
    floats = [_type_precision(onnx, v.type.tensor_type.elem_type, "") for v in
              model.graph.input if v.name not in weights]
    a = next((t for t in floats if t in FLOATS), w if w in FLOATS else "fp32")
    return Precision(weights=w, activations=a, kv_cache=a)


def onnx_graph(model: Any, dims: Mapping[str, int], name: str = "onnx") -> nx.DiGraph:
    """An op graph from an in-memory ONNX ``ModelProto`` (shapes already inferred)."""
    onnx = _require_onnx()
    info = _tensor_info(onnx, model, dims)
    weights = {init.name for init in model.graph.initializer}
    batch, source = _batch(model, info, weights)
    own = _own_precision(onnx, model, weights)
    matmul = compute_precision(own.weights, own.activations)
    graph = nx.DiGraph(model=name, batch=batch, batch_source=source, precision=own)
    producer: dict[str, str] = {}
    given = [node.name for node in model.graph.node]
    used: set[str] = set()
    for index, node in enumerate(model.graph.node):
        op_name = node.name or f"{node.op_type}_{index}"
        while op_name in used or (op_name != node.name and op_name in given):
            op_name = f"{op_name}_{index}"  # never take a name another node carries
        used.add(op_name)

        def size(tensor: str, op_name: str = op_name) -> float:
            shape, itemsize = info.get(tensor, ((), 0))
            if any(d < 0 for d in shape):
                raise ConfigError(f"node {op_name}: tensor {tensor!r} has a dimension ONNX "
                                  "shape inference could not resolve; give the model static "
                                  "shapes (onnxsim) or name the dimension and set it with "
                                  "--dim NAME=VALUE")
            return float(_elements(shape) * itemsize)

        inputs = [t for t in node.input if t]
        read = sum(size(t) for t in inputs)
        written = sum(size(t) for t in node.output if t)
        w_bytes = sum(size(t) for t in inputs if t in weights)
        out_elems = int(sum(size(t) / max(info.get(t, ((), 1))[1], 1)
                            for t in node.output if t))
        kind, flops, extra = _cost(node, inputs, info, weights, out_elems)
        if node.op_type in SHAPE_ONLY:
            read = written = 0.0
        graph.add_node(op_name, op=Op(name=op_name, kind=kind, flops=flops, bytes_read=read,
                                      bytes_written=written, weight_bytes=w_bytes,
                                      stored_bytes=w_bytes, precision=matmul
                                      if kind in MATMUL_KINDS else own.activations, **extra))
        for tensor in inputs:
            if tensor in producer:
                graph.add_edge(producer[tensor], op_name, bytes=size(tensor))
        for tensor in node.output:
            producer[tensor] = op_name
    return graph


def _cost(node: Any, inputs: list[str], info: Mapping[str, tuple[tuple[int, ...], int]],
          weights: set[str], out_elems: int) -> tuple[str, float, dict[str, Any]]:
    op = node.op_type
    shape = {t: info.get(t, ((), 0))[0] for t in inputs}
    if op in ("MatMul", "Gemm") and len(inputs) >= 2:
        a, b = shape[inputs[0]], shape[inputs[1]]
        attrs = {x.name: x.i for x in node.attribute}
        if op == "Gemm" and attrs.get("transA"):
            a = (*a[:-2], a[-1], a[-2])
        if op == "Gemm" and attrs.get("transB"):
            b = (*b[:-2], b[-1], b[-2])
        if len(a) < 2 or len(b) < 1:
            return "other", 0.0, {}
        k = a[-1]
        n = b[-1] if len(b) > 1 else 1
        rows = _elements(a[:-1])
        batch = _elements(b[:-2]) if len(b) > 2 and len(a) <= 2 else 1
        flops = 2.0 * rows * k * n * batch
        if op == "Gemm" and len(inputs) > 2:
            flops += rows * n
        is_weight = inputs[1] in weights
        extra = {"k_in": k, "n_out": n, "rows": rows} if is_weight else {}
        return ("gemm" if is_weight else "other"), flops, extra
    if op == "Conv" and len(inputs) >= 2:
        w = shape[inputs[1]]
        if len(w) < 3:
            return "conv", 0.0, {}
        per_output = w[1] * _elements(w[2:])
        flops = 2.0 * out_elems * per_output + (out_elems if len(inputs) > 2 else 0)
        return "conv", flops, {}
    if op in NORMS:
        return "norm", NORMS[op] * out_elems, {}
    if op == "Softmax":
        return "elementwise", 5.0 * out_elems, {}
    if op in ELEMENTWISE:
        return "elementwise", float(out_elems), {}
    if op in REDUCE:
        return "other", float(sum(_elements(shape[t]) for t in inputs[:1])), {}
    if op == "Gather" and inputs and inputs[0] in weights:
        return "embedding", 0.0, {}
    return "other", 0.0, {}
