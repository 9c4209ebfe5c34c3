"""JSON Schemas (draft 2020-12) of the input files, made from the pydantic models, for editors.

Each kind is one file format the loaders accept (``docs/schemas/<kind>.schema.json``). The
models describe a file once its loader has resolved it; what a loader handles itself is added
here, in one place: ``include`` and ``extends`` (a topology or card file that extends another
gives only what it changes: mappings merge key by key, so nothing in them is required), an
experiment's ``transfer`` section, its variants' overrides, its ``ci:`` and ``sweep:`` blocks.

``KINDS`` is plain data so that ``simtopo --help`` lists the kinds without importing pydantic;
the models are imported when a schema is made.
"""

from __future__ import annotations

import copy
from typing import Any

KINDS = {
    "topology": "a topology file (topologies/*.yaml)",
    "cards": "a card library (topologies/cards/*.yaml)",
    "experiment": "an experiment file (experiments/*.yaml)",
    "model": "a decoder model file (one 'decoder:' mapping)",
    "presets": "named decoders (simtopo/workload/presets/models.yaml)",
    "graph": "a hand-written op graph (a 'nodes:' list)",
    "mdp": "a Qualcomm MDP partition config (.json)",
    "baseline": "a baseline file (reports/baselines/*.json)",
}
"""Schema kinds and the files they describe."""

DRAFT = "https://json-schema.org/draft/2020-12/schema"

SWEEP_SECTIONS = {"workload": "WorkloadSpec", "plan": "PlanSpec", "transfer": "TransferSpec",
                  "load": "LoadSpec", "serving": "ServingSpec"}
"""The sections whose keys a ``sweep:`` block may set as ``section.key`` (besides ``model`` and
``topology``, as :mod:`simtopo.analysis.sweep` allows), and their models."""


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def _defs(*models: Any) -> dict[str, Any]:
    """The ``$defs`` of ``models`` and of every model they use, as pydantic writes them."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema([(model, "validation") for model in models])
    return _plain_keys(top["$defs"])


def _plain_keys(node: Any) -> Any:
    """A mapping with constrained keys as ``additionalProperties`` and ``propertyNames``
    (pydantic writes ``patternProperties``, which lets a key that misses the pattern hold
    anything)."""
    if isinstance(node, list):
        return [_plain_keys(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _plain_keys(value) for key, value in node.items()}
    if "patternProperties" in out and len(out["patternProperties"]) == 1:
        (pattern, value), = out.pop("patternProperties").items()
        out["additionalProperties"] = value
        out["propertyNames"] = {**out.get("propertyNames", {}), "pattern": pattern}
    return out


def _patch(defs: dict[str, Any], name: str) -> str:
    """A def for what deep-merges onto a ``name`` (nothing required, mappings may be empty),
    added to ``defs``; returns its name (``name`` itself when that accepts every patch)."""
    patched = f"{name}Patch"
    if patched not in defs:
        schema = copy.deepcopy(defs[name])
        schema.pop("required", None)
        schema["properties"] = {key: _patch_node(defs, value)
                                for key, value in schema.get("properties", {}).items()}
        if schema == defs[name]:
            return name
        schema["title"] = f"{defs[name].get('title', name)} (a patch)"
        defs[patched] = schema
    return patched


def _patch_node(defs: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A property's schema for a patch: models become their patches, mappings merge (lists
    replace: their items stay whole)."""
    out = dict(node)
    if "$ref" in out:
        out["$ref"] = _ref(_patch(defs, out["$ref"].rsplit("/", 1)[1]))["$ref"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in out:
            out[key] = [_patch_node(defs, option) for option in out[key]]
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _patch_node(defs, out["additionalProperties"])
        out.pop("minProperties", None)
    return out


def _with_includes(defs: dict[str, Any], name: str) -> dict[str, Any]:
    """``include`` and ``extends`` added to ``name``; the root: the patch when the file
    extends another, the whole model otherwise."""
    defs[name]["properties"].update({
        "include": {"type": "array", "items": {"type": "string"},
                    "description": "files (card libraries or topologies) whose card types "
                                   "this file uses, relative to this file"},
        "extends": {"type": "string",
                    "description": "a file this one deep-merges onto, relative to this file: "
                                   "mappings merge key by key, lists and scalars replace"},
    })
    return {"if": {"required": ["extends"]}, "then": _ref(_patch(defs, name)),
            "else": _ref(name)}


def _topology() -> tuple[dict[str, Any], dict[str, Any]]:
    from .topology import TopologySpec

    defs = _defs(TopologySpec)
    return defs, _with_includes(defs, "TopologySpec")


def _cards() -> tuple[dict[str, Any], dict[str, Any]]:
    from .topology import CardLibrarySpec

    defs = _defs(CardLibrarySpec)
    return defs, _with_includes(defs, "CardLibrarySpec")


def _values(schema: dict[str, Any]) -> dict[str, Any]:
    """A swept key's values: one value, or a non-empty list of them."""
    one = {k: v for k, v in schema.items() if k not in ("default", "title")}
    return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}


def _sweep(defs: dict[str, Any]) -> dict[str, Any]:
    """The ``sweep:`` block: dotted keys to values (see :mod:`simtopo.analysis.sweep`)."""
    keys: dict[str, Any] = {
        "variants": {"type": "array", "items": {"type": "string"},
                     "description": "the variants to sweep (default: all)"},
        "model": _values({"type": "string"}), "topology": _values({"type": "string"})}
    for section, model in SWEEP_SECTIONS.items():
        for key, schema in defs[model]["properties"].items():
            keys[f"{section}.{key}"] = _values(_patch_node(defs, schema))
            nested = schema.get("$ref", "").removeprefix("#/$defs/")
            if section == "serving" and nested in defs:  # serving.arrivals.rate, ...
                for sub, inner in defs[nested].get("properties", {}).items():
                    keys[f"{section}.{key}.{sub}"] = _values(_patch_node(defs, inner))
    return {"type": "object", "properties": keys, "additionalProperties": False,
            "description": "keys to sweep ('plan.tp', 'workload.batch', 'model', ...), each "
                           "with a value or a list of values; 'variants' picks variants"}


def _experiment() -> tuple[dict[str, Any], dict[str, Any]]:
    from .experiment import ExperimentSpec
    from .topology import TransferSpec

    defs = _defs(ExperimentSpec, TransferSpec)
    spec = defs["ExperimentSpec"]["properties"]
    spec["transfer"] = {**_ref("TransferSpec"), "description": "transfer settings over the "
                        "topology's (see TransferSpec)"}
    variant = defs["VariantFields"]["properties"]
    for key, model in SWEEP_SECTIONS.items():
        variant[key] = {**_ref(_patch(defs, model)),
                        "description": f"deep-merged onto the experiment's {key}"}
    spec["ci"] = {**_ref(_patch(defs, "ExperimentSpec")),
                  "description": "the reduced size CI runs (--ci), deep-merged onto every "
                                 "variant"}
    spec["sweep"] = _sweep(defs)
    return defs, _ref("ExperimentSpec")


def _model() -> tuple[dict[str, Any], dict[str, Any]]:
    from .model import DecoderSpec

    # the loader reads 'decoder' alone: other top-level keys are ignored, so allowed
    return _defs(DecoderSpec), {"type": "object", "properties": {"decoder": _ref("DecoderSpec")},
                                "required": ["decoder"]}


def _presets() -> tuple[dict[str, Any], dict[str, Any]]:
    from .model import DecoderSpec

    return _defs(DecoderSpec), {"type": "object", "additionalProperties": _ref("DecoderSpec")}


def _graph() -> tuple[dict[str, Any], dict[str, Any]]:
    from .model import GraphSpec

    return _defs(GraphSpec), _ref("GraphSpec")


def _mdp() -> tuple[dict[str, Any], dict[str, Any]]:
    from .mdp import MdpConfig

    return _defs(MdpConfig), _ref("MdpConfig")


def _baseline() -> tuple[dict[str, Any], dict[str, Any]]:
    from .baseline import BaselineFile

    return _defs(BaselineFile), _ref("BaselineFile")


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind of input file (a key of :data:`KINDS`)."""
    builders = {"topology": _topology, "cards": _cards, "experiment": _experiment,
                "model": _model, "presets": _presets, "graph": _graph, "mdp": _mdp,
                "baseline": _baseline}
    if kind not in builders:
        raise ValueError(f"unknown schema kind {kind!r} (expected one of: {', '.join(KINDS)})")
    defs, root = builders[kind]()
    return {"$schema": DRAFT, "title": f"simtopo {kind}",
            "description": f"{KINDS[kind]}; made by 'simtopo schema {kind}' from simtopo.spec",
            **root, "$defs": defs}


def schema_text(kind: str) -> str:
    """:func:`json_schema` as the committed files hold it: indented, keys sorted."""
    import json

    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"
