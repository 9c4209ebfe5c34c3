"""Limits on the work an input asks for: refused before any work starts, in one line naming
the key and the limit; generous enough that real machines (a 1,024-SoC tree) pass."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import simtopo
from simtopo import ConfigError, limits
from simtopo.cli import main
from simtopo.errors import RouteError
from simtopo.report.draw import layout
from simtopo.report.text import render_tree
from simtopo.topology.matrix import path_matrix

HEAD = textwrap.dedent("""\
    name: t
    host:
      sockets:
        - {id: cpu0, cores: 4, memory: 8GB, memory_bw: 50GB/s}
    card_types:
      quad:
        name: Quad
        host_link: {gen: 4, lanes: 16}
        switch: {}
        soc_link: {gen: 4, lanes: 8}
        socs: 4
        soc: {cores: 2, peak_flops: {fp16: 1TFLOPS}, dram: 1GB, dram_bw: 1GB/s}
    """)


@pytest.fixture(autouse=True)
def _inside_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def chain(switches: int, reverse: bool = False) -> str:
    """``switches`` switches one below the other under rc0, a card at the bottom; listed
    children first with ``reverse`` (the order that made the old builder quadratic)."""
    rows = [f"  - {{id: s{i}, parent: {'rc0' if i == 0 else f's{i - 1}'}, "
            "uplink: {gen: 4, lanes: 16}}" for i in range(switches)]
    if reverse:
        rows.reverse()
    return (HEAD + "switches:\n" + "\n".join(rows) +
            f"\ncards:\n  - {{type: quad, parent: s{switches - 1}}}\n")


def wide(cards: int) -> str:
    """``cards`` four-SoC cards, four per switch, every switch under rc0."""
    switches = -(-cards // 4)
    rows = [f"  - {{id: s{i}, parent: rc0, uplink: {{gen: 4, lanes: 16}}}}"
            for i in range(switches)]
    placed = [f"  - {{type: quad, parent: s{i}, count: {min(4, cards - 4 * i)}}}"
              for i in range(switches)]
    return HEAD + "switches:\n" + "\n".join(rows) + "\ncards:\n" + "\n".join(placed) + "\n"


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_32_deep_chain_builds_draws_and_prints(tmp_path):
    topo = simtopo.load_topology(write(tmp_path, chain(limits.MAX_DEPTH, reverse=True)))
    # root complex at depth 1, the 32 switches at 2..33, the card's switch 34, SoCs 35
    assert topo.graph.nodes["s31"]["depth"] == 1 + limits.MAX_DEPTH
    assert topo.graph.nodes["card0.soc3"]["depth"] == 3 + limits.MAX_DEPTH
    # node order is the tree's: each switch after its parent, whatever order the file gives
    nodes = list(topo.graph.nodes)
    assert all(nodes.index(f"s{i}") < nodes.index(f"s{i + 1}") for i in range(31))
    text = render_tree(topo)
    # five lines of header, then the socket, rc0, the chain, the card's switch and 4 SoCs
    assert text.count("\n") == 5 + 1 + 1 + limits.MAX_DEPTH + 1 + 4
    # the SoCs are 35 levels down; each level indents three characters
    line = next(x for x in text.splitlines() if " card0.soc3 " in x)
    assert line.index("card0.soc3") == 3 * (3 + limits.MAX_DEPTH)
    pos = layout(topo)
    assert pos["card0.soc3"][1] == pytest.approx(-(3 + limits.MAX_DEPTH) * 0.95)


@pytest.mark.parametrize("switches", [limits.MAX_DEPTH + 1, 4000])
def test_a_deeper_chain_is_refused_at_once(tmp_path, switches):
    path = write(tmp_path, chain(switches, reverse=True))
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(path)
    # the file lists the deepest switch first; the first one found too deep is s32
    row = switches - 1 - limits.MAX_DEPTH
    assert str(info.value) == (
        f"t.yaml:{14 + row}: switches[{row}].parent: switch 's32' is 33 switches below its "
        "root complex; at most 32 levels are allowed (PCIe trees are a few deep)")


def test_a_cycle_of_4000_switches_is_found(tmp_path):
    text = chain(4000).replace("{id: s0, parent: rc0", "{id: s0, parent: s3999")
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(write(tmp_path, text))
    assert "cycle of switch parents s0 -> s3999 -> s3998" in str(info.value)
    assert str(info.value).endswith("unreachable from the host: card0.soc0, card0.soc1, "
                                    "card0.soc2, card0.soc3")


def test_1024_socs_are_fine_2052_are_refused(tmp_path):
    topo = simtopo.load_topology(write(tmp_path, wide(256)))
    assert len(topo.socs) == 1024
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(write(tmp_path, wide(513)))
    # 128 switches hold 512 cards (2048 SoCs); the 129th placement passes the limit
    assert str(info.value).endswith("cards[128].count: the cards up to here hold 2052 SoCs; "
                                    "a topology may have at most 2048")


def test_one_placement_of_a_billion_cards_is_refused_by_the_schema(tmp_path):
    text = HEAD + "cards:\n  - {type: quad, parent: rc0, count: 1000000000}\n"
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(write(tmp_path, text))
    assert "cards[0].count" in str(info.value) and "2048" in str(info.value)


def test_the_matrix_refuses_more_devices_than_its_limit(tmp_path, monkeypatch):
    topo = simtopo.load_topology(write(tmp_path, wide(4)))
    monkeypatch.setattr(limits, "MAX_MATRIX_DEVICES", 15)
    with pytest.raises(RouteError) as info:
        path_matrix(topo)
    assert str(info.value) == ("a path matrix of 16 devices; at most 15 (its arrays grow with "
                               "the square)")


EXPERIMENT = """\
name: e
topology: {topology}
model: llama-2-7b
workload: {{batch: 1, prompt: 128, generate: {generate}, context: {context}, groups: {groups}}}
plan: {{tp: 4, connection: p2p}}
variants: [{{name: a}}]
"""


def _experiment(tmp_path, generate, groups):
    from .conftest import ROOT

    return write(tmp_path, EXPERIMENT.format(topology=ROOT / "topologies" / "ultra8.yaml",
                                             generate=generate, context=128 + generate,
                                             groups=groups), "e.yaml")


def test_passes_beyond_the_limit_are_refused_before_simulating(tmp_path, capsys):
    # 1 replica x 64 groups x (1 chunk + 99,999 steps) x 1 stage = 6,400,000 passes
    _experiment(tmp_path, 100_000, 64)
    assert main(["run", "e.yaml", "--no-report"]) == 2
    assert capsys.readouterr().err == (
        "error: e.yaml: workload: variant 'a': 1 replica(s) x 64 request group(s) x (1 prefill "
        "chunk(s) + 99999 decode steps) x 1 stage(s) is 6,400,000 passes to simulate; at most "
        "2,000,000 (fewer tokens, groups or replicas)\n")


def test_a_full_simulation_beyond_the_live_limit_is_refused(tmp_path, capsys):
    # 30,000 passes x 323 ops (llama-2-7b's decode graph) x 4 SoCs = 38,760,000 tasks
    _experiment(tmp_path, 30_000, 1)
    assert main(["run", "e.yaml", "--no-report", "--simulation", "full"]) == 2
    assert capsys.readouterr().err == (
        "error: e.yaml: variant 'a': --simulation full would run 38,760,000 op tasks live "
        "(30,000 passes of up to 323 ops on each SoC); at most 20,000,000: use --simulation "
        "auto, which simulates repeated passes once\n")


def test_a_long_extends_chain_is_blamed_on_the_named_file(tmp_path, monkeypatch):
    from .conftest import ROOT

    monkeypatch.setenv("SIMTOPO_PATHS", str(ROOT / "topologies"))  # the shipped files
    for i in range(20):
        parent = f"e{i + 1}.yaml" if i < 19 else str(ROOT / "topologies" / "ultra8.yaml")
        write(tmp_path, f"extends: {parent}\nname: e{i}\n", f"e{i}.yaml")
    assert len(simtopo.load_topology(tmp_path / "e10.yaml").socs) == 32
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(tmp_path / "e5.yaml")
    # e5 .. e19 are 15 files, ultra8.yaml the 16th; its card library is one too many
    message = str(info.value)
    assert message.startswith("e5.yaml: includes and extends go more than 16 files deep: "
                              "e5.yaml -> e6.yaml -> ... -> ")
    assert message.endswith("topologies/ultra8.yaml -> "
                            f"{ROOT / 'topologies' / 'cards' / 'ai100-ultra.yaml'}")


def test_an_include_diamond_is_read_once_per_file(tmp_path, monkeypatch):
    """Each level includes both files of the next level: 2**13 paths through 27 files."""
    from .conftest import ROOT

    card = ROOT / "topologies" / "cards" / "ai100-ultra.yaml"
    monkeypatch.setenv("SIMTOPO_PATHS", str(card.parent))
    for level in range(13):
        nxt = [f"d{level + 1}a.yaml", f"d{level + 1}b.yaml"] if level < 12 else [str(card)]
        for side in "ab":
            own = (f"  c{level}{side}: {{name: C, host_link: {{gen: 4, lanes: 16}}, "
                   "soc: {cores: 2, peak_flops: {fp16: 1TFLOPS}, dram: 1GB, dram_bw: 1GB/s}}")
            write(tmp_path, f"include: [{', '.join(nxt)}]\ncard_types:\n{own}\n",
                  f"d{level}{side}.yaml")
    text = (HEAD.replace("card_types:", "include: [d0a.yaml, d0b.yaml]\ncard_types:") +
            "cards:\n  - {type: ai100-ultra, parent: rc0}\n")
    topo = simtopo.load_topology(write(tmp_path, text))
    assert len(topo.socs) == 4
    # every level's card types arrive, each from its own file
    from simtopo.topology.files import load_card_library

    types = load_card_library(tmp_path / "d0a.yaml")
    assert set(types) == {"c0a", "ai100-ultra"} | {f"c{level}{side}" for level in range(1, 13)
                                                   for side in "ab"}
