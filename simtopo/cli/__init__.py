"""The ``simtopo`` command: one module per command, each a thin wrapper over the functions a
notebook calls.

Errors the user can cause print one line and exit 2; ``--debug`` adds the traceback. The
command modules import nothing heavy at module level (``simtopo --help`` stays fast): each
command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from ..errors import SimtopoError
from ..version import __version__
from . import (
    bench,
    calibrate,
    capacity,
    check,
    errors,
    mdp,
    model,
    plan,
    run,
    schema,
    sizing,
    sweep,
    topo,
    validate,
    whatif,
)
from .common import EXIT_BAD_INPUT, EXIT_OK

COMMANDS = (validate, topo, bench, calibrate, model, mdp, run, plan, check, sweep, sizing,
            capacity, whatif, errors, schema)
"""Command modules, in the order ``simtopo --help`` lists them."""


class _Parser(argparse.ArgumentParser):
    """Option errors in one line, like input errors (argparse would print the usage too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog="simtopo",
        description="Topology-aware simulator and cost model for multi-accelerator PCIe "
                    "servers.")
    parser.add_argument("--version", action="version", version=f"simtopo {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks for errors in input files")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


MAX_DEFERRALS = 50
"""Times a Ctrl-C waits for the import system to be left before it stops regardless."""

_deferred: dict[str, object] = {}
"""A stop waiting for the import system to be left: the alarm handler it replaced, and how
often it has waited."""


def _in_import_machinery(frame: FrameType | None) -> bool:
    """Is ``frame`` (or a caller a few levels up) Python's import system? An exception raised
    there may land in one of its weakref callbacks, where Python prints it and goes on."""
    for _ in range(4):
        if frame is None:
            return False
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib") or "importlib/_bootstrap" in name \
                or "importlib\\_bootstrap" in name:
            return True
        frame = frame.f_back
    return False


def _cancel_deferred() -> bool:
    """Cancel a waiting stop (its alarm, and the alarm handler back); was one waiting?"""
    if not _deferred:
        return False
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, _deferred["handler"])  # type: ignore[arg-type]
    _deferred.clear()
    return True


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: stop (KeyboardInterrupt), and ignore further presses while stopping, so that
    a second one cannot cut the clean-up short (or kill the process as it exits). Pressed
    while a module is being imported, the stop waits 10 ms at a time (at most
    :data:`MAX_DEFERRALS` times) until the import system is left: an exception raised in its
    callbacks would be printed and ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    waited = int(_deferred.get("waits", 0))  # type: ignore[call-overload]
    if _in_import_machinery(frame) and hasattr(signal, "setitimer") \
            and waited < MAX_DEFERRALS:
        if not _deferred:
            _deferred["handler"] = signal.signal(signal.SIGALRM, _interrupt)
        _deferred["waits"] = waited + 1
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        return
    _cancel_deferred()
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code. After a Ctrl-C, further ones are ignored: the
    command is stopping, and the process about to exit (an in-process caller that goes on
    restores its own SIGINT handler)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        code = _main(argv)
    finally:
        stopping = _cancel_deferred()  # a stop still waiting for an import to end
        if previous is not None and signal.getsignal(signal.SIGINT) is _interrupt:
            signal.signal(signal.SIGINT, previous)  # in-process callers get theirs back
    if stopping:
        sys.stderr.write("interrupted\n")
        return 130
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # --help, --version or an option error, already printed
            return int(done.code or 0)
        return int(args.func(args))
    except SimtopoError as err:
        if args is not None and args.debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {err}\n")
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): not an error
        return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
