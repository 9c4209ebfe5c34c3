"""Bad input: each gets one line naming the file, line, key path, bad value and expectation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import simtopo
from simtopo import ConfigError, TopologyError
from simtopo.cli import main

BASE = textwrap.dedent("""\
    name: t
    host:
      sockets:
        - {id: cpu0, cores: 4, memory: 8GB, memory_bw: 50GB/s}
    card_types:
      solo:
        name: Solo
        host_link: {gen: 4, lanes: 8}
        soc: {cores: 2, peak_flops: {fp16: 1TFLOPS}, dram: 1GB, dram_bw: 1GB/s}
    switches:
      - {id: sw0, parent: rc0, uplink: {gen: 4, lanes: 16}}
      - {id: sw1, parent: sw0, uplink: {gen: 4, lanes: 16}}
    cards:
      - {type: solo, parent: sw1, count: 2}
    """)


@pytest.fixture(autouse=True)
def _inside_tmp_path(tmp_path, monkeypatch):
    """Errors name files relative to the working directory, as a user would type them."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(path)
    return str(info.value)


def test_the_base_file_is_valid(tmp_path):
    topo = simtopo.load_topology(write(tmp_path, BASE))
    assert topo.socs == ("card0.soc0", "card1.soc0")


@pytest.mark.parametrize(("old", "new", "message"), [
    ("parent: sw0, uplink", "parent: sw9, uplink",
     "t.yaml:12: switches[1].parent: unknown parent 'sw9' (expected a root complex or switch: "
     "rc0, sw0, sw1)"),
    ("id: sw1", "id: sw0",
     "t.yaml:12: switches[1].id: duplicate id 'sw0' (already used at switches[0].id)"),
    ("id: sw1", "id: card1",
     "t.yaml:14: cards[0]: duplicate id 'card1' (already used at switches[1].id)"),
    ("{id: sw0, parent: rc0", "{id: sw0, parent: sw1",
     "t.yaml:11: switches[0].parent: cycle of switch parents sw0 -> sw1 -> sw0; unreachable "
     "from the host: card0.soc0, card1.soc0"),
    ("parent: sw1, count: 2", "parent: card0.soc0, count: 2",
     "t.yaml:14: cards[0].parent: parent 'card0.soc0' is a SoC; expected a root complex or "
     "switch: rc0, sw0, sw1"),
    ("uplink: {gen: 4, lanes: 16}}\ncards", "uplink: {bandwidth: 0GB/s}}\ncards",
     "t.yaml:12: switches[1].uplink.bandwidth: a bandwidth must be between 1 MB/s and "
     "100 TB/s (got '0GB/s')"),
    ("uplink: {gen: 4, lanes: 16}}\ncards", "uplink: {bandwidth: -5GB/s}}\ncards",
     "t.yaml:12: switches[1].uplink.bandwidth: a bandwidth must be between 1 MB/s and "
     "100 TB/s (got '-5GB/s')"),
    ("dram_bw: 1GB/s", "dram_bw: 1GB",
     "t.yaml:9: card_types.solo.soc.dram_bw: expected a bandwidth such as '25GB/s' "
     "(got '1GB')"),
    ("{id: sw1, parent", "{id: sw1, acss: true, parent",
     "t.yaml:12: switches[1].acss: unknown key 'acss' (expected one of: id, parent, uplink, acs, "
     "hop_latency, model, chip, p2p)"),
    ("cores: 4,", "cores: many,",
     "t.yaml:4: host.sockets[0].cores: expected a valid integer (got 'many')"),
    ("cores: 4,", "cores: true,",
     "t.yaml:4: host.sockets[0].cores: expected a valid integer (got True)"),
    ("lanes: 8}", "lanes: 12}",
     "t.yaml:8: card_types.solo.host_link.lanes: expected 1, 2, 4, 8, 16 or 32 (got 12)"),
    ("lanes: 8}", "lanes: 8, bandwidth: 5GB/s}",
     "t.yaml:8: card_types.solo.host_link: give either 'gen' and 'lanes' or an explicit "
     "bandwidth, not both"),
    ("type: solo", "type: sola",
     "t.yaml:14: cards[0].type: unknown card type 'sola' (expected one of: solo)"),
    ("count: 2", "count: 0",
     "t.yaml:14: cards[0].count: expected greater than or equal to 1 (got 0)"),
    ("name: t\n", "name: t\nname: u\n", "t.yaml:2: duplicate key 'name' (first on line 1)"),
    ("{id: sw1,", "{id: sw1 x,",
     "t.yaml:12: switches[1].id: ids are letters, digits, '_' and '-', starting with a letter, "
     "at most 64 (got 'sw1 x'); dots are reserved for generated ids such as 'card3.soc1'"),
    ("    name: Solo\n", "",
     "t.yaml:6: card_types.solo.name: missing required key"),
    ("memory_bw: 50GB/s}", "memory_bw: .nan}",
     "t.yaml:4: host.sockets[0].memory_bw: a bandwidth must be finite (got nan)"),
])
def test_bad_topology(tmp_path, old, new, message):
    assert old in BASE
    assert error_of(write(tmp_path, BASE.replace(old, new, 1))) == message


def test_unreachable_soc_is_a_topology_error(tmp_path):
    text = BASE.replace("{id: sw0, parent: rc0", "{id: sw0, parent: sw1")
    with pytest.raises(TopologyError):
        simtopo.load_topology(write(tmp_path, text))


def test_two_sockets_need_a_socket_link(tmp_path):
    text = BASE.replace("memory_bw: 50GB/s}\n",
                        "memory_bw: 50GB/s}\n    - {id: cpu1, cores: 4, memory: 8GB, "
                        "memory_bw: 50GB/s}\n")
    assert error_of(write(tmp_path, text)) == (
        "t.yaml:2: host: 2 sockets need a 'socket_link' (the inter-socket link)")


def test_a_topology_needs_socs(tmp_path):
    text = BASE.split("cards:")[0]
    assert error_of(write(tmp_path, text)) == (
        "t.yaml:1: cards: a topology needs at least one SoC: place a card under a switch or root "
        "complex")


@pytest.mark.parametrize(("old", "new", "message"), [
    ("lanes: 8}", "lanes: true}", "t.yaml:8: card_types.solo.host_link.lanes: expected a number, "
                                  "not a boolean (got True)"),
    ("{gen: 4, lanes: 8}", "{gen: true, lanes: 8}",
     "t.yaml:8: card_types.solo.host_link.gen: expected a number, not a boolean (got True)"),
    ("lanes: 8}", "lanes: 8, max_payload: 1}",
     "t.yaml:8: card_types.solo.host_link.max_payload: a PCIe max payload size is 128, 256, "
     "512, 1024, 2048 or 4096 bytes (got 1)"),
    ("count: 2", "count: 1000000000000",
     "t.yaml:14: cards[0].count: expected less than or equal to 2048 (got 1000000000000)"),
])
def test_impossible_values(tmp_path, old, new, message):
    assert error_of(write(tmp_path, BASE.replace(old, new, 1))) == message


@pytest.mark.parametrize(("content", "message"), [
    (b"", "t.yaml: expected a mapping of keys to values (got an empty file)"),
    (b"- a\n- b\n", "t.yaml:1: expected a mapping of keys to values (got a list)"),
    (b"\xff\xfe", "t.yaml: not UTF-8 text (bad byte at offset 0)"),
    (b"name: [unclosed\n", "t.yaml:2: malformed YAML: did not find expected ',' or ']'"),
    (b"a: &x [*x]\n", "t.yaml:1: recursive YAML alias (a node that contains itself)"),
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    assert error_of(path) == message


def test_alias_bomb_is_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(write(tmp_path, "\n".join(lines) + "\n"))
    assert "aliases expand the document by more than 500,000 values" in str(info.value)


def test_missing_file():
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology("/nonexistent/t.yaml")
    assert str(info.value) == "/nonexistent/t.yaml: no such file"


def test_missing_include_names_the_including_file(tmp_path):
    text = BASE.replace("name: t\n", "name: t\ninclude: [cards/none.yaml]\n")
    message = error_of(write(tmp_path, text))
    assert message.startswith("t.yaml:2: include[0]: file 'cards/none.yaml' not found (looked "
                              "for ")


def test_error_in_an_included_file_names_that_file(tmp_path):
    (tmp_path / "lib.yaml").write_text(
        "card_types:\n  other:\n    name: Other\n    host_link: {gen: 4, lanes: 8}\n"
        "    soc: {cores: 0, peak_flops: {fp16: 1TFLOPS}, dram: 1GB, dram_bw: 1GB/s}\n")
    text = BASE.replace("name: t\n", "name: t\ninclude: [lib.yaml]\n")
    assert error_of(write(tmp_path, text)) == (
        "lib.yaml:5: card_types.other.soc.cores: expected greater than or equal to 1 (got 0)")


def test_same_card_type_in_two_files(tmp_path):
    (tmp_path / "lib.yaml").write_text(
        "card_types:\n  solo:\n    name: Solo\n    host_link: {gen: 4, lanes: 8}\n"
        "    soc: {cores: 2, peak_flops: {fp16: 1TFLOPS}, dram: 1GB, dram_bw: 1GB/s}\n")
    text = BASE.replace("name: t\n", "name: t\ninclude: [lib.yaml]\n")
    assert error_of(write(tmp_path, text)) == (
        "t.yaml:7: card_types.solo: card type 'solo' is also defined in lib.yaml")


def test_extends_cycle(tmp_path):
    write(tmp_path, "extends: b.yaml\nname: a\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\nname: b\n", "b.yaml")
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(tmp_path / "a.yaml")
    assert str(info.value) == (
        "b.yaml:1: extends: 'a.yaml' leads back to this file (a cycle of includes or extends)")


def test_error_in_an_extending_file_points_at_the_key_where_it_was_written(tmp_path):
    write(tmp_path, BASE, "base.yaml")
    write(tmp_path, "extends: base.yaml\nname: v\nplatform:\n  acs: maybe\n", "v.yaml")
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(tmp_path / "v.yaml")
    assert str(info.value) == "v.yaml:4: platform.acs: expected a valid boolean (got 'maybe')"
    write(tmp_path, "extends: base.yaml\nname: v\ncards: [{type: nope, parent: sw0}]\n",
          "v.yaml")
    with pytest.raises(ConfigError) as info:
        simtopo.load_topology(tmp_path / "v.yaml")
    assert str(info.value) == (
        "v.yaml:3: cards[0].type: unknown card type 'nope' (expected one of: solo)")


# -- the CLI: exit code 2, one line, no traceback unless --debug -----------------------------

def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    path = write(tmp_path, BASE.replace("parent: sw0, uplink", "parent: sw9, uplink"))
    assert main(["topo", "show", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: ") and "switches[1].parent" in captured.err


def test_cli_validate_reports_each_file(tmp_path, capsys):
    good = write(tmp_path, BASE, "good.yaml")
    bad = write(tmp_path, BASE.replace("count: 2", "count: -1"), "bad.yaml")
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("ok     ")
    assert "bad.yaml:14: cards[0].count: expected greater than or equal to 1 (got -1)" in \
        captured.err


def test_cli_debug_shows_the_traceback(tmp_path, capsys):
    path = write(tmp_path, BASE.replace("count: 2", "count: -1"))
    assert main(["--debug", "topo", "show", str(path)]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_console_script_has_no_traceback(tmp_path):
    path = write(tmp_path, BASE.replace("type: solo", "type: sola"))
    proc = subprocess.run([sys.executable, "-m", "simtopo", "topo", "show", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("cards[0].type: unknown card type 'sola' (expected one "
                                        "of: solo)")
