"""Benchmark: the flow engine on ``topologies/ultra8.yaml``.

(a) 10,000 P2P copies between random SoC pairs, sizes log-uniform from 4 KB to 64 MB, Poisson
    arrivals at the rate that keeps 32 flows in flight on average (Little's law, tuned on a
    pilot run); (b) the same 10,000 copies all started at once; (c) 100 ring all-reduces of
    16 SoCs back to back. Seeded. Prints the median wall time of ``--repeat`` runs and flow
    events (starts and ends) per second; ``--output`` records them in
    ``benchmarks/results/flows.json``.

    python benchmarks/flows.py [--flows 10000] [--repeat 3] [--seed 1]
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
from simtopo.engine.collectives import Collectives
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


def run_flows(topo: simtopo.Topology, flows: list[tuple[str, str, float]],
              arrivals: list[float] | None) -> dict[str, float]:
    """Simulate the copies; returns wall seconds, simulated seconds, mean in flight, solves."""
    fab = Fabric.create(topo)
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


def run_allreduces(topo: simtopo.Topology, count: int, size: float) -> dict[str, float]:
    fab = Fabric.create(topo)
    coll = Collectives(fab)
    group = list(topo.socs[:16])

    def chain():
        for _ in range(count):
            yield coll.run("all_reduce", group, size, algorithm="ring")

    wall = time.perf_counter()
    fab.env.process(chain())
    fab.env.run()
    return {"wall_s": time.perf_counter() - wall, "simulated_s": fab.env.now,
            "flows": float(count * 2 * 15 * 16), "solves": float(fab.net.solves)}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--in-flight", type=float, default=32.0)
    parser.add_argument("--allreduces", type=int, default=100)
    parser.add_argument("--allreduce-bytes", type=float, default=64 * 2**20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    add_output(parser, "flows")
    args = parser.parse_args()

    topo = simtopo.load_topology(ROOT / "topologies" / "ultra8.yaml")
    flows = workload(topo, args.flows, args.seed)
    rate = tuned_rate(topo, flows, args.in_flight, args.seed)
    arrivals = poisson(len(flows), rate, args.seed)
    a = median_of([run_flows(topo, flows, arrivals) for _ in range(args.repeat)])
    b = median_of([run_flows(topo, flows, None) for _ in range(args.repeat)])
    c = median_of([run_allreduces(topo, args.allreduces, args.allreduce_bytes)
                   for _ in range(args.repeat)])
    events = 2 * args.flows
    figures: dict[str, Any] = {
        "a_poisson": {**a, "flows": args.flows, "arrival_rate_per_s": rate,
                      "flow_events_per_s": events / a["wall_s"], "target_s": 5.0},
        "b_all_at_once": {**b, "flows": args.flows, "flow_events_per_s": events / b["wall_s"],
                          "target_s": 30.0},
        "c_ring_allreduces": {**c, "count": args.allreduces, "group": 16,
                              "bytes": args.allreduce_bytes,
                              "flow_events_per_s": 2 * c["flows"] / c["wall_s"]},
        "repeat": args.repeat, "statistic": "median", "seed": args.seed,
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }
    for name in ("a_poisson", "b_all_at_once", "c_ring_allreduces"):
        row = figures[name]
        print(f"{name:<18} wall {row['wall_s']:7.2f} s   flow events/s "
              f"{row['flow_events_per_s']:>10,.0f}   solves {row['solves']:>8,.0f}   "
              f"simulated {row['simulated_s']:.4g} s" +
              (f"   mean in flight {row['mean_in_flight']:.1f}" if "mean_in_flight" in row
               else ""))
    record(figures, args.output, "flows")


if __name__ == "__main__":
    main()
