"""A run killed at any moment leaves the previous report whole (never a half-written one)."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

from .conftest import ROOT

COMMAND = [sys.executable, "-m", "simtopo", "run", str(ROOT / "experiments" / "ultra8.yaml"),
           "--variant", "tp16-p2p", "--variant", "tp16-host", "-q"]


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())}


def test_killing_a_run_midway_keeps_the_previous_report(tmp_path):
    reports = tmp_path / "reports"
    first = subprocess.run([*COMMAND, "--reports", str(reports)], capture_output=True)
    assert first.returncode == 0, first.stderr
    report = reports / "ultra8"
    before = _digest(report)
    assert {"summary.json", "report.md", "trace.json"} <= set(before)
    start = time.monotonic()
    subprocess.run([*COMMAND, "--reports", str(reports)], capture_output=True)
    whole = time.monotonic() - start
    # kill the same run at moments spread over its life: simulating, drawing, writing
    for fraction in (0.3, 0.6, 0.85, 0.97):
        proc = subprocess.Popen([*COMMAND, "--reports", str(reports)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(fraction * whole)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _digest(report) == before, f"killed at {fraction:.0%} of a run"
    # temporary folders are hidden (dot-named); nothing else appeared next to the report
    assert [p.name for p in reports.iterdir() if not p.name.startswith(".")] == ["ultra8"]


def test_a_folder_is_replaced_in_one_step_and_nothing_is_left_beside_it(tmp_path):
    from simtopo.io.atomic import _exchange, write_directory_atomic

    target = tmp_path / "report"
    write_directory_atomic(target, lambda d: (d / "a.txt").write_text("one"))
    write_directory_atomic(target, lambda d: (d / "b.txt").write_text("two"),
                           ours=lambda folder: True)
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
    if sys.platform.startswith("linux"):  # the atomic swap is what ran
        a, b = tmp_path / "x", tmp_path / "y"
        a.mkdir()
        b.mkdir()
        (a / "in-a").touch()
        assert _exchange(a, b) and (b / "in-a").exists() and not (a / "in-a").exists()
