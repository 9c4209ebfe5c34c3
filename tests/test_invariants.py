"""Invariants of the simulation, over generated workloads and plans (Hypothesis)."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simtopo.constants import DEFAULT_SOC_MODEL
from simtopo.plan.stages import make_plan
from simtopo.results.run import run
from simtopo.sim.tasks import ComputeTask, lower
from simtopo.spec.experiment import PlanSpec
from simtopo.topology.files import load_topology
from simtopo.workload.modelref import resolve_model
from simtopo.workload.opgraph import Precision, decode_shape

from .conftest import TOPOLOGIES

SLOW = settings(max_examples=6, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

workloads = st.fixed_dictionaries({
    "model": st.sampled_from(["llama-2-7b", "gpt-j-6b", "mistral-7b", "llama-2-13b"]),
    "precision": st.sampled_from(["fp16", "mxfp6"]),
    "batch": st.sampled_from([1, 2, 4]),
    "prompt": st.integers(8, 512),
    "generate": st.integers(2, 16),
})
layouts = st.sampled_from([(2, 1), (4, 1), (8, 1), (16, 1), (2, 2), (4, 2), (4, 4), (8, 2)])


@SLOW
@given(workload=workloads, layout=layouts)
def test_switch_local_p2p_is_never_slower_than_host_routed(tmp_path_factory, workload,
                                                          layout):
    tp, pp = layout
    if workload["model"] == "llama-2-13b" and 40 % tp:  # 40 heads divide over 2, 4 and 8 only
        return
    tmp = tmp_path_factory.mktemp("exp")
    doc = {"name": "inv", "topology": str(TOPOLOGIES / "ultra8.yaml"),
           "model": workload["model"],
           "workload": {k: v for k, v in workload.items() if k != "model"},
           "plan": {"tp": tp, "pp": pp},  # at most 16 SoCs: cards 0-3, all behind sw0
           "variants": [{"name": "p2p"}, {"name": "host", "plan": {"connection": "host"}}]}
    path = Path(tmp) / "inv.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run(path)
    p2p, host = (result.variant(n).metrics for n in ("p2p", "host"))
    for metric in ("ttft_s", "tpot_mean_s", "e2e_s"):
        assert p2p[metric] <= host[metric] * (1 + 1e-9), (metric, p2p[metric], host[metric])
    assert p2p["tokens_per_s"] >= host["tokens_per_s"] * (1 - 1e-9)


def _bytes_per_soc(model: str, precision: str, spec: PlanSpec, topo) -> float:
    """The most DRAM bytes any SoC moves in one decode step, from the task programs."""
    ref = resolve_model(model)
    graph = ref.graph_for(decode_shape(1, 1023, True, 1024),
                          Precision(weights=precision))
    plan = make_plan(graph, ref.decoder, topo, spec)
    programs = lower(plan, graph, topo, DEFAULT_SOC_MODEL)
    return max(sum(sum(t.bytes for t in tasks if isinstance(t, ComputeTask)) * times
                   for _, tasks, times in p.blocks) for p in programs)


@settings(max_examples=12, deadline=None)
@given(model=st.sampled_from(["llama-2-7b", "llama-2-70b", "gpt-j-6b", "mistral-7b"]),
       precision=st.sampled_from(["fp16", "mxfp6"]),
       family=st.sampled_from(["tp", "pp"]),
       sizes=st.lists(st.sampled_from([1, 2, 4, 8, 16]), min_size=2, max_size=2, unique=True))
def test_more_socs_never_increase_the_bytes_each_soc_reads(model, precision, family, sizes):
    topo = load_topology(TOPOLOGIES / "ultra8.yaml")
    few, many = sorted(sizes)
    found = []
    for n in (few, many):
        spec = PlanSpec(tp=n) if family == "tp" else PlanSpec(pp=n)
        found.append(_bytes_per_soc(model, precision, spec, topo))
    assert found[1] <= found[0] * (1 + 1e-12), (few, many, found)
