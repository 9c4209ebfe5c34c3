"""Benchmark: 10,000 requests served by one variant of ``experiments/serving-ultra8.yaml``.

Times the whole serving run in a fresh process (interpreter start, imports, the two simulated
passes that give the program's times, the request stream, the schedulers, the metrics) and
the request playback alone (:func:`simtopo.sim.serving.serve`, in this process). Prints the
median (and min, max) of ``--repeat`` runs; ``--output`` records them in
``benchmarks/results/serving.json``. Target (issue 17): 10,000 requests under 10 s.

    python benchmarks/serving.py [--repeat 5] [--requests 10000] [--variant tp16-p2p]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from record import add_output, record, summary

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "experiments" / "serving-ultra8.yaml"

SCRIPT = """
import sys
import simtopo
from simtopo.spec.experiment import load_experiment
exp = load_experiment(sys.argv[1], overrides={"serving": {"requests": int(sys.argv[2])}},
                      only=sys.argv[3])
result = simtopo.run(exp, band=False)
print(result.servings[0].metrics["requests"])
"""


def whole(requests: int, variant: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", SCRIPT, str(EXPERIMENT), str(requests), variant],
                   check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def playback(requests: int, variant: str) -> float:
    from simtopo.results.run import iteration_times
    from simtopo.sim.serving import serve
    from simtopo.spec.experiment import load_experiment
    from simtopo.workload.requests import generate

    exp = load_experiment(EXPERIMENT, overrides={"serving": {"requests": requests}},
                          only=variant)
    (v,) = exp.variants
    assert v.serving is not None
    times = iteration_times(v)
    stream = generate(v.serving)
    start = time.perf_counter()
    serve(stream, times, v.plan.replicas, v.serving.scheduler, v.serving.router)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--variant", default="tp16-p2p")
    add_output(parser, "serving")
    args = parser.parse_args()
    runs = [whole(args.requests, args.variant) for _ in range(args.repeat)]
    plays = [playback(args.requests, args.variant) for _ in range(args.repeat)]
    figures = {"experiment": str(EXPERIMENT.relative_to(ROOT)), "variant": args.variant,
               "requests": args.requests, "repeat": args.repeat,
               "whole_run": summary(runs), "playback": summary(plays),
               "machine": {"python": platform.python_version(),
                           "processor": platform.machine(), "cpus": os.cpu_count()}}
    for key in ("whole_run", "playback"):
        f = figures[key]
        print(f"{key:9} median {f['median_s']:.2f} s  (min {f['min_s']:.2f}, "
              f"max {f['max_s']:.2f}) over {args.repeat} runs of {args.requests:,} requests")
    record(figures, args.output, "serving")


if __name__ == "__main__":
    main()
