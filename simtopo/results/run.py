"""``simtopo.run``: experiments to results, one variant at a time.

For each variant: set it up (:func:`simtopo.sim.setup.setup_variant`: topology, passes, plan,
memory fit), simulate it (:func:`simtopo.sim.driver.simulate`), and turn what happened into
metrics (:mod:`simtopo.results.metrics`); a ``load:`` section is simulated too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import errors
from ..constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL, LinkModel, SocModel
from ..errors import ConfigError, PlanError, SimtopoError
from ..sim.driver import simulate
from ..sim.serving import IterationTimes, serve
from ..sim.setup import Memo, Setup, memo_for, rebased, setup_variant, transfer_settings
from ..spec.experiment import Experiment, PlanSpec, Variant, load_experiment
from ..topology.files import load_topology
from ..topology.graph import Topology
from ..workload.modelref import resolve_model
from ..workload.opgraph import Precision, decode_shape
from ..workload.requests import generate
from .bands import at_corner, band_rows, band_runs
from .metrics import inference_metrics, llm_metrics
from .parallel import Forked
from .result import LoadResult, Result, VariantResult, connection_pairs
from .serving import ServingResult, serving_metrics


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
        progress: Callable[[str], None] | None = None, mode: str = "auto",
        band: bool = True, jobs: int = 1, waiting: Callable[[], None] | None = None
        ) -> Result:
    """Run an experiment (a file or a loaded :class:`Experiment`) and return its Result.

    ``variants`` restricts the run to those names; ``reduced`` applies the file's ``ci:``
    block (the size CI runs); ``mode`` is the simulation mode (:mod:`simtopo.sim.driver`);
    ``band`` re-runs every P2P/host-routed pair at the ends of the unmeasured constants
    (:mod:`simtopo.results.bands`), so that each speed-up carries its range. With ``jobs`` >
    1 the band's runs go to forked processes while this one simulates the variants
    (:mod:`simtopo.results.parallel`); the Result is the same. ``waiting()`` is called once
    the variants are simulated, while forked band runs may still be going (the CLI loads its
    report's modules there).
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
    setups: dict[str, Setup] = {}
    for variant in chosen:
        if variant.workload.kind not in ("load", "serving"):
            with _named(variant, exp):
                setups[variant.name] = setup_variant(variant, link_model, soc_model)
    by_name = {v.name: v for v in chosen}
    pairs = [(by_name[a], by_name[b]) for a, b in connection_pairs(
        [(s.variant.name, s.plan.talks, s.variant.inputs())
         for s in setups.values()])] if band else []
    runs = band_runs(pairs)
    topologies: dict[str, Topology] = {}
    band_memo: Memo = {}  # each forked worker has its own copy

    def band_run(i: int) -> tuple[str, Any]:
        variant, favour = runs[i]
        try:
            changed, topo = at_corner(variant, favour, topologies, link_model)
            return "ok", run_setup(rebased(setups[variant.name], changed, topo), soc_model,
                                   memo=band_memo, mode=mode, spans=False).metrics
        except SimtopoError as err:
            return type(err).__name__, str(err)

    with Forked(band_run, len(runs), jobs - 1) as forked:
        results, loads, servings = [], [], []
        memo: Memo = {}
        serving_memo: dict[str, IterationTimes] = {}
        for variant in chosen:
            if progress:
                progress(variant.name)
            with _named(variant, exp):
                if variant.name in setups:
                    results.append(run_setup(setups[variant.name], soc_model, memo=memo,
                                             mode=mode))
                if variant.workload.kind == "serving":
                    servings.append(run_serving(variant, link_model, soc_model,
                                                memo=serving_memo))
                if variant.load is not None:
                    loads.append(run_load(variant, link_model))
        result = Result(exp.name, exp.description, str(exp.source), results, loads,
                        servings=servings)
        if waiting is not None:
            waiting()
        answers = forked.results(progress and (
            lambda i: progress(f"band: {runs[i][0].name} with constants favouring "
                               f"{runs[i][1]}")))
    metrics = {}
    for (variant, favour), (status, value) in zip(runs, answers, strict=True):
        if status != "ok":
            raise getattr(errors, status)(f"{exp.source}: the speed-up band: {value}")
        metrics[(variant.name, favour)] = value
    result.bands = band_rows(pairs, metrics) if pairs else []
    return result


@contextmanager
def _named(variant: Variant, exp: Experiment) -> Iterator[None]:
    """Errors of ``variant`` name it (and the experiment file)."""
    try:
        yield
    except ConfigError as err:
        raise type(err)(f"variant {variant.name!r}: {err.message}",
                        file=err.file or str(exp.source), path=err.path,
                        line=err.line) from None
    except SimtopoError as err:
        raise type(err)(f"{exp.source}: variant {variant.name!r}: {err}") from None


def iteration_times(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
                    soc_model: SocModel = DEFAULT_SOC_MODEL,
                    topology: Topology | None = None) -> IterationTimes:
    """The compiled program's prefill chunk (one request, and the batch: the TTFT of a
    one-chunk run) and decode step (its TPOT), simulated with every replica of the plan at
    once on the fabric, so that P2P or host-routed collectives and uplinks shared between
    replicas are in them. Compiled shapes make these every iteration's times: nothing is
    interpolated (dynamic shapes are not served yet)."""
    w = variant.workload
    chunk = w.compiled_prompt or w.prompt
    context = w.context_length
    if context - chunk < 2:
        raise ConfigError(f"the compiled context {context} leaves no room for a decode step "
                          f"after a prompt chunk of {chunk}")

    def llm(batch: int) -> dict[str, float]:
        shaped = w.model_copy(update={"kind": "llm", "batch": batch, "prompt": chunk,
                                      "generate": 1 + min(1, context - chunk - 1),
                                      "context": context, "compiled_prompt": chunk,
                                      "shapes": "compiled"})
        return run_variant(replace(variant, workload=shaped), link_model, soc_model,
                           topology=topology, spans=False).metrics

    one, full = llm(1), llm(w.batch)
    return IterationTimes(chunk=chunk, prefill_s=one["ttft_s"], batch_prefill_s=full["ttft_s"],
                          decode_s=full["tpot_mean_s"], slots=w.batch, socs=int(full["socs"]))


def run_serving(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
                soc_model: SocModel = DEFAULT_SOC_MODEL,
                topology: Topology | None = None,
                memo: dict[str, IterationTimes] | None = None) -> ServingResult:
    """Simulate ``variant``'s ``serving:`` section; ``memo`` keeps the program's times for
    variants that differ only in their ``serving:`` (a sweep of offered load)."""
    spec = variant.serving
    assert spec is not None  # the experiment's validation requires it for kind: serving
    requests = generate(spec)
    context = variant.workload.context_length
    over = int((requests.prompt_tokens + requests.output_tokens > context).sum())
    if over:
        raise ConfigError(f"{over} of {len(requests)} requests need more than the compiled "
                          f"context of {context} positions (prompt + output): raise "
                          "workload.context or shorten the lengths")
    key = json.dumps([str(variant.topology), variant.model, variant.workload.model_dump(),
                      variant.plan.model_dump(), variant.transfer], sort_keys=True,
                     default=str)  # the files' full paths: two ultra8.yaml may differ
    if memo is not None and key in memo and topology is None:
        times = memo[key]
    else:
        times = iteration_times(variant, link_model, soc_model, topology)
        if memo is not None and topology is None:
            memo[key] = times
    records = serve(requests, times, variant.plan.replicas, spec.scheduler, spec.router,
                    spec.batch_wait)
    metrics = serving_metrics(requests, records, spec.warmup, spec.slo.ttft, spec.slo.tpot,
                              variant.plan.replicas * times.slots)
    metrics["socs"] = float(times.socs)
    return ServingResult(variant.name, variant.inputs(), times, metrics, requests, records,
                         spec.warmup, variant.description)
