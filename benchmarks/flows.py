"""Benchmark: the flow engine on ``topologies/ultra8.yaml`` against SimGrid's max-min.

The four scenarios of issue 15, plain max-min as SimGrid's Full solver computes it (no DMA
set-up, no concurrency loss): ultra8's directed links and SoC endpoints as the shared
resources, copies between random SoC pairs with sizes log-uniform from 4 KB to 64 MB, seeded.

(a) 10,000 copies with Poisson arrivals at the rate that keeps 32 in flight on average
    (Little's law, tuned on a pilot run); (b) 1,000, (c) 3,000 and (d) 10,000 copies all
    started at once. Prints the median wall time of ``--repeat`` runs beside SimGrid 4.1's
    time for the same scenario (measured on a 2-core machine of this class, issue 15:
    SimGrid is not a dependency), and ``--output`` records them in
    ``benchmarks/results/flows.json``.

    python benchmarks/flows.py [--repeat 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from record import add_output, record

import simtopo
from simtopo.engine.transfers import Fabric

ROOT = Path(__file__).resolve().parent.parent


def workload(topo: simtopo.Topology, n: int, seed: int) -> list[tuple[str, str, float]]:
    rng = random.Random(seed)
    socs = list(topo.socs)
    out = []
    for _ in range(n):
        src, dst = rng.sample(socs, 2)
        out.append((src, dst, math.exp(rng.uniform(math.log(4e3), math.log(64e6)))))
    return out


def plain(topo: simtopo.Topology) -> Any:
    """The transfer settings of plain max-min: no DMA set-up, no concurrency loss."""
    return topo.transfer.model_copy(update={"dma_setup": 0.0, "concurrency_efficiency": 1.0})


def run_flows(topo: simtopo.Topology, flows: list[tuple[str, str, float]],
              arrivals: list[float] | None) -> dict[str, float]:
    """Simulate the copies; returns wall seconds, simulated seconds, mean in flight, solves."""
    fab = Fabric.create(topo, plain(topo))
    env = fab.env
    busy = [0.0]

    def one(start: float, src: str, dst: str, size: float):
        if start > 0:
            yield env.timeout(start)
        began = env.now
        yield fab.copy(src, dst, size)
        busy[0] += env.now - began

    wall = time.perf_counter()
    for k, (src, dst, size) in enumerate(flows):
        env.process(one(arrivals[k] if arrivals else 0.0, src, dst, size))
    env.run()
    wall = time.perf_counter() - wall
    return {"wall_s": wall, "simulated_s": env.now, "mean_in_flight": busy[0] / env.now,
            "solves": float(fab.net.solves)}


def poisson(n: int, rate: float, seed: int) -> list[float]:
    rng = random.Random(seed + 1)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def tuned_rate(topo: simtopo.Topology, flows: list[tuple[str, str, float]], target: float,
               seed: int) -> float:
    """Arrival rate that keeps ``target`` flows in flight on average over the whole run,
    found by bisection (the mean in flight grows with the rate, steeply near saturation):
    first on a 1,000-flow pilot to bracket it, then on the full workload."""

    def bisect(sample: list[tuple[str, str, float]], low: float, high: float,
               tolerance: float) -> float:
        while high / low > tolerance:
            rate = (low * high) ** 0.5
            stats = run_flows(topo, sample, poisson(len(sample), rate, seed))
            if stats["mean_in_flight"] < target:
                low = rate
            else:
                high = rate
        return (low * high) ** 0.5

    guess = bisect(flows[:1000], 1.0, 1e8, 1.05)
    return bisect(flows, guess / 4, guess * 1.5, 1.03)


SIMGRID_S = {"a_poisson_10k": 0.605, "b_at_once_1k": 0.086, "c_at_once_3k": 0.995,
             "d_at_once_10k": 18.4}
"""SimGrid 4.1 (C++ max-min, Full solver) on the same scenarios, seconds (issue 15)."""


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--in-flight", type=float, default=32.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    add_output(parser, "flows")
    args = parser.parse_args()

    topo = simtopo.load_topology(ROOT / "topologies" / "ultra8.yaml")
    flows = workload(topo, args.flows, args.seed)
    rate = tuned_rate(topo, flows, args.in_flight, args.seed)
    arrivals = poisson(len(flows), rate, args.seed)
    figures: dict[str, Any] = {}
    scenarios = [("a_poisson_10k", flows, arrivals), ("b_at_once_1k", flows[:1000], None),
                 ("c_at_once_3k", flows[:3000], None), ("d_at_once_10k", flows, None)]
    for name, chosen, when in scenarios:
        row = median_of([run_flows(topo, chosen, when) for _ in range(args.repeat)])
        row.update(flows=len(chosen), flow_events_per_s=2 * len(chosen) / row["wall_s"],
                   simgrid_s=SIMGRID_S[name], versus_simgrid=row["wall_s"] / SIMGRID_S[name])
        if when is not None:
            row["arrival_rate_per_s"] = rate
        figures[name] = row
        print(f"{name:<15} wall {row['wall_s']:7.3f} s   SimGrid {row['simgrid_s']:6.3f} s   "
              f"x{row['versus_simgrid']:5.2f}   solves {row['solves']:>7,.0f}   "
              f"mean in flight {row['mean_in_flight']:.1f}")
    figures.update(repeat=args.repeat, statistic="median", seed=args.seed,
                   machine={"python": platform.python_version(),
                            "processor": platform.machine()})
    record(figures, args.output, "flows")


if __name__ == "__main__":
    main()
