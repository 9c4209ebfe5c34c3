"""Fuzzing the loaders: mutated copies of the shipped files never raise anything but the
project's own errors.

Every shipped input (topologies, card libraries, experiments, a graph model, MDP configs,
baselines) is parsed, mutated at one random place (a key dropped, a value of the wrong type,
negative, huge, NaN or infinite, an empty list, a list item duplicated (duplicate ids), an id
no file declares, a deep nesting, or at the byte level: non-UTF-8 bytes, a cut), written next
to the originals (so relative includes resolve) and loaded. The loader may accept it or raise
a :class:`~simtopo.errors.SimtopoError`; anything else fails the test, and the CLI must turn
the same input into exit 0 or 2. CI runs about 5,500 inputs through the loaders and
``simtopo validate`` and 100 through ``simtopo run``; ``SIMTOPO_FUZZ_EXAMPLES=100000`` runs
more (README).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simtopo.analysis.baselines import read_baseline
from simtopo.cli import main
from simtopo.errors import SimtopoError
from simtopo.plan.mdp import read_mdp
from simtopo.spec.experiment import load_experiment
from simtopo.topology.files import load_card_library, load_topology
from simtopo.workload.graphfile import load_graph

from .conftest import ROOT

SCALE = int(os.environ.get("SIMTOPO_FUZZ_EXAMPLES", "0")) or None
"""Examples per loader kind (default below, about 5,500 in all)."""


def examples(default: int) -> int:
    return SCALE or default


def fuzz(count: int) -> settings:
    """Reproducible settings (no example database, a fixed seed) for ``count`` inputs."""
    return settings(max_examples=examples(count), deadline=None, database=None,
                    derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the inputs, so that mutated files sit beside what they include."""
    root = tmp_path_factory.mktemp("fuzz")
    for folder in ("topologies", "experiments"):
        shutil.copytree(ROOT / folder, root / folder)
    (root / "reports").mkdir()
    shutil.copytree(ROOT / "reports" / "baselines", root / "reports" / "baselines")
    return root


KINDS: dict[str, tuple[list[Path], Any]] = {
    "topology": ([p for p in sorted((ROOT / "topologies").glob("*.yaml"))], load_topology),
    "cards": (sorted((ROOT / "topologies" / "cards").glob("*.yaml")), load_card_library),
    "experiment": (sorted((ROOT / "experiments").glob("*.yaml")), load_experiment),
    "graph": ([ROOT / "experiments" / "mdp" / "pipelined-graph.yaml"], load_graph),
    "mdp": (sorted((ROOT / "experiments" / "mdp").glob("*.json")), read_mdp),
    "baseline": (sorted((ROOT / "reports" / "baselines").glob("*.json")), read_baseline),
}

WEIRD = st.sampled_from([None, True, -1, 0, -1e9, 1e308, math.nan, math.inf, -math.inf, "",
                         "nope", "card99.soc9", "sw9", "-5GB/s", "1e999GB", [], {}, [[[]]],
                         {"x": 1}, "x" * 300, 2**70, 0.5])


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn, files: list[Path]) -> tuple[Path, bytes]:
    """A file and mutated contents for it."""
    path = draw(st.sampled_from(files))
    raw = path.read_bytes()
    how = draw(st.sampled_from(["drop", "replace", "replace", "negate", "duplicate", "empty",
                                "nest", "bytes", "cut"]))
    if how == "bytes":
        at = draw(st.integers(0, len(raw)))
        return path, raw[:at] + draw(st.sampled_from([b"\xff\xfe", b"\x00", b"\xc3("])) + \
            raw[at:]
    if how == "cut":
        return path, raw[:draw(st.integers(0, len(raw)))]
    is_json = path.suffix == ".json"
    data = json.loads(raw) if is_json else yaml.safe_load(raw)
    places = _paths(data)
    place = draw(st.sampled_from(places))
    parent, key = (place[:-1], place[-1]) if place else ((), None)
    container = _get(data, parent)
    if key is None:
        data = draw(WEIRD)
    elif how == "drop" and isinstance(container, dict | list):
        del container[key]
    elif how == "negate" and isinstance(container[key], int | float) and \
            not isinstance(container[key], bool):
        container[key] = -container[key] or -1
    elif how == "duplicate" and isinstance(container, list):
        container.append(json.loads(json.dumps(container[key])))
    elif how == "empty":
        container[key] = [] if isinstance(container[key], list) else {}
    elif how == "nest":
        value = container[key]
        for _ in range(draw(st.integers(1, 60))):
            value = [value]
        container[key] = value
    else:
        container[key] = draw(WEIRD)
    text = json.dumps(data) if is_json else yaml.safe_dump(data, allow_unicode=True)
    return path, text.encode("utf-8")


def _write(tree: Path, path: Path, content: bytes) -> Path:
    target = tree / path.relative_to(ROOT)
    fuzzed = target.with_name(f"fuzzed-{target.name}")
    fuzzed.write_bytes(content)
    return fuzzed


def _load(kind: str, loader: Any, path: Path) -> None:
    try:
        result = loader(path)
        if kind == "experiment":  # resolving a variant also builds its topology and model
            from simtopo.workload.modelref import resolve_model

            for v in result.variants[:2]:
                load_topology(v.topology)
                resolve_model(v.model)
    except SimtopoError:
        pass


@pytest.mark.parametrize("kind", list(KINDS))
def test_loaders_raise_only_the_projects_errors(kind, tree):
    files, loader = KINDS[kind]
    count = {"topology": 1500, "cards": 500, "experiment": 1500, "graph": 400, "mdp": 600,
             "baseline": 500}[kind]

    seen: list[int] = []

    @fuzz(count)
    @given(mutated(files))
    def run(case: tuple[Path, bytes]) -> None:
        path, content = case
        _load(kind, loader, _write(tree, path, content))
        seen.append(1)

    run()
    assert len(seen) >= min(count, examples(count)) * 0.9  # Hypothesis ran (about) them all


def test_validate_exits_0_or_2_on_mutated_topologies(tree, capsys):
    files = KINDS["topology"][0] + KINDS["cards"][0]

    @fuzz(500)
    @given(mutated(files))
    def run(case: tuple[Path, bytes]) -> None:
        path, content = case
        assert main(["validate", str(_write(tree, path, content))]) in (0, 2)
        err = capsys.readouterr().err
        assert "Traceback" not in err

    run()


SMALL = {"name": "small", "topology": "../topologies/ultra4-direct.yaml", "model": "llama-2-7b",
         "workload": {"batch": 1, "prompt": 32, "generate": 2, "context": 64},
         "plan": {"tp": 2, "connection": "p2p"},
         "variants": [{"name": "a"}, {"name": "b", "plan": {"connection": "host"}}]}


def test_run_exits_0_or_2_on_mutated_small_experiments(tree, capsys):
    small = tree / "experiments" / "small.yaml"
    small.write_text(yaml.safe_dump(SMALL))
    codes: list[int] = []

    @fuzz(100)
    @given(mutated([small]))
    def run(case: tuple[Path, bytes]) -> None:
        path, content = case
        target = path.with_name("fuzzed-small.yaml")
        target.write_bytes(content)
        code = main(["run", str(target), "--no-report", "-q"])
        err = capsys.readouterr().err
        assert code in (0, 2), err
        assert "Traceback" not in err
        codes.append(code)

    run()
    # both kinds of outcome were exercised: mutations that still run, and refused ones
    assert codes.count(0) >= 5 and codes.count(2) >= 5, (codes.count(0), codes.count(2))


def test_onnx_import_raises_only_the_projects_errors(tmp_path):
    """Byte-level mutations of a small ONNX model (the ONNX loader is protobuf, not YAML)."""
    from simtopo.workload.modelref import resolve_model

    from .test_onnx import mlp

    original = Path(mlp(tmp_path)).read_bytes()
    target = tmp_path / "fuzzed.onnx"
    loaded = []

    @fuzz(300)
    @given(st.integers(0, len(original)), st.binary(min_size=0, max_size=8),
           st.sampled_from(["insert", "overwrite", "cut"]))
    def run(at: int, junk: bytes, how: str) -> None:
        if how == "insert":
            content = original[:at] + junk + original[at:]
        elif how == "overwrite":
            content = original[:at] + junk + original[at + len(junk):]
        else:
            content = original[:at]
        target.write_bytes(content)
        try:
            resolve_model(target, {"batch": 2})
            loaded.append(1)
        except SimtopoError:
            pass

    run()
    assert loaded  # some mutations still load (the suite reaches past the parser)
