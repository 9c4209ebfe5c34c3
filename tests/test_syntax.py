"""YAML 1.2 scalars and bounded parsing: what a file's text turns into, and what is refused."""

from __future__ import annotations

import pytest

from simtopo import ConfigError
from simtopo.cli import main
from simtopo.io.syntax import compose_yaml, construct_yaml, parse_json


def load(text: str):
    root = compose_yaml(text, "t.yaml")
    return construct_yaml(root, "t.yaml") if root is not None else None


@pytest.mark.parametrize(("text", "value"), [
    # YAML 1.2 core schema: only true/false are booleans
    ("true", True), ("False", False), ("yes", "yes"), ("no", "no"), ("on", "on"),
    ("off", "off"), ("y", "y"),
    # no sexagesimal numbers; decimal, octal and hexadecimal integers
    ("1:30", "1:30"), ("010", 10), ("0o17", 15), ("0x1F", 31), ("-7", -7),
    # floats with or without a dot in the mantissa
    ("1e9", 1e9), ("2.5E-3", 2.5e-3), (".5", 0.5), ("-.inf", float("-inf")),
    # strings that only start like numbers stay strings
    ("1e9B", "1e9B"), ("12GB/s", "12GB/s"), ("1_000", "1_000"), ("null", None),
])
def test_yaml_1_2_scalars(text, value):
    assert load(f"a: {text}\n") == {"a": value}


def test_a_huge_integer_is_refused_with_its_line():
    with pytest.raises(ConfigError) as info:
        load("a: 1\nb: 1" + "0" * 5000 + "\n")
    assert str(info.value) == "t.yaml:2: a number of more than 100 digits"
    assert load("b: 1" + "0" * 99 + "\n") == {"b": 10**99}


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deep_nesting_is_refused_before_composing(depth):
    with pytest.raises(ConfigError) as info:
        load("a: " + "[" * depth + "]" * depth + "\n")
    assert str(info.value) == "t.yaml:1: YAML nested more than 64 levels deep"


def test_64_levels_are_fine():
    # the top mapping is level 1; 63 lists inside it make 64
    value = load("a: " + "[" * 63 + "1" + "]" * 63 + "\n")["a"]
    for _ in range(63):
        value = value[0]
    assert value == 1


def test_a_large_flat_document_without_aliases_is_not_an_alias_bomb():
    text = "nodes:\n" + "".join(f"  - {{name: n{i}, flops: 1e9}}\n" for i in range(20_000))
    data = load(text)
    assert len(data["nodes"]) == 20_000 and data["nodes"][-1] == {"name": "n19999",
                                                                  "flops": 1e9}


def test_aliases_count_once_per_expansion():
    # 10 aliases of a 10-item list: 100 values once expanded, well within the limit
    text = "a: &x [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: [" + ", ".join(["*x"] * 10) + "]\n"
    data = load(text)
    assert data["b"] == [list(range(10))] * 10


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": 1, "a": 2}', "t.json: duplicate key 'a'"),
    ('{"a": 1' + "0" * 200 + "}", "t.json: a number of more than 100 digits"),
    ("[" * 65 + "]" * 65, "t.json: JSON nested more than 64 levels deep"),
    ("[" * 100_000 + "]" * 100_000, "t.json: JSON nested more than 64 levels deep"),
    ('{"a": 1e400}', None),  # a float beyond the range is inf: parsed, refused by the schema
])
def test_json_limits(text, message):
    if message is None:
        assert parse_json(text, "t.json") == {"a": float("inf")}
        return
    with pytest.raises(ConfigError) as info:
        parse_json(text, "t.json")
    assert str(info.value) == message


def test_a_deep_model_file_is_exit_2_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text("models:\n  x: " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["validate", "m.yaml"]) == 2
    assert capsys.readouterr().err.strip().endswith("m.yaml:2: YAML nested more than 64 levels "
                                                    "deep")


def test_a_document_of_more_values_than_the_limit_is_refused_before_composing(monkeypatch):
    from simtopo import limits

    monkeypatch.setattr(limits, "MAX_DOCUMENT_NODES", 1000)
    # a mapping, its key, the list and 997 items: 1000 values pass; one more does not
    assert len(load("a: [" + ", ".join(["1"] * 997) + "]\n")["a"]) == 997
    with pytest.raises(ConfigError) as info:
        load("a: [" + ", ".join(["1"] * 998) + "]\n")
    assert str(info.value) == ("t.yaml:1: more than 1,000 values in one document (a graph this "
                               "large belongs in an ONNX file)")
