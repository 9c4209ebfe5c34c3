"""What the simulation's shortcuts cost: the default simulation (``mode="auto"``) and the
memoized one against the reference that simulates everything live in one run
(``mode="full"``), case by case (``simtopo/sim/driver.py``).

Each case isolates one approximation of ``docs/metrics.md``:

- layers memoized (one layer simulated, repeated): tensor-sliced P2P and host-routed slices;
- replicas profiled together: replicas that share a switch uplink, host memory and the
  hand-off threads through the host (their repeated layers run free, out of step);
- stage passes and hand-offs on an idle fabric (no contention between pipeline stages or
  request groups): pipelines with request groups and large prefill hand-offs through the host,
  and two stages behind one switch whose host-routed prefills overlap (``auto`` runs that
  phase live);
- decode steps sampled at 5 context lengths and interpolated (dynamic shapes), once over the
  whole 1,024-token generation.

Prints the relative error of TTFT, mean TPOT and end-to-end latency of each case (``auto`` and
``memoized`` against ``full``), what ``auto`` ran live, and the wall time of each simulation;
``--output`` records them in ``benchmarks/results/approximations.json``.

    python benchmarks/approximations.py [--generate 32]
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from record import add_output, record

from simtopo.results.run import run_variant
from simtopo.spec.experiment import load_experiment

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"

CASES: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
    # (approximation, experiment, variant, workload changes, plan changes)
    ("layers memoized", "ultra8", "tp16-p2p", {}, {}),
    ("layers memoized", "ultra8", "tp16-host", {}, {}),
    ("replicas together", "ultra8", "tp8-host", {}, {"replicas": 2}),
    ("replicas together", "ultra8", "tp8-host", {}, {"replicas": 4}),
    ("replicas together", "ultra8", "tp16x2-p2p", {}, {}),
    ("stages on an idle fabric", "ultra8", "pp2-tp16-p2p", {}, {}),
    ("stages on an idle fabric", "ultra8", "tp16-host", {"groups": 2}, {"tp": 8, "pp": 2}),
    ("stages on an idle fabric", "std8-pipeline", "pp8-host-8groups", {}, {}),
    ("stages on an idle fabric", "std8-pipeline", "pp8-host-8groups", {"batch": 2}, {}),
    ("dynamic shapes sampled", "ultra-card-llama2-7b", "tp4-p2p",
     {"shapes": "dynamic", "prompt": 128, "context": 2048}, {}),
    ("dynamic shapes sampled", "ultra-card-llama2-7b", "tp1",
     {"shapes": "dynamic", "prompt": 128, "generate": 1024, "context": 2048, "batch": 8}, {}),
]


def measure(generate: int) -> list[dict[str, Any]]:
    rows = []
    for label, name, variant_name, workload, plan in CASES:
        (variant,) = [v for v in load_experiment(EXPERIMENTS / f"{name}.yaml").variants
                      if v.name == variant_name]
        variant = replace(
            variant,
            workload=variant.workload.model_copy(update={"generate": generate, **workload}),
            plan=variant.plan.model_copy(update=plan))
        results, seconds = {}, {}
        for mode in ("full", "auto", "memoized"):
            start = time.perf_counter()
            results[mode] = run_variant(variant, mode=mode)
            seconds[mode] = time.perf_counter() - start
        full = results["full"].metrics
        errors = {mode: {k: results[mode].metrics[k] / full[k] - 1
                         for k in ("ttft_s", "tpot_mean_s", "e2e_s")}
                  for mode in ("auto", "memoized")}
        live = results["auto"].simulation.get("live", "nothing")
        changes = {**workload, **plan}
        rows.append({
            "approximation": label, "experiment": name, "variant": variant_name,
            "changes": changes, "generate": generate, "errors": errors,
            "auto_live": live, "auto_reason": results["auto"].simulation.get("reason", ""),
            "seconds": seconds,
        })
        shown = ", ".join(f"{k} {v}" for k, v in changes.items())
        print(f"{label:26} {name}/{variant_name}{' (' + shown + ')' if shown else ''}: "
              f"auto runs {live} live", flush=True)
        for mode in ("auto", "memoized"):
            text = "  ".join(f"{k.removesuffix('_s')} {100 * v:+8.4f}%"
                             for k, v in errors[mode].items())
            print(f"{'':26} {mode:9} {text}   {seconds[mode]:6.2f} s (full "
                  f"{seconds['full']:6.2f} s)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generate", type=int, default=32,
                        help="tokens generated per request in every case (default 32)")
    add_output(parser, "approximations")
    args = parser.parse_args()
    rows = measure(args.generate)
    worst = {k: max(abs(r["errors"]["auto"][k]) for r in rows) for k in rows[0]["errors"]["auto"]}
    print("largest errors of auto: " + ", ".join(f"{k} {100 * v:.3f}%"
                                                 for k, v in worst.items()))
    record({"machine": {"python": platform.python_version(), "processor": platform.machine()},
            "cases": rows, "largest_abs_errors": worst}, args.output, "approximations")


if __name__ == "__main__":
    main()
