"""Text views of models and plans for the CLI and notebooks."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import networkx as nx

from ..plan.memory import MemoryUse
from ..plan.stages import PartitionPlan
from ..spec.model import DecoderSpec
from ..units import format_bytes
from ..workload.opgraph import Op, ops


def render_model(name: str, graph: nx.DiGraph, decoder: DecoderSpec | None) -> str:
    """Parameters, weight bytes and per-kind totals of one pass."""
    lines = [name]
    if decoder is not None:
        lines.append(
            f"  decoder: hidden {decoder.hidden}, {decoder.layers} layers, {decoder.heads} "
            f"heads ({decoder.n_kv} KV), head {decoder.d_head}, FFN {decoder.ffn}"
            f"{' gated' if decoder.ffn_gated else ''}, vocab {decoder.vocab}, "
            f"{'tied' if decoder.tied_embeddings else 'untied'} embeddings, {decoder.norm}")
        lines.append(f"  parameters: {decoder.parameters():,} ({decoder.parameters() / 1e9:.3g}"
                     f" B); source: {decoder.source or 'declared'}")
    shape = graph.graph.get("shape")
    if shape is not None:
        lines.append(f"  pass: {shape.phase}, batch {shape.batch}, {shape.tokens} new "
                     f"token{'s' if shape.tokens > 1 else ''} per sequence, context "
                     f"{shape.context}")
    by_kind: dict[str, list[Op]] = defaultdict(list)
    for op in ops(graph):
        by_kind[op.kind].append(op)
    lines.append(f"  {'kind':<12}{'ops':>6}{'GFLOP':>14}{'read':>14}{'written':>14}"
                 f"{'weights':>14}")
    for kind, items in sorted(by_kind.items()):
        lines.append(f"  {kind:<12}{len(items):>6}{sum(o.flops for o in items) / 1e9:>14.4g}"
                     f"{format_bytes(sum(o.bytes_read for o in items), False):>14}"
                     f"{format_bytes(sum(o.bytes_written for o in items), False):>14}"
                     f"{format_bytes(sum(o.stored_bytes for o in items), False):>14}")
    return "\n".join(lines) + "\n"


def render_plan(plan: PartitionPlan, memory: Sequence[MemoryUse]) -> str:
    """Stages, devices, collectives per pass, hand-offs, and memory per SoC."""
    widths = [stage.tp for stage in plan.stages]
    shape = (f"{len(widths)} stage(s) x {widths[0]} device(s)" if len(set(widths)) == 1 else
             f"{len(widths)} stages of {', '.join(map(str, widths))} devices")
    lines = [f"plan for {plan.model}: {shape}, {len(plan.replicas)} replica(s)"]
    for r, stages in enumerate(plan.replicas):
        for stage in stages:
            first, last = stage.ops[0], stage.ops[-1]
            devices = (", ".join(stage.devices) if stage.tp <= 4 else
                       f"{stage.tp} SoCs {stage.devices[0]} .. {stage.devices[-1]}")
            cores = (f"{stage.cores[0]} cores each" if len(set(stage.cores)) == 1
                     else "cores " + ", ".join(map(str, stage.cores)))
            lines.append(f"  replica {r} {stage.name}: {devices} ({cores}; {stage.mode} "
                         f"mode), {len(stage.ops)} ops {first} .. {last}")
    kinds = Counter((c.stage, c.kind, c.bytes) for c in plan.comms)
    if kinds:
        lines.append("  collectives per pass (per-device buffer):")
        for (stage, kind, size), count in sorted(kinds.items()):
            lines.append(f"    stage {stage}: {count} x {kind} of {format_bytes(size)}")
    else:
        lines.append("  collectives per pass: none")
    for h in plan.handoffs:
        lines.append(f"  hand-off into stage {h.stage}: {format_bytes(h.bytes)} after {h.after} "
                     "(rank i to rank i)")
    sliced = [stage for stage in plan.stages if stage.tp > 1 and stage.mode == "weight"]
    if plan.decoder is None and not plan.rules and sliced and all(
            plan.shards[op].split in ("replicate", "none", "follow")
            for stage in sliced for op in stage.ops):
        lines.append("  note: without --rule (split rules) every op of a graph model runs whole "
                     "on each SoC of a stage: replicated, not tensor-sliced")
    groups = sorted({frozenset(p) for p in plan.p2p_pairs}, key=sorted)
    connected = f"p2p between {len(groups)} pairs" if groups else "host for every pair"
    lines.append(f"  connections: {connected}")
    lines.append("  memory per SoC:")
    shown = {}
    for use in memory:  # identical SoCs once, with their count
        key = (use.weights, use.kv_cache, use.activations, use.reserve, use.capacity)
        shown.setdefault(key, []).append(use)
    for group in shown.values():
        more = f" (and {len(group) - 1} more alike)" if len(group) > 1 else ""
        lines.append(f"    {group[0]}{more}" + ("" if group[0].fits else "  (does not fit)"))
    return "\n".join(lines) + "\n"
