"""Flow classes of a :class:`~simtopo.engine.network.Network`: flows over the same resources
form one class, solved as one weighted variable with one rate.

:class:`FlowClasses` keeps which classes exist, which have flows in flight (and how many),
the resources each crosses, and which active classes a change can reach through shared
resources (max-min decomposes over such components, so a solve needs only those).
"""

from __future__ import annotations

import numpy as np

SMALL_SOLVE = 48
"""With at most this many active flow classes, re-solve them all: cheaper than searching for
the component that changed."""

DENSE_SKIPS = 32
"""Solves that skip the component search after it found the fabric dense; doubled each time
the next search finds it dense again, up to :data:`MAX_DENSE_SKIPS` (solving every active
class is exact too, only slower when the component is small)."""

MAX_DENSE_SKIPS = 1024


class FlowClasses:
    """The flow classes of one network, over ``n_resources`` resources (more may be added)."""

    def __init__(self, n_resources: int) -> None:
        self._of_key: dict[tuple[int, ...], int] = {}
        self.res: list[np.ndarray] = []
        """Each class's resources, by class."""
        self.res_tuple: list[tuple[int, ...]] = []
        """The same as tuples (the class's key)."""
        self.members: list[set[int]] = []
        """Each class's flows in flight (their slots)."""
        self.active: set[int] = set()
        """Classes with a flow in flight."""
        self._is_active = np.zeros(16, dtype=bool)  # the same, by class
        self._all: tuple[np.ndarray, ...] | None = None  # see all_active
        self.rate = np.zeros(16)
        """Each class's current rate per flow (bytes/s)."""
        self.count = np.zeros(16)
        """Flows of each class in flight (the class's weight in the solve)."""
        self._res_classes: list[set[int]] = [set() for _ in range(n_resources)]
        # the class-resource incidence of every class ever created, in class order
        self._incidence: tuple[list[int], list[int]] = ([], [])
        self._incidence_arrays = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._dense_skips = 0
        self._dense_run = DENSE_SKIPS  # skips after the next search that finds it dense

    def add_resources(self, n_resources: int) -> None:
        """Resources found on first use: ``n_resources`` in all now."""
        while len(self._res_classes) < n_resources:
            self._res_classes.append(set())

    def of(self, key: tuple[int, ...]) -> int:
        """The class of flows over resources ``key``, created on first use."""
        cls = self._of_key.get(key)
        if cls is None:
            cls = len(self.res)
            self._of_key[key] = cls
            self.res.append(np.array(key, dtype=np.int64))
            self.res_tuple.append(key)
            self.members.append(set())
            self._incidence[0].extend([cls] * len(key))
            self._incidence[1].extend(key)
            if cls == len(self.rate):
                self.rate = np.concatenate([self.rate, self.rate])
                self.count = np.concatenate([self.count, np.zeros_like(self.count)])
                self._is_active = np.concatenate([self._is_active,
                                                  np.zeros_like(self._is_active)])
        return cls

    def join(self, cls: int, slot: int) -> None:
        """Flow ``slot`` starts in class ``cls``."""
        members = self.members[cls]
        if not members:
            self._set_active(cls, True)
        members.add(slot)
        self.count[cls] += 1

    def leave(self, cls: int, slot: int) -> None:
        """Flow ``slot`` of class ``cls`` ends."""
        members = self.members[cls]
        members.discard(slot)
        self.count[cls] -= 1
        if not members:
            self._set_active(cls, False)

    def _set_active(self, cls: int, active: bool) -> None:
        self._is_active[cls] = active
        self._all = None
        if active:
            self.active.add(cls)
            for r in self.res_tuple[cls]:
                self._res_classes[r].add(cls)
        else:
            self.active.discard(cls)
            for r in self.res_tuple[cls]:
                self._res_classes[r].discard(cls)

    def component(self, seeds: set[int]) -> list[int] | None:
        """Active classes connected to the resources of ``seeds`` (which may have emptied), or
        ``None`` for all active classes.

        Max-min decomposes over components, so solving all active classes is exact too, and
        cheaper than a search that finds nearly everything: once the budgeted search finds the
        fabric dense, the next solves take all without searching (:data:`DENSE_SKIPS`)."""
        total = len(self.active)
        if total <= SMALL_SOLVE:
            return None
        if self._dense_skips > 0:
            self._dense_skips -= 1
            return None
        budget = 4 * total
        seen: set[int] = set()
        seen_res = {r for c in seeds for r in self.res_tuple[c]}
        stack = list(seen_res)
        while stack:
            classes = self._res_classes[stack.pop()]
            budget -= len(classes)
            if budget < 0 or len(seen) == total:
                self._dense()
                return None
            for cls in classes:
                if cls in seen:
                    continue
                seen.add(cls)
                for r in self.res_tuple[cls]:
                    if r not in seen_res:
                        seen_res.add(r)
                        stack.append(r)
        if 2 * len(seen) > total:
            self._dense()
        else:
            self._dense_run = DENSE_SKIPS
        return sorted(seen)

    def _dense(self) -> None:
        """The search found the fabric dense: skip it for a while, longer each time in a row."""
        self._dense_skips = self._dense_run
        self._dense_run = min(2 * self._dense_run, MAX_DENSE_SKIPS)

    def entries(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The class-resource incidence of classes ``ids`` (ascending), in class order."""
        n = len(self.res)
        if not len(ids):
            return ids, ids
        if 4 * len(ids) < n:
            lists = [self.res[c] for c in ids.tolist()]
            return np.repeat(ids, [len(r) for r in lists]), np.concatenate(lists)
        if len(self._incidence_arrays[0]) != len(self._incidence[0]):
            self._incidence_arrays = (np.array(self._incidence[0], dtype=np.int64),
                                      np.array(self._incidence[1], dtype=np.int64))
        of_class, of_resource = self._incidence_arrays
        chosen = np.zeros(n, dtype=bool)
        chosen[ids] = True
        entries = chosen[of_class]
        return of_class[entries], of_resource[entries]

    def all_active(self) -> tuple[np.ndarray, ...]:
        """Every active class (ascending), their incidence (:meth:`entries`) and each entry's
        position among them; kept until a class starts or empties."""
        if self._all is None:
            ids = np.flatnonzero(self._is_active)
            classes, resources = self.entries(ids)
            self._all = (ids, classes, resources, np.searchsorted(ids, classes))
        return self._all
