"""Link-model calibration: predictions against third-party measurements, the fit, leave-one-out.

Each measured value is read from ``simtopo/calibration/data/*.yaml`` (copies of
``../shared/calibration``) and paired with a prediction made by the same benchmark functions
``simtopo bench`` uses, on the machine's topology under ``topologies/calibration/``. The fit
varies five :class:`~simtopo.constants.LinkModel` parameters to minimise the mean absolute
log error, every calibration file weighing the same, and leave-one-machine-out refits without
each machine in turn and predicts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import yaml

from ..constants import DEFAULT_MODEL, LinkModel
from ..engine.collectives import run_collective
from ..topology import routing
from ..topology.files import load_topology
from ..topology.graph import Topology
from .bench import LATENCY_BYTES, MATRIX_BYTES, queued_copy_time, timed_copies

DATA = Path(__file__).resolve().parent / "data"
TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies" / "calibration"

Predictor = Callable[["Machines"], float]


@dataclass(frozen=True)
class Point:
    """One measured value and how to predict it."""

    source: str
    machine: str
    name: str
    kind: str  # "bandwidth" (B/s) or "latency" (s)
    measured: float
    predict: Predictor
    fitted: bool = True
    note: str = ""


class Machines:
    """The calibration topologies built with one link model, and a simulation cache."""

    def __init__(self, model: LinkModel, directory: Path = TOPOLOGIES) -> None:
        self.model = model
        self.directory = directory
        self._topologies: dict[str, Topology] = {}
        self.cache: dict[Any, float] = {}

    def __getitem__(self, name: str) -> Topology:
        if name not in self._topologies:
            self._topologies[name] = load_topology(self.directory / f"{name}.yaml", self.model)
        return self._topologies[name]

    def copies(self, machine: str, pairs: Sequence[tuple[str, str]], size: float,
               mode: str) -> float:
        """Seconds until the last of ``pairs`` copies of ``size`` ends (all started at once)."""
        time, _ = timed_copies(self[machine], pairs, size, mode, cache=self.cache)
        return time


def gpu(index: int | str) -> str:
    """The SoC id of GPU ``index`` in a calibration topology."""
    return f"gpu{index}.soc0"


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DATA / f"{name}.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _measurement(data: dict[str, Any], name: str) -> dict[str, Any]:
    for item in data["measurements"]:
        if item["name"] == name:
            return item
    raise KeyError(f"{data['id']}: no measurement {name!r}")


def _matrix(item: dict[str, Any]) -> Iterable[tuple[str, str, float]]:
    parsed = item["parsed"]
    for row in parsed["row_order"]:
        for col, value in zip(parsed["columns"], parsed["rows"][row], strict=True):
            if value is not None and row != col:
                yield row, col, float(value)


# -- predictions ---------------------------------------------------------------------------------

def uni(machine: str, a: str, b: str, mode: str, size: float = MATRIX_BYTES) -> Predictor:
    """A predictor of a one-way copy's bandwidth between ``a`` and ``b`` on ``machine``."""
    return lambda m: size / m.copies(machine, [(a, b)], size, mode)


def bidir(machine: str, a: str, b: str, mode: str, size: float = MATRIX_BYTES) -> Predictor:
    """A predictor of the bandwidth of copies both ways at once between ``a`` and ``b``."""
    return lambda m: 2 * size / m.copies(machine, [(a, b), (b, a)], size, mode)


def latency(machine: str, a: str, b: str, mode: str) -> Predictor:
    """The latency tests' number: time per copy of tiny copies queued back to back."""
    return lambda m: queued_copy_time(m[machine], a, b, LATENCY_BYTES, mode, cache=m.cache)


def aggregate(machine: str, pairs: list[tuple[str, str]], size: float = MATRIX_BYTES
              ) -> Predictor:
    """A predictor of the total bandwidth of copies between all ``pairs`` at once."""
    return lambda m: len(pairs) * size / m.copies(machine, pairs, size, "p2p")


# -- the calibration files ----------------------------------------------------------------------

def v100_points() -> list[Point]:
    """The points of the two-V100 Gen3 machine (P2P against host-staged)."""
    src = "v100pcie-2x-gen3-p2p-vs-hostrouted"
    data, machine = _load(src), "v100pcie-2x-gen3"
    points = []
    for item_name, kind, maker, mode in [
        ("unidirectional_p2p_enabled_writes", "bandwidth", uni, "p2p"),
        ("unidirectional_p2p_disabled", "bandwidth", uni, "host"),
        ("bidirectional_p2p_enabled", "bandwidth", bidir, "p2p"),
        ("bidirectional_p2p_disabled", "bandwidth", bidir, "host"),
        ("latency_p2p_enabled_writes_gpu", "latency", latency, "p2p"),
        ("latency_p2p_disabled_gpu", "latency", latency, "host"),
    ]:
        scale = 1e9 if kind == "bandwidth" else 1e-6
        for row, col, value in _matrix(_measurement(data, item_name)):
            points.append(Point(src, machine, f"{item_name} {row}->{col}", kind,
                                value * scale, maker(machine, gpu(row), gpu(col), mode)))
    return points


def rtx6k_points() -> list[Point]:
    """The points of the RTX PRO 6000 machines (two switches, Gen5, NCCL)."""
    src = "rtx6kpro-wrx90-2switch-flat-gen5"
    data, machine = _load(src), "rtx6kpro-wrx90"
    points = [Point(src, machine, f"bidirectional_p2p_enabled {r}->{c}", "bandwidth", v * 1e9,
                    bidir(machine, gpu(r), gpu(c), "p2p"))
              for r, c, v in _matrix(_measurement(data, "bidirectional_p2p_enabled"))]
    tiers = {row["tier"].split(" ")[0]: row["bandwidth"]
             for row in _measurement(data, "unidirectional_by_tier")["rows"]}
    points.append(Point(src, machine, "unidirectional PIX 0->1", "bandwidth",
                        tiers["PIX"] * 1e9, uni(machine, gpu(0), gpu(1), "p2p")))
    points.append(Point(src, machine, "unidirectional NODE 0->4", "bandwidth",
                        tiers["NODE"] * 1e9, uni(machine, gpu(0), gpu(4), "p2p")))
    for row in _measurement(data, "uplink_degradation")["rows"]:
        variant = machine if row["state"] == "baseline" else "rtx6kpro-wrx90-gen2-uplink"
        points.append(Point(src, variant, f"{row['state']}: PIX 0->1", "bandwidth",
                            row["pix_gpu0_to_gpu1"] * 1e9,
                            uni(variant, gpu(0), gpu(1), "p2p")))
        points.append(Point(src, variant, f"{row['state']}: NODE 0->4", "bandwidth",
                            row["node_gpu0_to_gpu4"] * 1e9,
                            uni(variant, gpu(0), gpu(4), "p2p")))
    points += [Point(src, machine, f"p2p_enabled_write_latency {r}->{c}", "latency", v * 1e-6,
                     latency(machine, gpu(r), gpu(c), "p2p"))
               for r, c, v in _matrix(_measurement(data, "p2p_enabled_write_latency_partial"))]
    reads = {row["tier"].split(" ")[0]: row["latency"]
             for row in _measurement(data, "p2pmark_remote_read_latency_128B")["rows"]}
    node_read = median(float(x) for x in str(reads["NODE"]).split("–"))
    extra = node_read - float(reads["PIX"])

    def read_extra(m: Machines) -> float:
        topo = m[machine]
        return 2 * (routing.route(topo, gpu(0), gpu(4)).latency_s - routing.route(topo, gpu(0),
                                                                      gpu(1)).latency_s)

    points.append(Point(src, machine, "remote read latency, NODE minus PIX (a round trip)",
                        "latency", extra * 1e-6, read_extra))
    groups = {
        ("PIX (same switch)", 1): [(0, 1)], ("PIX (same switch)", 2): [(0, 1), (2, 3)],
        ("NODE (cross-switch", 1): [(0, 4)], ("NODE (same src switch)", 2): [(0, 4), (1, 5)],
        ("NODE 1:1", 4): [(i, i + 4) for i in range(4)],
        ("Same-switch all-to-all", 12): [(i, j) for i in range(4) for j in range(4) if i != j],
        ("Cross-switch", 16): [(i, j) for i in range(4) for j in range(4, 8)],
        ("All-to-all", 56): [(i, j) for i in range(8) for j in range(8) if i != j],
    }
    for row in _measurement(data, "multi_flow_scaling")["rows"]:
        config = next(k for k in groups if row["config"].startswith(k[0])
                      and k[1] == row["flows"])
        pairs = [(gpu(a), gpu(b)) for a, b in groups[config]]
        points.append(Point(src, machine, f"{row['flows']} flows, {row['config']} (total)",
                            "bandwidth", row["total"] * 1e9, aggregate(machine, pairs)))
    for row in _measurement(data, "posted_write_tests")["rows"]:
        first, second = row["test"].split(" (")[0].split(" + ")
        pairs = [(gpu(p.split("->")[0][3:]), gpu(p.split("->")[1][3:]))
                 for p in (first, second)]
        points.append(Point(src, machine, f"posted writes {row['test']}", "bandwidth",
                            row["write"] * 1e9, aggregate(machine, pairs)))
    four = [gpu(i) for i in range(4)]
    for row in _measurement(data, "pcie_oneshot_allreduce_vs_nccl_tp4_bf16")["rows"]:
        size = float(row["size"].split()[0]) * 1024
        points.append(Point(
            src, machine, f"one-shot all-reduce TP4 {row['size']} (custom kernel)", "latency",
            row["custom"] * 1e-6,
            lambda m, s=size: run_collective(m[machine], "all_reduce", four, s,
                                             algorithm="direct").time_s,
            fitted=False, note="a GPU-kernel all-reduce (loads and stores, launch and "
                               "flag waits), not DMA copies"))
        points.append(Point(
            src, machine, f"NCCL all-reduce TP4 {row['size']}", "latency", row["nccl"] * 1e-6,
            lambda m, s=size: run_collective(m[machine], "all_reduce", four, s).time_s,
            fitted=False, note="NCCL's fixed launch and synchronisation overhead (about "
                               "30 us) is library software, outside the link model"))
    return points


def della_points() -> list[Point]:
    """The points of the A100 Gen4 and Gen3 ``bandwidthTest`` machines."""
    src = "della-a100pcie-gen4-vs-tiger-gen3-bandwidthtest"
    data = _load(src)
    points = []

    def add(machine: str, label: str, size: float, h2d: float, d2h: float) -> None:
        points.append(Point(src, machine, f"{label} host->device {size:.0f} B", "bandwidth",
                            h2d * 1e9, uni(machine, "host", gpu(0), "p2p", size)))
        points.append(Point(src, machine, f"{label} device->host {size:.0f} B", "bandwidth",
                            d2h * 1e9, uni(machine, gpu(0), "host", "p2p", size)))

    for item_name in ("della_range_1MB_to_10MB", "della_range_100MB_to_1GB"):
        for size, h2d, d2h, _ in _measurement(data, item_name)["rows"]:
            add("della-a100", item_name.replace("della_", ""), size, h2d, d2h)
    for system, size, h2d, d2h, _ in _measurement(data, "tiger_vs_della_1MB_to_1GB")["rows"]:
        machine = "della-a100" if system == "DELLA" else "tiger-gen3"
        add(machine, f"{system} comparison", size, h2d, d2h)
    return points


def tiny14_points() -> list[Point]:
    """The points of the six-RTX 4090 Gen4 machine with the P2P driver."""
    src, machine = "tinygrad-tiny14-6x-rtx4090-gen4-p2p-driver", "tiny14-6x4090"
    data = _load(src)
    points = [Point(src, machine, f"bidirectional_p2p_enabled {r}->{c}", "bandwidth", v * 1e9,
                    bidir(machine, gpu(r), gpu(c), "p2p"))
              for r, c, v in _matrix(_measurement(data, "bidirectional_p2p_enabled"))]
    copy = _measurement(data, "simpleP2P_cudaMemcpyPeer")["values"]["gpu0_gpu1_after_fix"]
    points.append(Point(src, machine, "simpleP2P cudaMemcpyPeer 0->1", "bandwidth",
                        copy * 1e9, uni(machine, gpu(0), gpu(1), "p2p", 64 * 2**20)))
    src = "tinygrad-tiny14-6x-rtx4090-p2p-allreduce-32M"
    row = _measurement(_load(src), "all_reduce_perf")["parsed"][0]
    six = [gpu(i) for i in range(6)]
    for label in ("oop", "ip"):
        points.append(Point(
            src, machine, f"all_reduce_perf {row['size_B']} B, 6 GPUs ({label} time)",
            "latency", row[f"{label}_time_us"] * 1e-6,
            lambda m, s=float(row["size_B"]): run_collective(m[machine], "all_reduce", six,
                                                             s).time_s))
    return points


def all_points() -> list[Point]:
    """Every calibration point, in a fixed order."""
    return [*v100_points(), *rtx6k_points(), *della_points(), *tiny14_points()]


# -- errors and the fit ----------------------------------------------------------------------

def predict(points: Sequence[Point], model: LinkModel = DEFAULT_MODEL) -> list[float]:
    """Predictions for ``points`` with ``model``."""
    machines = Machines(model)
    return [p.predict(machines) for p in points]


def relative_error(predicted: float, measured: float) -> float:
    """(predicted - measured) / measured."""
    return (predicted - measured) / measured


def objective(points: Sequence[Point], predicted: Sequence[float]) -> float:
    """Mean absolute log error; each (calibration file, bandwidth or latency) group weighs the
    same, so a file's many bandwidth points do not drown its few latencies."""
    groups: dict[tuple[str, str], list[float]] = {}
    for p, value in zip(points, predicted, strict=True):
        if p.fitted:
            groups.setdefault((p.source, p.kind), []).append(abs(math.log(value / p.measured)))
    return sum(sum(v) / len(v) for v in groups.values()) / len(groups)


BOUNDS = {
    "tlp_overhead_bytes": (4.0, 400.0),
    "dma_setup_s": (1e-8, 1e-4),
    "handoff_s": (1e-7, 1e-3),
    "rc_hop_s": (1e-9, 2e-6),
    "concurrency_efficiency": (0.05, 1.0),
}
"""The fitted parameters and their search ranges. The switch hop is not among them: the data
reach it only in one sum with the root-complex hop (a read round trip crosses two root
complexes and a switch), so it stays at its documented assumption."""


def fit(points: Sequence[Point], start: LinkModel = DEFAULT_MODEL, max_evaluations: int = 400,
        progress: Callable[[int, float], None] | None = None) -> tuple[LinkModel, float, int]:
    """Coordinate search in log space, deterministic; returns (model, objective, evaluations)."""
    fitted = [p for p in points if p.fitted]
    best = start
    best_value = objective(fitted, predict(fitted, best))
    evaluations, factor = 1, 2.0
    while factor > 1.01 and evaluations < max_evaluations:
        improved = False
        for name in BOUNDS:
            low, high = BOUNDS[name]
            for direction in (factor, 1 / factor):
                value = min(max(getattr(best, name) * direction, low), high)
                if value == getattr(best, name):
                    continue
                candidate = best.with_values(**{name: value})
                score = objective(fitted, predict(fitted, candidate))
                evaluations += 1
                if score < best_value - 1e-12:
                    best, best_value, improved = candidate, score, True
                    break
            if progress is not None:
                progress(evaluations, best_value)
        if not improved:
            factor = math.sqrt(factor)
    return best, best_value, evaluations


def machines_of(points: Sequence[Point]) -> list[str]:
    """Machine names in first-appearance order (variants count as their base machine)."""
    out: list[str] = []
    for p in points:
        base = base_machine(p.machine)
        if base not in out:
            out.append(base)
    return out


def base_machine(machine: str) -> str:
    """A variant topology belongs to the machine it modifies."""
    return machine.replace("-gen2-uplink", "")


@dataclass(frozen=True)
class LeaveOneOut:
    """A machine's errors when the fit never saw it."""

    machine: str
    model: LinkModel
    """The fit on every other machine."""
    bandwidth_errors: tuple[float, ...]
    latency_errors: tuple[float, ...]
    """Relative errors of the machine's bandwidth and latency points under that fit."""


def leave_one_out(points: Sequence[Point], start: LinkModel = DEFAULT_MODEL,
                  max_evaluations: int = 400) -> list[LeaveOneOut]:
    """Fit without each machine, then predict that machine."""
    out = []
    for machine in machines_of(points):
        train = [p for p in points if base_machine(p.machine) != machine]
        test = [p for p in points if base_machine(p.machine) == machine and p.fitted]
        model, _, _ = fit(train, start, max_evaluations)
        predicted = predict(test, model)
        errors = [(p.kind, abs(relative_error(v, p.measured)))
                  for p, v in zip(test, predicted, strict=True)]
        out.append(LeaveOneOut(machine, model,
                               tuple(e for k, e in errors if k == "bandwidth"),
                               tuple(e for k, e in errors if k == "latency")))
    return out
