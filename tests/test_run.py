"""`simtopo run` and `simtopo.run`: the report folder, atomicity, determinism, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import simtopo
from simtopo.cli import main
from simtopo.report import markdown as report_module

from .conftest import ROOT

CARD = ROOT / "experiments" / "ultra-card-llama2-7b.yaml"
FAST = ["--variant", "tp4-p2p", "--variant", "tp4-host"]


def write_experiment(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(body.replace("TOPO", str(ROOT / "topologies" / "ultra8.yaml")))
    return path


def test_run_writes_the_whole_report(tmp_path, capsys):
    assert main(["run", str(CARD), *FAST, "--reports", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tp4-host" in out and "P2P speed-up" in out and "report:" in out
    folder = tmp_path / "ultra-card-llama2-7b"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["comparison.png", "links-tp4-host.png", "links-tp4-p2p.png", "report.md",
                     "summary.json", "timeline-tp4-host.png", "timeline-tp4-p2p.png",
                     "topology-tp4-host.png", "topology-tp4-p2p.png", "trace.json"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["simtopo_version"] == simtopo.__version__
    assert [v["name"] for v in summary["variants"]] == ["tp4-p2p", "tp4-host"]
    (pair,) = summary["comparisons"]
    host, p2p = summary["variants"][1]["metrics"], summary["variants"][0]["metrics"]
    assert pair["tpot_mean_s_speedup"] == pytest.approx(host["tpot_mean_s"] / p2p["tpot_mean_s"])
    md = (folder / "report.md").read_text()
    for section in ("## Results", "## P2P over host-routed", "## What was simulated",
                    "## One decode step", "## Bottleneck links", "## Memory",
                    "## Platform checks", "## Figures"):
        assert section in md
    for png in (n for n in names if n.endswith(".png")):
        assert f"]({png})" in md
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trace = json.loads((folder / "trace.json").read_text())
    processes = [e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"]
    assert processes == ["tp4-p2p: requests", "tp4-p2p: prefill chunk, op by op",
                         "tp4-p2p: decode step at context 2048, op by op",
                         "tp4-host: requests", "tp4-host: prefill chunk, op by op",
                         "tp4-host: decode step at context 2048, op by op"]
    # bounded: a span per token per request, and two layers op by op per stage and pass
    assert len(trace["traceEvents"]) < 4 * 1024 + 2000


def test_trace_requests_are_the_simulated_tokens():
    result = simtopo.run(CARD, variants=["tp4-p2p"])
    v = result.variants[0]
    trace = result.to_chrome_trace()
    spans = [e for e in trace["traceEvents"] if e.get("cat") == "pass"]
    assert len(spans) == 1024  # prefill + first token, then 1023 decode steps
    times = v.timeline.token_times[0][0]
    assert spans[0]["dur"] == pytest.approx(times[0] * 1e6)
    assert spans[-1]["ts"] + spans[-1]["dur"] == pytest.approx(times[-1] * 1e6)


def test_a_failed_run_leaves_the_previous_report(tmp_path, monkeypatch):
    assert main(["run", str(CARD), "--variant", "tp1", "--reports", str(tmp_path)]) == 0
    folder = tmp_path / "ultra-card-llama2-7b"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(result):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module.figures, "link_utilization", broken)
    assert main(["run", str(CARD), *FAST, "--reports", str(tmp_path)]) == 2
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ultra-card-llama2-7b"]  # no temp


def test_summary_is_byte_identical_across_processes_and_hash_seeds(tmp_path):
    outputs = []
    for seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-m", "simtopo", "run", str(CARD), *FAST,
                               "--variant", "tp1x4", "--json", "--no-report"],
                              capture_output=True, env=env, check=True)
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    in_process = simtopo.run(CARD, variants=["tp4-p2p", "tp4-host", "tp1x4"]).to_json()
    assert in_process.encode() == outputs[0]


def test_dataframes_and_notebook_display():
    result = simtopo.run(CARD, variants=["tp1", "tp2-p2p"])
    frame = result.to_dataframe()
    assert list(frame.index) == ["tp1", "tp2-p2p"]
    assert frame.loc["tp2-p2p", "socs"] == 2
    socs = result.socs_dataframe()
    assert len(socs) == 3 and set(socs["variant"]) == {"tp1", "tp2-p2p"}
    assert "<b>ultra-card-llama2-7b</b>" in result._repr_html_()
    assert result.variant("tp1").plot_timeline().axes


def test_unknown_variant_is_one_line(tmp_path, capsys):
    assert main(["run", str(CARD), "--variant", "nope", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {CARD}: unknown variant 'nope' (expected one of: tp1, tp2-p2p, "
                   "tp4-p2p, tp4-host, tp1x4, tp1-mxfp6, tp4-p2p-mxfp6, tp4-host-mxfp6)\n")


def test_bad_value_names_the_variant_key_path(tmp_path, capsys):
    path = write_experiment(tmp_path, """\
name: bad
topology: TOPO
model: llama-2-7b
workload: {batch: 1, prompt: 128, generate: 8}
variants:
  - {name: ok}
  - {name: badtp, plan: {tp: 0}}
""")
    assert main(["run", str(path), "--reports", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == (f"error: {path}:7: variants[1].plan.tp: expected greater "
                                       "than or equal to 1 (got 0)\n")
    assert not (tmp_path / "r").exists()


def test_a_model_that_does_not_fit_names_the_variant(tmp_path, capsys):
    path = write_experiment(tmp_path, """\
name: big
topology: TOPO
model: llama-2-70b
workload: {batch: 1, prompt: 128, generate: 8}
plan: {tp: 2}
""")
    assert main(["run", str(path), "--reports", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: variant 'big': llama-2-70b does not fit on 2 SoCs "
                          "per replica: card0.soc0 needs 70.0 GB of 32.0 GB")
    assert err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_one_generated_token_has_no_decode_metrics(tmp_path):
    """generate: 1 is prefill and the first token only: no time per output token, decode rate
    or decode step is reported (not a 0), the last token is the first, and the report has no
    decode-step section."""
    path = write_experiment(tmp_path, """
name: first-token
topology: TOPO
model: llama-2-7b
workload: {batch: 2, prompt: 128, generate: 1, context: 256}
plan: {tp: 4, connection: p2p}
variants: [{name: p2p}, {name: host, plan: {connection: host}}]
""")
    result = simtopo.run(path)
    for v in result.variants:
        m = v.metrics
        assert not {"tpot_mean_s", "tpot_p50_s", "tpot_p99_s", "decode_tokens_per_s",
                    "step_s", "step_compute_s", "step_comm_s", "step_bubble_s"} & set(m)
        assert m["e2e_s"] == m["ttft_s"]
        assert m["tokens_per_s"] == pytest.approx(2 / m["makespan_s"])
    (comparison,) = result.comparisons()
    assert set(comparison) == {"p2p", "host", "ttft_s_speedup", "e2e_s_speedup",
                               "ttft_s_speedup_band", "e2e_s_speedup_band"}
    folder = result.write_report(tmp_path / "report")
    text = (folder / "report.md").read_text()
    assert "## One decode step" not in text
    assert "| p2p | 4 | " in text and " | - | - | " in text


def test_a_precision_the_soc_lists_no_rate_for_is_a_warning(tmp_path):
    """bf16 weights on an AI 100 (which lists fp16 and int8 rates only) run at the fp16 rate:
    the same times as fp16, and a warning that says so."""
    body = """
name: bf
topology: TOPO
model: llama-2-7b
workload: {batch: 1, prompt: 64, generate: 4, context: 128, precision: PRECISION}
plan: {tp: 4}
variants: [{name: a}]
"""
    fp16 = simtopo.run(write_experiment(tmp_path, body.replace("PRECISION", "fp16")))
    bf16 = simtopo.run(write_experiment(tmp_path, body.replace("PRECISION", "bf16")))
    assert fp16.variants[0].warnings == []
    assert bf16.variants[0].warnings == [
        "bf16 runs at the fp16 rate on ai100-ultra (no rate listed for it)"]
    assert bf16.variants[0].metrics["tpot_mean_s"] == fp16.variants[0].metrics["tpot_mean_s"]


def test_the_table_fits_80_columns_without_cutting_anything(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["run", str(ROOT / "experiments" / "ultra8.yaml"), "--no-report"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in out and "..." not in out
    for name in ("tp16-host-mxfp6", "pp2-tp16-p2p", "tp16x2-p2p"):  # names whole
        assert any(f" {name} " in line for line in lines)
    # a link may wrap at its arrow, never mid-id
    assert "card0.sw" in out and "rc0" in out and "sw0" in out


def test_the_bands_runs_reuse_the_set_up_and_give_what_a_fresh_set_up_gives():
    """The band re-runs a variant with other transfer settings and host hand-off: its set-up
    (plan, memory) is the variant's own, rebased; the metrics are those of a fresh set-up;
    a variant that differs in anything else is refused."""
    from dataclasses import replace

    from simtopo.results.bands import corner, with_values
    from simtopo.results.run import run_setup, run_variant
    from simtopo.sim.setup import rebased, setup_variant
    from simtopo.spec.experiment import load_experiment
    from simtopo.topology.files import load_topology

    (v,) = [v for v in load_experiment(CARD).variants if v.name == "tp4-host"]
    v = replace(v, workload=v.workload.model_copy(update={"prompt": 128, "generate": 4}))
    base = load_topology(v.topology)
    topo, changed = with_values(base, v, corner(base, v, "p2p"))
    assert topo.handoff_latency_s != base.handoff_latency_s and changed.transfer != v.transfer
    setup = setup_variant(v)
    again = run_setup(rebased(setup, changed, topo), spans=False)
    fresh = run_variant(changed, topology=topo)
    assert again.metrics == fresh.metrics
    with pytest.raises(ValueError, match="only transfer settings and the host hand-off"):
        rebased(setup, replace(changed, plan=v.plan.model_copy(update={"tp": 2})), topo)
    graph = topo.graph.copy()
    u, w = next(iter(graph.edges))
    graph.edges[u, w]["latency_s"] += 1e-6
    with pytest.raises(ValueError, match="only transfer settings and the host hand-off"):
        rebased(setup, changed, topo.derived(graph=graph))


def test_the_band_stages_in_small_chunks_at_the_p2p_corner_where_hand_offs_are_dear():
    """The staging chunk is a band constant set at the P2P corner only (its direction turns
    with the hand-off's cost): 64 KiB there, through the variant's transfer settings, and the
    chunk in effect at the host corner. At the P2P corner's hand-offs (50 us, one thread) a
    lone host-routed 4 MiB copy in 64 chunks takes at least 64 hand-offs in a row, and is
    slower than in 16 chunks of the chunk in effect."""
    from simtopo.constants import CHUNK_BYTES
    from simtopo.engine.transfers import Fabric
    from simtopo.results.bands import corner, with_values
    from simtopo.sim.setup import transfer_settings
    from simtopo.spec.experiment import load_experiment
    from simtopo.topology.files import load_topology

    (v,) = [v for v in load_experiment(CARD).variants if v.name == "tp4-host"]
    base = load_topology(v.topology)
    assert "chunk" not in corner(base, v, "host")
    topo, changed = with_values(base, v, corner(base, v, "p2p"))
    small = transfer_settings(topo, changed)
    assert small.chunk == 64 * 1024 and topo.handoff_threads == 1
    took = {}
    for chunk in (small.chunk, CHUNK_BYTES):
        fab = Fabric.create(topo, small.model_copy(update={"chunk": chunk}))
        fab.copy(base.socs[0], base.socs[1], 4 * 1024 * 1024, mode="host")
        fab.env.run()
        took[chunk] = fab.env.now
    assert took[small.chunk] >= 64 * topo.handoff_latency_s > took[CHUNK_BYTES]


@pytest.mark.parametrize("name", ["tp4-host", "tp2-p2p"])
def test_a_run_without_spans_has_the_same_summary(name):
    """Sweeps, the advisor and the band run without the timeline's spans and flows (the
    report's figures and trace need them, no metric does): the summary is the same."""
    from dataclasses import replace

    from simtopo.results.run import run_variant
    from simtopo.spec.experiment import load_experiment

    (v,) = [v for v in load_experiment(CARD).variants if v.name == name]
    v = replace(v, workload=v.workload.model_copy(update={"prompt": 64, "generate": 8}))
    full, bare = run_variant(v), run_variant(v, spans=False)
    assert any(run.spans for stage in full.profiles["prefill"].stages
               for _, run, _ in stage.blocks)
    assert not any(run.spans or run.flows for stage in bare.profiles["prefill"].stages
                   for _, run, _ in stage.blocks)
    assert bare.summary() == full.summary()
