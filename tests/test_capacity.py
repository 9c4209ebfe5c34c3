"""Capacity planning: replicas grow until the SLOs are met; the answer is the fewest SoCs."""

from __future__ import annotations

import pytest

from simtopo import ConfigError
from simtopo.analysis.capacity import RATE_TOLERANCE, capacity, max_rate

from .conftest import TOPOLOGIES

EXPERIMENT = f"""\
name: cap
topology: {TOPOLOGIES / 'ultra8.yaml'}
model: llama-2-7b
workload: {{kind: serving, batch: 4, prompt: 256, context: 512}}
plan: {{tp: 4}}
serving:
  arrivals: {{process: poisson, rate: 1.0}}
  prompt_tokens: {{value: 200}}
  output_tokens: {{value: 32}}
  requests: 300
  warmup: 30
  seed: 2
  router: least-outstanding
  slo: {{ttft: 1s}}
variants: [{{name: base}}]
"""


@pytest.fixture()
def experiment(tmp_path):
    path = tmp_path / "cap.yaml"
    path.write_text(EXPERIMENT)
    return path


def test_replicas_grow_until_the_slos_are_met(experiment):
    found = capacity(experiment, "base", rate=5.0, tp_sizes=(4,))
    for connection in ("p2p", "host"):
        tried = [t for t in found.trials if t.connection == connection]
        best = found.best(connection)
        assert best is not None and best is tried[-1]  # the search stops at the first
        assert [t.replicas for t in tried] == list(range(1, best.replicas + 1))
        assert not any(t.meets(0.99) for t in tried[:-1])
        assert best.socs == 4 * best.replicas
    # the host-routed slice is slower, so it never needs fewer replicas
    assert found.best("host").replicas >= found.best("p2p").replicas


def test_a_light_load_needs_one_replica(experiment):
    found = capacity(experiment, "base", rate=0.5, tp_sizes=(4,))
    assert found.best("p2p").replicas == 1 and found.best("host").replicas == 1


def test_layouts_that_cannot_run_are_kept_with_why(experiment):
    found = capacity(experiment, "base", rate=0.5, tp_sizes=(3,))
    # 32 query heads do not divide over 3 SoCs: one trial per connection, each with why
    assert [t.connection for t in found.trials] == ["p2p", "host"]
    assert all("heads" in t.error for t in found.trials) and found.best("p2p") is None


def test_a_variant_that_does_not_serve_is_refused(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(f"name: x\ntopology: {TOPOLOGIES / 'ultra8.yaml'}\nmodel: llama-2-7b\n"
                    "variants: [{name: v}]\n")
    with pytest.raises(ConfigError, match="variant 'v' is not a serving variant"):
        capacity(path, "v", rate=1.0)


def test_forked_series_give_the_same_answer(experiment):
    one = capacity(experiment, "base", rate=5.0, tp_sizes=(2, 4))
    two = capacity(experiment, "base", rate=5.0, tp_sizes=(2, 4), jobs=2)
    assert one == two


def test_the_highest_rate_meets_and_a_little_more_does_not(experiment):
    from dataclasses import replace

    from simtopo.results.serving_run import run_serving
    from simtopo.spec.experiment import load_experiment

    rate, metrics = max_rate(experiment, "base")
    assert metrics["slo_attainment"] >= 0.99
    (v,) = load_experiment(experiment).variants
    above = v.serving.model_copy(update={"arrivals": v.serving.arrivals.model_copy(
        update={"rate": rate * (1 + 2 * RATE_TOLERANCE)})})
    assert run_serving(replace(v, serving=above)).metrics["slo_attainment"] < 0.99
    # below saturation: 4 slots, each held for 31 decode steps (prefills only slow it more)
    from simtopo.results.serving_run import iteration_times

    times = iteration_times(v)
    assert 0 < rate < 4 / (31 * times.decode_s)


def test_a_family_of_topologies_is_searched_each_and_together(experiment):
    # ultra4-direct (16 SoCs, no switch) and ultra8 (32): the same tp4 series on each; the
    # answer over the family is the fewest SoCs, ties to the topology listed first
    family = [TOPOLOGIES / "ultra4-direct.yaml", TOPOLOGIES / "ultra8.yaml"]
    found = capacity(experiment, "base", rate=0.5, tp_sizes=(4,), topologies=family)
    assert found.topologies == ("ultra4-direct.yaml", "ultra8.yaml")
    assert {t.topology for t in found.trials} == set(found.topologies)
    alone = capacity(experiment, "base", rate=0.5, tp_sizes=(4,))
    on_ultra8 = [t for t in found.trials if t.topology == "ultra8.yaml"]
    assert on_ultra8 == list(alone.trials)  # the family's ultra8 series is the search alone
    for connection in ("p2p", "host"):
        each = [found.best(connection, name) for name in found.topologies]
        best = found.best(connection)
        assert best == min((t for t in each if t), key=lambda t: (t.socs, t.replicas,
                                                                  found.topologies.index(
                                                                      t.topology)))


def test_a_family_member_that_is_missing_is_named(experiment, tmp_path):
    with pytest.raises(ConfigError, match=r"topology file '.*nowhere\.yaml' not found"):
        capacity(experiment, "base", rate=0.5, topologies=[tmp_path / "nowhere.yaml"])


def test_the_command_names_the_family_and_refuses_a_family_without_a_rate(experiment,
                                                                          capsys):
    from simtopo.cli import main

    family = ["--topology", str(TOPOLOGIES / "ultra4-direct.yaml"), "--topology",
              str(TOPOLOGIES / "ultra8.yaml")]
    assert main(["capacity", str(experiment), "--variant", "base", *family]) == 2
    assert "--topology tries layouts at a rate: give --rate" in capsys.readouterr().err
    assert main(["capacity", str(experiment), "--variant", "base", "--rate", "0.5", "-j", "1",
                 *family]) == 0
    out = capsys.readouterr().out
    assert "ultra4-direct.yaml: tp1 x1 p2p" in out and "ultra8.yaml: tp1 x1 p2p" in out
    # the fewest SoCs over the family (the same Ultra SoCs: a tie, to the one listed first)
    assert "P2P: tp1 x2 on ultra4-direct.yaml, 2 SoCs" in out
