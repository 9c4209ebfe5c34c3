"""Serving a request stream with replicas of a compiled program: routers, schedulers, records.

An AI 100 program is compiled for fixed shapes: a prefill of ``chunk`` prompt tokens (for one
request, or for a batch of ``slots``), and a decode step over ``slots`` sequences at the
compiled context (masked): its time does not depend on how many slots are filled or how long
their contexts are. :class:`IterationTimes` holds those times, simulated on the topology
(:func:`simtopo.results.serving_run.iteration_times`); this module plays the requests through
them. A program compiled for several (batch, prompt chunk) *specializations* runs each static
batch at the smallest compiled batch that holds it, in the chunk length that prefills it
fastest; continuous batching decodes at the largest batch and prefills a request at the
smallest. (Dynamic shapes: :mod:`simtopo.sim.chunked`.)

- **Router**: each arriving request goes to a replica: ``round-robin``, or
  ``least-outstanding`` (fewest queued and running; ties to the lowest index).
- **continuous** (QEfficient's continuous batching on the AI 100): a replica keeps up to
  ``slots`` requests running. Whenever a slot is free and a request waits, the replica
  prefills that request (first come, first served; ``ceil(prompt / chunk)`` chunks, the first
  token at the end) and the decode steps wait; otherwise it runs one decode step, which gives
  every running request its next token, and frees the slots of those that are done.
- **static**: a replica waits for ``slots`` requests (or until its oldest has waited
  ``batch_wait``, or for the last arrival), prefills them together (``ceil(longest prompt /
  chunk)`` batch chunks), then decodes until the longest output is done; a request finishes
  at its own last step, but its slot stays idle until the batch ends.

The KV cache of a slot is the compiled context: ``slots`` bounds concurrency, and the memory
model has checked that the slots fit. A request whose prompt and output exceed the compiled
context is refused before the run.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..workload.requests import Requests


@dataclass(frozen=True)
class CompiledShape:
    """One specialization of the program and its times on the topology (seconds)."""

    batch: int
    chunk: int
    prefill_s: float
    """One chunk for the whole batch."""
    decode_s: float
    """One decode step of the batch."""


@dataclass(frozen=True)
class IterationTimes:
    """The compiled program's times on the topology (seconds)."""

    chunk: int
    """Prompt tokens per prefill chunk."""
    prefill_s: float
    """One chunk for one request."""
    batch_prefill_s: float
    """One chunk for ``slots`` requests at once (static batching)."""
    decode_s: float
    """One decode step over ``slots`` sequences."""
    slots: int
    socs: int = 0
    """SoCs the replicas occupy together."""
    shapes: tuple[CompiledShape, ...] = ()
    """Every specialization, when the program has several; the fields above then summarise
    them: ``chunk`` and ``prefill_s`` of the smallest batch's shortest chunk,
    ``batch_prefill_s`` and ``decode_s`` of the largest batch's fastest decode."""

    def prefill_one(self, prompt: int) -> float:
        """Prefilling one request: at the smallest compiled batch, in the chunk length that
        does it fastest."""
        if not self.shapes:
            return math.ceil(prompt / self.chunk) * self.prefill_s
        smallest = min(x.batch for x in self.shapes)
        return min(math.ceil(prompt / x.chunk) * x.prefill_s for x in self.shapes
                   if x.batch == smallest)

    def static_batch(self, size: int, longest: int) -> tuple[float, float]:
        """(prefill, decode step) seconds of a static batch of ``size`` requests whose
        longest prompt is ``longest``: at the smallest compiled batch that holds them, in its
        fastest chunk length."""
        if not self.shapes:
            return math.ceil(longest / self.chunk) * self.batch_prefill_s, self.decode_s
        batch = min(x.batch for x in self.shapes if x.batch >= size)
        best = min((x for x in self.shapes if x.batch == batch),
                   key=lambda x: (math.ceil(longest / x.chunk) * x.prefill_s, x.chunk))
        return math.ceil(longest / best.chunk) * best.prefill_s, best.decode_s

    def summary(self) -> dict[str, Any]:
        """Plain data (the specializations only when there are several)."""
        out = asdict(self)
        if not self.shapes:
            del out["shapes"]
        return out


@dataclass(frozen=True)
class Iterations:
    """Every iteration a dynamic-shape server ran (arrays in the order they started)."""

    replica: np.ndarray
    start_s: np.ndarray
    seconds: np.ndarray
    decodes: np.ndarray
    """Sequences that decoded a token."""
    prefill_tokens: np.ndarray
    """Prompt tokens prefilled (chunks of one or more sequences)."""
    kv_positions: np.ndarray
    """KV-cache positions the replica held while it ran."""


@dataclass(frozen=True)
class Records:
    """What happened to each request (arrays in request order)."""

    replica: np.ndarray
    start_s: np.ndarray
    """When its prefill began."""
    first_token_s: np.ndarray
    finish_s: np.ndarray
    preempted: np.ndarray | None = None
    """Times each request was preempted (dynamic shapes: the KV pool ran out)."""
    iterations: Iterations | None = None


def route(router: str, index: int, outstanding: list[int]) -> int:
    """The replica request ``index`` goes to: ``round-robin``, or ``least-outstanding``
    (fewest queued and running; ties to the lowest index)."""
    if router == "round-robin":
        return index % len(outstanding)
    return min(range(len(outstanding)), key=lambda k: (outstanding[k], k))


class _Replica:
    """One replica's queue, running requests and clock."""

    def __init__(self) -> None:
        self.queue: deque[int] = deque()
        self.running: dict[int, int] = {}  # request -> tokens still to decode
        self.prefilling = 0  # requests whose prefill is running now
        self.busy = False
        self.batch_left = 0  # static: decode steps left in the current batch
        self.step_s = 0.0  # static: the current batch's decode step

    @property
    def outstanding(self) -> int:
        return len(self.queue) + len(self.running) + self.prefilling


def serve(requests: Requests, times: IterationTimes, replicas: int,
          scheduler: str = "continuous", router: str = "round-robin",
          batch_wait: float | None = None) -> Records:
    """Play ``requests`` through ``replicas`` copies of the program (module docstring)."""
    n = len(requests)
    arrival, prompt, output = requests.arrival_s, requests.prompt_tokens, requests.output_tokens
    where = np.zeros(n, dtype=np.int64)
    start, first, finish = (np.full(n, np.nan) for _ in range(3))
    reps = [_Replica() for _ in range(replicas)]
    events: list[tuple[float, int, int, int]] = []  # (time, order, kind, index)
    order = 0

    def push(time: float, kind: int, index: int) -> None:
        nonlocal order
        heapq.heappush(events, (time, order, kind, index))
        order += 1

    for i in range(n):
        push(float(arrival[i]), 0, i)
    arrived = 0

    def decode(r: int, now: float) -> None:
        """One decode step of replica ``r``: a token for every running request."""
        rep = reps[r]
        done = now + (rep.step_s if scheduler == "static" else times.decode_s)
        for i in list(rep.running):
            rep.running[i] -= 1
            if rep.running[i] == 0:
                del rep.running[i]
                finish[i] = done
        rep.busy = True
        push(done, 1, r)

    def step(r: int, now: float) -> None:
        """Start ``r``'s next iteration, if it has one."""
        rep = reps[r]
        if scheduler == "continuous":
            if rep.queue and len(rep.running) < times.slots:
                i = rep.queue.popleft()
                rep.prefilling = 1
                start[i] = now
                done = now + times.prefill_one(int(prompt[i]))
                first[i] = done
                if output[i] > 1:
                    rep.running[i] = int(output[i]) - 1
                else:
                    finish[i] = done
                rep.busy = True
                push(done, 1, r)
            elif rep.running:
                decode(r, now)
            return
        if rep.batch_left > 0:  # static: the batch's next decode step
            rep.batch_left -= 1
            decode(r, now)
        elif rep.queue and (len(rep.queue) >= times.slots or arrived == n or (
                batch_wait is not None and now >= arrival[rep.queue[0]] + batch_wait)):
            batch = [rep.queue.popleft() for _ in range(min(times.slots, len(rep.queue)))]
            rep.prefilling = sum(1 for i in batch if output[i] == 1)
            prefill_s, rep.step_s = times.static_batch(len(batch), int(prompt[batch].max()))
            done = now + prefill_s
            for i in batch:
                start[i], first[i] = now, done
                if output[i] > 1:
                    rep.running[i] = int(output[i]) - 1
                else:
                    finish[i] = done
            rep.batch_left = int(output[batch].max()) - 1
            rep.busy = True
            push(done, 1, r)

    while events:
        now, _, kind, index = heapq.heappop(events)
        if kind == 0:  # an arrival: route it
            arrived += 1
            r = route(router, index, [rep.outstanding for rep in reps])
            where[index] = r
            reps[r].queue.append(index)
            if not reps[r].busy:
                step(r, now)
            if scheduler == "static" and batch_wait is not None:
                push(now + batch_wait, 2, r)  # the batch starts by then, full or not
            if arrived == n and scheduler == "static":  # the last one: stragglers go now
                for k, rep in enumerate(reps):
                    if not rep.busy:
                        step(k, now)
        elif kind == 2:  # a static batch's wait ran out
            if not reps[index].busy:
                step(index, now)
        else:  # a replica finished an iteration
            reps[index].busy = False
            reps[index].prefilling = 0
            step(index, now)
    return Records(where, start, first, finish)
