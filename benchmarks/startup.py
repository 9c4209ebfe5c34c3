"""Benchmark: how fast the command line and the package start.

Times, each in a fresh process, ``simtopo --help`` (the installed console script),
``python -m simtopo --help`` and ``python -c "import simtopo"``, and lists the heavy
libraries each loads (none should: the public API and every command import what they need
when they run). Prints the median (and min, max) of ``--repeat`` runs; ``--output`` records
them in ``benchmarks/results/startup.json``. Target: ``simtopo --help`` under 0.25 s.

    python benchmarks/startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from record import add_output, record, summary

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("numpy", "pandas", "matplotlib", "simpy", "networkx", "pydantic", "yaml", "rich")
"""Libraries a start-up should not need."""

PROBE = ("import contextlib, io, runpy, sys; sys.argv = {argv!r}\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n"
         "    try:\n        runpy.run_module('simtopo', run_name='__main__')\n"
         "    except SystemExit:\n        pass\n"
         "print(','.join(m for m in {heavy!r} if m in sys.modules))")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def loaded(argv: list[str]) -> list[str]:
    """Heavy libraries loaded by ``simtopo <argv>`` (empty argv: ``import simtopo``)."""
    if argv:
        code = PROBE.format(argv=["simtopo", *argv], heavy=HEAVY)
    else:
        code = f"import sys, simtopo; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout.strip().splitlines()
    return [m for m in (out[-1] if out else "").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    add_output(parser, "startup")
    args = parser.parse_args()
    script = shutil.which("simtopo")
    commands = {
        "python -c 'import simtopo'": ([sys.executable, "-c", "import simtopo"], []),
        "python -m simtopo --help": ([sys.executable, "-m", "simtopo", "--help"], ["--help"]),
    }
    if script is not None:
        commands["simtopo --help"] = ([script, "--help"], ["--help"])
    figures: dict[str, object] = {"repeat": args.repeat,
                                  "machine": {"python": platform.python_version(),
                                              "processor": platform.machine()}}
    for name, (command, argv) in commands.items():
        timed(command)  # warm-up: the file system's caches
        stats = summary([timed(command) for _ in range(args.repeat)])
        heavy = loaded(argv)
        figures[name] = {**stats, "heavy_imports": heavy}
        print(f"{name:30} median {stats['median_s']:.3f} s (min {stats['min_s']:.3f}, max "
              f"{stats['max_s']:.3f}); heavy imports: {', '.join(heavy) or 'none'}")
    record(figures, args.output, "startup")


if __name__ == "__main__":
    main()
