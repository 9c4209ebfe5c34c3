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
    encoder: bool = False
    """An encoder (BERT): every token attends the whole sequence, K and V are activations of
    the pass (no KV cache), and a task head of ``head_outputs`` features at every position
    replaces the LM head. It runs ``workload.kind: inference`` passes of ``prompt`` tokens."""
    head_outputs: int = Field(default=2, ge=1, le=WIDTH)
    """An encoder's task head width (SQuAD question answering: 2, the start and end logits)."""
    experts: int = Field(default=0, ge=0, le=1 << 12)
    """Routed experts per mixture-of-experts layer (0: every FFN is dense)."""
    experts_per_token: int = Field(default=2, ge=1, le=1 << 12)
    """Experts each token is routed to (top-k)."""
    expert_ffn: int | None = Field(default=None, ge=1, le=WIDTH)
    """FFN size of one expert (default ``ffn``)."""
    shared_experts: int = Field(default=0, ge=0, le=1 << 12)
    """Experts every token passes through besides its routed ones (DeepSeek-MoE), run as one
    dense FFN of ``shared_experts x expert_ffn``."""
    dense_layers: int = Field(default=0, ge=0, le=limits.MAX_LAYERS)
    """Leading layers whose FFN is dense, of size ``ffn`` (DeepSeek-MoE's
    first_k_dense_replace)."""

    @model_validator(mode="after")
    def _heads_fit(self) -> DecoderSpec:
        kv = self.kv_heads if self.kv_heads is not None else self.heads
        if self.heads % kv:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({kv})")
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) is not a multiple of heads "
                             f"({self.heads}); give head_dim")
        return self

    @model_validator(mode="after")
    def _experts_fit(self) -> DecoderSpec:
        if self.experts and self.experts_per_token > self.experts:
            raise ValueError(f"experts_per_token ({self.experts_per_token}) exceeds the "
                             f"experts ({self.experts})")
        return self

    def is_moe(self, layer: int) -> bool:
        """Whether layer ``layer``'s FFN is a mixture of experts."""
        return self.experts > 0 and layer >= self.dense_layers

    @property
    def expert_width(self) -> int:
        """FFN size of one expert."""
        return self.expert_ffn if self.expert_ffn is not None else self.ffn

    def ffn_params(self, width: int) -> int:
        """Weights of one FFN of ``width`` (gated: three matrices; else two), with biases."""
        mlp_bias = self.linear_bias in ("all", "mlp")
        up_out = 2 * width if self.ffn_gated else width
        return (self.hidden * up_out + (up_out if mlp_bias else 0)
                + width * self.hidden + (self.hidden if mlp_bias else 0))

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
        """LM head weights that are not shared with the embedding (and its bias); an
        encoder's task head, with its bias."""
        if self.encoder:
            return self.hidden * self.head_outputs + self.head_outputs
        weights = 0 if self.tied_embeddings else self.hidden * self.vocab
        return weights + (self.vocab if self.lm_head_bias else 0)

    def moe_params(self) -> int:
        """Weights of one mixture-of-experts FFN beyond a dense one's: the router, every
        routed expert, the shared experts (0 for a dense model)."""
        if not self.experts:
            return 0
        shared = self.ffn_params(self.shared_experts * self.expert_width) \
            if self.shared_experts else 0
        return (self.hidden * self.experts + self.experts * self.ffn_params(self.expert_width)
                + shared)

    def parameters(self) -> int:
        """Total parameters, as the published checkpoints count them."""
        final_norm = self.hidden if self.norm == "rmsnorm" else 2 * self.hidden
        per_layer = sum(self.layer_params().values())
        moe = self.layers - min(self.dense_layers, self.layers) if self.experts else 0
        layers = self.layers * per_layer + moe * (self.moe_params() - self.ffn_params(self.ffn))
        return self.embedding_params() + layers + final_norm + self.lm_head_params()


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
    precision: Literal["fp32", "fp16", "bf16", "int8", "mxfp6"] = "fp16"
    """The precision the weights' sizes are written at (a workload at another one rescales
    them)."""
    activations: Literal["fp32", "fp16", "bf16", "int8"] | None = None
    """The precision the activations' sizes are written at: ``precision`` when it is one an
    activation can take, else fp16."""

    @property
    def activation_precision(self) -> str:
        """``activations``, or what it defaults to."""
        if self.activations is not None:
            return self.activations
        return self.precision if self.precision != "mxfp6" else "fp16"
    nodes: list[NodeSpec] = Field(min_length=1, max_length=limits.MAX_GRAPH_NODES)
