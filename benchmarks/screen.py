"""Benchmark: the sizing advisor's screen against the memoized simulation it stands in for.

The screen (``simtopo.sim.driver.SCREEN``) runs each replica's collectives as if it were
alone; it must be optimistic for the advisor's ranking to hold (``docs/metrics.md``, item 6).
For every multi-replica advisor layout whose replicas' collectives can contend
(``contending_replicas``), by both objectives (a throughput pipeline serves a request group
per stage), this runs the screen and ``memoized`` and reports the ratios screen / memoized of
tokens/s (>= 1 is optimistic), TPOT and TTFT (<= 1 is optimistic), and the CPU seconds of
each. Cases: llama-2-70b on ultra8 with 1,024 + 1,024 tokens; llama-2-13b on std8 and
llama-2-7b and llama-3-70b on ultra16-2s with 128 + 128 (about 4 minutes on one core).
``--output`` records them in ``benchmarks/results/screen.json``.

    python benchmarks/screen.py
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

from record import add_output, record

from simtopo.analysis.advisor import layouts
from simtopo.errors import SimtopoError
from simtopo.results.run import run_setup
from simtopo.sim.driver import SCREEN, contending_replicas
from simtopo.sim.setup import setup_variant
from simtopo.spec.experiment import Variant, WorkloadSpec
from simtopo.topology.files import load_topology
from simtopo.workload.modelref import resolve_model

ROOT = Path(__file__).resolve().parent.parent
ROUNDING = 1e-12
"""Ratios within this of 1 are equal (the last digits of two sums in another order)."""
CASES = [("llama-2-70b", "ultra8.yaml", 1024, 1024), ("llama-2-13b", "std8.yaml", 128, 128),
         ("llama-2-7b", "ultra16-2s.yaml", 128, 128),
         ("llama-3-70b", "ultra16-2s.yaml", 128, 128)]


def timed(setup: Any, mode: str) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    metrics = run_setup(setup, mode=mode, spans=False).metrics
    return metrics, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output(parser, "screen")
    args = parser.parse_args()
    rows = []
    for model, topology, prompt, generate in CASES:
        path = ROOT / "topologies" / topology
        topo = load_topology(path)
        decoder = resolve_model(model).decoder
        assert decoder is not None
        for layout in layouts(decoder, len(topo.socs), 1):
            if layout.replicas < 2:
                continue
            for objective in ("latency", "throughput"):
                groups = layout.pp if objective == "throughput" else 1
                variant = Variant(name=layout.label, description="", topology=path,
                                  model=model, plan=layout.plan(), transfer={},
                                  workload=WorkloadSpec(batch=1, prompt=prompt,
                                                        generate=generate, context=2048,
                                                        groups=groups))
                try:
                    setup = setup_variant(variant)
                except SimtopoError:
                    continue  # does not fit, or the platform refuses it
                if not contending_replicas(setup):
                    continue
                screen, screen_s = timed(setup, SCREEN)
                memo, memo_s = timed(setup, "memoized")
                row = {"model": model, "topology": topology, "layout": layout.label,
                       "objective": objective,
                       "tokens_per_s": screen["tokens_per_s"] / memo["tokens_per_s"],
                       "tpot": screen.get("tpot_mean_s", screen["ttft_s"])
                       / memo.get("tpot_mean_s", memo["ttft_s"]),
                       "ttft": screen["ttft_s"] / memo["ttft_s"], "screen_s": screen_s,
                       "memoized_s": memo_s}
                rows.append(row)
                print(f"{model} {topology} {layout.label} {objective}: tok/s "
                      f"x{row['tokens_per_s']:.6f}, TPOT x{row['tpot']:.6f}, TTFT "
                      f"x{row['ttft']:.6f} ({screen_s:.2f} s against {memo_s:.2f} s)")
    summary = {"cases": len(rows),
               "tokens_per_s_ratio_min": min(r["tokens_per_s"] for r in rows),
               "tokens_per_s_ratio_max": max(r["tokens_per_s"] for r in rows),
               "tpot_ratio_max": max(r["tpot"] for r in rows),
               "ttft_ratio_max": max(r["ttft"] for r in rows),
               # beyond rounding: a TPOT the replicas' decode steps never meet in is equal
               "pessimistic": sum(r["tokens_per_s"] < 1 - ROUNDING or r["tpot"] > 1 + ROUNDING
                                  or r["ttft"] > 1 + ROUNDING for r in rows),
               "screen_s": sum(r["screen_s"] for r in rows),
               "memoized_s": sum(r["memoized_s"] for r in rows)}
    print(", ".join(f"{k} {v:.6g}" for k, v in summary.items()))
    record({"summary": summary, "rows": rows,
            "machine": {"python": platform.python_version(),
                        "processor": platform.machine()}}, args.output, "screen")


if __name__ == "__main__":
    main()
