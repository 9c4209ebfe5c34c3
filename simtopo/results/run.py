"""``simtopo.run``: experiments to results, one variant at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL, LinkModel, SocModel
from ..errors import ConfigError, PlanError, SimtopoError
from ..plan.memory import check_fit, host_memory
from ..sim.blocks import PassProfile, host_round_trip, interpolate, profile_pass
from ..sim.driver import simulate_inference, simulate_llm
from ..sim.setup import (
    Choices,
    _choices,
    _plan,
    _precision,
    _transfer,
    host_payloads,
    host_step_seconds,
    setup_llm,
)
from ..spec.experiment import Experiment, PlanSpec, Variant, load_experiment
from ..topology.files import load_topology
from ..topology.graph import Topology
from ..workload.modelref import resolve_model
from ..workload.opgraph import Precision, decode_shape, prefill_shapes
from .metrics import inference_metrics, llm_metrics
from .result import LoadResult, Result, VariantResult


def run_variant(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
                soc_model: SocModel = DEFAULT_SOC_MODEL,
                progress: Callable[[str], None] | None = None,
                choices: Choices | None = None, *,
                topology: Topology | None = None) -> VariantResult:
    """Simulate one variant. ``choices`` lets variants on the same topology and transfer
    settings share their host-routed algorithm choices (``run`` passes one); ``topology``, a
    built one, replaces the variant's file (and ``link_model`` with it)."""
    if variant.workload.kind == "inference":
        return _run_inference(variant, link_model, soc_model, choices, topology)
    setup = setup_llm(variant, link_model, soc_model, topology=topology)
    w = variant.workload
    plan, topo, params = setup.plan, setup.topo, setup.params
    chosen = _choices(choices, topo, params)
    if progress:
        progress("prefill")
    prefill = profile_pass(plan, setup.prefill_graph, topo, params, soc_model, choices=chosen)
    decode: dict[int, PassProfile] = {}
    last = max(setup.decode_graphs)
    for c, graph in setup.decode_graphs.items():
        if progress:
            progress(f"decode at context {c}")
        decode[c] = profile_pass(plan, graph, topo, params, soc_model,
                                 record_spans=(c == last), choices=chosen)
    logits_bytes, token_bytes = host_payloads(setup)
    logits_s, token_s, host_links = host_round_trip(
        plan, topo, params, logits_bytes, token_bytes, host_step_seconds(variant, soc_model))

    def decode_at(context: int) -> PassProfile:
        return decode[last] if setup.compiled else interpolate(decode, context)

    timeline = simulate_llm(len(plan.stages), len(plan.replicas), w.groups, setup.chunks,
                            prefill, decode_at, w.generate - 1, w.prompt + 1, logits_s,
                            token_s)
    return llm_metrics(variant, topo, plan, setup.memory, setup.host, prefill, decode, timeline,
                       logits_s, token_s, host_links, setup.chunks, params)


def _run_inference(variant: Variant, link_model: LinkModel, soc_model: SocModel,
                   choices: Choices | None, topology: Topology | None = None) -> VariantResult:
    topo = topology if topology is not None else load_topology(variant.topology, link_model)
    params = _transfer(topo, variant.transfer, str(variant.topology))
    ref = resolve_model(variant.model)
    precision = _precision(variant)
    w = variant.workload
    micro = w.micro_batches
    per_micro = w.batch // micro
    if ref.decoder is not None:
        (shape,) = prefill_shapes(per_micro, w.prompt, compiled=False)
        graph = ref.graph_for(shape, precision)
    else:
        graph = ref.graph_for(None, precision)
    plan = _plan(variant, ref, graph, topo, precision, soc_model)
    memory = check_fit(plan, graph, ref.decoder, topo, per_micro,
                       w.prompt if ref.decoder is not None else 1)
    host = host_memory(plan, [graph], memory, topo)
    profile = profile_pass(plan, graph, topo, params, soc_model,
                           choices=_choices(choices, topo, params))
    timeline = simulate_inference(len(plan.stages), len(plan.replicas), micro, profile)
    return inference_metrics(variant, topo, plan, memory, host, profile, timeline, micro,
                             params)


def run_load(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
             topology: Topology | None = None) -> LoadResult:
    """Simulate the variant's ``load:`` section: every strategy from every source."""
    from ..plan.memory import rank_weights
    from ..plan.stages import map_devices
    from ..sim.loading import map_ranks, simulate_loads
    from ..workload.opgraph import ops

    spec = variant.load
    assert spec is not None
    plan = variant.plan
    if plan.mdp is not None or plan.replicas > 1:
        raise ConfigError("load: map ranks from a parallel spec of one replica (plan: {tp: N, "
                          "pp: M}); MDP plans and replicas are not mapped to ranks yet")
    topo = topology if topology is not None else load_topology(variant.topology, link_model)
    params = _transfer(topo, variant.transfer, str(variant.topology))
    ref = resolve_model(variant.model)
    precision = spec.precision or variant.workload.precision
    tp = spec.tp or plan.tp * plan.pp
    try:
        devices = map_devices(topo, PlanSpec(tp=plan.tp * plan.pp, connection="host",
                                             devices=plan.devices))
    except PlanError as err:
        raise ConfigError(f"plan: {err}") from None
    ranks = map_ranks(topo, tp, spec.virtual_core_size, devices)
    weights = Precision(weights=precision)
    graph = ref.graph_for(decode_shape(1, 1, True, 2) if ref.decoder else None, weights)
    total = float(sum(op.stored_bytes for op in ops(graph)))
    if total <= 0:
        raise ConfigError(f"load: {variant.model} has no weights to load")
    try:
        per_rank = rank_weights(graph, ref.decoder, tp, plan.split_rules)
    except PlanError as err:
        raise ConfigError(f"load.tp: {err}") from None
    outcomes = simulate_loads(topo, params, spec, ranks, per_rank)
    return LoadResult(variant.name, variant.inputs(), total,
                      [{"rank": r.index, "device": r.device, "socket": r.socket}
                       for r in ranks], outcomes, variant.description, per_rank * tp)


def run(experiment: str | Path | Experiment, variants: Sequence[str] | None = None,
        reduced: bool = False, link_model: LinkModel = DEFAULT_MODEL,
        soc_model: SocModel = DEFAULT_SOC_MODEL,
        progress: Callable[[str], None] | None = None) -> Result:
    """Run an experiment (a file or a loaded :class:`Experiment`) and return its Result.

    ``variants`` restricts the run to those names; ``reduced`` applies the file's ``ci:``
    block (the size CI runs).
    """
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment,
                                                                                reduced)
    chosen = list(exp.variants)
    if variants:
        known = [v.name for v in exp.variants]
        for name in variants:
            if name not in known:
                raise ConfigError(f"unknown variant {name!r} (expected one of: "
                                  f"{', '.join(known)})", file=str(exp.source))
        chosen = [v for v in exp.variants if v.name in variants]
    results, loads = [], []
    choices: Choices = {}
    for variant in chosen:
        if progress:
            progress(variant.name)
        try:
            if variant.workload.kind != "load":
                results.append(run_variant(variant, link_model, soc_model, choices=choices))
            if variant.load is not None:
                loads.append(run_load(variant, link_model))
        except ConfigError as err:
            raise type(err)(f"variant {variant.name!r}: {err.message}",
                            file=err.file or str(exp.source), path=err.path,
                            line=err.line) from None
        except SimtopoError as err:
            raise type(err)(f"{exp.source}: variant {variant.name!r}: {err}") from None
    return Result(exp.name, exp.description, str(exp.source), results, loads)
