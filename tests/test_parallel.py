"""Work forked to other processes: the same answers, in order, as in one process."""

from __future__ import annotations

import os
import sys

import pytest

import simtopo
from simtopo.errors import ConfigError
from simtopo.results.parallel import Forked, can_fork

from .conftest import ROOT

CARD = ROOT / "experiments" / "ultra-card-llama2-7b.yaml"
PAIR = ["tp4-p2p", "tp4-host"]

forks = pytest.mark.skipif(not can_fork(), reason="this platform does not fork")


@forks
def test_forked_work_runs_in_other_processes_and_answers_in_order():
    parent = os.getpid()
    with Forked(lambda i: (i * i, os.getpid()), 7, 2) as forked:
        answers = forked.results()
    assert [a for a, _ in answers] == [i * i for i in range(7)]
    assert parent not in {pid for _, pid in answers}
    with Forked(lambda i: (i, os.getpid()), 3, 0) as inline:  # no workers: this process
        assert inline.results() == [(i, parent) for i in range(3)]


@forks
def test_a_run_with_forked_band_runs_is_byte_identical(tmp_path):
    one = simtopo.run(CARD, variants=PAIR, jobs=1)
    two = simtopo.run(CARD, variants=PAIR, jobs=2)
    assert one.bands and two.to_json() == one.to_json()
    one.write_report(tmp_path / "one", jobs=1)
    two.write_report(tmp_path / "two", jobs=2)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert any(n.endswith(".png") for n in names)
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


@forks
@pytest.mark.parametrize("jobs", [1, 2])
def test_an_error_in_a_band_run_is_the_same_one_line_error(monkeypatch, jobs):
    from simtopo.results import run as run_module

    def broken(*args, **kwargs):
        raise ConfigError("a constant out of range")

    monkeypatch.setattr(run_module, "at_corner", broken)  # forked workers inherit it
    with pytest.raises(ConfigError) as info:
        simtopo.run(CARD, variants=PAIR, jobs=jobs)
    assert str(info.value).endswith("the speed-up band: a constant out of range")
    assert str(CARD) in str(info.value)


@forks
def test_the_cli_report_is_the_same_in_one_process_and_in_several(tmp_path):
    import subprocess

    for jobs in ("1", "2"):
        done = subprocess.run([sys.executable, "-m", "simtopo", "run", str(CARD), "--variant",
                               "tp4-p2p", "--variant", "tp4-host", "-j", jobs, "--reports",
                               str(tmp_path / jobs), "--quiet"], capture_output=True,
                              text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    one, two = (tmp_path / j / "ultra-card-llama2-7b" for j in ("1", "2"))
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    for path in one.iterdir():
        assert path.read_bytes() == (two / path.name).read_bytes(), path.name


@forks
def test_a_worker_that_dies_is_an_error_not_a_hang():
    from concurrent.futures.process import BrokenProcessPool

    def die(i):
        if i == 1:
            os._exit(3)
        return i

    with Forked(die, 3, 1) as forked, pytest.raises(BrokenProcessPool):
        forked.results()


@pytest.mark.parametrize("jobs", [1, 2])
def test_waiting_is_called_between_the_variants_and_the_band(jobs):
    """The CLI loads its report's modules in ``waiting``, while forked band runs finish."""
    seen: list[str] = []
    simtopo.run(CARD, variants=PAIR, jobs=jobs, progress=seen.append,
                waiting=lambda: seen.append("<waiting>"))
    at = seen.index("<waiting>")
    assert seen[:at] == PAIR and seen.count("<waiting>") == 1
    assert len(seen) > at + 1 and all(s.startswith("band: ") for s in seen[at + 1:])
