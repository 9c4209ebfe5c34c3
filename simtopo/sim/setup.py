"""Variants to simulation set-ups: the topology built, the model's passes made, the plan laid
out and checked; nothing simulated yet."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import networkx as nx

from .. import limits
from ..constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL, LinkModel, SocModel
from ..errors import ConfigError, PlanError
from ..io.documents import Document, validate_document
from ..plan.memory import HostMemory, MemoryUse, check_fit, host_memory
from ..plan.stages import PartitionPlan, device_pool, make_plan
from ..spec.experiment import Variant
from ..spec.topology import TransferSpec
from ..topology.files import load_topology
from ..topology.graph import Topology
from ..workload.modelref import ModelRef, resolve_model
from ..workload.opgraph import ACTIVATION_BYTES, Precision, decode_shape, prefill_shapes
from .profiles import sample_contexts

DYNAMIC_SAMPLES = 5
"""Decode steps simulated at this many context lengths for dynamic shapes (interpolated)."""

TOKEN_ID_BYTES = 4.0
"""One token id sent to the first stage per sequence and step (int32)."""


def plan_variant(variant: Variant, ref: ModelRef, graph: nx.DiGraph, topo: Topology,
                 precision: Precision, soc_model: SocModel = DEFAULT_SOC_MODEL
                 ) -> PartitionPlan:
    """The variant's plan for ``graph``: its MDP config, or its parallel spec laid out."""
    spec = variant.plan
    if spec.mdp is not None:
        from ..plan.mdp import plan_from_mdp, read_mdp, validate_mdp

        config, doc = read_mdp(spec.mdp)
        n = max(config.logical_devices()) + 1  # logical device k is the pool's k-th SoC
        available = len(spec.devices) if spec.devices else len(topo.socs)
        # one replica: a device id beyond the list is the config's error (validate_mdp's)
        need = spec.replicas * n if spec.replicas > 1 else min(n, available)
        used = device_pool(topo, spec, need, f"({spec.replicas} replica(s) of an MDP config "
                                             f"over {n} device(s))")
        plan = plan_from_mdp(config, doc, graph, ref.decoder, topo, used[:n],
                             spec.split_rules)
        replicas = [plan.stages]
        for r in range(1, spec.replicas):  # the same layout on the next n SoCs, checked there
            try:
                socs = validate_mdp(config, doc, graph, topo, used[r * n:(r + 1) * n])
            except PlanError as err:
                raise PlanError(f"replica {r}: {err}") from None
            soc_of = dict(zip(sorted(config.logical_devices()), socs, strict=True))
            replicas.append(tuple(replace(s, devices=tuple(soc_of[k] for k in s.logical))
                                  for s in plan.stages))
        return replace(plan, replicas=tuple(replicas))
    return make_plan(graph, ref.decoder, topo, spec, precision, soc_model)


def check_graph_batch(variant: Variant, graph: nx.DiGraph) -> None:
    """A fixed graph's pass processes its own batch: the workload's batch must be that times
    the micro-batches (each micro-batch is one pass), else its throughput would be wrong."""
    w = variant.workload
    per_pass = int(graph.graph.get("batch", 1))
    if w.batch != per_pass * w.micro_batches:
        source = graph.graph.get("batch_source", "the graph's 'batch:'")
        raise ConfigError(f"{variant.model} processes {per_pass} sample(s) a pass ({source}), "
                          f"so {w.micro_batches} micro-batch(es) make a batch of "
                          f"{per_pass * w.micro_batches}, not {w.batch}",
                          path=("workload", "batch"))


def groups_and_steps(variant: Variant) -> tuple[int, int]:
    """Request groups in flight per replica, and decode steps per group after the first token
    (an inference workload: one forward pass, no steps)."""
    w = variant.workload
    return (w.groups, w.generate - 1) if w.kind == "llm" else (1, 0)


def check_passes(variant: Variant, plan: PartitionPlan, forward_passes: int) -> int:
    """The passes the pass level would simulate (replicas x request groups x passes per group
    x stages), refused beyond :data:`limits.MAX_PASSES` before anything runs."""
    llm = variant.workload.kind == "llm"
    groups, steps = groups_and_steps(variant)
    replicas, stages = len(plan.replicas), len(plan.stages)
    passes = replicas * groups * (forward_passes + steps) * stages
    if passes > limits.MAX_PASSES:
        what = (f"({forward_passes} prefill chunk(s) + {steps} decode steps)" if llm
                else f"{forward_passes} micro-batch(es)")
        raise ConfigError(f"{replicas} replica(s) x {groups} request group(s) x {what} x "
                          f"{stages} stage(s) is {passes:,} passes to simulate; at most "
                          f"{limits.MAX_PASSES:,} (fewer tokens, groups or replicas)",
                          path=("workload",))
    return passes


def transfer_settings(topo: Topology, variant: Variant) -> TransferSpec:
    """The topology's transfer settings with the variant's ``transfer:`` overrides."""
    merged = {**topo.transfer.model_dump(), **variant.transfer}
    return validate_document(Document(merged, str(variant.topology)), TransferSpec)


def precision_of(variant: Variant) -> Precision:
    """The precisions the variant's workload asks for."""
    w = variant.workload
    return Precision(weights=w.precision, activations=w.activations, kv_cache=w.activations)


@dataclass(frozen=True)
class Setup:
    """Everything a variant's simulation starts from: built, planned and checked.

    ``forward_graph`` is the pass every request starts with: a prefill chunk (LLM workloads,
    run ``forward_passes`` times, once per chunk of the prompt) or the forward pass of a graph
    (inference workloads, once per micro-batch). ``decode_graphs`` are the decode steps by the
    context they attend over (one for compiled shapes; none for inference).
    """

    variant: Variant
    topo: Topology
    params: TransferSpec
    ref: ModelRef
    precision: Precision
    plan: PartitionPlan
    memory: list[MemoryUse]
    host: HostMemory
    forward_graph: nx.DiGraph
    forward_passes: int
    decode_graphs: dict[int, nx.DiGraph]

    @property
    def kind(self) -> str:
        """``llm`` or ``inference``."""
        return self.variant.workload.kind

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

    def host_payloads(self) -> tuple[float, float]:
        """Bytes of the logits (last stage to host) and of the next tokens (host to the first
        stage), per replica and step."""
        assert self.ref.decoder is not None
        batch = self.variant.workload.batch
        act = ACTIVATION_BYTES[self.precision.activations]
        return batch * self.ref.decoder.vocab * act, batch * TOKEN_ID_BYTES

    def host_step_s(self, soc_model: SocModel) -> float:
        """The host's own time per token: the workload's ``sample_time``, else the model's."""
        sample = self.variant.workload.sample_time
        return sample if sample is not None else soc_model.host_step_s


def setup_variant(variant: Variant, link_model: LinkModel = DEFAULT_MODEL,
                  soc_model: SocModel = DEFAULT_SOC_MODEL, *,
                  topology: Topology | None = None) -> Setup:
    """Build, plan and check a variant (no simulation yet); ``topology``, a built one,
    replaces the variant's file (and ``link_model`` with it)."""
    if variant.workload.kind in ("load", "serving"):
        raise ConfigError(f"variant {variant.name!r}: workload kind {variant.workload.kind!r} "
                          "is not one pass to simulate (simtopo.run runs it)")
    topo = topology if topology is not None else load_topology(variant.topology, link_model)
    if not variant.plan.fabric:
        topo = topo.without_fabric
    params = transfer_settings(topo, variant)
    ref = resolve_model(variant.model)
    precision = precision_of(variant)
    w = variant.workload
    if w.kind == "inference":
        micro = w.micro_batches
        (shape,) = prefill_shapes(w.batch // micro, w.prompt, compiled=False)
        graph = ref.graph_for(shape, precision)
        if ref.graph is not None:  # a file's graph has its own batch
            check_graph_batch(variant, graph)
        plan = plan_variant(variant, ref, graph, topo, precision, soc_model)
        check_passes(variant, plan, micro)
        memory = check_fit(plan, graph, ref.decoder, topo, w.batch // micro,
                           w.prompt if ref.decoder is not None else 1)
        return Setup(variant, topo, params, ref, precision, plan, memory,
                     host_memory(plan, [graph], memory, topo), graph, micro, {})
    if ref.decoder is None or ref.decoder.encoder:
        what = "an encoder" if ref.decoder is not None else "a graph"
        raise ConfigError(f"workload kind 'llm' needs a decoder model ({variant.model} is "
                          f"{what}); use kind: inference")
    context = w.context_length
    compiled = w.shapes == "compiled"
    chunks = prefill_shapes(w.batch, w.prompt, compiled, w.compiled_prompt or w.prompt,
                            context)
    prefill_graph = ref.graph_for(chunks[0], precision)
    contexts = [context] if compiled else sample_contexts(
        w.prompt + 1, w.prompt + w.generate - 1, DYNAMIC_SAMPLES)
    decode_graphs = {c: ref.graph_for(decode_shape(w.batch, c - 1, compiled, context), precision)
                     for c in contexts}
    largest = decode_graphs[contexts[-1]]
    plan = plan_variant(variant, ref, largest, topo, precision, soc_model)
    check_passes(variant, plan, len(chunks))
    # every request group keeps its own sequences' KV cache on the stages
    memory = check_fit(plan, largest, ref.decoder, topo, w.batch * w.groups, w.positions,
                       [prefill_graph])
    host = host_memory(plan, [prefill_graph, largest], memory, topo)
    return Setup(variant, topo, params, ref, precision, plan, memory, host, prefill_graph,
                 len(chunks), decode_graphs)


def rebased(setup: Setup, variant: Variant, topo: Topology) -> Setup:
    """``setup`` for ``variant`` on ``topo`` where these differ from the set-up's own only in
    what planning and the memory checks never read: the variant's ``transfer:`` settings and
    the topology's host hand-off (its graph and link model the same). Anything else is
    refused."""
    same_host = topo.spec.model_copy(update={"host": setup.topo.spec.host})
    if replace(variant, transfer=setup.variant.transfer) != setup.variant \
            or same_host != setup.topo.spec \
            or topo.derived(same_host).fingerprint != setup.topo.fingerprint:
        raise ValueError(f"{variant.name}: only transfer settings and the host hand-off may "
                         "differ from the set-up's")
    return replace(setup, variant=variant, topo=topo, params=transfer_settings(topo, variant))


Memo = dict[str, dict[Any, Any]]
"""What collectives were found to do, per topology and transfer settings: host-routed
algorithms chosen and runs on an idle fabric (:class:`~simtopo.engine.collectives.Collectives`)."""


def memo_for(memo: Memo | None, topo: Topology, params: TransferSpec) -> dict[Any, Any]:
    """The memo shared by runs on ``topo`` (by its :attr:`~Topology.fingerprint`: never by its
    path alone) with ``params`` (a fresh dict when ``memo`` is None)."""
    if memo is None:
        return {}
    return memo.setdefault(f"{topo.fingerprint}|{params.model_dump_json()}", {})
