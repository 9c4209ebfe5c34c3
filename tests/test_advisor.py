"""The sizing advisor: the layouts it tries, why it drops some, how it ranks the rest."""

from __future__ import annotations

import pytest

from simtopo.analysis.advisor import Layout, advise, layouts
from simtopo.cli import main
from simtopo.errors import PlanError
from simtopo.plan.mdp import read_mdp
from simtopo.results.run import run
from simtopo.spec.experiment import WorkloadSpec
from simtopo.workload.decoders import load_model as preset

from .conftest import ROOT

TOPOLOGY = ROOT / "topologies" / "ultra4-direct.yaml"
WORKLOAD = WorkloadSpec(batch=1, prompt=64, generate=8, context=512, precision="fp32")


def test_layouts_on_four_socs_by_hand():
    # llama-2-13b: 40 heads (tp 1, 2, 4 divide them), 40 layers; batch 1: weight mode only.
    # tp x pp x replicas <= 4 in powers of two: (1,1,1..4), (1,2,1..2), (1,4,1), (2,1,1..2),
    # (2,2,1), (4,1,1): 3 + 2 + 1 + 2 + 1 + 1 = 10, each P2P or host when it spans SoCs
    got = layouts(preset("llama-2-13b"), 4, batch=1)
    single = [x for x in got if x.tp * x.pp == 1]
    assert len(single) == 3 and all(x.connection == "p2p" for x in single)
    assert len(got) == 3 + 2 * 7
    # batch 4 adds batch mode for tp 2 (x1, x2 replicas; pp 1 or 2 at x1) and tp 4
    with_batch = layouts(preset("llama-2-13b"), 4, batch=4)
    assert len(with_batch) - len(got) == 2 * (3 + 1)
    # llama-2-70b has 8 KV heads: tp 16 holds whole copies, 12 would not (not a power of 2
    # anyway), tp 32 is a multiple of 8 and divides 64 heads
    assert {x.tp for x in layouts(preset("llama-2-70b"), 32, 1)} == {1, 2, 4, 8, 16, 32}


def test_ranked_by_latency_dropped_with_the_memory_checks_reason():
    ranked = advise("llama-2-13b", TOPOLOGY, WORKLOAD, "latency", executor="serial", socs=4)
    kept = [c for c in ranked if c.kept]
    dropped = [c for c in ranked if not c.kept]
    # fp32 llama-2-13b: 52 GB of weights do not fit on one 32 GB SoC, nor on a 1x2 pipeline
    # when one stage holds more than 31 GB, but do on 2 and 4 SoCs of tensor slicing
    assert {c.layout for c in dropped} >= {Layout(1, 1, r) for r in (1, 2, 4)}
    single = next(c for c in dropped if c.layout == Layout(1, 1, 1))
    with pytest.raises(PlanError) as alone:
        run_layout(Layout(1, 1, 1))
    assert single.reason in str(alone.value)
    tpots = [c.metrics["tpot_mean_s"] for c in kept]
    assert tpots == sorted(tpots)
    # the winner's numbers are what `simtopo run` gives for the same layout
    best = kept[0]
    assert run_layout(best.layout)["tpot_mean_s"] == best.metrics["tpot_mean_s"]
    assert best.layout.tp == 4 and best.layout.connection == "p2p"


def run_layout(layout):
    import tempfile
    from pathlib import Path

    import yaml

    spec = {"name": "one", "topology": str(TOPOLOGY), "model": "llama-2-13b",
            "workload": WORKLOAD.model_dump(exclude_none=True),
            "plan": layout.plan().model_dump(exclude_none=True)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "one.yaml"
        path.write_text(yaml.safe_dump(spec))
        return run(path).summary()["variants"][0]["metrics"]


def test_throughput_ranks_by_tokens_per_second_and_pipelines_serve_groups():
    ranked = advise("llama-2-13b", TOPOLOGY, WORKLOAD, "throughput", executor="serial",
                    socs=4)
    kept = [c for c in ranked if c.kept]
    rates = [c.metrics["tokens_per_s"] for c in kept]
    assert rates == sorted(rates, reverse=True)
    # replicas multiply throughput: two replicas of tp2 beat one tp2 by about 2x
    one = next(c for c in kept if c.layout == Layout(2, 1, 1))
    two = next(c for c in kept if c.layout == Layout(2, 1, 2))
    assert two.metrics["tokens_per_s"] == pytest.approx(2 * one.metrics["tokens_per_s"],
                                                        rel=0.02)


def test_leading_layouts_whose_stages_contend_are_simulated_again(monkeypatch):
    """The screen leaves contention out; a leader whose screen missed contention is simulated
    again in the auto mode and the ranking redone, until the leaders are all exact."""
    import simtopo.analysis.advisor as advisor_module

    calls: list[tuple[str, str]] = []
    tokens = {"tp1 pp4 host": 40.0, "tp2 pp2 host": 30.0, "tp4 pp1 p2p": 20.0}

    def fake_execute(tasks, executor, jobs, scheduler):
        for point, _variant, _, _, mode in tasks:
            calls.append((point.key, mode))
            if point.key not in tokens:
                yield {"key": point.key, "status": "error", "error": f"{point.key}: no"}
                continue
            rate = tokens[point.key] / (4 if mode == "auto" else 1)  # contention, found live
            contend = "pp1" not in point.key
            yield {"key": point.key, "status": "ok", "busiest_link": "",
                   "metrics": {"tokens_per_s": rate, "tpot_mean_s": 1 / rate, "ttft_s": 1.0,
                               "step_s": 1.0},
                   **({"simulation": {"mode": mode, "live": "nothing",
                                      "reason": "stages 0 and 1 overlap"}} if contend else {})}

    monkeypatch.setattr(advisor_module, "REFINED", 1)
    monkeypatch.setattr("simtopo.analysis.executors.execute", fake_execute)
    ticks: list[tuple[int, int, str]] = []
    ranked = advise("llama-2-13b", TOPOLOGY, WORKLOAD, "throughput", socs=4,
                    progress=lambda done, total, rec: ticks.append((done, total, rec.get("key"))))
    kept = [c for c in ranked if c.kept]
    # the progress counts every simulation as it finishes: the screen's layouts, then each
    # refinement adds one to the total
    screen = sum(mode == "screen" for _, mode in calls)
    assert [(done, total) for done, total, _ in ticks] == (
        [(i, screen) for i in range(screen + 1)] + [(screen + 1, screen + 1),
                                                    (screen + 2, screen + 2)])
    assert [key for _, _, key in ticks[1:]] == [key for key, _ in calls]
    # tp1 pp4 led the screen at 40 tok/s, fell to 10 when simulated; tp2 pp2 then led at 30,
    # fell to 7.5; tp4 pp1, exact from the start, leads at 20
    assert [c.layout.label for c in kept] == ["tp4 pp1 p2p", "tp1 pp4 host", "tp2 pp2 host"]
    assert [c.approximate for c in kept] == ["", "", ""]
    assert [k for k, mode in calls if mode == "auto"] == ["tp1 pp4 host", "tp2 pp2 host"]


def test_a_leader_whose_refinement_fails_is_dropped_with_its_error(monkeypatch):
    def fake_execute(tasks, executor, jobs, scheduler):
        for point, _variant, _, _, mode in tasks:
            key = point.key
            if key not in ("tp1 pp4 host", "tp4 pp1 p2p") or mode == "auto":
                yield {"key": key, "status": "error", "error": f"{key}: refused ({mode})"}
                continue
            rate = 40.0 if key == "tp1 pp4 host" else 20.0
            yield {"key": key, "status": "ok", "busiest_link": "",
                   "metrics": {"tokens_per_s": rate, "tpot_mean_s": 1 / rate, "ttft_s": 1.0,
                               "step_s": 1.0},
                   "simulation": {"mode": mode, "live": "nothing",
                                  "reason": "stages 0 and 1 overlap" if "pp4" in key else ""}}

    monkeypatch.setattr("simtopo.analysis.executors.execute", fake_execute)
    ranked = advise("llama-2-13b", TOPOLOGY, WORKLOAD, "throughput", socs=4)
    assert [c.layout.label for c in ranked if c.kept] == ["tp4 pp1 p2p"]
    failed = next(c for c in ranked if c.layout.label == "tp1 pp4 host")
    assert not failed.kept and failed.reason == "refused (auto)"


def test_the_screen_is_optimistic_and_the_leaders_are_exact(monkeypatch):
    """Against every layout simulated in ``auto`` (``exact``): the screen's numbers are exact
    where nothing contends and optimistic where replicas or stages do, and the leaders the
    advisor re-simulates are the exact ranking's."""
    import simtopo.analysis.advisor as advisor_module

    def ranked(**options):
        return [c for c in advise("llama-2-13b", TOPOLOGY, WORKLOAD, "throughput",
                                  executor="serial", socs=4, **options) if c.kept]

    exact = {c.layout: c for c in ranked(exact=True)}
    assert not any(c.approximate for c in exact.values())
    leaders = ranked()
    with monkeypatch.context() as patch:
        patch.setattr(advisor_module, "REFINED", 0)  # the screen alone
        screened = ranked()
    assert {c.layout for c in screened} == {c.layout for c in leaders} == set(exact)
    two = next(c for c in screened if c.layout == Layout(2, 1, 2, connection="host"))
    assert two.approximate.startswith("replicas 0 and 1 both load")
    for c in screened:
        truth = exact[c.layout].metrics
        if c.approximate:
            assert c.metrics["tokens_per_s"] > truth["tokens_per_s"], c.layout
            assert c.metrics["ttft_s"] < truth["ttft_s"], c.layout
        else:
            assert c.metrics == truth, c.layout
    best = sorted(exact.values(), key=advisor_module._rank_key("throughput"))
    top = advisor_module.REFINED
    assert [c.layout for c in leaders[:top]] == [c.layout for c in best[:top]]
    assert [c.metrics for c in leaders[:top]] == [c.metrics for c in best[:top]]


def test_cli_ranks_and_writes_the_best_as_mdp(tmp_path, capsys):
    out = tmp_path / "best.json"
    args = ["plan", "--model", "llama-2-13b", "--topology", str(TOPOLOGY), "--socs", "4",
            "--precision", "fp32", "--context", "512", "--prompt", "64", "--generate", "8",
            "--write-mdp", str(out), "-j", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "recommended: tp4 pp1 p2p on 4 SoCs" in printed
    assert "dropped" in printed and "does not fit on 1 SoC" in printed
    config, _ = read_mdp(out)
    assert [len(p.devices) for p in config.partitions] == [4]
    assert main([*args[:-4], "--cores", "x"]) == 2
    assert "--cores: expected cores per SoC" in capsys.readouterr().err
    assert main([*args[:-4], "--cores", "100"]) == 2
    assert "--cores: a SoC of ultra4-direct has 16 cores (got 100)" in capsys.readouterr().err
    assert main([*args[:-4], "--socs", "0"]) == 2
    assert "--socs: expected an integer from 1 to 2048 (got '0')" in capsys.readouterr().err
    assert main([*args[:-4], "--tp", "2"]) == 2
    assert "error: --generate, --socs: advisor options; drop them" in capsys.readouterr().err
    assert main([*args[:-4], "--tp", "2", "--exact"]) == 2
    assert "--socs, --exact: advisor options; drop them" in capsys.readouterr().err


def test_a_row_of_docs_sizing_is_what_the_tool_prints_now():
    """docs/sizing.md takes 2 minutes to regenerate (`simtopo sizing -o docs/sizing.md`);
    one row of it is recomputed here so that the table cannot drift unnoticed."""
    from simtopo.analysis.sizing import sizing_markdown

    text = sizing_markdown(["llama-2-7b"], [str(ROOT / "topologies" / "std8.yaml")], jobs=2)
    row = next(line for line in text.splitlines() if line.startswith("| llama-2-7b |"))
    assert row in (ROOT / "docs" / "sizing.md").read_text().splitlines()


def test_the_seed_s_sn30_row_is_recomputed_and_read_as_the_seed_says():
    """One row of docs/sizing.md's comparison with the SambaNova guide's SN30 table (40B -
    80B: "2, weight mode") recomputed: llama-2-70b at bf16 fits on one SN30 RDU (138 GB of
    weights in its 1 TB of DDR, by hand), and its best throughput is one RDU per replica."""
    from simtopo.analysis.sizing import WORKLOAD, _shaped, precision_for, seed_comparison

    sn30 = str(ROOT / "topologies" / "sn30-node.yaml")
    assert precision_for(sn30) == "bf16" and precision_for(str(ROOT / "topologies" /
                                                                 "std8.yaml")) == "fp16"
    lines = seed_comparison(sn30, _shaped(WORKLOAD, sn30), jobs=2)
    row = next(line for line in lines if line.startswith("| 40B - 80B |"))
    assert row in (ROOT / "docs" / "sizing.md").read_text().splitlines()
    cells = row.split(" | ")
    assert cells[1:4] == ["2, weight mode", "llama-2-70b", "1 (tp1 pp1 p2p)"]
    assert cells[5].startswith("tp1 pp1 x8 p2p (8 SoCs)")


def test_fp32_needs_more_rdus_where_memory_runs_out_as_the_seed_says():
    """docs/sizing.md's FP32 row for llama-3.1-405b on the SN30 node recomputed: at 4 bytes a
    weight it outgrows one RDU's 1 TiB of DDR, so it needs ceil(4 x parameters / 1 TiB) = 2,
    where BF16 fits on one."""
    import math

    from simtopo.analysis.sizing import WORKLOAD, _shaped, precision_table
    from simtopo.workload.modelref import resolve_model

    sn30 = str(ROOT / "topologies" / "sn30-node.yaml")
    lines = precision_table(sn30, {"llama-3.1-405b": "1 (tp1 pp1 p2p)"},
                            _shaped(WORKLOAD, sn30), jobs=2)
    row = next(line for line in lines if line.startswith("| llama-3.1-405b |"))
    assert row in (ROOT / "docs" / "sizing.md").read_text().splitlines()
    weights = 4 * resolve_model("llama-3.1-405b").decoder.parameters()
    rdus = math.ceil(weights / 2**40)
    assert rdus == 2 and row.split(" | ")[2].startswith(f"{rdus} (")


def test_the_seed_s_hidden_size_bands_hold_the_presets_of_their_size():
    """The seed's second SN30 table (by hidden size: <= 4096, 4096 - 8192, >= 8192) beside the
    presets of each band, whose hidden sizes are the models' configs' (4096 for Llama 2 7B and
    Llama 3 8B, 5120 for 13B, 8192 for the 70Bs, 16384 for 405B)."""
    from simtopo.analysis.sizing import MODELS, SEED_SN30_HIDDEN, _hidden

    hidden = {"llama-2-7b": 4096, "llama-3-8b": 4096, "llama-2-13b": 5120,
              "llama-2-70b": 8192, "llama-3-70b": 8192, "llama-3.1-405b": 16384}
    assert {m: _hidden(m) for m in MODELS} == hidden
    band = {m: next(b for b, _, low, high in SEED_SN30_HIDDEN if low < h <= high)
            for m, h in hidden.items()}
    assert band == {"llama-2-7b": "<= 4096", "llama-3-8b": "<= 4096",
                    "llama-2-13b": "4096 - 8192", "llama-2-70b": ">= 8192",
                    "llama-3-70b": ">= 8192", "llama-3.1-405b": ">= 8192"}
    lines = (ROOT / "docs" / "sizing.md").read_text().splitlines()
    for model, name in band.items():
        assert any(line.startswith(f"| {name} | ") and f"| {model} ({hidden[model]}) | 1 ("
                   in line for line in lines), model  # each fits on one RDU (1 TiB)
