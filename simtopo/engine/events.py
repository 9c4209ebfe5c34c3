"""SimPy events the network schedules itself: at a time and priority of its choosing."""

from __future__ import annotations

import simpy
from simpy.events import NORMAL, Event

LATE = 2
"""Event priority after SimPy's URGENT (0) and NORMAL (1): rate solves run last at an instant."""


class At(Event):
    """An event that fires at ``now + delay`` with a given priority."""

    def __init__(self, env: simpy.Environment, delay: float, priority: int = NORMAL) -> None:
        self.env = env
        self.callbacks = []
        self._ok = True
        self._value = None
        env.schedule(self, priority, delay)  # type: ignore[arg-type]


def succeed_later(env: simpy.Environment, event: Event, delay: float) -> None:
    """Trigger ``event`` (waited on already) ``delay`` seconds from now, at normal priority."""
    event._ok, event._value = True, None
    env.schedule(event, NORMAL, delay)
