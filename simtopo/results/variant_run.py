"""One variant simulated and measured: an LLM or inference run (:func:`run_variant`), or a
``load:`` section (:func:`setup_load` checks it, :func:`run_load` simulates it);
:mod:`simtopo.results.run` runs whole experiments with them.

Set it up (:func:`simtopo.sim.setup.setup_variant`: topology, passes, plan, memory fit),
simulate it (:func:`simtopo.sim.driver.simulate`), and turn what happened into metrics
(:mod:`simtopo.results.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL, LinkModel, SocModel
from ..errors import ConfigError, PlanError
from ..sim.driver import simulate
from ..sim.loading import Rank
from ..sim.setup import Memo, Setup, memo_for, setup_variant, transfer_settings
from ..spec.experiment import PlanSpec, Variant
from ..spec.topology import TransferSpec
from ..topology.files import load_topology
from ..topology.graph import Topology
from ..workload.modelref import resolve_model
from ..workload.opgraph import Precision, decode_shape
from .metrics import inference_metrics, llm_metrics
from .result import LoadResult, VariantResult


def run_variant(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
                soc_model: SocModel = DEFAULT_SOC_MODEL,
                progress: Callable[[str], None] | None = None,
                memo: Memo | None = None, *,
                topology: Topology | None = None, mode: str = "auto",
                spans: bool = True) -> VariantResult:
    """Simulate one variant in ``mode`` (``auto``, ``memoized`` or ``full``: see
    :mod:`simtopo.sim.driver`). ``memo`` lets variants on the same topology and transfer
    settings share what their collectives were found to do (``run`` passes one); ``topology``, a
    built one, replaces the variant's file (and ``link_model`` with it); ``spans=False``
    leaves out the timeline's spans and flows (runs whose metrics alone are read)."""
    setup = setup_variant(variant, link_model, soc_model, topology=topology)
    return run_setup(setup, soc_model, progress, memo, mode=mode, spans=spans)


def run_setup(setup: Setup, soc_model: SocModel = DEFAULT_SOC_MODEL,
              progress: Callable[[str], None] | None = None, memo: Memo | None = None, *,
              mode: str = "auto", spans: bool = True) -> VariantResult:
    """Simulate a set-up variant and measure it (:func:`run_variant` without the set-up)."""
    sim = simulate(setup, soc_model, mode, memo_for(memo, setup.topo, setup.params),
                   progress, spans)
    return llm_metrics(setup, sim) if setup.kind == "llm" else inference_metrics(setup, sim)


@dataclass(frozen=True)
class LoadSetup:
    """A ``load:`` section checked and mapped, ready to simulate (:func:`setup_load`)."""

    variant: Variant
    topo: Topology
    params: TransferSpec
    ranks: list[Rank]
    tp: int
    per_rank: float
    total: float


def setup_load(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
               topology: Topology | None = None) -> LoadSetup:
    """Check the variant's ``load:`` section and map its ranks (no simulation yet), so that an
    experiment refuses a bad one before it simulates anything."""
    from ..plan.memory import rank_weights
    from ..plan.stages import map_devices
    from ..sim.loading import check_sources, map_ranks
    from ..workload.opgraph import ops

    spec = variant.load
    assert spec is not None
    plan = variant.plan
    if plan.mdp is not None or plan.replicas > 1:
        raise ConfigError("load: map ranks from a parallel spec of one replica (plan: {tp: N, "
                          "pp: M}); MDP plans and replicas are not mapped to ranks yet")
    topo = topology if topology is not None else load_topology(variant.topology, link_model)
    params = transfer_settings(topo, variant)
    ref = resolve_model(variant.model)
    precision = spec.precision or variant.workload.precision
    tp = spec.tp or plan.tp * plan.pp
    try:
        devices = map_devices(topo, PlanSpec(tp=plan.tp * plan.pp, connection="host",
                                             devices=plan.devices))
    except PlanError as err:
        raise ConfigError(f"plan: {err}") from None
    ranks = map_ranks(topo, tp, spec.virtual_core_size, devices)
    check_sources(topo, spec, ranks)
    weights = Precision(weights=precision)
    graph = ref.graph_for(decode_shape(1, 1, True, 2) if ref.decoder else None, weights)
    total = float(sum(op.stored_bytes for op in ops(graph)))
    if total <= 0:
        raise ConfigError(f"load: {variant.model} has no weights to load")
    try:
        per_rank = rank_weights(graph, ref.decoder, tp, plan.split_rules)
    except PlanError as err:
        raise ConfigError(f"load.tp: {err}") from None
    return LoadSetup(variant, topo, params, ranks, tp, per_rank, total)


def run_load(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
             topology: Topology | None = None) -> LoadResult:
    """Simulate the variant's ``load:`` section: every strategy from every source."""
    return run_load_setup(setup_load(variant, link_model, topology))


def run_load_setup(setup: LoadSetup) -> LoadResult:
    """Simulate a ``load:`` section :func:`setup_load` checked (:func:`run_load` without the
    set-up)."""
    from ..sim.loading import simulate_loads

    v, ranks = setup.variant, setup.ranks
    assert v.load is not None
    outcomes = simulate_loads(setup.topo, setup.params, v.load, ranks, setup.per_rank)
    return LoadResult(v.name, v.inputs(), setup.total,
                      [{"rank": r.index, "device": r.device, "socket": r.socket}
                       for r in ranks], outcomes, v.description, setup.per_rank * setup.tp)
