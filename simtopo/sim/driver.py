"""The simulation driver: requests through the stages, pass by pass, in one of three modes.

The pass level (:mod:`simtopo.sim.pipeline`) is one SimPy model for every workload: each
request group of each replica runs its prefill chunks (or the micro-batches of a forward
pass) through the stages, a stage serving one pass at a time; after the last stage the logits
go to the host, which samples, and the next token ids come back before each decode step. What
a *pass* costs is where the modes differ:

- ``memoized``: every pass takes the time of its profile (:mod:`simtopo.sim.blocks`): one layer
  simulated and repeated, replicas profiled together (free running where they contend), each
  stage's pass and each hand-off on an otherwise idle fabric. Fast; its error against ``full``
  is measured case by case in ``docs/metrics.md``.
- ``full``: every pass runs *live*: its ops and collectives, layer by layer, on one fabric
  shared by every stage, replica and request group, with hand-offs and host round trips as
  real copies. The reference; slow.
- ``auto`` (the default): memoized, except where the profiles' premise is known to fail:
  pipeline stages that are busy at the same time (request groups, prefill chunks or
  micro-batches in flight) and whose collectives can contend for a link, host memory or the
  hand-off threads. Then every pass that starts while a prefill (or forward) pass is still
  pending runs live, and the rest stays memoized: the heavy traffic of overlapping prefills
  is what the profiles cannot see (decode traffic overlaps out of step and barely contends).

Every result says what ran live and why (``Simulation.live``, ``Simulation.reason``).

The sizing advisor screens layouts in a fourth mode, ``screen`` (not offered on the command
line): memoized, with each replica's collectives as if it were alone. That is optimistic
wherever replicas contend (``docs/metrics.md`` measures it), so the advisor simulates its
leading layouts again in ``auto``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy
from simpy.events import AllOf, Event

from .. import limits
from ..constants import DEFAULT_SOC_MODEL, SocModel
from ..engine.collectives import Collectives
from ..engine.network import Network
from ..engine.resources import footprint
from ..engine.transfers import Fabric
from ..errors import ConfigError
from .blocks import SPREAD, copy_handoff, host_round_trip, profile_pass, replica_programs, run_tasks
from .pipeline import Pipeline, Timeline, run_pipeline
from .profiles import PassProfile
from .setup import Setup
from .tasks import CommTask, StageProgram, lower

MODES = ("auto", "memoized", "full")
"""Simulation modes (see the module docstring)."""

SCREEN = "screen"
"""The advisor's screening mode (see the module docstring)."""


@dataclass
class Simulation:
    """What simulating one variant produced, as plain data for the metrics."""

    profiles: dict[str, PassProfile]
    """``prefill`` and ``decode@<context>`` (LLM), or ``forward`` (inference)."""
    timeline: Timeline
    logits_s: float
    token_s: float
    host_links: Counter[str]
    mode: str
    live: str = ""
    """What ran live: ``""`` (nothing), ``"prefill"`` (passes started while a prefill or
    forward pass was pending) or ``"all"``."""
    reason: str = ""
    """Where the memoized profiles miss contention (pipeline stages whose collectives meet
    while their passes overlap): why ``auto`` runs the prefill phase live. Reported in the
    ``memoized`` mode too, which runs nothing live, and in ``screen``, with the replicas
    whose contention it left out."""


def _footprints(setup: Setup, soc_model: SocModel) -> dict[tuple[int, int], frozenset[str]]:
    """What the collectives of each (replica, stage) may load (empty where none talk)."""
    plan = setup.plan
    programs = replica_programs(plan, lower(plan, setup.forward_graph, setup.topo, soc_model))
    prints = {}
    for r, stages in enumerate(programs):
        for s, program in enumerate(stages):
            talks = any(isinstance(t, CommTask) and t.size_bytes > 0
                        for t in program.head + program.layer + program.tail)
            prints[(r, s)] = footprint(setup.topo, program.stage.devices, program.mode) \
                if talks else frozenset()
    return prints


def _both_load(what: str, shared: list[str]) -> str:
    return (f"{what} both load {shared[0]}"
            + (f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""))


def contending_stages(setup: Setup, soc_model: SocModel = DEFAULT_SOC_MODEL) -> str:
    """Why the forward passes of two pipeline stages may contend, or ``""``: they are in
    flight together (groups, chunks or micro-batches) and their collectives' footprints
    share a resource (``auto`` then runs that phase live)."""
    plan, w = setup.plan, setup.variant.workload
    in_flight = w.groups if setup.kind == "llm" else 1
    if len(plan.stages) < 2 or (in_flight < 2 and setup.forward_passes < 2):
        return ""
    prints = _footprints(setup, soc_model)
    for (_, sa), a in prints.items():
        for (_, sb), b in prints.items():
            shared = sorted(a & b)
            if sa < sb and shared:
                return _both_load(f"stages {sa} and {sb} overlap and", shared)
    return ""


def contending_replicas(setup: Setup, soc_model: SocModel = DEFAULT_SOC_MODEL) -> str:
    """Why two replicas' collectives in one stage may contend, or ``""`` (the profiles then
    run those replicas free running; ``screen`` leaves it out)."""
    if len(setup.plan.replicas) < 2:
        return ""
    prints = _footprints(setup, soc_model)
    for (ra, sa), a in prints.items():
        for (rb, sb), b in prints.items():
            shared = sorted(a & b)
            if sa == sb and ra < rb and shared:
                return _both_load(f"replicas {ra} and {rb}", shared)
    return ""


class _Live:
    """Passes, hand-offs and host round trips as tasks and copies on one shared fabric."""

    def __init__(self, env: simpy.Environment, setup: Setup, soc_model: SocModel,
                 memo: dict[Any, Any]) -> None:
        self.env, self.setup, self.soc_model, self.plan = env, setup, soc_model, setup.plan
        self.fab = Fabric(env, Network(env, setup.topo, setup.params))
        self.coll = [Collectives(self.fab, memo, label=str(r))
                     for r in range(len(self.plan.replicas))]
        self._programs: dict[Any, tuple[list[list[StageProgram]], list[float]]] = {}
        self._used: Counter[str] = Counter()

    def _lowered(self, key: Any) -> tuple[list[list[StageProgram]], list[float]]:
        """Programs (per replica and stage) and hand-off bytes (per stage) of a pass."""
        if key not in self._programs:
            setup = self.setup
            if key == "forward":
                graph = setup.forward_graph
            else:
                graph = setup.decode_graph(setup.variant.workload.context_length
                                           if setup.compiled else key)
            programs = replica_programs(self.plan, lower(self.plan, graph, setup.topo,
                                                         self.soc_model))
            _, _, handoffs = self.plan.layout(graph)
            sizes = [sum(h.bytes for h in handoffs if h.stage == s)
                     for s in range(len(self.plan.stages))]
            self._programs[key] = (programs, sizes)
        return self._programs[key]

    def stage_pass(self, r: int, s: int, key: Any) -> Generator[Event, Any, None]:
        """Every layer of stage ``s``'s pass, replica ``r``, op by op."""
        program = self._lowered(key)[0][r][s]
        for tasks in (program.head, *([program.layer] * program.repeat), program.tail):
            if tasks:
                yield self.env.process(run_tasks(self.fab, self.coll[r], tasks,
                                                 program.stage.devices, "", None, self._used))

    def handoff(self, r: int, s: int, key: Any) -> Generator[Event, Any, None]:
        """The copies into stage ``s`` of replica ``r``."""
        size = self._lowered(key)[1][s]
        if size > 0:
            yield AllOf(self.env, copy_handoff(self.fab, self.plan, r, s, size))

    def logits_out(self, r: int) -> Generator[Event, Any, None]:
        """The logits to host memory, then the host samples."""
        logits_bytes, _ = self.setup.host_payloads()
        yield self.fab.copy(self.plan.replicas[r][-1].devices[0], "host", logits_bytes,
                            label=str(r))
        host_s = self.setup.host_step_s(self.soc_model)
        if host_s > 0:
            yield self.env.timeout(host_s)

    def token_in(self, r: int) -> Generator[Event, Any, None]:
        """The next token ids to every device of the first stage."""
        _, token_bytes = self.setup.host_payloads()
        yield AllOf(self.env, [self.fab.copy("host", d, token_bytes, label=str(r))
                               for d in self.plan.replicas[r][0].devices])


def _check_live_work(setup: Setup) -> None:
    """Refuse a full simulation beyond :data:`limits.MAX_LIVE_TASKS` before it starts."""
    passes = Pipeline.of(setup).passes
    ops = max(len(setup.forward_graph), *(len(g) for g in setup.decode_graphs.values()))
    # a pipeline's stages each run their share of the ops, on their own SoCs
    width = sum(len(stage.devices) for stage in setup.plan.stages) / len(setup.plan.stages)
    tasks = round(passes * ops * width)
    if tasks > limits.MAX_LIVE_TASKS:
        raise ConfigError(f"--simulation full would run {tasks:,} op tasks live ({passes:,} "
                          f"passes of up to {ops} ops on each SoC); at most "
                          f"{limits.MAX_LIVE_TASKS:,}: use --simulation auto, which simulates "
                          "repeated passes once")


def simulate(setup: Setup, soc_model: SocModel = DEFAULT_SOC_MODEL, mode: str = "auto",
             memo: dict[Any, Any] | None = None,
             progress: Callable[[str], None] | None = None, spans: bool = True) -> Simulation:
    """Simulate a set-up variant in ``mode`` (``auto``, ``memoized``, ``full`` or the
    advisor's ``screen``). ``memo``
    keeps what collectives were found to do (share it between runs on the same topology and
    transfer settings: :func:`simtopo.sim.setup.memo_for`). ``spans=False`` records no spans
    and flows of the profiled passes (the timeline figures and the trace): for runs whose
    metrics alone are read."""
    if mode not in (*MODES, SCREEN):
        raise ValueError(f"simulation mode must be one of {', '.join(MODES)} (got {mode!r})")
    memo = {} if memo is None else memo
    plan, topo, params = setup.plan, setup.topo, setup.params
    if mode == "full":
        _check_live_work(setup)
    profiles: dict[str, PassProfile] = {}
    contend = mode != SCREEN  # replicas contend in the profiles (screen: each alone)
    if progress:
        progress("prefill" if setup.kind == "llm" else "forward pass")
    first = "prefill" if setup.kind == "llm" else "forward"
    profiles[first] = profile_pass(plan, setup.forward_graph, topo, params, soc_model,
                                   record_spans=spans, memo=memo, replicas_contend=contend)
    last = max(setup.decode_graphs, default=0)
    for c, graph in setup.decode_graphs.items():
        if progress:
            progress(f"decode at context {c}")
        profiles[f"decode@{c}"] = profile_pass(plan, graph, topo, params, soc_model,
                                               record_spans=spans and c == last, memo=memo,
                                               phases=SPREAD, replicas_contend=contend)
    logits_s = token_s = 0.0
    host_links: Counter[str] = Counter()
    if setup.kind == "llm":
        logits_bytes, token_bytes = setup.host_payloads()
        logits_s, token_s, host_links = host_round_trip(plan, topo, params, logits_bytes,
                                                        token_bytes,
                                                        setup.host_step_s(soc_model))
    reason = contending_stages(setup, soc_model) if mode != "full" else ""
    if mode == SCREEN:
        reason = "; ".join(r for r in (reason, contending_replicas(setup, soc_model)) if r)
    run_live = mode == "full" or (mode == "auto" and bool(reason))
    live = (lambda env: _Live(env, setup, soc_model, memo)) if run_live else None
    timeline = run_pipeline(Pipeline.of(setup), profiles, (logits_s, token_s), live,
                            all_live=mode == "full")
    return Simulation(profiles, timeline, logits_s, token_s, host_links, mode,
                      "all" if mode == "full" else ("prefill" if run_live else ""), reason)
