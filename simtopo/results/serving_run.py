"""Serving runs: a variant's program simulated on its topology, then a request stream played
through it (:mod:`simtopo.sim.serving` for compiled shapes, :mod:`simtopo.sim.chunked` for
dynamic ones), measured by :func:`simtopo.results.serving.serving_metrics`."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ..constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL, LinkModel, SocModel
from ..errors import ConfigError, PlanError
from ..plan.memory import kv_positions
from ..sim.chunked import serve_dynamic
from ..sim.iterations import IterationModel, profile_iterations
from ..sim.serving import CompiledShape, IterationTimes, serve
from ..sim.setup import memo_for, setup_variant
from ..spec.experiment import Variant
from ..spec.serving import DEFAULT_TOKEN_BUDGET
from ..topology.graph import Topology
from ..workload.requests import Requests, generate
from .serving import ServingResult, serving_metrics
from .variant_run import run_variant

Program = IterationTimes | IterationModel
"""What a serving run plays its requests through."""


def iteration_times(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
                    soc_model: SocModel = DEFAULT_SOC_MODEL,
                    topology: Topology | None = None) -> IterationTimes:
    """A compiled program's prefill chunk (one request, and the batch: the TTFT of a
    one-chunk run) and decode step (its TPOT) at each of its specializations, simulated with
    every replica of the plan at once on the fabric, so that P2P or host-routed collectives
    and uplinks shared between replicas are in them. Compiled shapes make these every
    iteration's times: nothing is interpolated."""
    w = variant.workload
    context = w.context_length
    spec = variant.serving

    socs: list[int] = []

    def llm(batch: int, chunk: int) -> tuple[float, float]:
        if context - chunk < 2:
            raise ConfigError(f"the compiled context {context} leaves no room for a decode "
                              f"step after a prompt chunk of {chunk}")
        shaped = w.model_copy(update={"kind": "llm", "batch": batch, "prompt": chunk,
                                      "generate": 1 + min(1, context - chunk - 1),
                                      "context": context, "compiled_prompt": chunk,
                                      "shapes": "compiled"})
        m = run_variant(replace(variant, workload=shaped), link_model, soc_model,
                        topology=topology, spans=False).metrics
        socs.append(int(m["socs"]))
        return m["ttft_s"], m["tpot_mean_s"]

    if spec is None or spec.specializations is None:
        chunk = w.compiled_prompt or w.prompt
        (one, _), (full, step) = llm(1, chunk), llm(w.batch, chunk)
        return IterationTimes(chunk=chunk, prefill_s=one, batch_prefill_s=full, decode_s=step,
                              slots=w.batch, socs=socs[0])
    shapes = tuple(CompiledShape(x.batch, x.prompt, *llm(x.batch, x.prompt))
                   for x in sorted(spec.specializations, key=lambda x: (x.batch, x.prompt)))
    top = max(x.batch for x in shapes)
    largest = min((x for x in shapes if x.batch == top), key=lambda x: x.decode_s)
    smallest = min(x.batch for x in shapes)
    first = min((x for x in shapes if x.batch == smallest), key=lambda x: x.chunk)
    return IterationTimes(chunk=first.chunk, prefill_s=first.prefill_s,
                          batch_prefill_s=largest.prefill_s, decode_s=largest.decode_s,
                          slots=top, socs=socs[0],
                          shapes=shapes)


def variant_llm(variant: Variant, batch: int = 1, chunk: int | None = None) -> Variant:
    """``variant`` as a dynamic-shape LLM run of ``batch`` prompts of ``chunk`` tokens and one
    decode step (for the set-up and plan of a dynamic-shape program: its KV cache is a pool,
    not a compiled context per sequence)."""
    w = variant.workload
    chunk = min(chunk or w.compiled_prompt or w.prompt, w.context_length - 2)
    return replace(variant, workload=w.model_copy(update={
        "kind": "llm", "batch": batch, "prompt": chunk, "generate": 2, "context": None,
        "compiled_prompt": None, "shapes": "dynamic"}))


def iteration_model(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
                    soc_model: SocModel = DEFAULT_SOC_MODEL,
                    topology: Topology | None = None) -> IterationModel:
    """A dynamic-shape program's interpolated iteration times (:mod:`simtopo.sim.iterations`)
    and its KV pool: what each replica's SoCs hold beside the weights and the working set of
    an iteration of the whole token budget."""
    spec = variant.serving
    budget = (spec.token_budget if spec is not None and spec.token_budget is not None
              else DEFAULT_TOKEN_BUDGET)
    slots = variant.workload.batch
    setup = setup_variant(variant_llm(variant, 1, budget), link_model, soc_model,
                          topology=topology)
    try:
        pool = kv_positions(setup.plan, setup.topo, [setup.forward_graph])
    except PlanError as err:
        raise ConfigError(f"serving: {err}") from None
    if pool < 1:
        raise ConfigError(f"{variant.model} leaves no DRAM for a KV cache on its SoCs "
                          "(after weights, working set and reserve): use more SoCs")
    return profile_iterations(setup, soc_model, slots, budget, pool,
                              memo_for({}, setup.topo, setup.params))


def program_for(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
                soc_model: SocModel = DEFAULT_SOC_MODEL,
                topology: Topology | None = None) -> Program:
    """The program a serving variant plays its requests through."""
    if variant.workload.shapes == "dynamic":
        return iteration_model(variant, link_model, soc_model, topology)
    return iteration_times(variant, link_model, soc_model, topology)


def serving_requests(variant: Variant) -> Requests:
    """The requests of ``variant``'s ``serving:`` section, refused if one needs more than the
    variant's context (checked before an experiment simulates anything)."""
    spec = variant.serving
    assert spec is not None  # the experiment's validation requires it for kind: serving
    requests = generate(spec)
    context = variant.workload.context_length
    over = int((requests.prompt_tokens + requests.output_tokens > context).sum())
    if over:
        raise ConfigError(f"{over} of {len(requests)} requests need more than the "
                          f"{'compiled' if variant.workload.shapes == 'compiled' else 'largest'}"
                          f" context of {context} positions (prompt + output): raise "
                          "workload.context or shorten the lengths")
    return requests


def run_serving(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
                soc_model: SocModel = DEFAULT_SOC_MODEL,
                topology: Topology | None = None,
                memo: dict[str, Any] | None = None,
                requests: Requests | None = None) -> ServingResult:
    """Simulate ``variant``'s ``serving:`` section; ``memo`` keeps the program's times for
    variants that differ only in their ``serving:`` arrivals, lengths and SLOs (a sweep of
    offered load); ``requests``: :func:`serving_requests`'s, if already made."""
    spec = variant.serving
    assert spec is not None  # the experiment's validation requires it for kind: serving
    if requests is None:
        requests = serving_requests(variant)
    program_spec = {k: v for k, v in spec.model_dump().items()
                    if k in ("token_budget", "specializations")}
    key = json.dumps([str(variant.topology), variant.model, variant.workload.model_dump(),
                      variant.plan.model_dump(), variant.transfer, program_spec],
                     sort_keys=True, default=str)  # full paths: two ultra8.yaml may differ
    if memo is not None and key in memo and topology is None:
        program = memo[key]
    else:
        program = program_for(variant, link_model, soc_model, topology)
        if memo is not None and topology is None:
            memo[key] = program
    replicas = variant.plan.replicas
    if isinstance(program, IterationModel):
        need = int((requests.prompt_tokens + requests.output_tokens - 1).max())
        if need > program.kv_positions:
            raise ConfigError(f"a request needs {need:,} KV positions; a replica's pool holds "
                              f"{program.kv_positions:,}: shorten the requests or use more "
                              "SoCs per replica")
        priority = spec.priority or "decode"
        window = variant_window(variant)
        records = serve_dynamic(requests, program, replicas, spec.router, priority, window)
    else:
        records = serve(requests, program, replicas, spec.scheduler, spec.router,
                        spec.batch_wait)
    metrics = serving_metrics(requests, records, spec.warmup, spec.slo.ttft, spec.slo.tpot,
                              replicas * program.slots,
                              program.kv_positions if isinstance(program, IterationModel)
                              else 0)
    metrics["socs"] = float(program.socs)
    return ServingResult(variant.name, variant.inputs(), program, metrics, requests, records,
                         spec.warmup, variant.description)


def variant_window(variant: Variant) -> int | None:
    """The variant's model's sliding attention window, if it has one."""
    from ..workload.modelref import resolve_model

    decoder = resolve_model(variant.model).decoder
    return decoder.sliding_window if decoder is not None else None
