"""Benchmark: 10,000 requests served by variants of ``experiments/serving-ultra8.yaml``.

For each ``--variant`` (default: a compiled program, tp16-p2p, and a dynamic-shape one,
tp16-p2p-chunked64-r1), times the whole serving run in a fresh process (interpreter start,
imports, the simulated passes that give the program's times, the request stream, the
scheduler, the metrics) and the request playback alone (:func:`simtopo.sim.serving.serve` or
:func:`simtopo.sim.chunked.serve_dynamic`, in this process). Prints the median (and min, max)
of ``--repeat`` runs. For every dynamic-shape program of the experiment it measures the
interpolation error of its iteration times against direct simulation over ``--samples``
random iterations (docs/metrics.md, "Dynamic shapes"). ``--output`` records it all in
``benchmarks/results/serving.json``. Target (issue 17): 10,000 requests under 10 s.

    python benchmarks/serving.py [--repeat 5] [--requests 10000] [--variant V ...]
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
    from simtopo.results.serving_run import program_for
    from simtopo.sim.chunked import serve_dynamic
    from simtopo.sim.iterations import IterationModel
    from simtopo.sim.serving import serve
    from simtopo.spec.experiment import load_experiment
    from simtopo.workload.requests import generate

    exp = load_experiment(EXPERIMENT, overrides={"serving": {"requests": requests}},
                          only=variant)
    (v,) = exp.variants
    assert v.serving is not None
    program = program_for(v)
    stream = generate(v.serving)
    start = time.perf_counter()
    if isinstance(program, IterationModel):
        serve_dynamic(stream, program, v.plan.replicas, v.serving.router,
                      v.serving.priority or "decode")
    else:
        serve(stream, program, v.plan.replicas, v.serving.scheduler, v.serving.router)
    return time.perf_counter() - start


def interpolation(samples: int) -> list[dict[str, object]]:
    """The interpolation error of every dynamic-shape program of the experiment."""
    from simtopo.constants import DEFAULT_SOC_MODEL
    from simtopo.results.serving_run import iteration_model, variant_llm
    from simtopo.sim.iterations import interpolation_error
    from simtopo.sim.setup import setup_variant
    from simtopo.spec.experiment import load_experiment

    out, seen = [], set()
    for v in load_experiment(EXPERIMENT).variants:
        program = (v.plan.connection, v.plan.replicas, v.workload.batch)
        if v.workload.shapes != "dynamic" or program in seen:
            continue
        seen.add(program)
        start = time.perf_counter()
        model = iteration_model(v)
        profiled = time.perf_counter() - start
        setup = setup_variant(variant_llm(v, 1, model.budget))
        error = interpolation_error(setup, DEFAULT_SOC_MODEL, model, samples, seed=2)
        out.append({"variant": v.name, "slots": model.slots, "token_budget": model.budget,
                    "grid_points": model.summary()["grid_points"], "profile_s": profiled,
                    **{f"error_{k}": value for k, value in error.items()}})
        print(f"{v.name:24} {model.slots:3} slots: interpolation error median "
              f"{100 * error['median']:.3f}%, p90 {100 * error['p90']:.3f}%, max "
              f"{100 * error['max']:.3f}% over {samples} iterations (profiled in "
              f"{profiled:.1f} s)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--variant", action="append")
    parser.add_argument("--samples", type=int, default=200)
    add_output(parser, "serving")
    args = parser.parse_args()
    variants = args.variant or ["tp16-p2p", "tp16-p2p-chunked64-r1"]
    timed = {}
    for variant in variants:
        runs = [whole(args.requests, variant) for _ in range(args.repeat)]
        plays = [playback(args.requests, variant) for _ in range(args.repeat)]
        timed[variant] = {"whole_run": summary(runs), "playback": summary(plays)}
        for key, f in timed[variant].items():
            print(f"{variant:24} {key:9} median {f['median_s']:.2f} s  (min "
                  f"{f['min_s']:.2f}, max {f['max_s']:.2f}) over {args.repeat} runs of "
                  f"{args.requests:,} requests")
    figures = {"experiment": str(EXPERIMENT.relative_to(ROOT)), "requests": args.requests,
               "repeat": args.repeat, "variants": timed,
               "interpolation": interpolation(args.samples),
               "machine": {"python": platform.python_version(),
                           "processor": platform.machine(), "cpus": os.cpu_count()}}
    record(figures, args.output, "serving")


if __name__ == "__main__":
    main()
