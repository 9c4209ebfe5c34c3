"""The pass level: request groups of every replica through the pipeline stages.

Each request group runs its prefill chunks (or the micro-batches of a forward pass) through
the stages, a stage serving one pass at a time; after the last stage the logits go to the
host, which samples, and the next token ids come back before each decode step. A pass is
priced by its profile (:mod:`simtopo.sim.blocks`) or, where the driver's mode says so, run
live by a runner on the same environment (:mod:`simtopo.sim.driver`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy
from simpy.events import AllOf, AnyOf, Event

from . import blocks
from .profiles import PassProfile, interpolate
from .setup import Setup, groups_and_steps


@dataclass
class Timeline:
    """When things happened at the pass level, per replica and request group."""

    token_times: list[list[list[float]]]  # [replica][group] -> time of each output token
    prefill_end: list[list[float]]
    stage_busy: list[list[float]]  # [replica][stage] seconds a pass occupied the stage
    passes: Counter[tuple[str, int]]  # (kind, stage) -> passes run (one replica)
    makespan: float
    decode_steps: list[tuple[float, float]]  # (start, end) of group 0's decode steps


@dataclass(frozen=True)
class Pipeline:
    """The shape of the pass level: stages, replicas, and the passes each request group runs."""

    stages: int
    replicas: int = 1
    groups: int = 1
    """Request groups in flight per replica (LLM workloads; 1 for a forward pass)."""
    forward_passes: int = 1
    """Prefill chunks per group, or micro-batches of a forward pass."""
    steps: int = 0
    """Decode steps per group after its first token (LLM workloads)."""
    first_context: int = 1
    """Context length of the first decode step (each step attends one more)."""
    compiled: bool = True
    """Every decode step runs the compiled shape (the largest profiled context)."""
    kind: str = "llm"

    @classmethod
    def of(cls, setup: Setup) -> Pipeline:
        """The pass level of a set-up variant."""
        groups, steps = groups_and_steps(setup.variant)
        return cls(len(setup.plan.stages), len(setup.plan.replicas), groups,
                   setup.forward_passes, steps, setup.variant.workload.prompt + 1,
                   setup.compiled, setup.kind)

    @property
    def passes(self) -> int:
        """Passes through the pipeline, all replicas and request groups together."""
        return self.replicas * self.groups * (self.forward_passes + self.steps)


class _Passes:
    """The pass-level model: request groups through the stages, each piece of work priced by
    its profile or, when the policy says so, run live."""

    def __init__(self, env: simpy.Environment, shape: Pipeline,
                 profiles: dict[str, PassProfile], round_trip: tuple[float, float],
                 live: Any, all_live: bool) -> None:
        self.env, self.shape, self.profiles = env, shape, profiles
        self.logits_s, self.token_s = round_trip
        self.runner, self.all_live = live, all_live
        self.pending = shape.replicas * shape.groups
        """Request groups whose forward passes are not all done: with a runner and not
        ``all_live``, work that starts before this reaches zero runs live."""
        self.resources = [[simpy.Resource(env, capacity=1) for _ in range(shape.stages)]
                          for _ in range(shape.replicas)]
        self.busy = [[0.0] * shape.stages for _ in range(shape.replicas)]
        self.decoded = [[0] * shape.stages for _ in range(shape.replicas)]
        """Decode passes each stage of each replica has finished."""
        self.passes: Counter[tuple[str, int]] = Counter()
        self.decode = {int(k.split("@")[1]): p for k, p in profiles.items()
                       if k.startswith("decode@")}

    def live(self) -> Any:
        """The runner, if the work starting now runs live."""
        if self.runner is not None and (self.all_live or self.pending > 0):
            return self.runner
        return None

    def _profile(self, key: Any) -> PassProfile:
        if key == "forward":
            return self.profiles["prefill" if "prefill" in self.profiles else "forward"]
        return self.decode[max(self.decode)] if self.shape.compiled else \
            interpolate(self.decode, key)

    def stage_pass(self, r: int, s: int, key: Any) -> Generator[Event, Any, float]:
        """Stage ``s`` of replica ``r`` runs one pass (``key``: "forward" or a context);
        returns its seconds."""
        runner = self.live()
        if runner is None:
            seconds = self._profile(key).stages[s].seconds
            yield self.env.timeout(seconds)
            return seconds
        start = self.env.now
        yield from runner.stage_pass(r, s, key)
        return self.env.now - start

    def handoff(self, r: int, s: int, key: Any) -> Generator[Event, Any, None]:
        """Activations into stage ``s`` of replica ``r``, rank i to rank i."""
        runner = self.live()
        if runner is not None:
            yield from runner.handoff(r, s, key)
        elif self._profile(key).handoff_s[s] > 0:
            yield self.env.timeout(self._profile(key).handoff_s[s])

    def logits_out(self, r: int) -> Generator[Event, Any, None]:
        """The last stage's logits to host memory, then the host samples."""
        runner = self.live()
        if runner is not None:
            yield from runner.logits_out(r)
        else:
            yield self.env.timeout(self.logits_s)

    def token_in(self, r: int) -> Generator[Event, Any, None]:
        """The next token ids to every device of the first stage."""
        runner = self.live()
        if runner is not None:
            yield from runner.token_in(r)
        elif self.token_s > 0:
            yield self.env.timeout(self.token_s)

    def through(self, r: int, kind: str, key: Any,
                left_first: Event | None = None) -> Generator[Event, Any, None]:
        """One pass through every stage of replica ``r``; ``left_first`` fires when it leaves
        the first stage (the next chunk or micro-batch may enter)."""
        for s in range(self.shape.stages):
            if s > 0:
                yield from self.handoff(r, s, key)
            with self.resources[r][s].request() as turn:
                yield turn
                self.busy[r][s] += yield from self.stage_pass(r, s, key)
                if kind == "decode":
                    self.decoded[r][s] += 1
                if r == 0:
                    self.passes[(kind, s)] += 1
            if s == 0 and left_first is not None:
                left_first.succeed()

    def forward(self, r: int, kind: str) -> Generator[Event, Any, None]:
        """The forward passes of one group (prefill chunks, micro-batches) one after the
        other into the pipeline: each enters a stage when the one before has left it."""
        ready = self.env.event().succeed()
        last = None
        for _ in range(self.shape.forward_passes):
            left = self.env.event()
            last = self.env.process(self._entering(r, kind, ready, left))
            ready = left
        yield last

    def _entering(self, r: int, kind: str, ready: Event,
                  left: Event) -> Generator[Event, Any, None]:
        yield ready
        yield self.env.process(self.through(r, kind, "forward", left))


def run_pipeline(shape: Pipeline, profiles: dict[str, PassProfile],
                 round_trip: tuple[float, float] = (0.0, 0.0),
                 live: Callable[[simpy.Environment], Any] | None = None,
                 all_live: bool = False) -> Timeline:
    """Every request group of every replica through the stages (module docstring), pricing
    each pass by ``profiles`` (``prefill`` or ``forward``, and ``decode@<context>``) and
    ``round_trip`` (logits out with sampling, next token in), except what ``live`` (a runner
    on the same environment) runs: everything with ``all_live``, else the work that starts
    while a forward pass is pending.

    With compiled shapes and one request group per replica every decode step after the
    prefill is the same chain of durations; once every replica's last ``blocks.SETTLED`` steps
    took one period, the rest of the generation is laid out at that period
    (:func:`_extrapolate`) instead of simulated step by step."""
    env = simpy.Environment()
    passes = _Passes(env, shape, profiles, round_trip, live(env) if live else None, all_live)
    replicas, groups = range(shape.replicas), range(shape.groups)
    token_times: list[list[list[float]]] = [[[] for _ in groups] for _ in replicas]
    prefill_end = [[0.0] * shape.groups for _ in replicas]
    decode_steps: list[tuple[float, float]] = []
    # one request group per replica never queues for a stage: once no prefill is pending
    # every compiled step is the same chain of durations (with several groups, steps can keep
    # equal gaps while a stage's queue still grows, and the last steps speed up as groups
    # finish: those are simulated step by step)
    steady = shape.kind == "llm" and shape.compiled and not all_live and shape.groups == 1 \
        and shape.steps > blocks.SETTLED
    stop = env.event()
    decoding_from = [math.inf]  # when the last forward pass ended

    def settled() -> bool:
        n = blocks.SETTLED
        for per_replica in token_times:
            for times in per_replica:
                if len(times) < n + 2 or times[-n - 1] < decoding_from[0] or \
                        not blocks.settled([b - a for a, b in zip(times[-n - 1:-1],
                                                                 times[-n:], strict=True)]):
                    return False
        return True

    def group(r: int, g: int) -> Generator[Event, Any, None]:
        kind = "prefill" if shape.kind == "llm" else "forward"
        yield from passes.forward(r, kind)
        prefill_end[r][g] = env.now
        passes.pending -= 1
        if passes.pending == 0:
            decoding_from[0] = env.now
        if shape.kind != "llm":
            token_times[r][g].append(env.now)
            return
        yield from passes.logits_out(r)
        token_times[r][g].append(env.now)
        for step in range(shape.steps):
            start = env.now
            yield from passes.token_in(r)
            yield env.process(passes.through(r, "decode", shape.first_context + step))
            yield from passes.logits_out(r)
            token_times[r][g].append(env.now)
            if r == 0 and g == 0:
                decode_steps.append((start, env.now))
            if steady and not stop.triggered and settled():
                stop.succeed()

    everyone = [env.process(group(r, g)) for r in replicas for g in groups]
    env.run(until=AnyOf(env, [stop, AllOf(env, everyone)]))
    makespan = env.now
    if stop.triggered:
        makespan = _extrapolate(shape, passes, token_times, decode_steps)
    if shape.kind != "llm":
        prefill_end = [[0.0] for _ in replicas]
    return Timeline(token_times, prefill_end, passes.busy, passes.passes, makespan,
                    decode_steps)


def _extrapolate(shape: Pipeline, passes: _Passes, token_times: list[list[list[float]]],
                 decode_steps: list[tuple[float, float]]) -> float:
    """Lay out every group's remaining tokens at its settled period, add the decode passes
    still to run to each stage's busy time and count, and return the makespan."""
    for per_replica in token_times:
        for times in per_replica:
            period, last = times[-1] - times[-2], times[-1]
            times.extend(last + k * period for k in range(1, shape.steps + 2 - len(times)))
    first = token_times[0][0]
    decode_steps.extend((first[k - 1], first[k]) for k in range(len(decode_steps) + 1,
                                                                 len(first)))
    stages = passes._profile(shape.first_context).stages
    for r in range(shape.replicas):
        for s in range(shape.stages):
            left = shape.groups * shape.steps - passes.decoded[r][s]
            passes.busy[r][s] += left * stages[s].seconds
            if r == 0:
                passes.passes[("decode", s)] += left
    return max(times[-1] for per_replica in token_times for times in per_replica)
