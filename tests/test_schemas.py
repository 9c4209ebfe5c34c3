"""The JSON Schemas of the input files (docs/schemas/): current, true to every shipped file,
refusing what the loaders refuse, and naming the unit strings exactly as units.py reads them.

The validator here is a small one for the keywords the schemas use (the ``jsonschema`` package
is not a declared dependency); it refuses a schema with any other keyword, so that it can never
pass a document by ignoring a rule.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simtopo import units
from simtopo.analysis.sweep import SWEEPABLE, axes_from_block
from simtopo.cli import main
from simtopo.io.documents import read_json, read_yaml
from simtopo.spec import types
from simtopo.spec.experiment import ExperimentSpec
from simtopo.spec.schemas import KINDS, SWEEP_SECTIONS, json_schema, schema_text
from simtopo.spec.topology import TopologySpec

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"

SHIPPED = {
    "topology": ["topologies/*.yaml", "topologies/calibration/*.yaml"],
    "cards": ["topologies/cards/*.yaml"],
    "experiment": ["experiments/*.yaml"],
    "graph": ["experiments/mdp/*.yaml"],
    "mdp": ["experiments/mdp/*.json"],
    "baseline": ["reports/baselines/*.json"],
    "presets": ["simtopo/workload/presets/*.yaml"],
}
FILES = [(kind, path) for kind, globs in SHIPPED.items() for pattern in globs
         for path in sorted(ROOT.glob(pattern))]


# -- a validator for the keywords the schemas use ------------------------------------------
ANNOTATIONS = {"title", "description", "default", "$schema", "$defs", "then", "else"}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    return {"object": lambda: isinstance(value, dict), "array": lambda: isinstance(value, list),
            "string": lambda: isinstance(value, str), "boolean": lambda: isinstance(value, bool),
            "null": lambda: value is None,
            "number": lambda: isinstance(value, int | float) and not isinstance(value, bool),
            }[kind]()


def _same(a: Any, b: Any) -> bool:
    return (isinstance(a, bool) == isinstance(b, bool)) and a == b


BOUNDS = {"minimum": lambda v, b: v >= b, "maximum": lambda v, b: v <= b,
          "exclusiveMinimum": lambda v, b: v > b, "exclusiveMaximum": lambda v, b: v < b}


def errors(schema: dict[str, Any], value: Any, root: dict[str, Any], at: str = "") -> list[str]:
    """What is wrong with ``value`` under ``schema`` (empty: valid)."""
    out: list[str] = []
    for key, rule in schema.items():
        if key in ANNOTATIONS:
            continue
        if key == "$ref":
            out += errors(root["$defs"][rule.removeprefix("#/$defs/")], value, root, at)
        elif key == "type":
            if not _is(value, rule):
                out.append(f"{at}: expected {rule} (got {value!r})")
        elif key == "enum":
            if not any(_same(value, option) for option in rule):
                out.append(f"{at}: expected one of {rule} (got {value!r})")
        elif key == "anyOf":
            if all(errors(option, value, root, at) for option in rule):
                out.append(f"{at}: matches no option (got {value!r})")
        elif key == "if":
            branch = schema.get("else" if errors(rule, value, root, at) else "then", {})
            out += errors(branch, value, root, at)
        elif key in BOUNDS:
            if _is(value, "number") and not BOUNDS[key](value, rule):
                out.append(f"{at}: {key} {rule} (got {value!r})")
        elif key == "pattern":
            if isinstance(value, str) and not re.search(rule, value):
                out.append(f"{at}: does not match {rule} (got {value!r})")
        elif key in ("minLength", "minItems", "minProperties"):
            if isinstance(value, str | list | dict) and len(value) < rule:
                out.append(f"{at}: {key} {rule}")
        elif key in ("maxItems", "maxProperties"):
            if isinstance(value, list | dict) and len(value) > rule:
                out.append(f"{at}: {key} {rule}")
        elif key == "items":
            for i, item in enumerate(value if isinstance(value, list) else []):
                out += errors(rule, item, root, f"{at}[{i}]")
        elif key == "required":
            out += [f"{at}: missing {name!r}" for name in rule
                    if isinstance(value, dict) and name not in value]
        elif key == "properties":
            for name, item in (value.items() if isinstance(value, dict) else ()):
                if name in rule:
                    out += errors(rule[name], item, root, f"{at}.{name}")
        elif key == "additionalProperties":
            known = schema.get("properties", {})
            for name, item in (value.items() if isinstance(value, dict) else ()):
                if name in known:
                    continue
                if rule is False:
                    out.append(f"{at}: unknown key {name!r}")
                elif isinstance(rule, dict):
                    out += errors(rule, item, root, f"{at}.{name}")
        elif key == "propertyNames":
            for name in value if isinstance(value, dict) else ():
                out += errors(rule, name, root, f"{at} key {name!r}")
        else:
            raise AssertionError(f"this validator does not know the keyword {key!r}")
    return out


def valid(kind: str, data: Any) -> list[str]:
    schema = json_schema(kind)
    return errors(schema, data, schema)


def _data(path: Path) -> Any:
    return (read_json(path) if path.suffix == ".json" else read_yaml(path)).data


# -- the committed schemas -----------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_the_committed_schema_is_current(kind):
    path = SCHEMAS / f"{kind}.schema.json"
    assert path.is_file() and path.read_text() == schema_text(kind), (
        f"{path.relative_to(ROOT)} is stale: run "
        f"`simtopo schema {kind} -o docs/schemas/{kind}.schema.json`")


def test_there_is_one_committed_schema_per_kind():
    assert sorted(p.name for p in SCHEMAS.iterdir()) == sorted(f"{k}.schema.json" for k in KINDS)


def test_the_command_prints_and_writes_a_schema(tmp_path, capsys):
    assert main(["schema", "graph"]) == 0
    out = capsys.readouterr().out
    assert out == schema_text("graph") and json.loads(out)["$schema"].endswith("2020-12/schema")
    target = tmp_path / "graph.schema.json"
    assert main(["schema", "graph", "-o", str(target)]) == 0
    assert target.read_text() == out
    assert main(["schema", "nope"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


# -- shipped files -------------------------------------------------------------------------
@pytest.mark.parametrize("kind,path", FILES, ids=lambda x: str(x.relative_to(ROOT))
                         if isinstance(x, Path) else x)
def test_every_shipped_file_is_valid_under_its_schema(kind, path):
    assert valid(kind, _data(path)) == []


@pytest.mark.parametrize("kind,path", [(k, p) for k, p in FILES if p.suffix == ".yaml"],
                         ids=lambda x: str(x.relative_to(ROOT)) if isinstance(x, Path) else x)
def test_every_shipped_yaml_file_names_its_schema_first(kind, path):
    target = os.path.relpath(SCHEMAS / f"{kind}.schema.json", path.parent)
    first = path.read_text().split("\n", 1)[0]
    assert first == f"# yaml-language-server: $schema={target}"
    assert (path.parent / target).is_file()


def test_every_kind_but_the_decoder_file_has_shipped_files():
    assert {kind for kind, _ in FILES} == set(KINDS) - {"model"}


# -- what the schemas refuse and accept ----------------------------------------------------
TOPOLOGY = {"name": "t", "host": {"sockets": [{"id": "cpu0", "cores": 8, "memory": "64GB",
                                              "memory_bw": "100GB/s"}]}}


def _with(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``data`` with the key ``path`` (``a/b/0/c``: sweep keys have dots) set."""
    out = json.loads(json.dumps(data))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
    node = out
    for part in parents:
        node = node[part]
    node[last] = value
    return out


@pytest.mark.parametrize("path,value", [
    ("nmae", "t"),                                  # an unknown key
    ("host/sockets/0/cores", "many"),               # a wrong type
    ("host/sockets/0/cores", True),                 # a boolean is no number
    ("host/sockets/0/cores", 0),                    # below the limit
    ("host/sockets/0/memory_bw", "100GB"),          # a size where a bandwidth belongs
    ("host/sockets/0/memory_bw", 1.0),              # below 1 MB/s
    ("host/sockets/0/memory", "32 GiBs"),           # no such unit
    ("name", "card0.soc1"),                         # dots are for generated ids
    ("card_types", {"bad id": {}}),                 # a key that is no id
    ("switches", [{"id": "sw0", "parent": "cpu0", "uplink": {"gen": 4, "lanes": 12}}]),
])
def test_the_topology_schema_refuses_what_the_loader_refuses(path, value):
    data = _with(TOPOLOGY, path, value)
    assert valid("topology", TOPOLOGY) == []
    assert valid("topology", data) != []
    with pytest.raises(ValueError):
        TopologySpec.model_validate(data)


def test_a_topology_that_extends_another_gives_only_what_it_changes():
    assert valid("topology", {"extends": "base.yaml", "host": {"handoff_latency": "2us"},
                              "card_types": {"x": {"soc": {"dram": "8GB"}}}}) == []
    assert valid("topology", {"host": {"handoff_latency": "2us"}}) != []   # no name, sockets
    assert valid("topology", {"extends": "base.yaml", "hosts": {}}) != []
    # lists replace: their items stay whole
    assert valid("topology", {"extends": "b.yaml", "switches": [{"id": "sw0"}]}) != []
    assert valid("cards", {"include": ["other.yaml"], "card_types": {}}) != []
    assert valid("cards", {"extends": "other.yaml", "card_types": {}}) == []


EXPERIMENT = {"name": "e", "topology": "t.yaml", "model": "llama-2-7b",
              "variants": [{"name": "a", "plan": {"tp": 2}, "load": {"chunks": 4}},
                           {"name": "b", "transfer": {"chunk": "1MiB"}}],
              "transfer": {"host_allreduce": "ring"},
              "ci": {"workload": {"generate": 8}},
              "sweep": {"variants": ["a"], "plan.tp": [1, 2], "workload.batch": 4,
                        "model": ["llama-2-7b", "gpt-j-6b"], "transfer.dma_setup": "2us"}}


def test_the_experiment_schema_knows_variants_ci_and_sweep():
    assert valid("experiment", EXPERIMENT) == []
    ExperimentSpec.model_validate(EXPERIMENT)
    axes_from_block(EXPERIMENT["sweep"], "e.yaml")
    for path, value in [("variants/0/plan/tpp", 2), ("variants/1/transfer/chunk", "1MB/s"),
                        ("ci/workload/generat", 8), ("ci/plan", {"tp": 0}),
                        ("sweep/plan.tpp", [1]), ("sweep/plan.tp", []),
                        ("sweep/workload", [1]), ("transfer/chunk", 1), ("variants/0/name", "")]:
        assert valid("experiment", _with(EXPERIMENT, path, value)) != [], path


def test_a_sweep_may_set_what_the_sweep_module_allows():
    assert set(SWEEP_SECTIONS) == set(SWEEPABLE) - {"model", "topology"}


def test_a_decoder_file_and_the_other_kinds():
    presets = _data(ROOT / "simtopo" / "workload" / "presets" / "models.yaml")
    decoder = next(iter(presets.values()))
    assert valid("model", {"decoder": decoder}) == []
    assert valid("model", {"decoder": {**decoder, "layerz": 2}}) != []
    assert valid("model", {"name": "x"}) != []
    assert valid("graph", {"nodes": [{"name": "a", "flops": 1e6, "bytes_read": "4MB"}]}) == []
    assert valid("graph", {"nodes": []}) != []
    assert valid("mdp", {"partitions": [{"name": "p", "devices": [{"deviceId": 0,
                                                                   "numCores": 0}]}]}) != []
    assert valid("baseline", {"baseline": {"experiment": "e.yaml"}, "summary": {},
                              "extra": 1}) != []


# -- unit strings --------------------------------------------------------------------------
PARSERS = [(types.SIZE_PATTERN, units.parse_bytes), (types.BANDWIDTH_PATTERN,
           units.parse_bandwidth), (types.DURATION_PATTERN, units.parse_time),
           (types.FLOPS_PATTERN, units.parse_flops)]


def _reads(parse: Any, text: str) -> bool:
    try:
        parse(text)
    except ValueError as err:
        return "finite" in str(err)  # well formed, too large: the parser's range, not syntax
    return True


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789.eE+-kKMGTPiBbps/FLOSmunhµ \t\n\x1c\xa0٣x", max_size=10))
def test_the_unit_patterns_are_exactly_what_units_py_reads(text):
    for pattern, parse in PARSERS:
        matched, reads = re.search(pattern, text) is not None, _reads(parse, text)
        assert matched or not reads, (pattern, text)       # never refuses what simtopo reads
        assert matched == reads or not text.isascii(), (pattern, text)  # exact in ASCII


@pytest.mark.parametrize("text", ["25GB/s", "100Gb/s", " 1.5e3 MBps ", "2GiB", "90us", "1.5µs",
                                  "3min", "72.5TFLOPS", "870TOPS", "4.5TFLOP/s", ".5KiB", "7"])
def test_the_usual_unit_strings_match(text):
    assert any(re.search(pattern, text) for pattern, _ in PARSERS)
