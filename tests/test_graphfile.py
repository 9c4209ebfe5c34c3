"""Hand-written YAML graphs."""

from __future__ import annotations

import pytest

from simtopo import ConfigError
from simtopo.workload.graphfile import load_graph

from .conftest import ROOT


def test_pipelined_example_graph():
    graph = load_graph(ROOT / "experiments" / "mdp" / "pipelined-graph.yaml")
    assert len(graph) == 13 and next(iter(graph)) == "Add_1105"
    assert graph.edges["Add_1105", "Div_1115"]["bytes"] == 8 * 2**20


@pytest.mark.parametrize(("nodes", "message"), [
    ("  - {name: a}\n  - {name: a}\n", "t.yaml:3: nodes[1].name: duplicate node name 'a' "
                                       "(also nodes[0])"),
    ("  - {name: a, inputs: [z]}\n", "t.yaml:2: nodes[0].inputs[0]: unknown input 'z' (no node "
                                     "has that name)"),
    ("  - {name: a, inputs: [b]}\n  - {name: b, inputs: [a]}\n",
     "t.yaml:1: nodes: the graph has a cycle: a -> b -> a"),
    ("  - {name: a, flops: -1}\n", "t.yaml:2: nodes[0].flops: expected greater than or equal "
                                   "to 0 (got -1)"),
])
def test_bad_graphs(tmp_path, monkeypatch, nodes, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text("nodes:\n" + nodes)
    with pytest.raises(ConfigError) as info:
        load_graph("t.yaml")
    assert str(info.value) == message
