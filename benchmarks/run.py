"""Benchmark: ``simtopo run experiments/ultra8.yaml`` end to end, and the simulation alone.

End to end is the command as a user runs it, in a fresh process (interpreter start, imports,
the simulation of every variant, the table, the report with its figures and trace), with its
default ``--jobs`` (the CPU count: the band's runs and the figures in forked processes). The
simulation alone is ``simtopo.run`` in this process after a warm-up (no report, one
process), with and without the speed-up band (two more runs of each P2P/host-routed pair).
Prints the median (and min, max) of ``--repeat`` runs; ``--output`` records them in
``benchmarks/results/run.json``.
Target (issue 15): under 3 s end to end on a 2-core machine.

    python benchmarks/run.py [--repeat 5] [--experiment experiments/ultra8.yaml]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import add_output, record, summary

import simtopo

ROOT = Path(__file__).resolve().parent.parent


def end_to_end(experiment: Path, reports: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "simtopo", "run", str(experiment), "--reports",
                    str(reports), "--quiet"], check=True, cwd=ROOT)
    return time.perf_counter() - start


def simulation(experiment: Path, band: bool = True) -> float:
    start = time.perf_counter()
    simtopo.run(experiment, band=band)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--experiment", type=Path, default=ROOT / "experiments" / "ultra8.yaml")
    add_output(parser, "run")
    args = parser.parse_args()
    simulation(args.experiment)  # warm-up: imports, caches of the file system
    sim = [simulation(args.experiment) for _ in range(args.repeat)]
    bare = [simulation(args.experiment, band=False) for _ in range(args.repeat)]
    with tempfile.TemporaryDirectory() as tmp:
        whole = [end_to_end(args.experiment, Path(tmp)) for _ in range(args.repeat)]
    figures = {
        "experiment": str(args.experiment.relative_to(ROOT)),
        "variants": len(simtopo.load_experiment(args.experiment).variants),
        "repeat": args.repeat,
        "end_to_end": summary(whole),
        "simulation": summary(sim),
        "simulation_without_band": summary(bare),
        "machine": {"python": platform.python_version(), "processor": platform.machine(),
                    "cpus": os.cpu_count()},
    }
    for key in ("end_to_end", "simulation", "simulation_without_band"):
        f = figures[key]
        print(f"{key:23} median {f['median_s']:.2f} s  (min {f['min_s']:.2f}, "
              f"max {f['max_s']:.2f}) over {args.repeat} runs")
    record(figures, args.output, "run")


if __name__ == "__main__":
    main()
