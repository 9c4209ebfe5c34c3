"""Fuzzing the CLI with generated hostile structures: every one is handled, in bounded time
and memory.

Where ``test_fuzz.py`` mutates one place of a shipped file, this suite generates whole inputs
built to hurt, at sizes around and far beyond :mod:`simtopo.limits`, and runs each through the
real CLI (``python -m simtopo``) in a child process:

1. sizes: a card ``count`` of 1e6 and 1e9, 3,000 card placements, ``topo matrix`` of 2,048
   SoCs (the limit), 10,000 switches, MDP configs of 10,000 partitions and of a
   10,000-device connection, experiments of 1e9 tokens, 1e6 groups, 1e7 micro-batches and
   batch, a 1-byte staging chunk, 1e9 staging buffers, a decoder of 1e7 layers, a graph of
   300,000 nodes, tp / pp / replicas of 1e6, ``--simulation full`` beyond its live limit
   (just under it, the reference simulation a user asks for runs for minutes by design),
   a sweep of 160,000 points, ``bench`` with 10,000 message sizes;
2. depth: switch chains of 32 (the limit), 33, 500 and 4,000 listed children-first and
   parents-first (``validate``, ``topo show|draw|matrix|check``); YAML nested 100, 1,000,
   10,000 and 100,000 deep in flow (``[[[...]]]``), block (``- - - ...``) and mapping style
   in topology, experiment and model files; JSON nested 100,000 deep in an MDP config and a
   baseline;
3. includes: a diamond 20 levels deep (each file includes both files of the next level) and
   one 14 deep, 30 ``extends``, a cycle, absolute paths outside (``/etc/passwd``; and
   ``/dev/zero``, ``/dev/urandom`` allowed through ``SIMTOPO_PATHS``), a FIFO, a
   symbolic link to ``/dev/zero``, ``../..`` paths, a 100 MB file, a directory; a FIFO or a
   device named on the command line (as a topology, an MDP config, an experiment's
   topology);
4. numbers: 5e-324, 1e-310 (denormal), 1e-300, 1e308, 1e400, -0.0, ``.nan``, ``.inf``,
   5,000-digit integers (YAML and JSON), hex and octal, YAML 1.1 forms (yes, on, 1:30) in
   bandwidths, FLOP rates, sizes, latencies, core counts, token counts and decoder widths;
5. ids and names: switch ids with a newline, a NUL, 10,000 characters, unicode, spaces,
   dots, a leading digit; experiment and variant names ``.``, ``..``, ``../x``, ``/tmp/x``,
   ``a/b``, ``a b``, ``''`` and duplicates up to case;
6. outputs: ``-o`` onto a symbolic link, a FIFO, a folder, ``''`` and a path under a regular
   file; a report folder holding foreign files or linking outside; ``plan --write-mdp``
   onto a FIFO.

Commands: ``validate``, ``topo show|matrix|check|draw``, ``run`` (``--no-report``,
``--reports``, ``--simulation full``), ``mdp validate``, ``check``, ``sweep``, ``bench`` and
``plan``. Every case must end in exit 0, 1 or 2, never print a traceback (or a
``MemoryError``), on exit 2 print exactly one line starting with ``error``, finish within
60 s of wall time (past that the child's process group is killed and the case fails, naming
it) and stay under 1 GiB: the child runs under ``RLIMIT_AS`` of 1 GiB (set in the child
before exec) and its own peak RSS, read from ``os.wait4``, must stay below 1 GiB too. The child gets
``OPENBLAS_NUM_THREADS=1`` and ``OMP_NUM_THREADS=1`` so that the address space numpy reserves
per BLAS thread does not depend on the machine's core count (on the 2-core CI machine normal
runs fit in 256 MiB of address space without them). Nothing may appear beside the case's
working folder, nor at ``/tmp/x``. Cases run one after the other.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import ROOT

MEMORY = 1 << 30
"""Address space (RLIMIT_AS) and peak RSS a child may use: 1 GiB."""

WALL = 60.0
"""Seconds of wall time a child may take."""

TOPOLOGIES = ROOT / "topologies"
ULTRA8 = TOPOLOGIES / "ultra8.yaml"
ULTRA4 = TOPOLOGIES / "ultra4-direct.yaml"
PRECIOUS = b"precious"


# -- generators: YAML and JSON text ------------------------------------------------------

def rows(items) -> str:
    return "".join(f"  - {item}\n" for item in items)


def flow(data: dict) -> str:
    """A YAML flow mapping whose scalars are written as given (raw YAML text)."""
    return "{" + ", ".join(f"{k}: {flow(v) if isinstance(v, dict) else v}"
                           for k, v in data.items()) + "}"


SOC = {"cores": 2, "peak_flops": {"fp16": "1TFLOPS"}, "dram": "1GB", "dram_bw": "1GB/s"}


def topology(cards=("{type: quad, parent: rc0}",), switches=(), *, soc=None, hop="100ns",
             top="") -> str:
    """A one-socket topology with a 4-SoC card type ``quad`` and a 1-SoC ``solo``."""
    s = flow({**SOC, **(soc or {})})
    text = ("name: t\n" + top +
            "host:\n  sockets:\n    - {id: cpu0, cores: 4, memory: 8GB, memory_bw: 50GB/s}\n"
            "card_types:\n"
            f"  quad: {{name: Quad, host_link: {{gen: 4, lanes: 16}}, switch: {{hop_latency: "
            f"{hop}}}, soc_link: {{gen: 4, lanes: 8}}, socs: 4, soc: {s}}}\n"
            f"  solo: {{name: Solo, host_link: {{gen: 4, lanes: 16}}, soc: {s}}}\n")
    if switches:
        text += "switches:\n" + rows(switches)
    return text + "cards:\n" + rows(cards)


def switch(name: str, parent: str) -> str:
    return f"{{id: {name}, parent: {parent}, uplink: {{gen: 4, lanes: 16}}}}"


def chain(n: int, children_first: bool = False) -> str:
    """``n`` switches one below the other under rc0, a card at the bottom."""
    rows_ = [switch(f"s{i}", "rc0" if i == 0 else f"s{i - 1}") for i in range(n)]
    return topology([f"{{type: quad, parent: s{n - 1}}}"],
                    rows_[::-1] if children_first else rows_)


def wide(cards: int, per_switch: int = 4, kind: str = "quad") -> str:
    """``cards`` cards, one placement each, ``per_switch`` of them under each switch."""
    switches = -(-cards // per_switch)
    return topology([f"{{type: {kind}, parent: s{i // per_switch}}}" for i in range(cards)],
                    [switch(f"s{i}", "rc0") for i in range(switches)])


WORKLOAD = {"batch": 1, "prompt": 32, "generate": 2, "context": 64}


def experiment(workload=None, plan=None, *, name="e", variants="[{name: a}]",
               topology=ULTRA4, model="llama-2-7b", extra="") -> str:
    return (f"name: {name}\ntopology: {topology}\nmodel: {model}\n"
            f"workload: {flow({**WORKLOAD, **(workload or {})})}\n"
            f"plan: {flow({'tp': 1, **(plan or {})})}\nvariants: {variants}\n{extra}")


DECODER = {"hidden": 4096, "layers": 32, "heads": 32, "ffn": 11008, "vocab": 32000}


def decoder(**changes) -> str:
    return f"decoder: {flow({**DECODER, **changes})}\n"


def graph(nodes: int) -> str:
    return "name: g\nnodes:\n" + "".join(
        f"  - {{name: n{i}, kind: gemm, flops: 1e9{f', inputs: [n{i - 1}]' if i else ''}}}\n"
        for i in range(nodes))


def mdp(partitions: int = 1, devices: int = 2, connection: int | None = None) -> str:
    parts = [{"name": f"P{p}", "devices": [{"deviceId": p * devices + d, "numCores": 1}
                                           for d in range(devices)]}
             for p in range(partitions)]
    data: dict = {"partitions": parts}
    if connection is not None:
        data["connections"] = [{"devices": list(range(connection)), "type": "p2p"}]
    return json.dumps(data)


def nest_flow(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def nest_block(depth: int, leaf: str = "1") -> str:
    """Block sequences ``depth`` deep in compact form: ``- - - ... leaf``."""
    return "- " * depth + leaf


def nest_map(depth: int) -> str:
    """Block mappings ``depth`` deep, one space of indentation per level."""
    return "".join(" " * i + "a:\n" for i in range(depth)) + " " * depth + "1\n"


def baseline(experiment_file: str = "e.yaml", summary: str = '{"variants": []}',
             header: str = "") -> str:
    return f'{{"baseline": {{"experiment": "{experiment_file}"{header}}}, "summary": {summary}}}'


BIG = "9" * 5000


# -- cases ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """Files to write (text, bytes, or a function making either), the command's arguments,
    extra environment, a set-up step and a check after the run (both given the working
    folder)."""

    files: dict[str, object]
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None
    after: Callable[[Path], None] | None = None


def case(files: dict[str, object], *args: str, **kw) -> Case:
    return Case(files, tuple(str(a) for a in args), **kw)


def validate(text, **kw) -> Case:
    return case({"t.yaml": text}, "validate", "t.yaml", **kw)


def topo(sub: str, text, *more: str, **kw) -> Case:
    return case({"t.yaml": text}, "topo", sub, "t.yaml", *more, **kw)


def run(text, *more: str, files=None, **kw) -> Case:
    return case({"e.yaml": text, **(files or {})}, "run", "e.yaml",
                *(more or ("--no-report",)), **kw)


def mdp_validate(text, **kw) -> Case:
    return case({"c.json": text}, "mdp", "validate", "c.json", "--model", "llama-2-7b",
                "--topology", ULTRA8, **kw)


def plan(*more: str) -> Case:
    return case({}, "plan", "--model", "llama-2-7b", "--topology", ULTRA8, *more)


def sweep(text, *sets: str, out: tuple[str, ...] = ("--out", "out"), **kw) -> Case:
    return case({"e.yaml": text}, "sweep", "e.yaml",
                *(a for s in sets for a in ("--set", s)), *out, "--executor", "serial",
                "-q", **kw)


def fifo(name: str) -> Callable[[Path], None]:
    return lambda w: os.mkfifo(w / name)


def precious(w: Path) -> None:
    (w / "real.png").write_bytes(PRECIOUS)


def untouched(w: Path) -> None:
    assert (w / "real.png").read_bytes() == PRECIOUS


def outputs(kind: str) -> Case:
    """``topo draw -o`` onto something that is not a new regular file."""
    def prepare(w: Path) -> None:
        precious(w)
        if kind == "symlink":
            (w / "link.png").symlink_to(w / "real.png")
        elif kind == "fifo":
            os.mkfifo(w / "fifo.png")
        elif kind == "folder":
            (w / "dir.png").mkdir()

    def after(w: Path) -> None:
        untouched(w)
        assert kind != "symlink" or (w / "link.png").is_symlink()

    out = {"symlink": "link.png", "fifo": "fifo.png", "folder": "dir.png", "empty": "",
           "under-file": "real.png/x.png"}[kind]
    return case({}, "topo", "draw", ULTRA8, "-o", out, prepare=prepare, after=after)


def foreign_reports(w: Path) -> None:
    (w / "reports" / "e").mkdir(parents=True)
    (w / "reports" / "e" / "thesis.tex").write_bytes(PRECIOUS)


def reports_kept(w: Path) -> None:
    assert (w / "reports" / "e" / "thesis.tex").read_bytes() == PRECIOUS


def outside_link(w: Path) -> None:
    (w.parent / "outside").mkdir()
    (w / "reports").mkdir()
    (w / "reports" / "e").symlink_to(w.parent / "outside")


def outside_empty(w: Path) -> None:
    assert list((w.parent / "outside").iterdir()) == []


def diamond(levels: int, card: Path = TOPOLOGIES / "cards" / "ai100-ultra.yaml") -> dict:
    """``levels`` levels of two files, each including both files of the next level; the
    last level includes a shipped card library."""
    files: dict[str, object] = {}
    for level in range(levels):
        nxt = (f"d{level + 1}a.yaml, d{level + 1}b.yaml" if level < levels - 1 else str(card))
        for side in "ab":
            files[f"d{level}{side}.yaml"] = (
                f"include: [{nxt}]\ncard_types:\n  c{level}{side}: {{name: C, host_link: "
                f"{{gen: 4, lanes: 16}}, soc: {flow(SOC)}}}\n")
    files["t.yaml"] = topology(["{type: ai100-ultra, parent: rc0}"],
                               top="include: [d0a.yaml, d0b.yaml]\n")
    return files


def extends_chain(n: int) -> dict:
    files: dict[str, object] = {f"e{i}.yaml": f"extends: e{i + 1}.yaml\nname: e{i}\n"
                                for i in range(n - 1)}
    files[f"e{n - 1}.yaml"] = topology()
    return files


def including(target: str) -> str:
    return topology(top=f"include: [{json.dumps(target)}]\n")


def huge_file(w: Path) -> None:
    with (w / "huge.yaml").open("wb") as f:
        f.truncate(100 * 2**20)  # a sparse 100 MB file


ALLOW_DEV = {"SIMTOPO_PATHS": f"{TOPOLOGIES}{os.pathsep}/dev{os.pathsep}/etc"}

MODEL_EXPERIMENT = experiment(model="m.yaml")
GRAPH_EXPERIMENT = experiment({"kind": "inference", "batch": 1}, model="g.yaml")


def switch_id(name: str, sub: str = "show", *more: str) -> Case:
    """A switch named ``name`` (a YAML double-quoted scalar) holding the card."""
    return topo(sub, topology([f"{{type: quad, parent: {name}}}"], [switch(name, "rc0")]),
                *more)


def numeric(sub: str, *more: str, **topology_args) -> Case:
    return topo(sub, topology(**topology_args), *more)


CASES: dict[str, Case] = {
    # 1. sizes
    "size-count-1e6-validate": validate(topology(["{type: quad, parent: rc0, count: 1000000}"])),
    "size-count-1e9-show": topo("show", topology(["{type: solo, parent: rc0, count: 1000000000}"])),
    "size-3000-placements-validate": validate(lambda: wide(3000)),
    "size-2048-socs-matrix-json": topo("matrix", lambda: wide(512), "--format", "json",
                                       "--value", "bandwidth"),
    "size-10000-switches-validate": validate(
        lambda: topology(switches=[switch(f"s{i}", "rc0") for i in range(10000)])),
    "size-mdp-10000-partitions": mdp_validate(lambda: mdp(10000, 1)),
    "size-mdp-10000-device-connection": mdp_validate(lambda: mdp(1, 4, connection=10000)),
    "size-generate-prompt-context-1e9-run": run(experiment(
        {"generate": 10**9, "prompt": 10**9, "context": 10**9, "compiled_prompt": 32})),
    "size-groups-1e6-run": run(experiment({"groups": 10**6})),
    "size-micro-batches-1e7-run": run(
        experiment({"kind": "inference", "batch": 10, "micro_batches": 10**7}, model="g.yaml"),
        files={"g.yaml": graph(3)}),
    "size-batch-1e7-run": run(experiment({"batch": 10**7})),
    "size-chunk-1B-run": run(experiment(plan={"tp": 2, "connection": "host"},
                                        extra="transfer: {chunk: 1B}\n")),
    "size-staging-buffers-1e9-run": run(experiment(
        plan={"tp": 2, "connection": "host"}, extra="transfer: {staging_buffers: 1000000000}\n")),
    "size-decoder-1e7-layers-run": run(MODEL_EXPERIMENT, files={"m.yaml": decoder(layers=10**7)}),
    "size-graph-300000-nodes-run": run(GRAPH_EXPERIMENT, files={"g.yaml": lambda: graph(300000)}),
    "size-plan-tp-1e6": plan("--tp", "1000000"),
    "size-tp-pp-replicas-1e6-run": run(experiment(plan={"tp": 10**6, "pp": 10**6,
                                                        "replicas": 10**6})),
    # 100,000 steps x 323 ops x 4 SoCs: six times the live limit
    "size-full-simulation-generate-1e5": run(
        experiment({"generate": 100000, "context": 100032}, {"tp": 4}), "--no-report",
        "--simulation", "full"),
    # (just under the live limit, --simulation full runs for minutes: the user asked for the
    # reference simulation; limits.MAX_LIVE_TASKS bounds it at about six, not 60 s)
    "size-sweep-160000-points": sweep(
        experiment(), "workload.batch=" + ",".join(map(str, range(1, 401))),
        "workload.generate=" + ",".join(map(str, range(1, 401)))),
    "size-bench-10000-sizes": case({}, "bench", ULTRA8, "--sizes", ",".join(["1KiB"] * 10000),
                                   "--what", "collectives"),
    # 2. depth
    **{f"depth-chain-{n}-{order}-validate": validate(chain(n, order == "children-first"))
       for n, order in [(33, "children-first"), (4000, "children-first"),
                        (4000, "parents-first")]},
    **{f"depth-chain-32-{sub}": topo(sub, chain(32, True), *more)
       for sub, more in [("show", ()), ("draw", ("-o", "x.png")),
                         ("matrix", ("--value", "bandwidth")), ("check", ())]},
    "depth-chain-500-parents-first-show": topo("show", chain(500)),
    "depth-yaml-flow-100000-topology": validate(
        topology(top=f"description: {nest_flow(100000)}\n")),
    "depth-yaml-block-10000-topology": validate(topology() + f"storage:\n{nest_block(10000)}\n"),
    "depth-yaml-mapping-1000-topology": validate(topology() + "platform:\n" + nest_map(1000)),
    "depth-yaml-flow-100-experiment": run(experiment(plan={"rules": nest_flow(100)})),
    "depth-yaml-block-100000-model": run(
        MODEL_EXPERIMENT, files={"m.yaml": "decoder:\n" + nest_block(100000) + "\n"}),
    "depth-json-100000-objects-mdp": mdp_validate('{"a": ' * 100000 + "1" + "}" * 100000),
    "depth-json-100000-arrays-baseline": case(
        {"b.json": baseline(summary=nest_flow(100000)), "e.yaml": experiment()},
        "check", "b.json"),
    # 3. includes
    "include-diamond-20-validate": case(diamond(20), "validate", "t.yaml"),
    "include-diamond-14-show": case(diamond(14), "topo", "show", "t.yaml", "--brief"),
    "include-extends-30-validate": case(extends_chain(30), "validate", "e0.yaml"),
    "include-cycle-validate": case(
        {"t.yaml": topology(top="include: [a.yaml]\n"), "a.yaml": "include: [b.yaml]\n",
         "b.yaml": "include: [a.yaml]\n"}, "validate", "t.yaml"),
    "include-etc-passwd": validate(including("/etc/passwd")),
    "include-dev-zero-allowed": validate(including("/dev/zero"), env=ALLOW_DEV),
    "include-symlink-to-dev-zero": validate(
        including("z.yaml"), prepare=lambda w: (w / "z.yaml").symlink_to("/dev/zero")),
    "include-fifo": validate(including("f.yaml"), prepare=fifo("f.yaml")),
    "include-dot-dot": validate(including("../../../../../../etc/passwd")),
    "include-100MB-file": validate(including("huge.yaml"), prepare=huge_file),
    "include-directory": validate(including("sub"), prepare=lambda w: (w / "sub").mkdir()),
    "include-fifo-named-on-the-command-line": case({}, "validate", "f.yaml",
                                                   prepare=fifo("f.yaml")),
    "include-dev-zero-named-on-the-command-line": case({}, "validate", "/dev/zero"),
    "include-dev-urandom-as-mdp-config": case({}, "mdp", "validate", "/dev/urandom", "--model",
                                              "llama-2-7b", "--topology", ULTRA8),
    "include-fifo-as-experiment-topology": run(experiment(topology="f.yaml"),
                                               prepare=fifo("f.yaml")),
    # 4. numbers
    "number-bandwidth-5e-324": numeric("show", soc={"dram_bw": "5e-324"}),
    "number-bandwidth-1e400": numeric("matrix", "--value", "bandwidth",
                                      soc={"dram_bw": "1e400"}),
    "number-bandwidth-minus-zero": numeric("check", soc={"dram_bw": "-0.0"}),
    "number-flops-denormal": numeric("show", soc={"peak_flops": {"fp16": "1e-310"}}),
    "number-flops-inf-bandwidth-nan": numeric("show", soc={"peak_flops": {"fp16": ".inf"},
                                                           "dram_bw": ".nan"}),
    "number-dram-5000-digits": numeric("show", soc={"dram": BIG}),
    "number-latency-1e308": numeric("matrix", "--value", "latency", hop="1e308"),
    "number-latency-minus-zero": numeric("matrix", "--value", "latency", hop="-0.0s"),
    "number-cores-hex-sram-octal": numeric("show", soc={"cores": "0x10", "sram": "0o17"}),
    "number-cores-yes-dram-1e-300": numeric("show", soc={"cores": "yes", "dram": "1e-300"}),
    "number-workload-sexagesimal-and-on": run(experiment({"generate": "1:30", "batch": "on"})),
    "number-model-hidden-1e200": run(MODEL_EXPERIMENT, files={"m.yaml": decoder(hidden="1e200")}),
    "number-mdp-5000-digits": mdp_validate(mdp().replace('"numCores": 1', f'"numCores": {BIG}',
                                                         1)),
    "number-baseline-nan-tolerance": case(
        {"b.json": baseline(header=', "tolerance": {"ttft_s": NaN}'), "e.yaml": experiment()},
        "check", "b.json"),
    # 5. ids and names
    "id-newline": switch_id('"a\\nb"'),
    "id-nul": switch_id('"a\\0b"', "matrix"),
    "id-10000-characters": switch_id("x" * 10000, "draw", "-o", "x.png"),
    "id-unicode-and-bidi": switch_id('"\\u4ea4\\u6362\\u202e\\U0001F600"', "draw", "-o",
                                     "x.png"),
    "id-spaces-dots-leading-digit": topo("show", topology(
        ["{type: quad, parent: '0 a.b'}", "{type: quad, parent: '1.'}"],
        [switch("'0 a.b'", "rc0"), switch("'1.'", "'0 a.b'")])),
    **{f"name-experiment-{label}": run(experiment(name=json.dumps(name)), "--reports", "reports")
       for label, name in [("dot", "."), ("dot-dot", ".."), ("parent", "../x"),
                           ("absolute", "/tmp/x"), ("slash", "a/b"), ("space", "a b"),
                           ("empty", "")]},
    "name-variant-parent": run(experiment(variants='[{name: b}, {name: "../x"}]'),
                               "--reports", "reports"),
    "name-variant-duplicate-up-to-case": run(experiment(variants="[{name: a}, {name: A}]")),
    "name-sweep-default-folder-parent": sweep(experiment(name='"../../x"'), "plan.tp=1",
                                              out=()),
    # 6. outputs
    **{f"output-draw-{kind}": outputs(kind)
       for kind in ("symlink", "fifo", "folder", "empty", "under-file")},
    "output-reports-with-foreign-files": run(experiment(), "--reports", "reports",
                                             prepare=foreign_reports, after=reports_kept),
    "output-report-folder-links-outside": run(experiment(), "--reports", "reports",
                                              prepare=outside_link, after=outside_empty),
    "output-plan-write-mdp-fifo": case({}, "plan", "--model", "llama-2-7b", "--topology",
                                       ULTRA8, "--tp", "4", "--write-mdp", "f.json",
                                       prepare=fifo("f.json")),
}


# -- the runner -----------------------------------------------------------------------------

@dataclass
class Ran:
    code: int
    err: str
    seconds: float
    rss: int


def _limit_memory() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def simtopo(work: Path, args: tuple[str, ...], env: dict[str, str], label: str) -> Ran:
    """Run the CLI in ``work`` under the memory limit; its exit code, stderr, wall time and
    peak RSS (bytes, from ``os.wait4``)."""
    child_env = {**os.environ, "SIMTOPO_PATHS": str(TOPOLOGIES), "OPENBLAS_NUM_THREADS": "1",
                 "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **env}
    with (work.parent / "stdout").open("wb") as out, (work.parent / "stderr").open("wb") as err:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "simtopo", *args], cwd=work,
                                env=child_env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                preexec_fn=_limit_memory, start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > WALL:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL
                tail = (work.parent / "stderr").read_text(errors="replace")[-600:]
                pytest.fail(f"{label}: simtopo {' '.join(args)[:300]} still running after "
                            f"{WALL:.0f} s (killed); stderr ends:\n{tail}")
            time.sleep(0.01)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Ran(proc.returncode, (work.parent / "stderr").read_text(errors="replace"), seconds,
               usage.ru_maxrss * 1024)


def _write(work: Path, files: dict[str, object]) -> None:
    for name, content in files.items():
        content = content() if callable(content) else content
        path = work / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content), encoding="utf-8")


@pytest.mark.parametrize("label", list(CASES))
def test_generated_structure_is_handled_in_bounded_time_and_memory(label, tmp_path):
    spec = CASES[label]
    work = tmp_path / "w"
    work.mkdir()
    _write(work, spec.files)
    if spec.prepare:
        spec.prepare(work)
    (tmp_path / "stdout").touch()
    (tmp_path / "stderr").touch()
    beside = sorted(p.name for p in tmp_path.iterdir())
    tmp_x = [Path(p).exists() for p in ("/tmp/x", "/tmp/x-sweep")]

    ran = simtopo(work, spec.args, spec.env, label)

    command = f"simtopo {' '.join(spec.args)[:300]}"
    lines = ran.err.splitlines()
    where = f"{label}: {command} -> exit {ran.code}; stderr ends:\n" + "\n".join(lines[-8:])
    assert ran.code in (0, 1, 2), where
    assert "Traceback" not in ran.err, where
    assert "MemoryError" not in ran.err, where
    if ran.code == 2:
        assert len(lines) == 1 and ran.err.endswith("\n") and lines[0].startswith("error"), \
            where
    assert ran.seconds < WALL, where
    assert ran.rss < MEMORY, f"{where}\npeak RSS {ran.rss / 2**20:.0f} MiB"
    # nothing written or removed beside the working folder, nor at /tmp/x
    assert sorted(p.name for p in tmp_path.iterdir()) == beside, where
    assert [Path(p).exists() for p in ("/tmp/x", "/tmp/x-sweep")] == tmp_x, where
    if spec.after:
        spec.after(work)
