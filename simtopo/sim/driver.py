"""The pass level of the simulation: request groups, prefill chunks and decode steps through
the stages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy
from simpy.events import AllOf, Event

from .blocks import PassProfile


@dataclass
class Timeline:
    """When things happened at the pass level, per replica and request group."""

    token_times: list[list[list[float]]]  # [replica][group] -> time of each output token
    prefill_end: list[list[float]]
    stage_busy: list[list[float]]  # [replica][stage] seconds a pass occupied the stage
    passes: Counter[tuple[str, int]]  # (kind, stage) -> passes run (one replica)
    makespan: float
    decode_steps: list[tuple[float, float]]  # (start, end) of group 0's decode steps


def simulate_llm(stages: int, replicas: int, groups: int, prefill_chunks: int,
                 prefill: PassProfile, decode_at: Callable[[int], PassProfile],
                 steps: int, first_context: int, logits_s: float, token_s: float
                 ) -> Timeline:
    """Prefill then ``steps`` decode steps for every group of every replica.

    ``decode_at(context)`` gives the decode pass profile at a context length; ``logits_s``
    is the logits copy plus sampling after the last stage, ``token_s`` the next token's copy
    to the first stage (before every decode step).
    """
    env = simpy.Environment()
    busy = [[0.0] * stages for _ in range(replicas)]
    passes: Counter[tuple[str, int]] = Counter()
    token_times = [[[] for _ in range(groups)] for _ in range(replicas)]
    prefill_end = [[0.0] * groups for _ in range(replicas)]
    decode_steps: list[tuple[float, float]] = []

    def through(r: int, res: list[simpy.Resource], profile: PassProfile, kind: str,
                left_first: Event | None = None) -> Generator[Event, Any, None]:
        for s in range(stages):
            if s > 0 and profile.handoff_s[s] > 0:
                yield env.timeout(profile.handoff_s[s])
            with res[s].request() as turn:
                yield turn
                seconds = profile.stages[s].seconds
                yield env.timeout(seconds)
                busy[r][s] += seconds
                if r == 0:
                    passes[(kind, s)] += 1
            if s == 0 and left_first is not None:
                left_first.succeed()

    def chunk(r: int, res: list[simpy.Resource], ready: Event,
              left: Event) -> Generator[Event, Any, None]:
        yield ready
        yield env.process(through(r, res, prefill, "prefill", left))

    def group(r: int, g: int, res: list[simpy.Resource]) -> Generator[Event, Any, None]:
        ready = env.event().succeed()
        last = None
        for _ in range(prefill_chunks):  # chunk c + 1 enters a stage after chunk c leaves it
            left = env.event()
            last = env.process(chunk(r, res, ready, left))
            ready = left
        yield last
        prefill_end[r][g] = env.now
        yield env.timeout(logits_s)
        token_times[r][g].append(env.now)
        for step in range(steps):
            start = env.now
            if token_s > 0:
                yield env.timeout(token_s)
            yield env.process(through(r, res, decode_at(first_context + step), "decode"))
            yield env.timeout(logits_s)
            token_times[r][g].append(env.now)
            if r == 0 and g == 0:
                decode_steps.append((start, env.now))

    for r in range(replicas):
        res = [simpy.Resource(env, capacity=1) for _ in range(stages)]
        for g in range(groups):
            env.process(group(r, g, res))
    env.run()
    return Timeline(token_times, prefill_end, busy, passes, env.now, decode_steps)


def simulate_inference(stages: int, replicas: int, micro_batches: int,
                       profile: PassProfile) -> Timeline:
    """One forward pass of a batch split into ``micro_batches``, pipelined over the stages."""
    env = simpy.Environment()
    busy = [[0.0] * stages for _ in range(replicas)]
    passes: Counter[tuple[str, int]] = Counter()
    ends = [[0.0] for _ in range(replicas)]

    def micro(r: int, res: list[simpy.Resource], ready: Event,
              left: Event) -> Generator[Event, Any, None]:
        yield ready
        for s in range(stages):
            if s > 0 and profile.handoff_s[s] > 0:
                yield env.timeout(profile.handoff_s[s])
            with res[s].request() as turn:
                yield turn
                yield env.timeout(profile.stages[s].seconds)
                busy[r][s] += profile.stages[s].seconds
                if r == 0:
                    passes[("forward", s)] += 1
            if s == 0:
                left.succeed()
        ends[r][0] = max(ends[r][0], env.now)

    for r in range(replicas):
        res = [simpy.Resource(env, capacity=1) for _ in range(stages)]
        ready = env.event().succeed()
        procs = []
        for _ in range(micro_batches):
            left = env.event()
            procs.append(env.process(micro(r, res, ready, left)))
            ready = left
        env.process(_wait_all(env, procs))
    env.run()
    return Timeline([[[e[0]]] for e in ends], [[0.0] for _ in range(replicas)], busy, passes,
                    env.now, [])


def _wait_all(env: simpy.Environment, procs: list[Event]) -> Generator[Event, Any, None]:
    yield AllOf(env, procs)
