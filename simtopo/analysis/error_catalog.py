"""Every error class with real example messages, made by the real loaders and planners.

``simtopo errors -o docs/errors.md`` writes the table; a test regenerates it, so the
documentation cannot drift from the messages the code produces.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, PlanError, RouteError, SimtopoError, TopologyError

TOPOLOGY = """name: two
host:
  sockets: [{id: cpu0, cores: 8, memory: 64GB, memory_bw: 100GB/s}]
switches:
  - {id: sw0, parent: rc0, uplink: {gen: 4, lanes: 16}, acs: true}
card_types:
  solo:
    name: Solo
    host_link: {gen: 4, lanes: 8}
    soc: {cores: 16, peak_flops: {fp16: 100TFLOPS}, dram: 16GB, dram_bw: 137GB/s}
cards: [{type: solo, parent: sw0, count: 2}]
"""


ONE_LAYER = """decoder: {name: one-layer, hidden: 1024, layers: 1, heads: 8, ffn: 4096,
          vocab: 32000}
"""


@dataclass(frozen=True)
class Example:
    """A situation, the error class it must raise, and how to provoke it."""

    cls: type[SimtopoError]
    situation: str
    provoke: Callable[[], object]


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    """A temporary working folder, so that messages name files by short relative paths."""
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            (Path(folder) / "two.yaml").write_text(TOPOLOGY)
            yield Path(folder)
        finally:
            os.chdir(here)


def _file(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(text)
    return path


def _topology(text: str) -> object:
    from ..topology.files import load_topology

    return load_topology(_file("bad.yaml", text))


def _plan(**spec: object) -> object:
    from ..plan.stages import make_plan
    from ..spec.experiment import PlanSpec
    from ..topology.files import load_topology
    from ..workload.decoders import load_model
    from ..workload.modelref import resolve_model
    from ..workload.opgraph import decode_shape

    model = str(spec.pop("model", "llama-2-7b"))
    topo = load_topology(str(spec.pop("topology", "two.yaml")))
    ref = resolve_model(model)
    graph = ref.graph_for(decode_shape(1, 511, compiled_context=512))
    plan = make_plan(graph, load_model(model), topo, PlanSpec(**spec))  # type: ignore[arg-type]
    if spec.get("tp") == 1 and spec.get("pp", 1) == 1:
        from ..plan.memory import check_fit

        check_fit(plan, graph, ref.decoder, topo, 1, 512)
    return plan


def _run(text: str) -> object:
    from ..results.run import run

    return run(_file("exp.yaml", text))


def _mdp(text: str) -> object:
    from ..plan.mdp import read_mdp

    return read_mdp(_file("bad.json", text))


def _route() -> object:
    from ..topology.files import load_topology

    return load_topology("two.yaml").route("host", "cpu0")


def _no_p2p_route() -> object:
    from ..topology.files import load_topology

    text = TOPOLOGY.replace("    name: Solo\n", "    name: Solo\n    p2p: false\n")
    return load_topology(_file("gpus.yaml", text)).route("card0.soc0", "card1.soc0")


def _baseline(text: str) -> object:
    from .baselines import read_baseline

    return read_baseline(_file("base.json", text))


EXAMPLES = (
    Example(ConfigError, "malformed YAML",
            lambda: _topology("name: [unclosed\n")),
    Example(ConfigError, "a file that is not UTF-8",
            lambda: _file_bytes()),
    Example(ConfigError, "an unknown key",
            lambda: _topology(TOPOLOGY.replace("name: two", "name: two\nnmae: x"))),
    Example(ConfigError, "a value in the wrong unit",
            lambda: _topology(TOPOLOGY.replace("memory_bw: 100GB/s", "memory_bw: 100GB"))),
    Example(ConfigError, "a negative number",
            lambda: _topology(TOPOLOGY.replace("cores: 8", "cores: -8"))),
    Example(TopologyError, "an unknown parent id",
            lambda: _topology(TOPOLOGY.replace("parent: rc0", "parent: rc9"))),
    Example(TopologyError, "a duplicate id",
            lambda: _topology(TOPOLOGY.replace("{id: sw0,", "{id: cpu0,"))),
    Example(ConfigError, "an experiment naming a missing topology",
            lambda: _run("name: e\ntopology: nowhere.yaml\nmodel: llama-2-7b\n")),
    Example(PlanError, "a model that does not fit",
            lambda: _plan(model="llama-2-13b", tp=1)),
    Example(TopologyError, "a plan naming devices the topology lacks",
            lambda: _plan(tp=2, devices=["card0.soc0", "card7.soc0"])),
    Example(PlanError, "P2P declared where a switch forbids it (ACS on)",
            lambda: _plan(tp=2, connection="p2p")),
    Example(PlanError, "a pipeline with an empty stage",
            lambda: _plan(model=str(_file("one-layer.yaml", ONE_LAYER)), pp=2, tp=1,
                          connection="host")),
    Example(PlanError, "a tensor-parallel size that does not divide the heads",
            lambda: _plan(tp=3, connection="host")),
    Example(ConfigError, "an MDP config with a partition of no devices",
            lambda: _mdp('{"partitions": [{"name": "a", "devices": []}]}')),
    Example(RouteError, "a transfer with no device at either end",
            _route),
    Example(RouteError, "P2P to a device whose card type cannot do P2P",
            lambda: _no_p2p_route()),
    Example(TopologyError, "partitions of one switch chip with different hop latencies",
            lambda: _topology(TOPOLOGY.replace(
                "  - {id: sw0, parent: rc0, uplink: {gen: 4, lanes: 16}, acs: true}\n",
                "  - {id: sw0, parent: rc0, uplink: {gen: 4, lanes: 16}, chip: pex0}\n"
                "  - {id: sw1, parent: rc0, uplink: {gen: 4, lanes: 16}, chip: pex0, "
                "hop_latency: 90ns}\n"))),
    Example(ConfigError, "a baseline that is not JSON",
            lambda: _baseline("{")),
    Example(ConfigError, "a bandwidth no hardware has",
            lambda: _topology(TOPOLOGY.replace("memory_bw: 100GB/s", "memory_bw: 5e-324"))),
    Example(ConfigError, "an id with a newline in it",
            lambda: _topology(TOPOLOGY.replace("{id: sw0,", '{id: "sw\\n0",'))),
    Example(ConfigError, "a count beyond the limit",
            lambda: _topology(TOPOLOGY.replace("count: 2", "count: 1000000000"))),
    Example(TopologyError, "a topology with more SoCs than the limit",
            lambda: _topology(TOPOLOGY.replace("cards: [{type: solo, parent: sw0, count: 2}]",
                                               "cards:\n" + "".join(
                                                   "  - {type: solo, parent: sw0, count: 2000}\n"
                                                   for _ in range(2))))),
    Example(TopologyError, "switches nested deeper than the limit",
            lambda: _topology(TOPOLOGY.replace(
                "  - {id: sw0, parent: rc0, uplink: {gen: 4, lanes: 16}, acs: true}\n",
                "".join(f"  - {{id: sw{i}, parent: {'rc0' if i == 0 else f'sw{i - 1}'}, "
                        "uplink: {gen: 4, lanes: 16}}\n" for i in range(40))).replace(
                "parent: sw0, count", "parent: sw39, count"))),
    Example(ConfigError, "YAML nested deeper than the limit",
            lambda: _topology("name: " + "[" * 100 + "]" * 100 + "\n")),
    Example(ConfigError, "an integer of too many digits",
            lambda: _topology(TOPOLOGY.replace("cores: 8", "cores: 1" + "0" * 200))),
    Example(ConfigError, "an include outside the allowed folders",
            lambda: _topology(TOPOLOGY + "include: [/etc/hosts]\n")),
    Example(ConfigError, "an experiment name that is a path",
            lambda: _run("name: ../x\ntopology: two.yaml\nmodel: llama-2-7b\n")),
    Example(ConfigError, "more passes than the limit",
            lambda: _run("name: e\ntopology: two.yaml\nmodel: llama-2-7b\nplan: {tp: 2, "
                         "connection: host}\nworkload: {prompt: 16, generate: 200000, "
                         "groups: 20}\n")),
)


def _file_bytes() -> object:
    from ..topology.files import load_topology

    path = Path("bad.yaml")
    path.write_bytes(b"name: caf\xe9\n")
    return load_topology(path)


def messages() -> list[tuple[str, str, str]]:
    """(class, situation, message) for every example; an example that raises nothing, or
    another class, is a bug here."""
    out = []
    with _folder():
        for ex in EXAMPLES:
            try:
                ex.provoke()
            except SimtopoError as err:
                if type(err) is not ex.cls:
                    raise AssertionError(f"{ex.situation}: expected {ex.cls.__name__}, got "
                                         f"{type(err).__name__}: {err}") from None
                out.append((ex.cls.__name__, ex.situation, str(err)))
            else:
                raise AssertionError(f"{ex.situation}: no error")
    return out


def markdown() -> str:
    """docs/errors.md."""
    lines = ["# Errors", "",
             "Generated by `simtopo errors -o docs/errors.md` from the examples in "
             "`simtopo/analysis/error_catalog.py`, each provoked through the real loaders and "
             "planners (a test regenerates this file, so it cannot drift).", "",
             "Every error simtopo raises on purpose is a `SimtopoError`. The command line "
             "prints it as one line, `error: <message>`, and exits 2 (1 is reserved for a "
             "check that failed: drift in `simtopo check`, nothing fits in `simtopo plan`); "
             "`--debug` adds the traceback. Messages say where (file, line, key path), what "
             "was found and what was expected.", "",
             "| class | is a | when |", "|---|---|---|",
             "| `SimtopoError` | `Exception` | the base of every error below |",
             "| `ConfigError` | `SimtopoError` | a bad input file or value |",
             "| `TopologyError` | `ConfigError` | a topology that does not wire up |",
             "| `PlanError` | `ConfigError` | a layout that cannot work on the topology |",
             "| `RouteError` | `SimtopoError` | a transfer the platform cannot route |", "",
             "| class | situation | message |", "|---|---|---|"]
    for cls, situation, message in messages():
        lines.append(f"| `{cls}` | {situation} | `{message.replace('|', '/')}` |")
    return "\n".join(lines + _limits()) + "\n"


def _limits() -> list[str]:
    """The limits and plausible ranges of simtopo/limits.py, with their docstrings."""
    import ast
    import inspect

    from .. import limits

    tree = ast.parse(inspect.getsource(limits))
    rows: list[tuple[str, object, str]] = []
    body = tree.body
    for node, after in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.Assign) and isinstance(after, ast.Expr) and \
                isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            name = node.targets[0].id  # type: ignore[attr-defined]
            rows.append((name, getattr(limits, name), " ".join(after.value.value.split())))
    work = [r for r in rows if not isinstance(r[1], tuple)]
    ranges = [r for r in rows if isinstance(r[1], tuple)]
    return ["", "## Limits", "",
            "What an input may ask for (`simtopo/limits.py`), checked before any work starts; "
            "an input beyond one is refused in one line naming the key and the limit.", "",
            "| limit | value | what |", "|---|---|---|",
            *(f"| `{name}` | {value:,} | {text} |" for name, value, text in work), "",
            "## Plausible values", "",
            "Numbers outside these ranges are refused by the schemas, with the range in the "
            "message (no hardware has a bandwidth of 5e-324 B/s or 1e18 cores).", "",
            "| range | low | high | what |", "|---|---|---|---|",
            *(f"| `{name}` | {value[0]:g} | {value[1]:g} | {text} |"  # type: ignore[index]
              for name, value, text in ranges)]
