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


@dataclass(frozen=True)
class CollectiveRuns:
    """One collective over one group at every size, with P2P on (``p2p``), off (``host``) or
    both (a list is empty when its mode was not asked for); ``fallback`` is why the P2P runs
    went through host memory (``None`` when they used P2P)."""

    op: str
    group: tuple[str, ...]
    p2p: list[CollectiveResult]
    host: list[CollectiveResult]
    fallback: str | None = None


@dataclass
class BenchReport:
    """Everything ``simtopo bench`` measured on one topology."""

    topology: str
    devices: tuple[str, ...]
    matrices: list[bench.P2PMatrices] = field(default_factory=list)
    collectives: list[CollectiveRuns] = field(default_factory=list)
    copies: list[tuple[float, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The report in the shapes of the tools it imitates."""
        parts = [f"simtopo bench: {self.topology}, {len(self.devices)} devices"]
        parts += [bench.format_matrices(m) for m in self.matrices]
        parts += [bench.format_collective_table(c.op, c.p2p, c.host, c.fallback)
                  for c in self.collectives]
        if self.copies:
            parts.append(bench.format_copy_table(self.devices[0], self.copies))
        parts += self.notes
        return "\n\n".join(parts) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Plain data with floats at 12 significant digits."""

        def grid(a: np.ndarray, scale: float) -> list[list[float | None]]:
            return [[round12(float(x) / scale) for x in row] for row in a]

        def one(r: CollectiveResult) -> dict[str, Any]:
            return {"algorithm": r.algorithm, "mode": r.mode, "time_s": round12(r.time_s),
                    "algbw_Bps": round12(r.algbw_Bps), "busbw_Bps": round12(r.busbw_Bps)}

        def rows(c: CollectiveRuns) -> list[dict[str, Any]]:
            out = []
            for k, first in enumerate(c.p2p or c.host):
                entry: dict[str, Any] = {"size_bytes": round12(first.size_bytes)}
                if c.p2p:
                    entry["p2p"] = one(c.p2p[k])
                if c.host:
                    entry["host"] = one(c.host[k])
                if c.p2p and c.host:
                    entry["p2p_speedup"] = round12(c.host[k].time_s / c.p2p[k].time_s)
                out.append(entry)
            return out

        return {
            "topology": self.topology,
            "devices": list(self.devices),
            "matrices": {("p2p" if m.p2p else "host"): {
                "uni_GBps": grid(m.uni_Bps, 1e9), "bi_GBps": grid(m.bi_Bps, 1e9),
                "latency_us": grid(m.latency_s, 1e-6), "staged": m.staged.tolist()}
                for m in self.matrices},
            "collectives": [{"op": c.op, "group": list(c.group), "p2p_fallback": c.fallback,
                             "rows": rows(c)} for c in self.collectives],
            "copies": [{"size_bytes": round12(s), "h2d_Bps": round12(h), "d2h_Bps": round12(d)}
                       for s, h, d in self.copies],
            "notes": self.notes,
        }


def collect_bench(topo: Topology, devices: Sequence[str], p2p_modes: Sequence[bool],
                  groups: Sequence[int], sizes: Sequence[float],
                  parts: Sequence[str]) -> BenchReport:
    """Run the requested parts of the benchmark on ``devices``: matrices and collectives in
    each of ``p2p_modes`` (True: P2P on, falling back to host memory where the platform has
    no P2P, as CUDA and NCCL do; False: host-routed), so that a topology without any P2P
    still runs every part."""
    report = BenchReport(topology=topo.name, devices=tuple(devices))
    if "matrices" in parts:
        report.matrices = [bench.p2p_matrices(topo, devices, p2p) for p2p in p2p_modes]
    if "collectives" in parts:
        for n in groups:
            if n > len(devices) or n < 2:
                report.notes.append(f"group of {n} skipped: {len(devices)} devices selected")
                continue
            group = list(devices[:n])
            for op in COLLECTIVE_OPS:
                p2p: list[CollectiveResult] = []
                host: list[CollectiveResult] = []
                fallback = None
                if True in p2p_modes:  # P2P on: host-routed where the group cannot use P2P
                    p2p, fallback = bench.group_sweep(topo, op, group, True, sizes)
                if False in p2p_modes:  # the fallback already ran what P2P off runs
                    host = p2p if fallback else bench.group_sweep(topo, op, group, False,
                                                                  sizes)[0]
                report.collectives.append(CollectiveRuns(op, tuple(group), p2p, host,
                                                         fallback))
    if "copies" in parts:
        report.copies = bench.copy_sweep(topo, devices[0])
    return report


def bench_json(report: BenchReport) -> str:
    """The report as indented JSON with sorted keys."""
    return json.dumps(report.to_dict(), indent=1, sort_keys=True) + "\n"
