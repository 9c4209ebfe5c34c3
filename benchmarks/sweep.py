"""Time a 1,000-point sweep of decode predictions on ultra8 (target, issue 15: under 10 s on
2 processes of a 2-core machine).

The points: 5 decoders (7B to 70B) x tensor-parallel size 1-16 x P2P or host-routed x fp16
or mxfp6 weights x 5 compiled context lengths x batch 1 or 8, each a 128-token prompt and 128
decode steps over the compiled context (the time per output token is the prediction wanted;
the short prompt keeps prefill small). Points that do not fit fail fast with their reason, as
they would in a user's sweep. ``--output`` records them in ``benchmarks/results/sweep.json``.

    python benchmarks/sweep.py [--jobs N] [--repeat K]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from record import add_output, record

from simtopo.analysis.executors import run_sweep
from simtopo.analysis.sweep import parse_set

ROOT = Path(__file__).resolve().parent.parent
SETS = ["model=llama-2-7b,mistral-7b,llama-3-8b,llama-2-13b,llama-2-70b",
        "plan.tp=1,2,4,8,16", "plan.connection=p2p,host", "workload.precision=fp16,mxfp6",
        "workload.context=512,1024,2048,4096,8192", "workload.batch=1,8",
        "workload.prompt=128", "workload.generate=128"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=1)
    add_output(parser, "sweep")
    args = parser.parse_args()
    axes = [parse_set(s) for s in SETS]
    times, result = [], None
    for _ in range(args.repeat):
        folder = Path(tempfile.mkdtemp(prefix="simtopo-sweep-"))
        start = time.perf_counter()
        result = run_sweep(ROOT / "experiments" / "ultra8.yaml", axes, ["tp16-p2p"],
                           folder=folder, jobs=args.jobs, figures=False)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        resumed = run_sweep(ROOT / "experiments" / "ultra8.yaml", axes, ["tp16-p2p"],
                            folder=folder, jobs=args.jobs, figures=False)
        resume_s = time.perf_counter() - start
        assert resumed.computed == 0
        shutil.rmtree(folder)
    assert result is not None
    ok = len(result.points) - len(result.failed)
    figures = {"points": len(result.points), "simulated": ok, "failed": len(result.failed),
               "jobs": args.jobs, "wall_s_median": statistics.median(times),
               "wall_s_all": times, "points_per_s": len(result.points) / statistics.median(times),
               "resume_all_finished_s": resume_s, "cpus": os.cpu_count()}
    print(f"{figures['points']} points ({ok} simulated, {figures['failed']} do not fit) on "
          f"{args.jobs} processes: median {figures['wall_s_median']:.1f} s over "
          f"{args.repeat} runs ({figures['points_per_s']:.1f} points/s); resuming the "
          f"finished sweep {resume_s:.2f} s")
    record(figures, args.output, "sweep")


if __name__ == "__main__":
    main()
