"""The numbers behind the figures: each stage's share of a step, and links while busy."""

from __future__ import annotations

import pytest

import simtopo
from simtopo.report.figure_data import link_busy, step_shares

from .conftest import ROOT

BODY = """
name: fig
topology: {topology}
model: llama-2-7b
workload: {{batch: 1, prompt: 128, generate: 8, context: 256, groups: {groups}}}
plan: {{tp: 4, pp: {pp}, connection: {connection}}}
variants: [{{name: a}}]
"""


def run(tmp_path, connection="p2p", pp=1, groups=1):
    path = tmp_path / "fig.yaml"
    path.write_text(BODY.format(topology=ROOT / "topologies" / "ultra8.yaml",
                                connection=connection, pp=pp, groups=groups))
    return simtopo.run(path).variants[0]


def test_one_stage_shares_add_up_to_the_median_step(tmp_path):
    v = run(tmp_path)
    step, (row,) = step_shares(v)
    m = v.metrics
    assert step == m["step_s"]
    assert row.label == "stage 0: 4 SoCs (card0.soc0 .. card0.soc3)"
    # one stage: its compute and exposed communication are the step's, then the host trip
    assert row.compute_s == pytest.approx(m["step_compute_s"])
    assert row.host_s == m["host_round_trip_s"]
    assert row.total_s == pytest.approx(step)
    assert row.communication_s + row.host_s + row.waiting_s == pytest.approx(
        m["step_s"] - m["step_compute_s"])


def test_pipeline_stages_wait_for_each_other(tmp_path):
    v = run(tmp_path, pp=2)
    step, rows = step_shares(v)
    assert [r.label for r in rows] == ["stage 0: 4 SoCs (card0.soc0 .. card0.soc3)",
                                       "stage 1: 4 SoCs (card1.soc0 .. card1.soc3)"]
    # each stage runs half the layers: it waits at least as long as the other one computes
    assert rows[0].waiting_s >= rows[1].compute_s + rows[1].communication_s - 1e-12
    assert rows[1].waiting_s >= rows[0].compute_s + rows[0].communication_s - 1e-12
    assert all(r.total_s == pytest.approx(step) for r in rows)


def test_no_link_is_driven_beyond_its_capacity_and_the_host_bounce_saturates_its_uplink(
        tmp_path):
    v = run(tmp_path, connection="host")
    busy = link_busy(v)
    assert busy and all(b.while_busy <= 1 + 1e-9 for b in busy.values())
    assert all(0 < b.busy_share <= 1 for b in busy.values())
    # host-routed collectives stage every byte through host memory: the card's uplink to
    # the server switch, shared by its four SoCs' chunks and their bottleneck, runs at its
    # full rate whenever it carries any
    up = busy["card0.sw->sw0"]
    assert up.while_busy == pytest.approx(1.0, rel=1e-6)
    assert up.capacity_Bps == v.topology.graph.edges["card0.sw", "sw0"]["bw_Bps"]
