"""The reference simulation: everything in one SimPy run, nothing memoized. Slow; it exists to
measure what :mod:`simtopo.sim`'s shortcuts cost (``docs/metrics.md``,
``benchmarks/approximations.py``).

Every request group of every replica runs its prefill chunks and decode steps through the
stages on one shared fabric: every layer's ops and collectives in turn (no layer repeated from
a single run), every stage hand-off and host round trip as real copies while other stages and
replicas compute and communicate, and, for dynamic shapes, every decode step at its own context
length (no sampling). Replicas start together and drift apart as they contend.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import simpy
from simpy.events import AllOf, Event

from ..constants import DEFAULT_SOC_MODEL, SocModel
from ..engine.collectives import Collectives
from ..engine.transfers import Fabric
from .blocks import _run_tasks, replica_programs
from .setup import LlmSetup, host_payloads, host_step_seconds
from .tasks import StageProgram, lower


@dataclass(frozen=True)
class FullRun:
    """Token times of every request group of every replica, and the headline metrics."""

    token_times: list[list[list[float]]]
    makespan_s: float

    def metrics(self) -> dict[str, float]:
        """TTFT, TPOT (mean over all gaps) and end-to-end, as :mod:`simtopo.result` defines."""
        firsts = [t[0] for r in self.token_times for t in r]
        lasts = [t[-1] for r in self.token_times for t in r]
        gaps = [b - a for r in self.token_times for t in r for a, b in itertools.pairwise(t)]
        return {"ttft_s": float(np.mean(firsts)),
                "tpot_mean_s": float(np.mean(gaps)) if gaps else 0.0,
                "e2e_s": float(np.mean(lasts)), "makespan_s": self.makespan_s}


def simulate_full(setup: LlmSetup, soc_model: SocModel = DEFAULT_SOC_MODEL,
                  generate: int | None = None) -> FullRun:
    """Run ``setup``'s workload (``generate`` tokens if given) without shortcuts."""
    w = setup.variant.workload
    plan, topo = setup.plan, setup.topo
    tokens = w.generate if generate is None else generate
    fab = Fabric.create(topo, setup.params)
    coll = Collectives(fab)
    env = fab.env
    programs: dict[int, list[list[StageProgram]]] = {}

    def programs_for(graph: nx.DiGraph, key: int) -> list[list[StageProgram]]:
        if key not in programs:
            programs[key] = replica_programs(plan, lower(plan, graph, topo, soc_model))
        return programs[key]

    handoff_bytes: dict[int, list[float]] = {}

    def handoffs(graph: nx.DiGraph, key: int) -> list[float]:
        if key not in handoff_bytes:
            _, _, found = plan.layout(graph)
            handoff_bytes[key] = [sum(h.bytes for h in found if h.stage == s)
                                  for s in range(len(plan.stages))]
        return handoff_bytes[key]

    logits_bytes, token_bytes = host_payloads(setup)
    host_s = host_step_seconds(setup.variant, soc_model)
    stages = len(plan.stages)
    resources = [[simpy.Resource(env, capacity=1) for _ in range(stages)]
                 for _ in plan.replicas]
    token_times: list[list[list[float]]] = [[[] for _ in range(w.groups)]
                                            for _ in plan.replicas]
    used: Counter[str] = Counter()

    def stage_pass(program: StageProgram) -> Generator[Event, Any, None]:
        devices = program.stage.devices
        for tasks in (program.head, *([program.layer] * program.repeat), program.tail):
            if tasks:
                yield env.process(_run_tasks(fab, coll, tasks, devices, "", None, used))

    def hand_off(r: int, s: int, size: float) -> Event:
        src, dst = plan.replicas[r][s - 1], plan.replicas[r][s]
        copies = [fab.copy(src.devices[i % src.tp], device, size,
                           mode=plan.connection(src.logical[i % src.tp], dst.logical[i]))
                  for i, device in enumerate(dst.devices)]
        return AllOf(env, copies)

    def through(r: int, graph: nx.DiGraph, key: int,
                left_first: Event | None = None) -> Generator[Event, Any, None]:
        progs = programs_for(graph, key)[r]
        sizes = handoffs(graph, key)
        for s in range(stages):
            if s > 0 and sizes[s] > 0:
                yield hand_off(r, s, sizes[s])
            with resources[r][s].request() as turn:
                yield turn
                yield env.process(stage_pass(progs[s]))
            if s == 0 and left_first is not None:
                left_first.succeed()

    def round_trip_out(r: int) -> Generator[Event, Any, None]:
        yield fab.copy(plan.replicas[r][-1].devices[0], "host", logits_bytes)
        if host_s > 0:
            yield env.timeout(host_s)

    def token_in(r: int) -> Event:
        return AllOf(env, [fab.copy("host", d, token_bytes)
                           for d in plan.replicas[r][0].devices])

    def chunk(r: int, ready: Event, left: Event) -> Generator[Event, Any, None]:
        yield ready
        yield env.process(through(r, setup.prefill_graph, -1, left))

    def group(r: int, g: int) -> Generator[Event, Any, None]:
        ready = env.event().succeed()
        last = None
        for _ in range(setup.chunks):
            left = env.event()
            last = env.process(chunk(r, ready, left))
            ready = left
        yield last
        yield env.process(round_trip_out(r))
        token_times[r][g].append(env.now)
        for step in range(tokens - 1):
            context = w.prompt + 1 + step
            key = w.context_length if setup.compiled else context
            yield token_in(r)
            yield env.process(through(r, setup.decode_graph(context), key))
            yield env.process(round_trip_out(r))
            token_times[r][g].append(env.now)

    for r in range(len(plan.replicas)):
        for g in range(w.groups):
            env.process(group(r, g))
    env.run()
    return FullRun(token_times, env.now)
