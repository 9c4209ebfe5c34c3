"""The SimPy run: task programs executed on the fabric, then passes pipelined over stages.

Two levels, both SimPy:

- **Blocks** (micro). A block of a stage program (its head, one layer, its tail) runs on a
  fresh :class:`~simtopo.transfers.Fabric` for every replica at once, compute as timeouts and
  collectives as flows, so that replicas sharing uplinks, host memory or hand-off threads slow
  each other. Layers of a stage are identical, so a pass is head + layer x layers + tail:
  exact when a layer starts and ends on an idle fabric (it does: each ends in a synchronous
  collective), and measured against a full simulation in ``docs/metrics.md``.
- **Passes** (macro). Request groups and prefill chunks flow through the stages (one pass at a
  time per stage and replica), handing activations on between stages and, after the last
  stage, taking the host round trip (logits out, sampling, next token in). Pipeline bubbles,
  throughput and per-token latencies come out of this level.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx
from simpy.events import Event

from ..engine.collectives import Collectives
from ..engine.transfers import Fabric
from ..plan.stages import PartitionPlan
from ..spec.topology import TransferSpec
from ..topology.graph import Topology
from .tasks import ComputeTask, StageProgram, Task, lower


@dataclass(frozen=True)
class Span:
    """Something that happened on a track (a SoC, a stage's group, a link), in seconds."""

    track: str
    name: str
    category: str  # compute | collective | transfer | host
    start_s: float
    end_s: float
    args: tuple[tuple[str, Any], ...] = ()


@dataclass
class BlockRun:
    """A block simulated once (all replicas together)."""

    seconds: float
    compute_s: float
    spans: list[Span]
    link_bytes: Counter[str]
    algorithms: Counter[str]
    flows: list[Span] = field(default_factory=list)
    """Each flow on each directed link it crossed (kept when spans are recorded)."""


@dataclass
class StagePass:
    """One stage's pass: its time, compute part, and the blocks that made it."""

    seconds: float
    compute_s: float
    blocks: list[tuple[str, BlockRun, int]]
    bytes: float = 0.0
    """DRAM bytes each device of the stage moves in the pass."""

    @property
    def comm_s(self) -> float:
        """Exposed communication: the pass time not spent computing."""
        return self.seconds - self.compute_s


@dataclass
class PassProfile:
    """One pass shape (a prefill chunk, a decode step) of every stage of the plan."""

    stages: list[StagePass]
    handoff_s: list[float]  # into stage s (index 0 unused)
    handoff_bytes: list[float]
    link_bytes: Counter[str] = field(default_factory=Counter)


def _run_tasks(fab: Fabric, coll: Collectives, tasks: Sequence[Task], devices: Sequence[str],
               track: str, spans: list[Span] | None, algorithms: Counter[str]
               ) -> Generator[Event, Any, None]:
    env = fab.env
    for task in tasks:
        start = env.now
        if isinstance(task, ComputeTask):
            if task.seconds > 0:
                yield env.timeout(task.seconds)
            if spans is not None:
                for device in devices:
                    spans.append(Span(device, task.op, "compute", start, env.now))
        else:
            if len(devices) > 1 and task.size_bytes > 0:
                result = yield coll.run(task.kind, list(devices), task.size_bytes, task.mode)
                algorithms[f"{task.kind} {result.algorithm} ({task.mode})"] += 1
                if spans is not None:
                    spans.append(Span(track, f"{task.kind} {task.size_bytes:.0f} B",
                                      "collective", start, env.now,
                                      (("algorithm", result.algorithm), ("mode", task.mode))))


def run_block(topo: Topology, params: TransferSpec, tasks: Sequence[Task],
              groups: Sequence[tuple[str, ...]], record_spans: bool = True,
              choices: dict[Any, str] | None = None) -> BlockRun:
    """Run ``tasks`` on every device group of ``groups`` at once (one per replica);
    ``choices`` carries host-routed algorithm choices between blocks (see Collectives)."""
    fab = Fabric.create(topo, params, record=True)
    coll = Collectives(fab, choices)
    spans: list[Span] = []
    algorithms: Counter[str] = Counter()
    done = []
    for i, devices in enumerate(groups):
        track = f"stage group {devices[0]}..{devices[-1]}" if len(devices) > 1 else devices[0]
        done.append(fab.env.process(_run_tasks(
            fab, coll, tasks, devices, track, spans if (record_spans and i == 0) else None,
            algorithms)))
    ends: list[float] = [0.0] * len(done)
    for i, proc in enumerate(done):
        proc.callbacks.append(lambda _e, i=i: ends.__setitem__(i, fab.env.now))
    fab.env.run()
    link: Counter[str] = Counter()
    flows: list[Span] = []
    for rec in fab.net.records:
        for name in rec.resources:
            if "->" in name:
                link[name] += rec.size_bytes
                if record_spans:
                    flows.append(Span(name, f"{rec.size_bytes:.0f} B", "transfer",
                                      rec.start_s, rec.end_s))
    compute = sum(t.seconds for t in tasks if isinstance(t, ComputeTask))
    return BlockRun(max(ends, default=0.0), compute, spans, link, algorithms, flows)


def replica_programs(plan: PartitionPlan, programs: Sequence[StageProgram]
                     ) -> list[list[StageProgram]]:
    """Replica 0's programs re-targeted at every replica's devices (index: replica, stage)."""
    return [[replace(p, stage=stages[p.stage.index]) for p in programs]
            for stages in plan.replicas]


def profile_pass(plan: PartitionPlan, graph: nx.DiGraph, topo: Topology, params: TransferSpec,
                 soc_model: Any, record_spans: bool = True,
                 choices: dict[Any, str] | None = None) -> PassProfile:
    """Simulate one pass shape: every stage's blocks (all replicas together) and hand-offs.
    ``choices`` remembers host-routed algorithm choices (share it between passes on the same
    topology and transfer settings)."""
    programs = lower(plan, graph, topo, soc_model)
    per_replica = replica_programs(plan, programs)
    stage_passes = []
    link: Counter[str] = Counter()
    choices = {} if choices is None else choices
    for s, program in enumerate(programs):
        groups = [tuple(per_replica[r][s].stage.devices) for r in range(len(per_replica))]
        blocks = []
        seconds = compute = moved = 0.0
        for name, tasks, times in program.blocks:
            if times == 0 or not tasks:
                continue
            moved += sum(t.bytes for t in tasks if isinstance(t, ComputeTask)) * times
            run = run_block(topo, params, tasks, groups, record_spans, choices)
            blocks.append((name, run, times))
            seconds += run.seconds * times
            compute += run.compute_s * times
            for key, value in run.link_bytes.items():
                link[key] += value * times
        stage_passes.append(StagePass(seconds, compute, blocks, moved))
    handoff_s = [0.0] * len(programs)
    handoff_bytes = [0.0] * len(programs)
    if len(programs) > 1:
        _, _, handoffs = plan.layout(graph)
        for s in range(1, len(programs)):
            size = sum(h.bytes for h in handoffs if h.stage == s)
            handoff_bytes[s] = size
            if size > 0:
                seconds, moved = _handoff_time(plan, s, size, topo, params)
                handoff_s[s] = seconds
                for key, value in moved.items():
                    link[key] += value
    return PassProfile(stage_passes, handoff_s, handoff_bytes, link)


def _handoff_time(plan: PartitionPlan, stage: int, size: float, topo: Topology,
                  params: TransferSpec) -> tuple[float, Counter[str]]:
    """Stage ``stage - 1`` rank i to stage ``stage`` rank i, every replica at once."""
    fab = Fabric.create(topo, params, record=True)
    for stages in plan.replicas:
        src, dst = stages[stage - 1], stages[stage]
        for i, device in enumerate(dst.devices):
            a = src.devices[i % src.tp]
            la, lb = src.logical[i % src.tp], dst.logical[i]
            fab.copy(a, device, size, mode=plan.connection(la, lb))
    fab.env.run()
    moved: Counter[str] = Counter()
    for rec in fab.net.records:
        for name in rec.resources:
            if "->" in name:
                moved[name] += rec.size_bytes
    return fab.env.now, moved


def host_round_trip(plan: PartitionPlan, topo: Topology, params: TransferSpec,
                    logits_bytes: float, token_bytes: float, host_s: float
                    ) -> tuple[float, float, Counter[str]]:
    """(logits out + sampling, next token in) seconds and the link bytes: the last stage's
    first device copies the logits to host memory, the host samples, and the token ids go to
    every device of the first stage. Every replica does it at once."""
    fab = Fabric.create(topo, params, record=True)
    for stages in plan.replicas:
        fab.copy(stages[-1].devices[0], "host", logits_bytes)
    fab.env.run()
    out_s = fab.env.now + host_s
    fab2 = Fabric.create(topo, params, record=True)
    for stages in plan.replicas:
        for device in stages[0].devices:
            fab2.copy("host", device, token_bytes)
    fab2.env.run()
    moved: Counter[str] = Counter()
    for net in (fab.net, fab2.net):
        for rec in net.records:
            for name in rec.resources:
                if "->" in name:
                    moved[name] += rec.size_bytes
    return out_s, fab2.env.now, moved


# -- the pipeline of passes -------------------------------------------------------------------


def sample_contexts(first: int, last: int, samples: int = 5) -> list[int]:
    """Context lengths at which to simulate decode steps (evenly spaced, ends included)."""
    if last <= first or samples < 2:
        return [first]
    step = (last - first) / (samples - 1)
    return sorted({first + round(i * step) for i in range(samples)})


def interpolate(profiles: dict[int, PassProfile], context: int) -> PassProfile:
    """A decode profile at ``context`` from the sampled ones (linear between neighbours)."""
    keys = sorted(profiles)
    if context <= keys[0] or len(keys) == 1:
        return profiles[keys[0]]
    if context >= keys[-1]:
        return profiles[keys[-1]]
    hi = next(k for k in keys if k >= context)
    lo = keys[keys.index(hi) - 1]
    if hi == context:
        return profiles[hi]
    w = (context - lo) / (hi - lo)
    a, b = profiles[lo], profiles[hi]
    stages = [StagePass(x.seconds + w * (y.seconds - x.seconds),
                        x.compute_s + w * (y.compute_s - x.compute_s), x.blocks,
                        x.bytes + w * (y.bytes - x.bytes))
              for x, y in zip(a.stages, b.stages, strict=True)]
    handoff = [x + w * (y - x) for x, y in zip(a.handoff_s, b.handoff_s, strict=True)]
    return PassProfile(stages, handoff, a.handoff_bytes, a.link_bytes)
