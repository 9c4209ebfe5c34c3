"""The simulation driver's modes: what ``auto`` runs live and why, free-running replicas, and
each against the full simulation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from simtopo.engine.resources import HANDOFF, footprint
from simtopo.results.run import run_variant
from simtopo.sim.blocks import interacting
from simtopo.sim.driver import SCREEN, contending_replicas, contending_stages, simulate
from simtopo.sim.setup import setup_variant
from simtopo.sim.tasks import CommTask
from simtopo.spec.experiment import load_experiment

from .conftest import ROOT

CARD = ROOT / "experiments" / "ultra-card-llama2-7b.yaml"
HEADLINE = ("ttft_s", "tpot_mean_s", "e2e_s")


def variant(name: str, workload: dict, plan: dict, experiment=CARD):
    (chosen,) = [v for v in load_experiment(experiment).variants if v.name == name]
    return replace(chosen, workload=chosen.workload.model_copy(update=workload),
                   plan=chosen.plan.model_copy(update=plan))


@pytest.fixture(scope="module")
def two_stages_one_card():
    """Two host-routed 2-SoC stages on one Ultra card, two request groups: the second group's
    prefill on stage 0 overlaps the first's on stage 1, and both bounce through the card's
    uplink, host memory and the hand-off threads."""
    v = variant("tp4-host", {"prompt": 128, "generate": 4, "groups": 2},
                {"tp": 2, "pp": 2, "devices": None})
    return {mode: run_variant(v, mode=mode) for mode in ("memoized", "auto", "full")}


def test_footprints_name_what_a_group_may_load(ultra8):
    card = ("card0.soc0", "card0.soc1")
    p2p = footprint(ultra8, card, "p2p")
    assert {"card0.soc0->card0.sw", "card0.sw->card0.soc1", "tx:card0.soc0"} <= p2p
    assert not any("sw0" in name for name in p2p)  # P2P on one card stays on it
    host = footprint(ultra8, card, "host")
    assert {HANDOFF, "mem:cpu0", "card0.sw->sw0", "sw0->rc0"} <= host
    assert footprint(ultra8, ("card0.soc0",), "host") == frozenset()  # no collective


def test_replicas_interact_only_where_their_collectives_can_meet(ultra8):
    tasks = [CommTask("x", "all_reduce", 16e3, "p2p")]
    one_switch_each = [tuple(ultra8.socs[:16]), tuple(ultra8.socs[16:])]
    assert not interacting(ultra8, one_switch_each, tasks)
    cards = [tuple(ultra8.socs[:4]), tuple(ultra8.socs[4:8])]
    assert not interacting(ultra8, cards, tasks)  # P2P below their own on-card switches
    host = [CommTask("x", "all_reduce", 16e3, "host")]
    assert interacting(ultra8, cards, host)  # the hand-off threads, host memory, sw0's uplink


def test_auto_runs_overlapping_prefills_live_and_matches_the_full_simulation(
        two_stages_one_card):
    memo, auto, full = (two_stages_one_card[m] for m in ("memoized", "auto", "full"))
    assert auto.simulation["live"] == "prefill"
    assert auto.simulation["reason"].startswith("stages 0 and 1 overlap and both load ")
    assert full.simulation == {"mode": "full", "live": "all", "reason": ""}
    assert auto.summary()["simulation"] == auto.simulation
    for metric in HEADLINE:
        assert auto.metrics[metric] == pytest.approx(full.metrics[metric], rel=1e-6), metric
    # the contention the memoized profiles cannot see: the second prefill waits on the first
    # (a small share of a prefill that collective launches and hand-offs now lengthen)
    assert memo.metrics["ttft_s"] < full.metrics["ttft_s"] * (1 - 1e-3)


def test_stages_that_cannot_contend_stay_memoized():
    v = variant("pp2-tp16-p2p", {"generate": 4}, {}, ROOT / "experiments" / "ultra8.yaml")
    setup = setup_variant(v)
    assert contending_stages(setup) == ""  # P2P below sw0 and below sw1
    result = run_variant(v)
    assert result.simulation == {} and "simulation" not in result.summary()


def test_a_single_stage_never_runs_live():
    v = variant("tp4-host", {"prompt": 128, "generate": 4, "groups": 3}, {})
    assert contending_stages(setup_variant(v)) == ""


def test_contending_replicas_are_profiled_free_running_and_match_the_full_simulation():
    """Two host-routed 2-SoC replicas on one card: their repeated layers run out of step."""
    v = variant("tp4-host", {"prompt": 128, "generate": 6}, {"tp": 2, "replicas": 2,
                                                              "devices": None})
    memo = run_variant(v, mode="memoized")
    layer = next(run for stage in memo.profiles["prefill"].stages
                 for name, run, _ in stage.blocks if name == "layer")
    assert layer.free_running > 1
    full = run_variant(v, mode="full")
    for metric in HEADLINE:
        assert memo.metrics[metric] == pytest.approx(full.metrics[metric], rel=5e-3), metric


def test_the_screen_runs_each_replica_as_if_it_were_alone():
    """The advisor's screen: two host-routed replicas on one card, each profiled alone, take
    exactly what one replica takes by itself, and no more than they take together."""
    two = variant("tp4-host", {"prompt": 128, "generate": 6}, {"tp": 2, "replicas": 2,
                                                                "devices": None})
    one = variant("tp4-host", {"prompt": 128, "generate": 6}, {"tp": 2, "devices": None})
    setup = setup_variant(two)
    shared = footprint(setup.topo, setup.plan.replicas[0][0].devices, "host") & footprint(
        setup.topo, setup.plan.replicas[1][0].devices, "host")
    why = contending_replicas(setup)
    assert why == (f"replicas 0 and 1 both load {sorted(shared)[0]} "
                   f"(and {len(shared) - 1} more)")
    assert contending_replicas(setup_variant(one)) == ""
    screened = simulate(setup, mode=SCREEN)
    assert screened.reason == why and screened.live == ""
    alone = simulate(setup_variant(one), mode="memoized")
    together = simulate(setup, mode="memoized")
    for shape in ("prefill", "decode@2048"):
        got = [s.seconds for s in screened.profiles[shape].stages]
        assert got == [s.seconds for s in alone.profiles[shape].stages], shape
        assert got[0] < together.profiles[shape].stages[0].seconds, shape


def test_modes_are_checked():
    setup = setup_variant(variant("tp1", {"prompt": 16, "generate": 2}, {}))
    with pytest.raises(ValueError, match="simulation mode must be one of auto, memoized, full"):
        simulate(setup, mode="fast")


def test_a_free_running_window_ends_once_every_replica_has_settled(monkeypatch):
    """Replicas whose runs repeat one period end their window early; the block's time is
    what the whole window gives (the settled period stands in for the rest either way)."""
    from simtopo.sim import blocks

    v = variant("tp4-host", {"prompt": 128, "generate": 6}, {"tp": 2, "replicas": 2,
                                                              "devices": None})
    early = run_variant(v, mode="memoized")
    monkeypatch.setattr(blocks, "SETTLED", blocks.WINDOW + 1)  # never settles
    whole = run_variant(v, mode="memoized")

    def runs(result):
        return [run.free_running for key, profile in sorted(result.profiles.items())
                for stage in profile.stages for name, run, _ in stage.blocks
                if name == "layer"]

    assert set(runs(whole)) == {blocks.WINDOW}
    assert 0 < min(runs(early)) < blocks.WINDOW
    for metric in HEADLINE:
        assert early.metrics[metric] == pytest.approx(whole.metrics[metric], rel=1e-9), metric


def test_settled_runs():
    from simtopo.sim.blocks import settled

    assert settled([3.0, 2.0, 2.0, 2.0 * (1 + 1e-12)])
    assert not settled([2.0, 2.0])  # too few
    assert not settled([2.0, 2.1, 2.0])  # a period of two runs is not one of one
