"""Benchmark the scale targets of the reliability work.

1. A decode step tensor-sliced over 64 SoCs: llama-2-70b on ``ultra16-2s`` (16 Ultra cards, two
   sockets), tp 64 host-routed (P2P stops at 16 SoCs there), prompt 32, 2 generated tokens:
   the wall time of ``simtopo.run`` for it.
2. Peak resident memory of ``simtopo run experiments/ultra8.yaml`` with its report and trace,
   in a child process (target: under 500 MB).

The 1,024-SoC topology (build, validation, all-pairs matrix) is ``benchmarks/matrix.py``.
``--output`` records them in ``benchmarks/results/scale.json``.

    python benchmarks/scale.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from record import add_output, record

import simtopo

ROOT = Path(__file__).resolve().parent.parent
TP64 = {"name": "tp64", "topology": str(ROOT / "topologies" / "ultra16-2s.yaml"),
        "model": "llama-2-70b",
        "workload": {"batch": 1, "prompt": 32, "generate": 2, "context": 128},
        "plan": {"tp": 64, "connection": "host"}}


def decode_tp64(repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tp64.yaml"
        path.write_text(yaml.safe_dump(TP64))
        times, result = [], None
        for _ in range(repeat):
            start = time.perf_counter()
            result = simtopo.run(path)
            times.append(time.perf_counter() - start)
    assert result is not None
    m = result.variants[0].metrics
    return {"wall_s_median": statistics.median(times), "wall_s_all": times,
            "socs": m["socs"], "tpot_s": m["tpot_mean_s"], "step_comm_s": m["step_comm_s"]}


def peak_memory() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        code = ("import resource, sys; from simtopo.cli import main; "
                "rc = main(['run', sys.argv[1], '--reports', sys.argv[2], '-q']); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
        out = subprocess.run([sys.executable, "-c", code,
                              str(ROOT / "experiments" / "ultra8.yaml"), folder],
                             capture_output=True, text=True, check=True)
    peak_kib = int(out.stdout.strip().splitlines()[-1])  # Linux: kilobytes
    return {"ultra8_run_peak_rss_MB": peak_kib * 1024 / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    add_output(parser, "scale")
    args = parser.parse_args()
    figures = {"decode_tp64": decode_tp64(args.repeat), **peak_memory()}
    d = figures["decode_tp64"]
    print(f"llama-2-70b decode, tp 64 host-routed on ultra16-2s: median {d['wall_s_median']:.2f}"
          f" s over {args.repeat} runs (TPOT {1e3 * d['tpot_s']:.1f} ms)")
    print(f"simtopo run experiments/ultra8.yaml: peak resident memory "
          f"{figures['ultra8_run_peak_rss_MB']:.0f} MB (target 500 MB)")
    record(figures, args.output, "scale")



if __name__ == "__main__":
    main()
