"""Dynamic-shape continuous batching: a token budget, chunked prefill, a KV pool, preemption.

How vLLM and Sarathi-Serve run a model compiled for dynamic shapes, one replica at a time
(a router in front, :func:`simtopo.sim.serving.route`). Each *iteration* holds at most
``slots`` sequences and ``budget`` token rows (at least ``slots``: every running sequence can
decode); its time is the interpolated profile (:class:`simtopo.sim.iterations.IterationModel`)
of what it holds. Requests arriving and iterations ending at one instant are all taken in
before a replica plans its next iteration.

- **Admission**: the oldest waiting request joins the running ones when a slot is free and the
  replica's KV pool has room for its whole prompt beside this iteration's decodes (vLLM
  allocates a prompt's blocks when it is scheduled).
- **priority: decode** (Sarathi-Serve's stall-free batching; vLLM's default with chunked
  prefill): every iteration decodes one token for each running sequence whose prompt is in,
  then fills the rest of the budget with prompt chunks: first of the sequences part-way
  through their prompts, oldest first, then of newly admitted ones.
- **priority: prefill** (vLLM without chunked prefill, and Orca-like schedulers): while a
  prompt is part-way or a waiting request can be admitted, iterations prefill only (chunks up
  to the budget) and the decodes wait; otherwise an iteration decodes every running sequence.
- **KV pool**: a sequence holds its prompt's positions from admission and one more per
  decoded token. When a decode iteration would need more than the pool has, the most recently
  admitted sequence is preempted (vLLM's recompute): its positions are freed and it goes back
  to the head of the queue, to prefill its prompt and the tokens it had generated again
  before its next token; as in vLLM, no prompt is admitted in an iteration that preempted.

A prompt's last chunk gives its request the first token; each decode gives the next. A request
that needs more positions than the pool holds is refused before the run.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from ..workload.requests import Requests
from .iterations import IterationModel
from .serving import Iterations, Records, route


def chunk_pairs(offset: int, tokens: int, window: int) -> float:
    """Query-key pairs of ``tokens`` prompt tokens after ``offset`` cached ones, token j
    attending min(offset + j, window) positions: sum over j = 1..tokens."""
    below = min(tokens, max(window - offset, 0))  # tokens whose span is under the window
    return below * offset + below * (below + 1) / 2 + (tokens - below) * window


class _Replica:
    def __init__(self) -> None:
        self.waiting: deque[int] = deque()
        self.running: list[int] = []  # in admission order
        self.held = 0  # KV positions allocated
        self.current: tuple[list[int], list[tuple[int, int]]] | None = None


def serve_dynamic(requests: Requests, model: IterationModel, replicas: int,
                  router: str = "round-robin", priority: str = "decode",
                  window: int | None = None) -> Records:
    """Play ``requests`` through ``replicas`` replicas of a dynamic-shape program
    (module docstring); ``window`` is a sliding-window model's attention span."""
    n = len(requests)  # plain lists inside: indexing numpy arrays one item at a time is slow
    arrival = requests.arrival_s.tolist()
    prompt, output = requests.prompt_tokens.tolist(), requests.output_tokens.tolist()
    where = [0] * n
    nan = float("nan")
    start, first, finish = [nan] * n, [nan] * n, [nan] * n
    preempted = [0] * n
    cached = [0] * n  # positions written
    target = list(prompt)  # positions a prefill must reach
    produced = [0] * n
    held = [0] * n
    reps = [_Replica() for _ in range(replicas)]
    log: list[tuple[int, float, float, int, int, int]] = []
    events: list[tuple[float, int, int, int]] = []  # (time, kind, order, index)
    order = 0
    budget, slots, pool = model.budget, model.slots, model.kv_positions
    span = window or 1 << 62

    def push(time: float, kind: int, index: int) -> None:
        nonlocal order
        heapq.heappush(events, (time, kind, order, index))
        order += 1

    def admit(rep: _Replica) -> int | None:
        if rep.waiting and len(rep.running) < slots:
            i = rep.waiting[0]
            if pool - rep.held >= target[i]:
                rep.waiting.popleft()
                rep.running.append(i)
                rep.held += target[i]
                held[i] = target[i]
                return i
        return None

    def preempt(rep: _Replica) -> None:
        i = rep.running.pop()
        rep.held -= held[i]
        held[i] = cached[i] = 0
        target[i] = prompt[i] + produced[i]  # the last token is recomputed into the cache
        preempted[i] += 1
        rep.waiting.appendleft(i)

    def step(r: int, now: float) -> None:
        rep = reps[r]
        partial = [i for i in rep.running if cached[i] < target[i]]
        want_prefill = bool(partial) or (
            bool(rep.waiting) and len(rep.running) < slots
            and pool - rep.held >= target[rep.waiting[0]])
        decodes: list[int] = []
        evicted = False
        if priority == "decode" or not want_prefill:
            decodes = [i for i in rep.running if cached[i] >= target[i]]
            while pool - rep.held < len(decodes):  # one position each: make room
                victim = rep.running[-1]
                preempt(rep)
                evicted = True
                if victim in decodes:
                    decodes.remove(victim)
            for i in decodes:
                held[i] += 1
            rep.held += len(decodes)
        room = budget - len(decodes) if (priority == "decode" or want_prefill) else 0
        chunks: list[tuple[int, int]] = []
        for i in partial:
            if room == 0:
                break
            if i in rep.running:
                k = min(target[i] - cached[i], room)
                chunks.append((i, k))
                room -= k
        while room > 0 and not evicted:  # as vLLM: no new prompt in a step that preempted
            i = admit(rep)
            if i is None:
                break
            if start[i] != start[i]:  # NaN: its first admission
                start[i] = now
            k = min(target[i], room)
            chunks.append((i, k))
            room -= k
        if not decodes and not chunks:
            rep.current = None
            return
        rows = len(decodes) + sum(k for _, k in chunks)
        positions = 0.0
        for i in decodes:
            positions += min(cached[i] + 1, span)
        pairs = positions
        for i, k in chunks:
            o = cached[i]
            positions += min(o + k, span)
            pairs += chunk_pairs(o, k, span)
        seconds = model.seconds(rows, len(decodes) + len(chunks), positions, pairs)
        log.append((r, now, seconds, len(decodes), rows - len(decodes), rep.held))
        rep.current = (decodes, chunks)
        push(now + seconds, 1, r)

    def finish_iteration(r: int, now: float) -> None:
        rep = reps[r]
        assert rep.current is not None
        decodes, chunks = rep.current
        rep.current = None
        done = []
        for i in decodes:
            cached[i] += 1
            produced[i] += 1
            if produced[i] >= output[i]:
                done.append(i)
        for i, k in chunks:
            cached[i] += k
            if cached[i] >= target[i]:
                produced[i] += 1
                if produced[i] == 1:
                    first[i] = now
                if produced[i] >= output[i]:
                    done.append(i)
        for i in done:
            finish[i] = now
            rep.running.remove(i)
            rep.held -= held[i]

    for i in range(n):
        push(arrival[i], 0, i)
    while events:  # arrivals, then iterations' ends, then wake-ups, at any one instant
        now, kind, _, index = heapq.heappop(events)
        if kind == 0:
            r = route(router, index, [len(p.waiting) + len(p.running) for p in reps])
            where[index] = r
            reps[r].waiting.append(index)
            if reps[r].current is None:
                push(now, 2, r)
        elif kind == 1:
            finish_iteration(index, now)
            push(now, 2, index)
        elif reps[index].current is None:  # a wake-up: the replica starts what it can
            step(index, now)
    table = np.array(log, dtype=float).reshape(-1, 6)
    iterations = Iterations(table[:, 0].astype(np.int64), table[:, 1], table[:, 2],
                            table[:, 3].astype(np.int64), table[:, 4].astype(np.int64),
                            table[:, 5].astype(np.int64))
    return Records(np.array(where, dtype=np.int64), np.array(start), np.array(first),
                   np.array(finish), np.array(preempted, dtype=np.int64), iterations)
