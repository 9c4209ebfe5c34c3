"""Transformer decoders: the architecture numbers, presets, and parameter counts.

A :class:`DecoderSpec` says everything the op graph needs: sizes (hidden, layers, heads, KV
heads, head size, FFN size, vocabulary), the FFN's gating (three matrices, SwiGLU) or not
(two), tied embeddings, the norm, which linears carry biases, GPT-J's parallel block, and a
learned position table. Presets live in ``simtopo/presets/models.yaml`` with their sources.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .errors import ConfigError
from .io import Document, is_file, read_yaml, validate_document
from .spec import Spec

PRESETS = Path(__file__).resolve().parent / "presets" / "models.yaml"

Positive = Field(ge=1)


class DecoderSpec(Spec):
    """A decoder-only transformer."""

    name: str = "decoder"
    source: str = ""
    hidden: int = Positive
    layers: int = Positive
    heads: int = Positive
    kv_heads: int | None = Field(default=None, ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    ffn: int = Positive
    ffn_gated: bool = True
    vocab: int = Positive
    tied_embeddings: bool = False
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    linear_bias: Literal["none", "mlp", "all"] = "none"
    lm_head_bias: bool = False
    parallel_block: bool = False
    learned_positions: int = Field(default=0, ge=0)

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


@cache
def _presets() -> dict[str, DecoderSpec]:
    doc = read_yaml(PRESETS)
    return {name: validate_document(doc, DecoderSpec, (name,)).model_copy(
        update={"name": name}) for name in doc.data}


def preset_names() -> tuple[str, ...]:
    """Names of the built-in decoders."""
    return tuple(_presets())


def load_model(name_or_path: str | Path) -> DecoderSpec:
    """A preset by name, or a YAML file holding one ``decoder:`` mapping."""
    presets = _presets()
    if str(name_or_path) in presets:
        return presets[str(name_or_path)]
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") or not is_file(path):
        raise ConfigError(f"unknown model {str(name_or_path)!r} (expected a preset: "
                          f"{', '.join(presets)}, or a YAML file with a 'decoder:' mapping)")
    doc = read_yaml(path)
    if not isinstance(doc.data, dict) or "decoder" not in doc.data:
        raise doc.error("expected a mapping with a 'decoder:' key")
    spec = validate_document(doc, DecoderSpec, ("decoder",))
    return spec if spec.name != "decoder" else spec.model_copy(update={"name": path.stem})


def decoder_from_dict(data: dict[str, object], name: str = "<dict>") -> DecoderSpec:
    """Validate a decoder given as a Python mapping."""
    return validate_document(Document(data=data, file=name), DecoderSpec)
