"""How one op divides over a stage's devices: GEMM slices (M, K) and the attention heads' rule.

A GEMM W[K_in, N_out] split ``M`` keeps ``1 / n`` of the output features per device (the QKV
projection's K and V columns as the KV heads allow), ``K`` keeps ``1 / n`` of the input
features and writes a full-width partial output. A tied LM head in another stage than the
embedding holds the table itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import networkx as nx

from ..errors import PlanError
from ..spec.model import DecoderSpec
from ..workload.opgraph import Op

if TYPE_CHECKING:
    from .layouts import Shard, Stage


def kv_share(model: DecoderSpec, n: int) -> float:
    """Fraction of the KV heads each of ``n`` devices holds (replicated beyond kv_heads)."""
    return 1.0 / n if n <= model.n_kv else 1.0 / model.n_kv


def check_tp(model: DecoderSpec, n: int) -> None:
    """Tensor-parallel size rules: query heads divide by n; KV heads divide by n, or n is a
    multiple of them (each KV head then lives whole on n / kv_heads devices)."""
    if model.heads % n:
        raise PlanError(f"{model.name} has {model.heads} query heads, which do not divide over "
                        f"{n} devices (the tensor-parallel size must divide the heads)")
    kv = model.n_kv
    if n > kv and n % kv:
        raise PlanError(f"{model.name} has {kv} KV heads: {n} devices cannot hold whole "
                        "copies of them (the tensor-parallel size must be a multiple of the KV "
                        "heads when it exceeds them)")
    if n <= kv and kv % n:
        raise PlanError(f"{model.name} has {kv} KV heads, which do not divide over {n} "
                        "devices (each device's query heads would share a fraction of a KV "
                        "head)")


def gemm_shard(op: Op, split: str, n: int, model: DecoderSpec | None, act: float) -> tuple[
        float, float, float, float, float]:
    """(flops, bytes, stored bytes, weights (no biases), activation bytes) of one device's
    part of a GEMM."""
    weights_full = float(op.k_in * op.n_out)
    if split == "replicate" or n == 1:
        return (op.flops, op.bytes, op.stored_bytes, weights_full,
                op.bytes - op.weight_bytes)
    per_weight = op.weight_bytes / max(op.k_in * op.n_out, 1)
    if split == "M":
        if op.parts and model is not None:  # QKV: q columns n ways; K/V as heads allow
            widths = dict(op.parts)
            cols = widths["q"] / n + (widths["k"] + widths["v"]) * kv_share(model, n)
        else:
            cols = op.n_out / n
        frac = cols / op.n_out
        weights = op.k_in * cols
        activations = op.rows * op.k_in * act + op.rows * cols * act
    else:  # K: a slice of the input features, a full-width partial output
        frac = 1.0 / n
        weights = op.k_in * op.n_out / n
        activations = op.rows * op.k_in / n * act + op.rows * op.n_out * act
    stored = op.stored_bytes * frac
    return op.flops * frac, weights * per_weight + activations, stored, weights, activations


def tied_head_storage(graph: nx.DiGraph, stages: Sequence[Stage],
                       shards: dict[str, Shard]) -> None:
    """A tied LM head in another stage than the embedding must hold the table itself."""
    if "lm_head" not in graph or "embed" not in graph:
        return
    head = graph.nodes["lm_head"]["op"]
    if not head.extra.get("tied"):
        return
    stage_of = {name: s for s in stages for name in s.ops}
    if stage_of["lm_head"] is stage_of["embed"]:
        return
    stage = stage_of["lm_head"]
    table = graph.nodes["embed"]["op"].stored_bytes
    shard = shards["lm_head"]
    share = 1.0 if shard.split in ("none", "replicate", "batch") else 1.0 / stage.tp
    shards["lm_head"] = replace(shard, stored_bytes=shard.stored_bytes + table * share)
