"""What ``--model`` names: a decoder (preset or YAML), a hand-written graph, or an ONNX file.

Decoders (and encoders) make a graph for any shape, generated vision models (ResNet-50) for
any batch; graph files and ONNX models are one fixed pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import networkx as nx

from ..errors import ConfigError
from ..io.documents import read_yaml
from ..io.paths import is_file
from ..spec.model import DecoderSpec
from .decoders import load_model, preset_names
from .graphfile import load_graph
from .opgraph import Precision, Shape, build_graph, decode_shape
from .precision import at_precision
from .vision import VISION, vision_graph


@dataclass(frozen=True)
class ModelRef:
    """A model by name: a decoder, or a fixed graph."""

    name: str
    decoder: DecoderSpec | None = None
    graph: nx.DiGraph | None = None
    vision: str | None = None
    """A generated vision model's name (:data:`simtopo.workload.vision.VISION`)."""

    def graph_for(self, shape: Shape | None = None,
                  precision: Precision | None = None) -> nx.DiGraph:
        """The op graph of one pass: a decoder's for ``shape``, a generated model's for its
        batch; a file's graph ignores the shape. Graphs take ``precision`` by rescaling their
        own. Shared, not to be changed."""
        if self.decoder is None:
            graph = (vision_graph(self.vision, shape.batch if shape else 1)
                     if self.vision is not None else self.graph)
            assert graph is not None
            return graph if precision is None else at_precision(graph, precision)
        return _decoder_graph(self.decoder, shape or decode_shape(1, 0, compiled_context=1),
                              precision)


@lru_cache(maxsize=64)
def _decoder_graph(decoder: DecoderSpec, shape: Shape, precision: Precision | None
                   ) -> nx.DiGraph:
    """A decoder's pass, built once per process for each shape and precision: variants,
    band runs and sweep points that run the same pass share it (read it, do not change it)."""
    return build_graph(decoder, shape, precision)


def resolve_model(name_or_path: str | Path, dims: dict[str, int] | None = None) -> ModelRef:
    """A preset name, a decoder or graph YAML file, or an ``.onnx`` file (whose symbolic
    dimensions take ``dims``)."""
    text = str(name_or_path)
    if text in VISION:
        return ModelRef(text, vision=text)
    if text in preset_names():
        decoder = load_model(text)
        return ModelRef(decoder.name, decoder=decoder)
    path = Path(text)
    if path.suffix == ".onnx":
        from .onnx_import import load_onnx

        return ModelRef(path.stem, graph=load_onnx(path, dims))
    if path.suffix in (".yaml", ".yml") and is_file(path):
        head = read_yaml(path).data
        if isinstance(head, dict) and "nodes" in head:
            graph = load_graph(path)
            return ModelRef(str(graph.graph.get("model", path.stem)), graph=graph)
        decoder = load_model(path)
        return ModelRef(decoder.name, decoder=decoder)
    raise ConfigError(f"unknown model {text!r} (expected a preset: "
                      f"{', '.join((*preset_names(), *VISION))}"
                      "; a YAML file with 'decoder:' or 'nodes:'; or an .onnx file)")
