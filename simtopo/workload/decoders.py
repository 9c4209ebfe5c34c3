"""Transformer decoders: the architecture numbers, presets, and parameter counts.

A :class:`DecoderSpec` says everything the op graph needs: sizes (hidden, layers, heads, KV
heads, head size, FFN size, vocabulary), the FFN's gating (three matrices, SwiGLU) or not
(two), tied embeddings, the norm, which linears carry biases, GPT-J's parallel block, and a
learned position table. Presets live in ``simtopo/workload/presets/models.yaml`` with their sources.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ..errors import ConfigError
from ..io.documents import Document, read_yaml, validate_document
from ..io.paths import is_file
from ..spec.model import DecoderSpec

PRESETS = Path(__file__).resolve().parent / "presets" / "models.yaml"


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
