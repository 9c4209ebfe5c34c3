"""The pass level: request groups of every replica through the pipeline stages.

Each request group runs its prefill chunks (or the micro-batches of a forward pass) through
the stages, a stage serving one pass at a time; after the last stage the logits go to the
host, which samples, and the next token ids come back before each decode step. A pass is
priced by its profile (:mod:`simtopo.sim.blocks`) or, where the driver's mode says so, run
live by a runner on the same environment (:mod:`simtopo.sim.driver`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

import simpy
from simpy.events import AllOf, AnyOf, Event

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
        self.log: list[tuple[float, tuple[Any, ...]]] | None = None
        """Every stage event in time order, when looking for a periodic schedule."""
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

    def through(self, r: int, kind: str, key: Any, left_first: Event | None = None,
                group: int = -1) -> Generator[Event, Any, None]:
        """One pass through every stage of replica ``r``; ``left_first`` fires when it leaves
        the first stage (the next chunk or micro-batch may enter). With :attr:`log` on, the
        pass's arrival, start and end at each stage are logged for request group ``group``."""
        for s in range(self.shape.stages):
            if s > 0:
                yield from self.handoff(r, s, key)
            with self.resources[r][s].request() as turn:
                if self.log is not None:
                    self.log.append((self.env.now, ("arrive", r, s, group)))
                yield turn
                if self.log is not None:
                    self.log.append((self.env.now, ("start", r, s, group)))
                self.busy[r][s] += yield from self.stage_pass(r, s, key)
                if self.log is not None:
                    self.log.append((self.env.now, ("end", r, s, group)))
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

    With compiled shapes every decode step costs the same, so once no forward pass is pending
    the schedule becomes periodic: every stage event of the last period (each pass's arrival,
    start and end, each token) repeats the period before, shifted by one period. From there
    it repeats for ever, until request groups start to finish; so the run is simulated again
    with that many periods fewer (:data:`TAIL` steps before the first group would finish
    are kept) and the periods are put back in (:func:`_stretched`)."""
    if not (shape.kind == "llm" and shape.compiled and live is None and not all_live):
        return _simulate(shape, profiles, round_trip, live, all_live)[0]
    timeline, point = _simulate(shape, profiles, round_trip, None, False, look=True)
    if point is None:  # never periodic: simulated to the end already
        return timeline
    t_star, period, ahead = point
    skip = shape.steps - ahead - TAIL
    if skip <= 0:
        return _simulate(shape, profiles, round_trip, None, False)[0]
    short = replace(shape, steps=shape.steps - skip)
    return _stretched(_simulate(short, profiles, round_trip, None, False)[0], shape, profiles,
                      t_star, period, skip)


TAIL = 3
"""Decode steps, before the first request group would finish, that are always simulated."""

PERIOD_TOLERANCE = 1e-9
"""Relative difference within which two periods' events are the same (plus a few units in
the last place of the absolute times)."""


def _simulate(shape: Pipeline, profiles: dict[str, PassProfile], round_trip: tuple[float, float],
              live: Callable[[simpy.Environment], Any] | None, all_live: bool,
              look: bool = False) -> tuple[Timeline, tuple[float, float, int] | None]:
    """The pass level step by step; with ``look``, it stops where the schedule has become
    periodic and returns (that time, the period, the most decode steps any group has done:
    the group that finishes first) as well."""
    env = simpy.Environment()
    passes = _Passes(env, shape, profiles, round_trip, live(env) if live else None, all_live)
    replicas, groups = range(shape.replicas), range(shape.groups)
    token_times: list[list[list[float]]] = [[[] for _ in groups] for _ in replicas]
    prefill_end = [[0.0] * shape.groups for _ in replicas]
    decode_steps: list[tuple[float, float]] = []
    stop = env.event()
    decoding_from = [math.inf]  # when the last forward pass ended
    if look:
        passes.log = []

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
            yield env.process(passes.through(r, "decode", shape.first_context + step,
                                             group=g))
            yield from passes.logits_out(r)
            token_times[r][g].append(env.now)
            if passes.log is not None:
                passes.log.append((env.now, ("token", r, -1, g)))
            if r == 0 and g == 0:
                decode_steps.append((start, env.now))
                times = token_times[0][0]
                if look and not stop.triggered and len(times) > 2 and \
                        _repeats(passes.log, times[-1], times[-1] - times[-2],
                                 decoding_from[0], shape.replicas * shape.groups):
                    stop.succeed()

    everyone = [env.process(group(r, g)) for r in replicas for g in groups]
    env.run(until=AnyOf(env, [stop, AllOf(env, everyone)]))
    if shape.kind != "llm":
        prefill_end = [[0.0] for _ in replicas]
    timeline = Timeline(token_times, prefill_end, passes.busy, passes.passes, env.now,
                        decode_steps)
    if not stop.triggered:
        return timeline, None
    t_star = token_times[0][0][-1]
    ahead = max(len(times) - 1 for per_replica in token_times for times in per_replica)
    return timeline, (t_star, t_star - token_times[0][0][-2], ahead)


def _repeats(log: list[tuple[float, tuple[Any, ...]]], now: float, period: float,
             since: float, groups: int) -> bool:
    """Whether the stage events of the last ``period`` before ``now`` (just before: events
    at ``now`` itself may still be coming) are those of the period before, one period later,
    every one of the ``groups`` request groups (of all replicas) taking part, and both
    periods after ``since``. The log is trimmed to them."""
    edge = 1e-6 * period  # windows end just before now: events at now are still coming
    if not period > 0 or now - 2 * period - edge <= since:
        return False
    times = [t for t, _ in log]
    first = bisect_left(times, now - 2 * period - edge)
    middle = bisect_left(times, now - period - edge)
    last = bisect_left(times, now - edge)
    del log[:first]
    earlier, later = log[:middle - first], log[middle - first:last - first]
    if len(earlier) != len(later) or len({(e[1], e[3]) for _, e in later}) != groups:
        return False
    tolerance = PERIOD_TOLERANCE * period + 64 * math.ulp(now)
    return all(a[1] == b[1] and abs(b[0] - a[0] - period) <= tolerance
               for a, b in zip(sorted(earlier, key=_by_event), sorted(later, key=_by_event),
                               strict=True))


def _by_event(entry: tuple[float, tuple[Any, ...]]) -> tuple[Any, ...]:
    return (entry[1], entry[0])


def _stretched(short: Timeline, shape: Pipeline, profiles: dict[str, PassProfile],
               t_star: float, period: float, skip: int) -> Timeline:
    """``short`` (the run with ``skip`` decode steps fewer per group) with ``skip`` periods
    put back at ``t_star``, where its schedule is periodic: every later event moves by
    ``skip`` periods, and each group gains ``skip`` tokens one period apart."""
    shift = skip * period
    edge = 1e-6 * period
    tokens = []
    for per_replica in short.token_times:
        rows = []
        for times in per_replica:
            before = [t for t in times if t <= t_star + edge]
            after = [t for t in times if t > t_star + edge]
            rows.append(before + [after[0] + k * period for k in range(skip)]
                        + [t + shift for t in after])
        tokens.append(rows)
    first = tokens[0][0]
    steps = [(first[k], first[k + 1]) for k in range(len(first) - 1)]
    stages = (profiles[f"decode@{max(int(k.split('@')[1]) for k in profiles if '@' in k)}"]
              .stages)
    busy = [[b + skip * shape.groups * stages[s].seconds for s, b in enumerate(row)]
            for row in short.stage_busy]
    passes = Counter(short.passes)
    for s in range(shape.stages):
        passes[("decode", s)] += skip * shape.groups
    return Timeline(tokens, short.prefill_end, busy, passes, short.makespan + shift, steps)
