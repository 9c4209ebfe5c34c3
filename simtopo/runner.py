"""``simtopo.run``: experiments to results, one variant at a time.

For each variant: build the topology (its ``transfer`` overrides applied), the model's passes
(prefill chunks and decode steps, or one forward pass), the plan (a parallel spec or an MDP
config), check that it fits, profile each pass shape on the fabric (:mod:`simtopo.sim`),
pipeline the passes, and turn what happened into metrics (:mod:`simtopo.result`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from .calibrated import DEFAULT_MODEL, DEFAULT_SOC_MODEL, LinkModel, SocModel
from .errors import ConfigError, PlanError, SimtopoError
from .experiment import Experiment, Variant, load_experiment
from .io import Document, validate_document
from .memory import HostMemory, MemoryUse, check_fit, host_memory
from .modelref import ModelRef, resolve_model
from .opgraph import ACTIVATION_BYTES, Precision, decode_shape, prefill_shapes
from .plan import ParallelSpec, PartitionPlan, make_plan
from .result import LoadResult, Result, VariantResult, inference_metrics, llm_metrics
from .sim import (
    PassProfile,
    host_round_trip,
    interpolate,
    profile_pass,
    sample_contexts,
    simulate_inference,
    simulate_llm,
)
from .spec import TransferSpec
from .topofile import load_topology
from .topology import Topology

DYNAMIC_SAMPLES = 5
"""Decode steps simulated at this many context lengths for dynamic shapes (interpolated)."""

TOKEN_ID_BYTES = 4.0
"""One token id sent to the first stage per sequence and step (int32)."""


def _plan(variant: Variant, ref: ModelRef, graph: nx.DiGraph, topo: Topology,
          precision: Precision, soc_model: SocModel) -> PartitionPlan:
    spec = variant.plan
    if spec.mdp is not None:
        from .mdp import plan_from_mdp, read_mdp

        config, doc = read_mdp(spec.mdp)
        plan = plan_from_mdp(config, doc, graph, ref.decoder, topo, spec.devices,
                             tuple(spec.rules.items()))
        if spec.replicas > 1:
            raise PlanError("replicas of an MDP plan: give each replica its own config")
        return plan
    if ref.decoder is None:
        raise PlanError("a graph model needs an MDP plan (plan: {mdp: file.json}); parallel "
                        "specs lay out decoders")
    parallel = ParallelSpec(tp=spec.tp, mode=spec.mode, pp=spec.pp, replicas=spec.replicas,
                            cores=spec.cores, connection=spec.connection,
                            rules=tuple(spec.rules.items()),
                            devices=tuple(spec.devices) if spec.devices else None)
    return make_plan(graph, ref.decoder, topo, parallel, precision, soc_model)


def _transfer(topo: Topology, overrides: dict[str, object], name: str) -> TransferSpec:
    merged = {**topo.transfer.model_dump(), **overrides}
    return validate_document(Document(merged, name), TransferSpec)


@dataclass(frozen=True)
class LlmSetup:
    """Everything an LLM variant's simulation starts from: built, planned and checked."""

    variant: Variant
    topo: Topology
    params: TransferSpec
    ref: ModelRef
    precision: Precision
    plan: PartitionPlan
    memory: list[MemoryUse]
    host: HostMemory
    prefill_graph: nx.DiGraph
    chunks: int
    decode_graphs: dict[int, nx.DiGraph]
    """Decode passes by the context length they attend over (one for compiled shapes)."""

    @property
    def compiled(self) -> bool:
        """Compiled shapes (every decode step at the compiled context)."""
        return self.variant.workload.shapes == "compiled"

    def decode_graph(self, context: int) -> nx.DiGraph:
        """The decode pass at ``context`` (built on demand when not sampled)."""
        if context in self.decode_graphs:
            return self.decode_graphs[context]
        if self.compiled:
            return self.decode_graphs[self.variant.workload.context_length]
        assert self.ref.decoder is not None
        w = self.variant.workload
        return self.ref.graph_for(decode_shape(w.batch, context - 1, False, w.context_length),
                                  self.precision)


def setup_llm(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
              soc_model: SocModel = DEFAULT_SOC_MODEL, *,
              topology: Topology | None = None) -> LlmSetup:
    """Build, plan and check an LLM variant (no simulation yet); ``topology``, a built one,
    replaces the variant's file (and ``link_model`` with it)."""
    topo = topology if topology is not None else load_topology(variant.topology, link_model)
    params = _transfer(topo, variant.transfer, str(variant.topology))
    ref = resolve_model(variant.model)
    w = variant.workload
    precision = _precision(variant)
    if ref.decoder is None:
        raise ConfigError(f"workload kind 'llm' needs a decoder model ({variant.model} is a "
                          "graph); use kind: inference")
    context = w.context_length
    compiled = w.shapes == "compiled"
    chunk = w.compiled_prompt or w.prompt
    chunks = prefill_shapes(w.batch, w.prompt, compiled, chunk, context)
    prefill_graph = ref.graph_for(chunks[0], precision)
    if compiled:
        contexts = [context]
    else:
        contexts = sample_contexts(w.prompt + 1, w.prompt + w.generate - 1, DYNAMIC_SAMPLES)
    decode_graphs = {c: ref.graph_for(decode_shape(w.batch, c - 1, compiled, context), precision)
                     for c in contexts}
    largest = decode_graphs[contexts[-1]]
    plan = _plan(variant, ref, largest, topo, precision, soc_model)
    # every request group keeps its own sequences' KV cache on the stages
    memory = check_fit(plan, largest, ref.decoder, topo, w.batch * w.groups, context,
                       [prefill_graph])
    host = host_memory(plan, [prefill_graph, largest], memory, topo)
    return LlmSetup(variant, topo, params, ref, precision, plan, memory, host, prefill_graph,
                    len(chunks), decode_graphs)


def _precision(variant: Variant) -> Precision:
    w = variant.workload
    return Precision(weights=w.precision, activations=w.activations, kv_cache=w.activations)


def host_payloads(setup: LlmSetup) -> tuple[float, float]:
    """Bytes of the logits (last stage to host) and of the next tokens (host to first stage)."""
    assert setup.ref.decoder is not None
    batch = setup.variant.workload.batch
    act = ACTIVATION_BYTES[setup.precision.activations]
    return batch * setup.ref.decoder.vocab * act, batch * TOKEN_ID_BYTES


def host_step_seconds(variant: Variant, soc_model: SocModel) -> float:
    """The host's own time per token: the workload's ``sample_time``, else the model's."""
    sample = variant.workload.sample_time
    return sample if sample is not None else soc_model.host_step_s


Choices = dict[str, dict[Any, str]]
"""Host-routed all-reduce algorithms chosen, per topology and transfer settings."""


def _choices(choices: Choices | None, topo: Topology, params: TransferSpec) -> dict[Any, str]:
    if choices is None:
        return {}
    key = f"{topo.source}|{params.model_dump_json()}"
    return choices.setdefault(key, {})


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


def checkpoint_bytes(ref: ModelRef, precision: str) -> tuple[float, float]:
    """The weights as stored at ``precision`` (the op graph's: embeddings and norms stay 16
    bits under int8 or mxfp6), and the K/V projections' share of them (replicated when the
    tensor-parallel degree exceeds the KV heads)."""
    if ref.decoder is not None:
        graph = ref.graph_for(decode_shape(1, 1, True, 2), Precision(weights=precision))
    else:
        graph = ref.graph_for(None, Precision(weights=precision))
    ops = [graph.nodes[n]["op"] for n in graph]
    total = float(sum(op.weight_bytes for op in ops))
    kv = 0.0
    if ref.decoder is not None:
        d = ref.decoder
        kv_width, q_width = d.n_kv * d.d_head, d.heads * d.d_head
        for op in ops:  # the K and V columns of each layer's fused qkv projection
            if op.name.endswith(".attn.qkv"):
                kv += op.weight_bytes * 2 * kv_width / (q_width + 2 * kv_width)
    return total, kv


def rank_bytes(ref: ModelRef, precision: str, tp: int) -> tuple[float, float]:
    """(checkpoint bytes, bytes of one rank's shard): 1/tp of the weights, the K/V part
    whole per KV head when tp exceeds the KV heads."""
    total, kv = checkpoint_bytes(ref, precision)
    if ref.decoder is None or tp <= ref.decoder.n_kv:
        return total, total / tp
    return total, (total - kv) / tp + kv / ref.decoder.n_kv


def run_load(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
             topology: Topology | None = None) -> LoadResult:
    """Simulate the variant's ``load:`` section: every strategy from every source."""
    from .loading import map_ranks, simulate_loads
    from .plan import map_devices

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
        devices = map_devices(topo, ParallelSpec(
            tp=plan.tp * plan.pp, connection="host",
            devices=tuple(plan.devices) if plan.devices else None))
    except PlanError as err:
        raise ConfigError(f"plan: {err}") from None
    ranks = map_ranks(topo, tp, spec.virtual_core_size, devices)
    total, per_rank = rank_bytes(ref, precision, tp)
    if total <= 0:
        raise ConfigError(f"load: {variant.model} has no weights to load")
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

