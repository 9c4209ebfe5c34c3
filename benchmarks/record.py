"""What the benchmark scripts share: figures go to stdout, and to a JSON file only when
``--output`` names one (the recorded figures in ``benchmarks/results/`` change on purpose)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_output(parser: argparse.ArgumentParser, name: str) -> None:
    """The ``--output`` option of benchmark ``name``."""
    parser.add_argument("--output", type=Path, metavar="JSON",
                        help=f"write the figures here (the recorded ones are "
                             f"benchmarks/results/{name}.json)")


def record(figures: dict[str, Any], output: Path | None, name: str) -> None:
    """Write ``figures`` to ``output``, or say how to record them."""
    if output is None:
        print(f"(not recorded: --output benchmarks/results/{name}.json writes these figures)")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(f"wrote {output}")


def summary(times: list[float]) -> dict[str, float]:
    """Median, min and max of repeated timings (seconds)."""
    import statistics

    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
