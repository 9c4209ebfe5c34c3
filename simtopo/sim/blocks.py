"""Blocks and passes on the fabric: task programs run as compute and flows, every replica at once.

A stage's program is a head, one layer repeated, and a tail (:mod:`simtopo.sim.tasks`). A
block runs on a fresh :class:`~simtopo.engine.transfers.Fabric` for every replica at once:
compute as timeouts, collectives as flows, so that replicas sharing uplinks, host memory or
hand-off threads slow each other. A pass is head + layer x layers + tail, which is exact when
a layer starts and ends on an idle fabric: each ends in a collective every device waits for.

Replicas whose collectives can contend (their footprints,
:func:`~simtopo.engine.resources.footprint`, intersect) do not stay in step in reality: one
is served first and the others drift out of phase, so that they collide less than they would
aligned. Their repeated layers are therefore simulated back to back with the replicas free
running, until every replica repeats one period (or :data:`WINDOW` runs), and the rest of the
layers take that period (``docs/metrics.md`` measures both against the full simulation).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterable, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

import networkx as nx
from simpy.events import AllOf, AnyOf, Event

from ..engine.collectives import Collectives
from ..engine.network import FlowRecord
from ..engine.resources import footprint
from ..engine.transfers import Fabric
from ..plan.stages import PartitionPlan
from ..spec.topology import TransferSpec
from ..topology.graph import Topology
from .profiles import BlockRun, PassProfile, Span, StagePass
from .tasks import CommTask, ComputeTask, StageProgram, Task, lower

WINDOW = 12
"""Runs of a repeated block simulated back to back with the replicas free running; the later
half (the last run aside) gives the period that stands in for the rest."""

SETTLED = 3
"""A replica whose last this many runs took the same time has settled into a period of one
run; once every replica has, at one period for all, the window ends there, and that run
stands in for the rest."""

SETTLED_TOLERANCE = 1e-9
"""Relative difference below which two runs take "the same time" (:data:`SETTLED`)."""

ALIGNED = (0.0,)
"""Start offsets of the replicas when they start together (a prefill: every request arrives
at time zero)."""

SPREAD = (0.125, 0.375, 0.625, 0.875)
"""Start offsets averaged over for steady-state passes (decode steps), as fractions of one run
between consecutive replicas: replicas that serve their own requests are out of phase by
amounts the simulation cannot know, and contending replicas settle into different periodic
patterns depending on it (docs/metrics.md)."""


def link_bytes(records: Iterable[FlowRecord], label: str | None = None) -> Counter[str]:
    """Bytes that crossed each directed link in the finished flows (those labelled ``label``,
    or all of them)."""
    moved: Counter[str] = Counter()
    for rec in records:
        if label is None or rec.label == label:
            for name in _links(rec.resources):
                moved[name] += rec.size_bytes
    return moved


@lru_cache(maxsize=4096)
def _links(resources: tuple[str, ...]) -> tuple[str, ...]:
    """The directed links among a flow's resources (found once per route class)."""
    return tuple(name for name in resources if "->" in name)


def _flow_spans(records: Iterable[FlowRecord]) -> list[Span]:
    """Each flow on each directed link it crossed."""
    out = []
    for rec in records:
        links = _links(rec.resources)
        if links:
            size = f"{rec.size_bytes:.0f} B"
            out += [Span(name, size, "transfer", rec.start_s, rec.end_s) for name in links]
    return out


def run_tasks(fab: Fabric, coll: Collectives, tasks: Sequence[Task], devices: Sequence[str],
              track: str, spans: list[Span] | None, algorithms: Counter[str]
              ) -> Generator[Event, Any, None]:
    """``tasks`` on the stage group ``devices`` in lock step, as a SimPy process body."""
    env = fab.env
    for task in tasks:
        start = env.now
        if isinstance(task, ComputeTask):
            if task.seconds > 0:
                yield env.timeout(task.seconds)
            if spans is not None:
                for device in devices:
                    spans.append(Span(device, task.op, "compute", start, env.now))
        elif len(devices) > 1 and task.size_bytes > 0:
            result = yield coll.run(task.kind, list(devices), task.size_bytes, task.mode)
            algorithms[f"{task.kind} {result.algorithm} {result.protocol} ({task.mode})"] += 1
            if spans is not None:
                spans.append(Span(track, f"{task.kind} {task.size_bytes:.0f} B", "collective",
                                  start, env.now,
                                  (("algorithm", result.algorithm),
                                   ("protocol", result.protocol), ("mode", task.mode))))


def interacting(topo: Topology, groups: Sequence[tuple[str, ...]],
                tasks: Sequence[Task]) -> bool:
    """Can the collectives of ``tasks`` on two of ``groups`` contend for anything?"""
    modes = sorted({t.mode for t in tasks if isinstance(t, CommTask) and t.size_bytes > 0})
    if len(groups) < 2 or not modes:
        return False
    prints = [frozenset().union(*(footprint(topo, g, m) for m in modes)) for g in groups]
    return any(a & b for i, a in enumerate(prints) for b in prints[i + 1:])


def settled(runs: Sequence[float]) -> bool:
    """Whether the last :data:`SETTLED` of ``runs`` took the same time."""
    last = runs[-SETTLED:]
    return len(last) == SETTLED and max(last) - min(last) <= SETTLED_TOLERANCE * max(last)


def all_settled(lengths: Sequence[Sequence[float]]) -> bool:
    """Whether every replica's runs have :func:`settled`, at one period for all."""
    if not all(settled(x) for x in lengths):
        return False
    last = [x[-1] for x in lengths]
    return max(last) - min(last) <= SETTLED_TOLERANCE * max(last)


def _runs(topo: Topology, params: TransferSpec, tasks: Sequence[Task],
          groups: Sequence[tuple[str, ...]], runs: int, offsets: Sequence[float],
          memo: dict[Any, Any] | None, spans: list[Span] | None, solo: bool = False
          ) -> tuple[list[list[float]], Fabric, list[Counter[str]]]:
    """``runs`` runs back to back of every replica, replica ``i`` starting at
    ``offsets[i]``; returns each replica's run lengths, the fabric and its algorithm counts.
    ``solo``: no two replicas' collectives can contend, so each has the fabric to itself
    (:mod:`simtopo.engine.memo`). With ``runs`` > 1 the runs end early, all replicas at once,
    when every replica has :func:`settled`."""
    fab = Fabric.create(topo, params, record=True)
    env = fab.env
    lengths: list[list[float]] = [[] for _ in groups]
    counts: list[Counter[str]] = [Counter() for _ in groups]
    stop = env.event()

    def replica(i: int, devices: tuple[str, ...]) -> Generator[Event, Any, None]:
        coll = Collectives(fab, memo, label=str(i), solo=solo)
        track = f"stage group {devices[0]}..{devices[-1]}" if len(devices) > 1 else devices[0]
        if offsets[i] > 0:
            yield env.timeout(offsets[i])
        for k in range(runs):
            start = env.now
            record = spans if (i == 0 and k == 0) else None
            yield env.process(run_tasks(fab, coll, tasks, devices, track, record, counts[i]))
            lengths[i].append(env.now - start)
            if runs > 1 and not stop.triggered and all_settled(lengths):
                stop.succeed()

    everyone = [env.process(replica(i, devices)) for i, devices in enumerate(groups)]
    env.run(until=AnyOf(env, [stop, AllOf(env, everyone)]))
    return lengths, fab, counts


def run_block(topo: Topology, params: TransferSpec, tasks: Sequence[Task],
              groups: Sequence[tuple[str, ...]], record_spans: bool = True,
              memo: dict[Any, Any] | None = None, repeat: int = 1,
              phases: Sequence[float] = ALIGNED, contend: bool | None = None) -> BlockRun:
    """Run ``tasks`` on every device group of ``groups`` (one per replica) and return the time
    of one run. With ``repeat`` > 1 the block runs back to back, every replica free running,
    :data:`WINDOW` times for each of ``phases`` (replica ``i`` starting ``i`` x phase x one
    aligned run late), or until every replica has settled, and ``repeat`` runs are the
    window's runs plus its steady period for the rest; the time is the mean over phases and
    replicas, per run. ``memo`` carries what collectives were found to do between blocks
    (see :class:`Collectives`); ``contend`` is :func:`interacting` of the groups (found when
    not given)."""
    spans: list[Span] = []
    if contend is None:  # whether the groups' collectives can meet (:func:`interacting`)
        contend = interacting(topo, groups, tasks)
    solo = len(groups) == 1 or not contend
    lengths, fab, counts = _runs(topo, params, tasks, groups, 1, [0.0] * len(groups), memo,
                                 spans if record_spans else None, solo)
    aligned = max((x[0] for x in lengths), default=0.0)
    moved: Counter[str] = Counter(link_bytes(fab.net.records))
    algorithms: Counter[str] = sum(counts, Counter())
    flows = _flow_spans(fab.net.records) if record_spans else []
    compute = sum(t.seconds for t in tasks if isinstance(t, ComputeTask))
    if repeat == 1:
        return BlockRun(aligned, compute, spans, moved, algorithms, flows)
    window = min(repeat, WINDOW)
    totals = []
    simulated = 0
    for phase in phases:
        offsets = [i * phase * aligned for i in range(len(groups))]
        lengths, _, _ = _runs(topo, params, tasks, groups, window, offsets, memo, None)
        simulated = max(simulated, *(len(x) for x in lengths))
        for runs in lengths:
            if all_settled(lengths):  # every run so far had company
                steady, done = runs[-1:], runs
            else:
                steady = runs[window // 2:-1] or runs[-1:]
                done = runs[:-1] if window > 1 else runs
            period = sum(steady) / len(steady)
            totals.append(sum(done) + (repeat - len(done)) * period)
    seconds = sum(totals) / len(totals) / repeat
    return BlockRun(seconds, compute, spans, moved, algorithms, flows, simulated)


def replica_programs(plan: PartitionPlan, programs: Sequence[StageProgram]
                     ) -> list[list[StageProgram]]:
    """Replica 0's programs re-targeted at every replica's devices (index: replica, stage)."""
    return [[replace(p, stage=stages[p.stage.index]) for p in programs]
            for stages in plan.replicas]


def profile_pass(plan: PartitionPlan, graph: nx.DiGraph, topo: Topology, params: TransferSpec,
                 soc_model: Any, record_spans: bool = True,
                 memo: dict[Any, Any] | None = None,
                 phases: Sequence[float] = ALIGNED, replicas_contend: bool = True
                 ) -> PassProfile:
    """Simulate one pass shape: every stage's blocks (all replicas together) and hand-offs;
    replicas that contend run their repeated layers free running from ``phases`` (with
    ``replicas_contend=False`` each replica's collectives run as if it were alone: optimistic,
    and cheap). ``memo`` remembers what collectives were found to do (share it between passes
    on the same topology and transfer settings)."""
    programs = lower(plan, graph, topo, soc_model)
    per_replica = replica_programs(plan, programs)
    stage_passes = []
    link: Counter[str] = Counter()
    memo = {} if memo is None else memo
    for s, program in enumerate(programs):
        groups = [tuple(per_replica[r][s].stage.devices) for r in range(len(per_replica))]
        blocks = []
        seconds = compute = moved = 0.0
        for name, tasks, times in program.blocks:
            if times == 0 or not tasks:
                continue
            moved += sum(t.bytes for t in tasks if isinstance(t, ComputeTask)) * times
            contend = replicas_contend and interacting(topo, groups, tasks)
            repeat = times if times > 1 and contend else 1
            run = run_block(topo, params, tasks, groups, record_spans, memo, repeat,
                            phases, contend)
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
                seconds, moved_bytes = handoff_time(plan, s, size, topo, params)
                handoff_s[s] = seconds
                link.update(moved_bytes)
    return PassProfile(stage_passes, handoff_s, handoff_bytes, link)


def copy_handoff(fab: Fabric, plan: PartitionPlan, replica: int, stage: int,
                 size: float) -> list[Event]:
    """Stage ``stage - 1`` rank i to stage ``stage`` rank i of one replica: the copies."""
    src, dst = plan.replicas[replica][stage - 1], plan.replicas[replica][stage]
    return [fab.copy(src.devices[i % src.tp], device, size,
                     mode=plan.connection(src.logical[i % src.tp], dst.logical[i]))
            for i, device in enumerate(dst.devices)]


def handoff_time(plan: PartitionPlan, stage: int, size: float, topo: Topology,
                 params: TransferSpec) -> tuple[float, Counter[str]]:
    """Seconds and link bytes of the hand-off into ``stage``, every replica at once."""
    fab = Fabric.create(topo, params, record=True)
    for r in range(len(plan.replicas)):
        copy_handoff(fab, plan, r, stage, size)
    fab.env.run()
    return fab.env.now, link_bytes(fab.net.records)


def host_round_trip(plan: PartitionPlan, topo: Topology, params: TransferSpec,
                    logits_bytes: float, token_bytes: float, host_s: float
                    ) -> tuple[float, float, Counter[str]]:
    """(logits out + sampling, next token in) seconds and the link bytes: the last stage's
    first device copies the logits to host memory, the host samples, and the token ids go to
    every device of the first stage. Every replica does it at once."""
    out = Fabric.create(topo, params, record=True)
    for stages in plan.replicas:
        out.copy(stages[-1].devices[0], "host", logits_bytes)
    out.env.run()
    back = Fabric.create(topo, params, record=True)
    for stages in plan.replicas:
        for device in stages[0].devices:
            back.copy("host", device, token_bytes)
    back.env.run()
    moved = link_bytes(out.net.records) + link_bytes(back.net.records)
    return out.env.now + host_s, back.env.now, moved
