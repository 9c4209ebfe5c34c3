"""Model schemas: transformer decoders and hand-written op graphs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .. import limits
from .types import SizeOrZero, Spec

WIDTH = 1 << 24
"""Largest width of a decoder (hidden, FFN, vocabulary, heads x head size): 16 Mi."""


class DecoderSpec(Spec):
    """A decoder-only transformer."""

    name: str = "decoder"
    source: str = ""
    hidden: int = Field(ge=1, le=WIDTH)
    layers: int = Field(ge=1, le=limits.MAX_LAYERS)
    heads: int = Field(ge=1, le=1 << 16)
    kv_heads: int | None = Field(default=None, ge=1, le=1 << 16)
    head_dim: int | None = Field(default=None, ge=1, le=1 << 16)
    ffn: int = Field(ge=1, le=WIDTH)
    ffn_gated: bool = True
    vocab: int = Field(ge=1, le=WIDTH)
    tied_embeddings: bool = False
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    linear_bias: Literal["none", "mlp", "all"] = "none"
    lm_head_bias: bool = False
    parallel_block: bool = False
    learned_positions: int = Field(default=0, ge=0, le=limits.MAX_TOKENS)
    sliding_window: int | None = Field(default=None, ge=1, le=limits.MAX_TOKENS)
    """Each query attends at most this many most recent positions, and the KV cache keeps
    that many (a rolling buffer); ``None``: the whole context (Mistral 7B v0.1: 4096)."""

    @model_validator(mode="after")
    def _heads_fit(self) -> DecoderSpec:
        kv = self.kv_heads if self.kv_heads is not None else self.heads
        if self.heads % kv:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({kv})")
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) is not a multiple of heads "
                             f"({self.heads}); give head_dim")
        return self

    @property
    def n_kv(self) -> int:
        """Key/value heads (equal to the query heads without grouped-query attention)."""
        return self.kv_heads if self.kv_heads is not None else self.heads

    @property
    def d_head(self) -> int:
        """Size of one attention head."""
        return self.head_dim if self.head_dim is not None else self.hidden // self.heads

    @property
    def q_width(self) -> int:
        """Output features of the query projection: heads x head size."""
        return self.heads * self.d_head

    @property
    def kv_width(self) -> int:
        """Output features of the key (or value) projection: KV heads x head size."""
        return self.n_kv * self.d_head

    def layer_params(self) -> dict[str, int]:
        """Parameters of one layer by op: its GEMM weights and biases, and its norms."""
        h, f = self.hidden, self.ffn
        attn_bias = self.linear_bias == "all"
        mlp_bias = self.linear_bias in ("all", "mlp")
        qkv_out = self.q_width + 2 * self.kv_width
        up_out = 2 * f if self.ffn_gated else f
        norm = h if self.norm == "rmsnorm" else 2 * h
        params = {
            "attn.qkv": h * qkv_out + (qkv_out if attn_bias else 0),
            "attn.o": self.q_width * h + (h if attn_bias else 0),
            "mlp.up": h * up_out + (up_out if mlp_bias else 0),
            "mlp.down": f * h + (h if mlp_bias else 0),
            "attn_norm": norm,
        }
        if not self.parallel_block:
            params["mlp_norm"] = norm
        return params

    def embedding_params(self) -> int:
        """Token embedding table (plus a learned position table, if any)."""
        return self.vocab * self.hidden + self.learned_positions * self.hidden

    def lm_head_params(self) -> int:
        """LM head weights that are not shared with the embedding (and its bias)."""
        weights = 0 if self.tied_embeddings else self.hidden * self.vocab
        return weights + (self.vocab if self.lm_head_bias else 0)

    def parameters(self) -> int:
        """Total parameters, as the published checkpoints count them."""
        final_norm = self.hidden if self.norm == "rmsnorm" else 2 * self.hidden
        return (self.embedding_params() + self.layers * sum(self.layer_params().values())
                + final_norm + self.lm_head_params())


class NodeSpec(Spec):
    """One op of a hand-written graph."""

    name: str = Field(min_length=1)
    kind: Literal["gemm", "lm_head", "attention", "norm", "elementwise", "embedding", "conv",
                  "other"] = "other"
    flops: float = Field(default=0.0, ge=0, le=1e21, allow_inf_nan=False)
    bytes_read: SizeOrZero = 0.0
    bytes_written: SizeOrZero = 0.0
    weights: SizeOrZero = 0.0
    k_in: int = Field(default=0, ge=0, le=WIDTH)
    n_out: int = Field(default=0, ge=0, le=WIDTH)
    rows: int = Field(default=0, ge=0, le=limits.MAX_TOKENS * limits.MAX_BATCH)
    inputs: list[str] = Field(default_factory=list, max_length=1024)


class GraphSpec(Spec):
    """A hand-written op graph."""

    name: str = "graph"
    description: str = ""
    batch: int = Field(default=1, ge=1, le=limits.MAX_BATCH)
    """Samples one pass of the graph processes (its ops' sizes are for this many): a
    workload's batch is this times its micro-batches."""
    nodes: list[NodeSpec] = Field(min_length=1, max_length=limits.MAX_GRAPH_NODES)
