"""Fixed graphs (hand-written or ONNX) at the precision a workload asks for.

A graph's sizes are written at its own precision: a hand-written graph's ``precision:`` and
``activations:`` (fp16 by default), an ONNX model's tensor types (its largest weight's type and
its first input's). A workload at another precision rescales every op: weight bytes by the
ratio of bytes per weight, activation bytes (and the edges between ops) by the ratio of bytes
per activation. GEMMs and convolutions compute at the precision the pair gives
(:func:`~simtopo.workload.opgraph.compute_precision`: int8 only when weights and activations
are both int8), other ops at the activations'. Integer index tensors of an ONNX model scale
with the activations too (assumption: they are a small share of the bytes).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import networkx as nx

from .opgraph import ACTIVATION_BYTES, WEIGHT_BYTES, Op, Precision, compute_precision

MATMUL_KINDS = ("gemm", "lm_head", "conv")
"""Ops that multiply weights (their arithmetic follows the weights and activations)."""


def graph_precision(graph: nx.DiGraph) -> Precision:
    """The precision a fixed graph's sizes are written at."""
    return graph.graph.get("precision") or Precision()


def retyped(op: Op, weights: float, activations: float, precision: Precision) -> Op:
    """``op`` with its weight bytes scaled by ``weights`` and its activation bytes by
    ``activations``, computing at ``precision``."""
    weight_read = op.weights_read_bytes
    act_read = op.bytes_read - weight_read
    arithmetic = (compute_precision(precision.weights, precision.activations)
                  if op.kind in MATMUL_KINDS else precision.activations)
    return replace(op, bytes_read=weight_read * weights + act_read * activations,
                   bytes_written=op.bytes_written * activations,
                   weight_bytes=op.weight_bytes * weights,
                   stored_bytes=op.stored_bytes * weights,
                   output_bytes=None if op.output_bytes is None
                   else op.output_bytes * activations,
                   precision=arithmetic)


def at_precision(graph: nx.DiGraph, precision: Precision) -> nx.DiGraph:
    """``graph`` at ``precision`` (the graph itself when that is its own; module docstring)."""
    if precision == graph_precision(graph):
        return graph
    return _rescaled(graph, precision)


@lru_cache(maxsize=16)
def _rescaled(graph: nx.DiGraph, precision: Precision) -> nx.DiGraph:
    """Built once per process for each graph and precision (variants and sweep points share
    it: read it, do not change it)."""
    own = graph_precision(graph)
    w = WEIGHT_BYTES[precision.weights] / WEIGHT_BYTES[own.weights]
    a = ACTIVATION_BYTES[precision.activations] / ACTIVATION_BYTES[own.activations]
    out = nx.DiGraph(**{**graph.graph, "precision": precision})
    for name, data in graph.nodes(data=True):
        out.add_node(name, op=retyped(data["op"], w, a, precision))
    for u, v, data in graph.edges(data=True):
        out.add_edge(u, v, bytes=data["bytes"] * a)
    return out
