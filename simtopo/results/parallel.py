"""Work forked to other processes of this machine (the band's runs, the report's figures).

A forked worker inherits what the parent has built (set-ups, results, figures to draw)
instead of receiving it pickled, so only small answers travel back. Where the platform cannot
fork, or one process is asked for, the work runs in the calling process; either way the
answers are the same, in the same order. Workers leave Ctrl-C to the parent (the terminal
sends it to the whole process group) and, on Linux, die with it.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Callable
from typing import Any

_JOB: list[Callable[[int], Any]] = []
"""The function the forked workers call, set before they are forked (they inherit it)."""


def worker_init() -> None:
    """A worker process: Ctrl-C is the parent's to handle, and on Linux the worker dies with
    its parent, even a killed one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes

        with contextlib.suppress(AttributeError, OSError):  # prctl(PR_SET_PDEATHSIG, SIGKILL)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def can_fork() -> bool:
    """Whether work is forked here: on Linux (macOS can fork, but forking after numpy and
    matplotlib are loaded is unsafe there, which is why Python spawns by default)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _call(index: int) -> Any:
    return _JOB[-1](index)


class Forked:
    """``function(0), ..., function(count - 1)`` started on up to ``workers`` forked
    processes now (this one goes on meanwhile), collected by :meth:`results`; run in this
    process then when ``workers`` is 0 or the platform cannot fork. Use it as a context
    manager: leaving early stops the workers."""

    def __init__(self, function: Callable[[int], Any], count: int, workers: int) -> None:
        self.function, self.count = function, count
        self.pool: Any = None
        if workers > 0 and count > 0 and can_fork():
            from concurrent.futures import ProcessPoolExecutor

            _JOB.append(function)
            try:  # a fork context starts every worker at the first submit: they inherit _JOB
                self.pool = ProcessPoolExecutor(min(workers, count),
                                                multiprocessing.get_context("fork"),
                                                initializer=worker_init)
                self.pending = [self.pool.submit(_call, i) for i in range(count)]
            finally:
                _JOB.pop()

    def results(self, progress: Callable[[int], None] | None = None) -> list[Any]:
        """Every answer, in order (waiting for the workers; a worker that dies raises
        ``BrokenProcessPool`` rather than leaving this waiting). ``progress(i)`` is called in
        this process as work ``i`` starts here, or as its answer arrives from a worker."""
        if self.pool is None:
            answers = []
            for i in range(self.count):
                if progress:
                    progress(i)
                answers.append(self.function(i))
            return answers
        answers = []
        for i, future in enumerate(self.pending):
            answers.append(future.result())
            if progress:
                progress(i)
        self.pool.shutdown()
        self.pool = None
        return answers

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:  # left early: stop the workers now
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
