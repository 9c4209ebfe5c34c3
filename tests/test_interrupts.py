"""Ctrl-C and kills: one line and exit 130, no process left behind, nothing left beside the
outputs, and the sweep's log intact for a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process groups and /proc")


def sweep(out: Path) -> subprocess.Popen:
    """A sweep slow enough to interrupt: four points of a few seconds each, simulated in full
    on two workers, in a process group of its own (as a terminal's job is)."""
    return subprocess.Popen(
        [sys.executable, "-m", "simtopo", "sweep",
         str(ROOT / "experiments" / "ultra-card-llama2-7b.yaml"), "--variant", "tp4-host",
         "--set", "workload.generate=120,130,140,150", "--simulation", "full", "-j", "2",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, cwd=ROOT)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def started(proc: subprocess.Popen, workers: int = 2, timeout: float = 20.0) -> None:
    """Wait until the sweep runs its workers."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len(children(proc.pid)) >= workers:
            time.sleep(0.5)
            return
        time.sleep(0.05)
    raise AssertionError("the sweep never started its workers")


def gone(pgid: int, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not group_alive(pgid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_a_parallel_sweep_at_once_in_one_line(tmp_path, presses):
    out = tmp_path / "sweep"
    proc = sweep(out)
    try:
        started(proc)
        for _ in range(presses):  # the terminal sends SIGINT to the whole group
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.1)
        _, err = proc.communicate(timeout=10)
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert err.decode() == "interrupted\n"
    assert gone(proc.pid)
    for line in (out / "points.jsonl").read_text().splitlines():
        assert json.loads(line)["key"]  # whole records only


def test_killing_a_sweep_kills_its_workers_and_a_rerun_leaves_nothing_beside(tmp_path):
    out = tmp_path / "sweep"
    proc = sweep(out)
    try:
        started(proc)
        workers = children(proc.pid)
        proc.kill()  # SIGKILL of the parent alone
        proc.wait(timeout=5)
        end = time.monotonic() + 5
        while time.monotonic() < end and any(Path(f"/proc/{w}").exists() for w in workers):
            time.sleep(0.05)
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    # the same sweep again: it resumes, finishes, and only the sweep's own files remain
    again = sweep(out)
    again.communicate(timeout=120)
    assert again.returncode == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [".lock", "pareto.png", "points.jsonl", "scaling.png", "sweep.csv",
                     "sweep.json"]
    keys = [json.loads(line)["key"] for line in (out / "points.jsonl").read_text().splitlines()]
    assert len(set(keys)) == 4


def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path):
    for delay in (0.0, 0.05, 0.15, 0.3):
        proc = subprocess.Popen([sys.executable, "-m", "simtopo", "run",
                                 str(ROOT / "experiments" / "ultra8.yaml"), "--reports",
                                 str(tmp_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=ROOT)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        text = err.decode()
        if text.startswith("Fatal Python error: init_import_site"):
            continue  # a loaded machine: the interpreter itself had not started (no simtopo yet)
        assert text.count("\n") <= 1 and "Traceback" not in text, (delay, text)
        assert proc.returncode in (130, -signal.SIGINT), (delay, proc.returncode)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no interval timers")
def test_a_ctrl_c_inside_an_import_stops_once_the_import_is_left():
    # raised inside the import system, KeyboardInterrupt may land in one of its weakref
    # callbacks, where Python prints it and goes on: the stop waits for an alarm 10 ms later
    from simtopo.cli import _cancel_deferred, _interrupt

    space: dict = {}
    exec(compile("import sys\ndef grab():\n    return sys._getframe()\n",
                 "<frozen importlib._bootstrap>", "exec"), space)
    previous, alarm = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM)
    try:
        assert _interrupt(signal.SIGINT, space["grab"]()) is None
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the first press counts
        with pytest.raises(KeyboardInterrupt):
            time.sleep(2)
        assert signal.getsignal(signal.SIGALRM) == alarm  # the alarm's handler back
    finally:
        _cancel_deferred()
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no interval timers")
def test_a_stop_still_waiting_when_the_command_ends_is_its_exit(monkeypatch, capsys):
    import simtopo.cli as cli

    def finishes_inside_an_import(argv):
        space: dict = {}
        exec(compile("import sys\ndef grab():\n    return sys._getframe()\n",
                     "<frozen importlib._bootstrap>", "exec"), space)
        cli._interrupt(signal.SIGINT, space["grab"]())  # Ctrl-C, deferred; then it returns
        return 0

    alarm = signal.getsignal(signal.SIGALRM)
    monkeypatch.setattr(cli, "_main", finishes_inside_an_import)
    assert cli.main(["run"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) == alarm
