"""Collectives on an idle fabric, simulated once and replayed after.

A collective that starts on an idle fabric and has it to itself until it ends (a block run by
one stage group, or by replicas whose collectives cannot contend:
:func:`~simtopo.engine.resources.footprint`) sees nothing but its own flows, so it takes the
same time whenever it runs with the same topology, transfer settings, group, size, algorithm
and protocol. Such a collective is simulated once, alone on a fresh fabric from time zero
(:meth:`~simtopo.engine.collectives.Collectives._idle`), and remembered: its result, how long
it took, and the flows it finished. Every run of it then waits that long and adds the same
flows, shifted, to the network's records (for the link bytes and the trace): exact up to the
rounding of absolute times, and the same whichever run simulated it first. The host-routed
algorithm trials are such runs too, so the algorithm that wins is not simulated again.
"""
from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from simpy.events import Event

from .network import FlowRecord, Network


@dataclass(frozen=True)
class IdleRun:
    """One collective's run on an idle fabric."""

    value: Any
    """What the collective's process returned."""
    elapsed_s: float
    flows: tuple[FlowRecord, ...]
    """The flows it finished, in order, times relative to its start, unlabelled."""


def since(net: Network, start: float, first: int) -> IdleRun:
    """What ran on ``net`` from time ``start``, its flows from record ``first`` on, as a run
    to replay (a step of a collective that had the fabric to itself)."""
    flows = tuple(FlowRecord("", r.size_bytes, r.start_s - start, r.end_s - start, r.resources)
                  for r in net.records[first:])
    return IdleRun(None, net.env.now - start, flows)


def replay(net: Network, run: IdleRun, label: str) -> Generator[Event, Any, Any]:
    """``run`` again from now: its time passes, its flows are recorded with ``label``."""
    start = net.env.now
    yield net.env.timeout(run.elapsed_s)
    if net.record:
        net.records.extend(FlowRecord(label, r.size_bytes, r.start_s + start, r.end_s + start,
                                      r.resources) for r in run.flows)
    return run.value
