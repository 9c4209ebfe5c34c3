"""The CLI on every built-in topology, in process."""

from __future__ import annotations

import json

import pytest

from simtopo.cli import main

from .conftest import BUILTIN, TOPOLOGIES

ULTRA8 = str(TOPOLOGIES / "ultra8.yaml")


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: p.name)
def test_show_matrix_check_draw_on_every_builtin(path, tmp_path, capsys):
    assert main(["topo", "show", str(path)]) == 0
    tree = capsys.readouterr().out
    assert "[Gen4 x" in tree and "rc0  root complex" in tree
    assert main(["topo", "show", "--brief", str(path)]) == 0
    assert main(["topo", "matrix", str(path)]) == 0
    assert "path class" in capsys.readouterr().out
    for value in ("bandwidth", "latency"):
        assert main(["topo", "matrix", str(path), "--value", value]) == 0
    capsys.readouterr()
    assert main(["topo", "matrix", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["devices"]) == len(data["path_class"])
    assert main(["topo", "check", str(path)]) == 0
    out = tmp_path / "t.png"
    assert main(["topo", "draw", str(path), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_lists_every_soc_with_its_link(ultra8, capsys):
    assert main(["topo", "show", ULTRA8]) == 0
    lines = capsys.readouterr().out.splitlines()
    soc_lines = [line for line in lines if ".soc" in line]
    assert len(soc_lines) == 32
    x8 = ultra8.graph.edges["card0.sw", "card0.soc0"]["bw_Bps"]
    assert all(line.endswith(f"[Gen4 x8: {x8 / 1e9:.4g} GB/s]") for line in soc_lines)


def test_matrix_device_patterns(capsys):
    assert main(["topo", "matrix", ULTRA8, "--devices", "card0.*,card4.soc0",
                 "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == ",card0.soc0,card0.soc1,card0.soc2,card0.soc3,card4.soc0"
    assert rows[1] == "card0.soc0,X,CARD,CARD,CARD,RC"


def test_matrix_unknown_pattern(capsys):
    assert main(["topo", "matrix", ULTRA8, "--devices", "gpu*"]) == 2
    assert capsys.readouterr().err == (
        "error: --devices: 'gpu*' matches no SoC or storage device (ids look like card0.soc0)\n")


def test_route_command(ultra8, capsys):
    from simtopo.units import format_bandwidth, format_time

    assert main(["topo", "route", ULTRA8, "card0.soc0", "card4.soc1",
                 "--mode", "host"]) == 0
    out = capsys.readouterr().out
    bounce = ultra8.route("card0.soc0", "card4.soc1", mode="host")
    assert out.startswith(f"card0.soc0 -> card4.soc1: host, bottleneck "
                          f"{format_bandwidth(bounce.bottleneck_Bps)}, latency "
                          f"{format_time(bounce.latency_s)}\n")
    assert f"hand-off {format_time(ultra8.handoff_latency_s)} on 4 host threads" in out


def test_route_refused_exits_2(capsys):
    two_socket = str(TOPOLOGIES / "ultra16-2s.yaml")
    assert main(["topo", "route", two_socket, "card0.soc0", "card8.soc0"]) == 2
    assert "socket link cpu0-cpu1" in capsys.readouterr().err


def test_check_exits_1_on_an_error_finding(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text("extends: " + str((BUILTIN[0].parent / "ultra8.yaml").resolve())
                    + "\nname: small-bar\nplatform: {bar_space: 16GiB}\n")
    assert main(["topo", "check", str(path)]) == 1
    assert "error   bar-space" in capsys.readouterr().out


def test_validate_builtins_and_card_libraries(capsys):
    files = [str(p) for p in BUILTIN] + [str(p) for p in (BUILTIN[0].parent / "cards").glob(
        "*.yaml")]
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.count("ok     ") == len(files)


def test_staging_needs_host_mode(capsys):
    assert main(["topo", "route", ULTRA8, "card0.soc0", "card4.soc1", "--staging", "dst"]) == 2
    assert capsys.readouterr().err == "error: --staging applies only to --mode host\n"


def test_draw_to_an_unwritable_place_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["topo", "draw", ULTRA8, "-o", str(blocker / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and err.count("\n") == 1


def test_csv_values_are_rounded(capsys):
    assert main(["topo", "matrix", ULTRA8, "--devices", "card0.soc0,card0.soc1", "--value",
                 "bandwidth", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    value = rows[1].split(",")[2]
    assert value == f"{float(value):.12g}"


def test_model_show(capsys):
    assert main(["model", "show", "llama-2-70b"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 68,976,648,192" in out and "pass: prefill" in out


def test_plan_refused_with_numbers(capsys):
    assert main(["plan", "--model", "llama-2-70b", "--topology", ULTRA8, "--tp", "4",
                 "--context", "1024"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: llama-2-70b does not fit on 4 SoCs per replica: card0.soc0 "
                          "needs 35.6 GB of 32.0 GB: weights 34.5, KV 0.1")


def test_plan_writes_mdp_that_validates(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--model", "llama-2-70b", "--topology", ULTRA8, "--tp", "8",
                 "--pp", "2", "--write-mdp", str(out)]) == 0
    assert "stage 0: 81 x all_reduce of 16 KiB" in capsys.readouterr().out
    assert main(["mdp", "validate", str(out), "--model", "llama-2-70b", "--topology",
                 ULTRA8]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {out} on ultra8 with llama-2-70b")


def test_mdp_dump_and_validate(tmp_path, capsys):
    out = tmp_path / "dump.json"
    assert main(["mdp", "dump", "--model", "gpt-j-6b", "-o", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    assert "MDP config: 1 partition(s), 1 device(s)" in capsys.readouterr().out


def test_validate_models_and_graphs(capsys):
    from .conftest import ROOT

    assert main(["validate", str(ROOT / "experiments" / "mdp" / "pipelined-graph.yaml")]) == 0
    assert "graph mdp-pipelined-example: 13 ops" in capsys.readouterr().out


def test_bad_rule(capsys):
    assert main(["plan", "--model", "llama-2-7b", "--topology", ULTRA8, "--rule",
                 "lm_head=Q"]) == 2
    assert "--rule: expected PATTERN=M, PATTERN=K or PATTERN=replicate (got 'lm_head=Q')" in \
        capsys.readouterr().err


@pytest.mark.parametrize("option", ["--tp", "--pp", "--replicas"])
def test_plan_refuses_zero_sizes_in_one_line(option, capsys):
    assert main(["plan", "--model", "llama-2-7b", "--topology", ULTRA8, option, "0"]) == 2
    assert capsys.readouterr().err == (
        f"error: simtopo plan: argument {option}: expected an integer from 1 to 2048 (got '0') "
        "(see simtopo plan --help)\n")
