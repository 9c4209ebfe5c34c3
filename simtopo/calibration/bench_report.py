"""``simtopo bench`` output: the benchmark parts gathered into one result, as text or JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.collectives import CollectiveResult
from ..topology.graph import Topology
from . import bench

COLLECTIVE_OPS = ("all_reduce", "all_gather")


def round12(value: float) -> float | None:
    """A float at 12 significant digits (golden files survive numpy versions); NaN -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(f"{value:.12g}")


@dataclass
class BenchReport:
    """Everything ``simtopo bench`` measured on one topology."""

    topology: str
    devices: tuple[str, ...]
    matrices: list[bench.P2PMatrices] = field(default_factory=list)
    collectives: list[tuple[str, list[CollectiveResult], list[CollectiveResult]]] = field(
        default_factory=list)
    copies: list[tuple[float, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The report in the shapes of the tools it imitates."""
        parts = [f"simtopo bench: {self.topology}, {len(self.devices)} devices"]
        parts += [bench.format_matrices(m) for m in self.matrices]
        parts += [bench.format_collective_table(op, p2p, host)
                  for op, p2p, host in self.collectives]
        if self.copies:
            parts.append(bench.format_copy_table(self.devices[0], self.copies))
        parts += self.notes
        return "\n\n".join(parts) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Plain data with floats at 12 significant digits."""

        def grid(a: np.ndarray, scale: float) -> list[list[float | None]]:
            return [[round12(float(x) / scale) for x in row] for row in a]

        def one(r: CollectiveResult) -> dict[str, Any]:
            return {"algorithm": r.algorithm, "time_s": round12(r.time_s),
                    "algbw_Bps": round12(r.algbw_Bps), "busbw_Bps": round12(r.busbw_Bps)}

        return {
            "topology": self.topology,
            "devices": list(self.devices),
            "matrices": {("p2p" if m.p2p else "host"): {
                "uni_GBps": grid(m.uni_Bps, 1e9), "bi_GBps": grid(m.bi_Bps, 1e9),
                "latency_us": grid(m.latency_s, 1e-6), "staged": m.staged.tolist()}
                for m in self.matrices},
            "collectives": [{
                "op": op, "group": list(p2p[0].group),
                "rows": [{"size_bytes": round12(a.size_bytes), "p2p": one(a), "host": one(b),
                          "p2p_speedup": round12(b.time_s / a.time_s)}
                         for a, b in zip(p2p, host, strict=True)]}
                for op, p2p, host in self.collectives],
            "copies": [{"size_bytes": round12(s), "h2d_Bps": round12(h), "d2h_Bps": round12(d)}
                       for s, h, d in self.copies],
            "notes": self.notes,
        }


def collect_bench(topo: Topology, devices: Sequence[str], p2p_modes: Sequence[bool],
                  groups: Sequence[int], sizes: Sequence[float],
                  parts: Sequence[str]) -> BenchReport:
    """Run the requested parts of the benchmark on ``devices``."""
    report = BenchReport(topology=topo.name, devices=tuple(devices))
    if "matrices" in parts:
        report.matrices = [bench.p2p_matrices(topo, devices, p2p) for p2p in p2p_modes]
    if "collectives" in parts:
        for n in groups:
            if n > len(devices) or n < 2:
                report.notes.append(f"group of {n} skipped: {len(devices)} devices selected")
                continue
            limit = topo.platform.max_p2p_group
            if limit is not None and n > limit:
                report.notes.append(f"group of {n} skipped: over {topo.name}'s P2P limit of "
                                    f"{limit} SoCs (platform.max_p2p_group)")
                continue
            group = list(devices[:n])
            for op in COLLECTIVE_OPS:
                p2p = bench.collective_sweep(topo, op, group, "p2p", sizes)
                host = bench.collective_sweep(topo, op, group, "host", sizes)
                report.collectives.append((op, p2p, host))
    if "copies" in parts:
        report.copies = bench.copy_sweep(topo, devices[0])
    return report


def bench_json(report: BenchReport) -> str:
    """The report as indented JSON with sorted keys."""
    return json.dumps(report.to_dict(), indent=1, sort_keys=True) + "\n"
