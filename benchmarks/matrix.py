"""Benchmark: build a 1,024-SoC topology and compute its all-pairs path matrix.

A single host with one socket; below its root complex a tree of PCIe switches ``fanout`` wide
and ``levels`` deep, with ``cards_per_switch`` AI 100 Ultra cards under every leaf switch
(default 4 x 4 x 4 leaf switches x 4 cards x 4 SoCs = 1,024 SoCs). Prints the median of
``--repeat`` runs for each stage; ``--output`` records them in ``benchmarks/results/matrix.json``.

    python benchmarks/matrix.py [--levels 3] [--fanout 4] [--cards-per-switch 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from record import add_output, record

import simtopo
from simtopo.topology.files import load_card_library

ROOT = Path(__file__).resolve().parent.parent


def tree_spec(levels: int, fanout: int, cards_per_switch: int) -> dict[str, Any]:
    """A topology dict: ``levels`` of switches ``fanout`` wide, Ultra cards under the leaves."""
    ultra = load_card_library(ROOT / "topologies" / "cards" / "ai100-ultra.yaml")["ai100-ultra"]
    switches, parents = [], ["rc0"]
    for level in range(levels):
        children = []
        for p_index, parent in enumerate(parents):
            for k in range(fanout):
                sw_id = f"l{level}s{p_index * fanout + k}"
                switches.append({"id": sw_id, "parent": parent, "uplink": {"gen": 5, "lanes": 16}})
                children.append(sw_id)
        parents = children
    cards = [{"type": "ai100-ultra", "parent": leaf, "count": cards_per_switch}
             for leaf in parents]
    return {
        "name": "tree",
        "platform": {"root_complex_p2p": True, "bar_space": "4TiB"},
        "host": {"sockets": [{"id": "cpu0", "cores": 128, "memory": "2TB",
                              "memory_bw": "460.8GB/s"}]},
        "card_types": {"ai100-ultra": ultra.model_dump()},
        "switches": switches,
        "cards": cards,
    }


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--fanout", type=int, default=4)
    parser.add_argument("--cards-per-switch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    add_output(parser, "matrix")
    args = parser.parse_args()

    spec = tree_spec(args.levels, args.fanout, args.cards_per_switch)
    build_s, topo = timed(lambda: simtopo.topology_from_dict(spec), args.repeat)
    matrix_s, matrix = timed(topo.path_matrix, args.repeat)
    checks_s, _ = timed(topo.checks, args.repeat)
    sample = topo.socs[:: max(1, len(topo.socs) // 32)]
    pairs = [(a, b) for a in sample for b in sample if a != b]
    route_s, _ = timed(lambda: [topo.route(a, b) for a, b in pairs], args.repeat)
    n = len(topo.socs)
    figures = {
        "socs": n,
        "switches": len(topo.switches),
        "pairs": n * n,
        "build_topology_s": build_s,
        "path_matrix_s": matrix_s,
        "path_matrix_pairs_per_s": n * n / matrix_s,
        "checks_s": checks_s,
        "route_objects_per_s": len(pairs) / route_s,
        "counts": matrix.counts(),
        "repeat": args.repeat,
        "statistic": "median",
        "machine": {"python": platform.python_version(), "processor": platform.machine(),
                    "system": platform.system()},
    }
    for key, value in figures.items():
        if isinstance(value, float):
            print(f"{key:<26} {value:,.4g}")
        else:
            print(f"{key:<26} {value}")
    record(figures, args.output, "matrix")


if __name__ == "__main__":
    main()
