"""Sweeps: the cross product, each point as if run alone, resumable, the same on dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from simtopo.analysis.executors import run_sweep
from simtopo.analysis.sweep import Axis, parse_set, plan_points
from simtopo.analysis.sweep_figures import pareto_front
from simtopo.analysis.sweep_log import read_log
from simtopo.cli import main
from simtopo.errors import ConfigError
from simtopo.results.run import run
from simtopo.spec.experiment import load_experiment

from .conftest import ROOT

BASE = {"name": "small", "topology": str(ROOT / "topologies" / "ultra4-direct.yaml"),
        "model": "llama-2-7b",
        "workload": {"batch": 1, "prompt": 64, "generate": 4, "context": 256},
        "plan": {"tp": 1, "connection": "p2p"},
        "variants": [{"name": "slice"}, {"name": "mxfp6", "workload": {"precision": "mxfp6"}}]}
AXES = [Axis("plan.tp", (1, 2, 3, 4)), Axis("plan.connection", ("p2p", "host"))]


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(BASE))
    return path


def test_parse_set_reads_values_as_yaml_and_refuses_other_keys():
    assert parse_set("plan.tp=1,2, 4") == Axis("plan.tp", (1, 2, 4))
    assert parse_set("model=llama-2-7b,gpt-j-6b").values == ("llama-2-7b", "gpt-j-6b")
    assert parse_set("workload.sample_time=1ms").values == ("1ms",)
    assert parse_set("plan.devices=[[a, b], [c]]").values == (["a", "b"], ["c"])
    with pytest.raises(ConfigError, match=r"--set plan\.tp: the value 8 is given twice"):
        parse_set("plan.tp=8,8")
    with pytest.raises(ConfigError, match=r"--set: cannot sweep 'name' \(expected model"):
        parse_set("name=a,b")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set("plan.tp")


def test_points_are_the_cross_product_over_the_variants(experiment):
    points = plan_points(load_experiment(experiment), AXES)
    assert len(points) == 2 * 4 * 2
    assert points[0].key == "slice plan.tp=1 plan.connection=p2p"
    assert points[-1].key == "mxfp6 plan.tp=4 plan.connection=host"
    assert points[3].overrides() == {"plan": {"tp": 2, "connection": "host"}}
    assert len({p.key for p in points}) == len(points)


def test_processes_get_chunks_of_neighbours_that_share_pass_graphs(experiment):
    """A P2P plan sits next to its host-routed twin (they share a layout), and a chunk never
    mixes two workloads (each has its own pass graphs)."""
    from dataclasses import replace

    from simtopo.analysis.executors import _chunks, _share_key

    base = load_experiment(experiment).variants[0]
    tasks = [(None, replace(base, workload=base.workload.model_copy(update={"context": c}),
                            plan=base.plan.model_copy(update={"tp": tp, "cores": cores,
                                                              "connection": link})),
              "", "digest", "auto")
             for link in ("p2p", "host") for c in (512, 256) for tp in (1, 2, 4)
             for cores in (1, 2, 3, 4)]
    tasks.sort(key=_share_key)
    shapes = [(t[1].workload.context, t[1].plan.tp, t[1].plan.cores, t[1].plan.connection)
              for t in tasks]
    assert shapes[:3] == [(256, 1, 1, "host"), (256, 1, 1, "p2p"), (256, 2, 1, "host")]
    chunks = _chunks(tasks, jobs=1)  # 48 points: chunks of 48 // 8 = 6
    assert [len(c) for c in chunks] == [6] * 8
    assert [t for c in chunks for t in c] == tasks
    assert all(len({t[1].workload.context for t in c}) == 1 for c in chunks)
    # 20 points of one workload and 4 of the other, 24 // 8 = 3 a chunk: 7 + 2 chunks
    assert len(_chunks(tasks[:20] + tasks[-4:], jobs=1)) == 7 + 2


@pytest.mark.skipif(sys.platform != "linux", reason="the workers must inherit the patch")
def test_a_bug_part_way_through_a_chunk_keeps_the_points_before_it(monkeypatch):
    from simtopo.analysis import executors

    def evaluate(point, *rest):
        if point == 5:
            raise RuntimeError("a bug at point 5")
        return {"key": point}

    monkeypatch.setattr(executors, "evaluate", evaluate)  # forked workers inherit it
    monkeypatch.setattr(executors, "_chunks", lambda tasks, jobs: [list(tasks)])
    seen = []
    with pytest.raises(RuntimeError, match="a bug at point 5") as info:
        for rec in executors._local([(i, None, "", "", "auto") for i in range(8)], 2):
            seen.append(rec["key"])
    assert seen == [0, 1, 2, 3, 4]
    assert 'raise RuntimeError("a bug at point 5")' in str(info.value.__cause__)


def test_each_point_equals_the_same_settings_run_alone(experiment, tmp_path):
    result = run_sweep(experiment, AXES, ["slice"], folder=tmp_path / "out", jobs=2)
    frame = result.frame
    assert list(frame["point"]) == [p.key for p in result.points]
    assert len(frame) == 8 and result.computed == 8
    # tp 3 does not divide llama-2-7b's 32 heads: recorded, and the rest went on
    bad = frame[frame["plan.tp"] == 3]
    assert list(bad["status"]) == ["error", "error"]
    assert all(e.startswith("slice plan.tp=3 plan.connection=") and "\n" not in e
               for e in bad["error"])
    for _, row in frame[frame["status"] == "ok"].iterrows():
        alone = dict(BASE, variants=[{"name": "slice"}])
        alone["plan"] = {"tp": int(row["plan.tp"]), "connection": row["plan.connection"]}
        path = tmp_path / "alone.yaml"
        path.write_text(yaml.safe_dump(alone))
        metrics = run(path).summary()["variants"][0]["metrics"]
        assert {k: row[k] for k in metrics} == metrics, row["point"]
    csv = (tmp_path / "out" / "sweep.csv").read_text().splitlines()
    assert csv[0].startswith("point,variant,plan.tp,plan.connection,status,error,")
    assert len(csv) == 9
    assert {p.name for p in result.figures} == {"scaling.png", "pareto.png",
                                                "p2p_vs_host.png"}


def test_an_interrupted_sweep_resumes_without_recomputing(experiment, tmp_path):
    out = tmp_path / "out"
    seen = []

    def stop_after_three(done, total, rec):
        seen.append(rec["key"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(experiment, AXES, folder=out, executor="serial", progress=stop_after_three)
    assert {key for key, _ in read_log(out)} == set(seen)
    resumed = run_sweep(experiment, AXES, folder=out, executor="serial")
    assert resumed.computed == 16 - 3 and resumed.reused == 3
    lines = (out / "points.jsonl").read_text().splitlines()
    assert len(lines) == 16 and len({json.loads(x)["key"] for x in lines}) == 16
    fresh = run_sweep(experiment, AXES, folder=tmp_path / "fresh", executor="serial")
    assert resumed.frame.equals(fresh.frame)
    assert (out / "sweep.csv").read_bytes() == (tmp_path / "fresh" / "sweep.csv").read_bytes()
    again = run_sweep(experiment, AXES, folder=out, executor="serial")
    assert again.computed == 0 and again.reused == 16


def test_a_killed_sweep_process_resumes_without_recomputing(experiment, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "simtopo", "sweep", str(experiment), "--executor", "serial",
           "--set", "plan.tp=1,2,4", "--set", "plan.connection=p2p,host",
           "--set", "workload.generate=4,8", "--out", str(out), "-q", "--no-figures"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "points.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if log.is_file() and log.read_text().count("\n") >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    finished = read_log(out)
    assert 2 <= len(finished) < 24  # killed midway (24 points of a tenth of a second each)
    resumed = run_sweep(experiment, [parse_set("plan.tp=1,2,4"),
                                     parse_set("plan.connection=p2p,host"),
                                     parse_set("workload.generate=4,8")],
                        folder=out, executor="serial", figures=False)
    assert resumed.reused == len(finished)
    assert resumed.computed == 2 * 12 - len(finished)


def test_a_torn_last_line_is_ignored_and_its_point_recomputed(experiment, tmp_path):
    out = tmp_path / "out"
    first = run_sweep(experiment, AXES[:1], ["slice"], folder=out, executor="serial",
                      figures=False)
    log = out / "points.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a kill mid-write
    again = run_sweep(experiment, AXES[:1], ["slice"], folder=out, executor="serial",
                      figures=False)
    assert (again.computed, again.reused) == (1, 3)
    assert again.frame.equals(first.frame)
    assert all(json.loads(x) for x in log.read_text().splitlines()[:3])


def test_a_change_in_an_included_file_is_recomputed(tmp_path):
    """The fingerprint covers what the topology includes, not only the files named."""
    import shutil

    shutil.copytree(ROOT / "topologies", tmp_path / "topologies")
    spec = dict(BASE, topology=str(tmp_path / "topologies" / "ultra4-direct.yaml"))
    experiment = tmp_path / "small.yaml"
    experiment.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    before = run_sweep(experiment, AXES[:1], ["slice"], folder=out, executor="serial",
                       figures=False)
    card = tmp_path / "topologies" / "cards" / "ai100-ultra.yaml"
    text = card.read_text()
    assert "dram_bw: 137GB/s" in text
    card.write_text(text.replace("dram_bw: 137GB/s", "dram_bw: 68.5GB/s"))
    after = run_sweep(experiment, AXES[:1], ["slice"], folder=out, executor="serial",
                      figures=False)
    assert after.computed == 4 and after.reused == 0
    tpot = [r["metrics"]["tpot_mean_s"] for r in after.records if r["status"] == "ok"]
    was = [r["metrics"]["tpot_mean_s"] for r in before.records if r["status"] == "ok"]
    assert all(a > b for a, b in zip(tpot, was, strict=True))


def test_a_changed_experiment_is_recomputed(experiment, tmp_path):
    out = tmp_path / "out"
    run_sweep(experiment, AXES[:1], ["slice"], folder=out, executor="serial", figures=False)
    changed = dict(BASE, workload=dict(BASE["workload"], generate=8))
    experiment.write_text(yaml.safe_dump(changed))
    again = run_sweep(experiment, AXES[:1], ["slice"], folder=out, executor="serial",
                      figures=False)
    assert again.computed == 4 and again.reused == 0


def test_dask_gives_the_same_table_as_local_processes(experiment, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the test extras install it")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = run_sweep(experiment, AXES, folder=tmp_path / "dask", executor="dask",
                         scheduler=cluster.scheduler_address, figures=False)
    local = run_sweep(experiment, AXES, folder=tmp_path / "local", jobs=2, figures=False)
    assert dask.frame.equals(local.frame)
    assert (tmp_path / "dask" / "sweep.csv").read_bytes() == \
        (tmp_path / "local" / "sweep.csv").read_bytes()


def test_the_sweep_block_of_the_file_and_the_command(experiment, tmp_path, capsys):
    spec = dict(BASE, sweep={"variants": ["slice"], "plan.tp": [1, 2]})
    experiment.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["sweep", str(experiment), "--out", str(out), "--executor", "serial"]) == 0
    printed = capsys.readouterr().out
    assert "2 points (2 computed, 0 reused): " in printed
    assert (out / "sweep.csv").read_text().count("\n") == 3
    assert main(["sweep", str(experiment), "--set", "plan.nope=1", "--out", str(out)]) == 2
    assert "plan.nope" in capsys.readouterr().err
    experiment.write_text(yaml.safe_dump(dict(BASE, sweep={"plan.tp": []})))
    assert main(["sweep", str(experiment), "--out", str(out)]) == 2
    assert "sweep.plan.tp: an empty list of values" in capsys.readouterr().err
    experiment.write_text(yaml.safe_dump(BASE))
    assert main(["sweep", str(experiment), "--out", str(out)]) == 2
    assert "nothing to sweep" in capsys.readouterr().err


def test_pareto_front_by_hand():
    latency = [1.0, 2.0, 3.0, 1.5, 2.5]
    per_soc = [1.0, 3.0, 2.0, 0.5, 4.0]
    # 1.0 is the fastest; 2.0 beats 1.5 on throughput; 2.5 beats everything after it
    assert pareto_front(latency, per_soc) == [0, 1, 4]


def test_host_algorithm_choices_never_outlive_a_changed_topology(tmp_path):
    """A process keeps host-routed algorithm choices across points, by topology content: a
    topology edited between two sweeps in one process gives what a fresh run gives."""
    import shutil

    shutil.copytree(ROOT / "topologies", tmp_path / "topologies")
    topo = tmp_path / "topologies" / "ultra4-direct.yaml"
    spec = dict(BASE, topology=str(topo), variants=[{"name": "slice"}],
                plan={"tp": 4, "connection": "host"})
    experiment = tmp_path / "small.yaml"
    experiment.write_text(yaml.safe_dump(spec))
    axes = [Axis("workload.batch", (1, 4))]
    run_sweep(experiment, axes, folder=tmp_path / "a", executor="serial", figures=False)
    parent = tmp_path / "topologies" / "ultra8.yaml"  # ultra4-direct extends it
    text = parent.read_text()
    assert "memory_bw: 460.8GB/s" in text
    parent.write_text(text.replace("memory_bw: 460.8GB/s", "memory_bw: 4.6GB/s"))
    swept = run_sweep(experiment, axes, folder=tmp_path / "b", executor="serial",
                      figures=False)
    for batch, rec in zip((1, 4), swept.records, strict=True):
        alone = dict(spec, workload=dict(BASE["workload"], batch=batch))
        path = tmp_path / "alone.yaml"
        path.write_text(yaml.safe_dump(alone))
        assert rec["metrics"] == run(path).summary()["variants"][0]["metrics"]


def test_a_sweep_whose_every_point_fails_exits_1(experiment, tmp_path, capsys):
    # llama-2-7b in fp16 needs ~13.5 GB of weights; at tp 1 it fits, so make it fail: tp 3 does
    # not divide the model's 32 heads, on every variant
    out = tmp_path / "out"
    args = ["sweep", str(experiment), "--set", "plan.tp=[3]", "--out", str(out),
            "--executor", "serial"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("failed: ") == 2 and err.endswith("error: every point failed (see above)\n")
    # one point that works makes it a partial success
    assert main([*args[:3], "plan.tp=[1, 3]", *args[4:]]) == 0


def test_a_sweep_beyond_the_point_limit_is_refused_before_anything_runs(experiment, tmp_path):
    from simtopo.analysis.executors import sweep

    # 2 variants x 400 x 200 = 160,000 points; the axes are built lazily from ranges
    with pytest.raises(ConfigError) as info:
        sweep(experiment, {"workload.prompt": range(1, 401), "workload.generate": range(1, 201)},
              folder=tmp_path / "out")
    assert str(info.value).endswith("2 variant(s) x 400 workload.prompt x 200 "
                                    "workload.generate is 160,000 points; a sweep may have at "
                                    "most 100,000")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="more than 100,000 values"):
        sweep(experiment, {"workload.prompt": range(10**9)}, folder=tmp_path / "out")
