"""Benchmark: the sizing advisor, as a user runs it (targets, issue 15: llama-2-70b on
``ultra8`` under 15 s by either objective, llama-3.1-405b under 60 s, ``simtopo sizing``
under 3 min; 2 processes of a 2-core machine).

Each case is the CLI in a fresh process (``python -m simtopo plan --model M --topology
topologies/ultra8.yaml --objective O``, a 1,024-token prompt and 1,024 generated tokens, as
the issue measured), timed from outside: imports, the screen of every layout, the leaders
simulated again, the table. ``--sizing`` adds ``simtopo sizing`` (about 2 minutes). Prints
the median of ``--repeat`` runs; ``--output`` records them in
``benchmarks/results/advisor.json``.

    python benchmarks/advisor.py [--repeat 3] [--sizing]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import add_output, record

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = ["--context", "2048", "--prompt", "1024", "--generate", "1024"]
CASES = {
    "llama-2-70b throughput": ["--model", "llama-2-70b", "--objective", "throughput"],
    "llama-2-70b latency": ["--model", "llama-2-70b", "--objective", "latency"],
    "llama-3.1-405b throughput": ["--model", "llama-3.1-405b", "--objective", "throughput"],
}


def seconds(args: list[str]) -> float:
    """Wall seconds of ``python -m simtopo ARGS`` (which must succeed)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "simtopo", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizing", action="store_true", help="time simtopo sizing too")
    add_output(parser, "advisor")
    args = parser.parse_args()
    figures: dict = {"repeat": args.repeat, "statistic": "median", "cases": {},
                     "machine": {"python": platform.python_version(),
                                 "processor": platform.machine(), "cpus": os.cpu_count()}}
    for name, options in CASES.items():
        command = ["plan", *options, "--topology", "topologies/ultra8.yaml", *WORKLOAD]
        times = [seconds(command) for _ in range(args.repeat)]
        figures["cases"][name] = {"median_s": statistics.median(times), "all_s": times}
        print(f"{name:28} median {statistics.median(times):6.2f} s  (of {args.repeat})")
    if args.sizing:
        with tempfile.TemporaryDirectory() as folder:
            took = seconds(["sizing", "-o", str(Path(folder) / "sizing.md")])
        figures["cases"]["sizing"] = {"median_s": took, "all_s": [took]}
        print(f"{'simtopo sizing':28} {took:6.1f} s  (one run)")
    record(figures, args.output, "advisor")


if __name__ == "__main__":
    main()
