"""Variants to simulation set-ups: the topology built, the model's passes made, the plan laid
out and checked; nothing simulated yet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from ..constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL, LinkModel, SocModel
from ..errors import ConfigError, PlanError
from ..io.documents import Document, validate_document
from ..plan.memory import HostMemory, MemoryUse, check_fit, host_memory
from ..plan.stages import PartitionPlan, make_plan
from ..spec.experiment import Variant
from ..spec.topology import TransferSpec
from ..topology.files import load_topology
from ..topology.graph import Topology
from ..workload.modelref import ModelRef, resolve_model
from ..workload.opgraph import ACTIVATION_BYTES, Precision, decode_shape, prefill_shapes
from .blocks import sample_contexts

DYNAMIC_SAMPLES = 5
"""Decode steps simulated at this many context lengths for dynamic shapes (interpolated)."""


TOKEN_ID_BYTES = 4.0
"""One token id sent to the first stage per sequence and step (int32)."""


def _plan(variant: Variant, ref: ModelRef, graph: nx.DiGraph, topo: Topology,
          precision: Precision, soc_model: SocModel) -> PartitionPlan:
    spec = variant.plan
    if spec.mdp is not None:
        from ..plan.mdp import plan_from_mdp, read_mdp

        config, doc = read_mdp(spec.mdp)
        plan = plan_from_mdp(config, doc, graph, ref.decoder, topo, spec.devices,
                             spec.split_rules)
        if spec.replicas > 1:
            raise PlanError("replicas of an MDP plan: give each replica its own config")
        return plan
    if ref.decoder is None:
        raise PlanError("a graph model needs an MDP plan (plan: {mdp: file.json}); parallel "
                        "specs lay out decoders")
    return make_plan(graph, ref.decoder, topo, spec, precision, soc_model)


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
