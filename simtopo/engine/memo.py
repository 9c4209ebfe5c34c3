"""Collectives on an idle fabric, simulated once and replayed after.

A collective that starts on an idle fabric and has it to itself until it ends (a block run by
one stage group, or by replicas whose collectives cannot contend:
:func:`~simtopo.engine.resources.footprint`) sees nothing but its own flows, so it takes
the same time whenever it runs with the same topology, transfer settings, group, size,
algorithm and protocol. The first such run is simulated and remembered: its result, how long
it took, and the flows it finished, relative to its start. A later one waits that long and
adds the same flows, shifted, to the network's records (for the link bytes and the trace):
exact up to the rounding of absolute times. The host-routed algorithm trials run on fresh
fabrics and are remembered too, so the algorithm that wins is not simulated again.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
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


def remember(net: Network, memo: dict[Any, Any], key: Any, label: str,
             body: Generator[Event, Any, Any]) -> Generator[Event, Any, Any]:
    """Run ``body`` (a collective whose flows carry ``label``) and remember it as ``key``.
    Only a recording network's runs are remembered: their flows are known."""
    start, first = net.env.now, len(net.records)
    value = yield from body
    if net.record:
        flows = tuple(replace(r, label="", start_s=r.start_s - start, end_s=r.end_s - start)
                      for r in net.records[first:] if r.label == label)
        memo[key] = IdleRun(value, net.env.now - start, flows)
    return value


def replay(net: Network, run: IdleRun, label: str) -> Generator[Event, Any, Any]:
    """``run`` again from now: its time passes, its flows are recorded with ``label``."""
    start = net.env.now
    yield net.env.timeout(run.elapsed_s)
    if net.record:
        net.records.extend(FlowRecord(label, r.size_bytes, r.start_s + start, r.end_s + start,
                                      r.resources) for r in run.flows)
    return run.value
