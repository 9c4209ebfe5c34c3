"""Op graphs written directly in YAML, for models that are neither a decoder nor ONNX.

```yaml
name: tiny-pipeline
nodes:
  - {name: Add_1105, kind: elementwise, flops: 1e6, bytes_read: 4MB, bytes_written: 2MB}
  - {name: MatMul_7, kind: gemm, flops: 2e9, bytes_read: 40MB, bytes_written: 2MB,
     weights: 32MB, k_in: 4096, n_out: 4096, rows: 64, inputs: [Add_1105]}
```

``batch`` (default 1) is how many samples one pass of the graph processes: the sizes are
for that many. ``precision`` (default fp16) and ``activations`` (default: the same) are the
precisions the weights' and activations' sizes are written at; a workload at another precision
rescales them (:mod:`simtopo.workload.precision`). A GEMM with ``k_in``, ``n_out`` and
``rows`` can be split by plan rules (``MatMul_*=M``); other ops of such graphs run replicated
on every device of a partition.

An edge from each name in ``inputs`` carries that producer's ``bytes_written``.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from ..errors import ConfigError
from ..io.documents import Document, read_yaml, validate_document
from ..spec.model import GraphSpec
from .opgraph import Op, Precision, compute_precision
from .precision import MATMUL_KINDS

KINDS = ("gemm", "lm_head", "attention", "norm", "elementwise", "embedding", "conv", "other")


def graph_from_spec(spec: GraphSpec, doc: Document | None = None) -> nx.DiGraph:
    """Build the DAG; errors name the node's key path."""
    doc = doc or Document(data=None, file="<graph>")
    own = Precision(weights=spec.precision, activations=spec.activation_precision,
                    kv_cache=spec.activation_precision)
    graph = nx.DiGraph(model=spec.name, batch=spec.batch, precision=own)
    matmul = compute_precision(own.weights, own.activations)
    index: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        if node.name in index:
            raise doc.error(f"duplicate node name {node.name!r} (also nodes[{index[node.name]}])",
                            ("nodes", i, "name"))
        index[node.name] = i
        if node.kind in ("gemm", "lm_head") and (node.k_in or node.n_out) and \
                not (node.k_in and node.n_out and node.rows):
            raise doc.error("a GEMM that can be split needs k_in, n_out and rows (its weight "
                            "is W[k_in, n_out], applied to rows tokens)", ("nodes", i))
        graph.add_node(node.name, op=Op(name=node.name, kind=node.kind, flops=node.flops,
                                        bytes_read=node.bytes_read,
                                        bytes_written=node.bytes_written,
                                        weight_bytes=node.weights, stored_bytes=node.weights,
                                        weight_params=float(node.k_in * node.n_out),
                                        k_in=node.k_in, n_out=node.n_out, rows=node.rows,
                                        precision=matmul if node.kind in MATMUL_KINDS
                                        else own.activations))
    for i, node in enumerate(spec.nodes):
        for j, source in enumerate(node.inputs):
            if source not in index:
                raise doc.error(f"unknown input {source!r} (no node has that name)",
                                ("nodes", i, "inputs", j))
            graph.add_edge(source, node.name, bytes=spec.nodes[index[source]].bytes_written)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        names = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise doc.error(f"the graph has a cycle: {names}", ("nodes",))
    return graph


def load_graph(path: str | Path) -> nx.DiGraph:
    """Read a YAML graph file (a mapping with ``nodes:``)."""
    doc = read_yaml(path)
    if not isinstance(doc.data, dict) or "nodes" not in doc.data:
        raise ConfigError("expected a graph: a mapping with 'nodes:'", file=doc.file)
    return graph_from_spec(validate_document(doc, GraphSpec), doc)
