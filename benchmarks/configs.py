"""Benchmark: one configuration simulated, as the sizing advisor and sweeps evaluate one.

llama-2-70b, batch 1, a 1,024-token prompt and 1,024 generated tokens (the issue's shape):
tensor-sliced over 16 SoCs of ``ultra8`` P2P and host-routed, and over 64 SoCs of
``ultra16-2s`` host-routed (P2P stops at 16 SoCs there). Each is ``run_variant`` in this
process after a warm-up run of the same configuration, with a fresh collective memo every
time (the process's caches of parsed files, pass graphs and layouts stay warm, as in a
sweep's process): without spans, as sweeps and the advisor evaluate a configuration, and with
them, as ``simtopo run`` does for its figures and trace. Prints the median (min, max) of
``--repeat`` runs, and ``--output`` records them in ``benchmarks/results/configs.json``
(``median_s`` without spans; before 2026-12-05 it was with them).
Targets (issue 15): tp16 P2P under 0.05 s, host-routed under 0.1 s, tp64 under 0.3 s.

    python benchmarks/configs.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from record import add_output, record

from simtopo.results.run import run_variant
from simtopo.spec.experiment import PlanSpec, Variant, WorkloadSpec

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "tp16-p2p (ultra8)": ("ultra8.yaml", PlanSpec(tp=16, connection="p2p")),
    "tp16-host (ultra8)": ("ultra8.yaml", PlanSpec(tp=16, connection="host")),
    "tp64-host (ultra16-2s)": ("ultra16-2s.yaml", PlanSpec(tp=64, connection="host")),
}


def variant(topology: str, plan: PlanSpec) -> Variant:
    return Variant(name="config", description="", topology=ROOT / "topologies" / topology,
                   model="llama-2-70b", plan=plan, transfer={},
                   workload=WorkloadSpec(batch=1, prompt=1024, generate=1024, context=2048))


def seconds(v: Variant, spans: bool) -> float:
    start = time.perf_counter()
    run_variant(v, spans=spans)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    add_output(parser, "configs")
    args = parser.parse_args()
    figures: dict = {"repeat": args.repeat, "cases": {},
                     "machine": {"python": platform.python_version(),
                                 "processor": platform.machine(), "cpus": os.cpu_count()}}
    for name, (topology, plan) in CASES.items():
        v = variant(topology, plan)
        row = figures["cases"][name] = {}
        for spans, prefix in ((False, ""), (True, "with_spans_")):
            seconds(v, spans)  # warm-up: imports, parsed files
            times = [seconds(v, spans) for _ in range(args.repeat)]
            row.update({f"{prefix}median_s": statistics.median(times),
                        f"{prefix}min_s": min(times), f"{prefix}max_s": max(times)})
            print(f"{name:24} {'with spans' if spans else 'no spans':10} median "
                  f"{statistics.median(times):.3f} s  (min {min(times):.3f}, "
                  f"max {max(times):.3f})")
    record(figures, args.output, "configs")


if __name__ == "__main__":
    main()
