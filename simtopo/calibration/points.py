"""Calibration points: each measured value in ``simtopo/calibration/data/*.yaml`` (copies of
``../shared/calibration``) paired with a prediction made by the same benchmark functions
``simtopo bench`` uses, on the machine's topology under ``topologies/calibration/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import yaml

from ..constants import DEFAULT_MODEL, LinkModel
from ..engine.idle_collective import run_collective
from ..topology import routing
from ..topology.files import load_topology
from ..topology.graph import Topology
from .bench import LATENCY_BYTES, MATRIX_BYTES, queued_copy_time, timed_copies

DATA = Path(__file__).resolve().parent / "data"
TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies" / "calibration"

Predictor = Callable[["Machines"], float]

KINDS = ("bandwidth", "latency-gpu", "latency-cpu", "busbw", "collective")
"""Categories of calibration points, each reported (and weighed in the fit) on its own."""


@dataclass(frozen=True)
class Point:
    """One measured value and how to predict it."""

    source: str
    machine: str
    name: str
    kind: str
    """One of :data:`KINDS`: a bandwidth (B/s), a GPU- or CPU-timed latency (s), an
    all-reduce bus bandwidth (B/s) or a collective's time (s)."""
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

CPU_NOTE = ("CPU-timed: the host's time to issue a copy and see it complete, which the model "
            "has no per-call cost for; predicted as the GPU-timed latency")


ENGINE_NOTE = ("sets the V100's copy-engine set-up (soc.dma_setup of the v100-pcie card type in "
               "topologies/cards/gpus.yaml), the only measurement of it: not a prediction")


def bidirectional_matrix(src: str, machine: str, data: dict[str, Any]) -> list[Point]:
    """The points of p2pBandwidthLatencyTest's bidirectional P2P matrix."""
    return [Point(src, machine, f"bidirectional_p2p_enabled {r}->{c}", "bandwidth", v * 1e9,
                  bidir(machine, gpu(r), gpu(c), "p2p"))
            for r, c, v in _matrix(_measurement(data, "bidirectional_p2p_enabled"))]


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
        ("latency_p2p_enabled_writes_gpu", "latency-gpu", latency, "p2p"),
        ("latency_p2p_disabled_gpu", "latency-gpu", latency, "host"),
        ("latency_p2p_enabled_writes_cpu", "latency-cpu", latency, "p2p"),
        ("latency_p2p_disabled_cpu", "latency-cpu", latency, "host"),
    ]:
        scale = 1e9 if kind == "bandwidth" else 1e-6
        note = {"latency-cpu": CPU_NOTE, "latency-gpu": ENGINE_NOTE if mode == "p2p" else ""}
        for row, col, value in _matrix(_measurement(data, item_name)):
            points.append(Point(src, machine, f"{item_name} {row}->{col}", kind,
                                value * scale, maker(machine, gpu(row), gpu(col), mode),
                                fitted=not note.get(kind), note=note.get(kind, "")))
    return points


def rtx6k_points() -> list[Point]:
    """The points of the RTX PRO 6000 machines (two switches, Gen5, NCCL)."""
    src = "rtx6kpro-wrx90-2switch-flat-gen5"
    data, machine = _load(src), "rtx6kpro-wrx90"
    points = bidirectional_matrix(src, machine, data)
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
    points += [Point(src, machine, f"p2p_enabled_write_latency {r}->{c}", "latency-gpu",
                     v * 1e-6,
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
                        "latency-gpu", extra * 1e-6, read_extra))
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
    points += kernel_and_nccl(src, machine, four, _measurement(
        data, "pcie_oneshot_allreduce_vs_nccl_tp4_bf16")["rows"], "TP4", OTHER_BUILD_NOTE)
    return points


KERNEL_NOTE = ("a GPU-kernel all-reduce (loads and stores across PCIe, launch and flag waits), "
               "not DMA copies")


OTHER_BUILD_NOTE = (
    "measured on the three-switch WRX90 machine by an earlier SGLang build (the source copies "
    "the table: 'Same as 3-switch topology'), and not comparable: a 4-GPU ring inside one Gen5 "
    "switch takes 32 us at 1-16 KB, where 8 direct-attached GPUs across two sockets take 18 "
    "(epyc9124) and 4 GPUs through host memory 16 (genoa), a cost that grows with neither "
    "steps nor size; shown, not fitted")


def kernel_and_nccl(src: str, machine: str, group: list[str], rows: list[dict[str, Any]],
                    label: str, nccl_note: str = "") -> list[Point]:
    """SGLang's one-shot kernel (shown, not fitted) and NCCL's all-reduce time, by size
    (fitted unless ``nccl_note`` says why not)."""
    points = []
    for row in rows:
        number, unit = row["size"].split()
        size = float(number) * {"KB": 1024, "MB": 1024**2}[unit]
        points.append(Point(
            src, machine, f"one-shot all-reduce {label} {row['size']} (custom kernel)",
            "collective", row["custom"] * 1e-6,
            lambda m, s=size: run_collective(m[machine], "all_reduce", group, s,
                                             algorithm="direct").time_s,
            fitted=False, note=KERNEL_NOTE))
        points.append(Point(
            src, machine, f"NCCL all-reduce {label} {row['size']}", "collective",
            row["nccl"] * 1e-6,
            lambda m, s=size: run_collective(m[machine], "all_reduce", group, s).time_s,
            fitted=not nccl_note, note=nccl_note))
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
    points = bidirectional_matrix(src, machine, data)
    copy = _measurement(data, "simpleP2P_cudaMemcpyPeer")["values"]["gpu0_gpu1_after_fix"]
    points.append(Point(src, machine, "simpleP2P cudaMemcpyPeer 0->1", "bandwidth",
                        copy * 1e9, uni(machine, gpu(0), gpu(1), "p2p", 64 * 2**20)))
    src = "tinygrad-tiny14-6x-rtx4090-p2p-allreduce-32M"
    row = _measurement(_load(src), "all_reduce_perf")["parsed"][0]
    six = [gpu(i) for i in range(6)]
    points += nccl_points(src, machine, six, [row], "p2p")
    return points


def nccl_points(src: str, machine: str, group: list[str], rows: list[dict[str, Any]],
                mode: str, busbw_from: float = 1 << 20) -> list[Point]:
    """nccl-tests all-reduce rows: the out-of-place time of every size, and the bus bandwidth
    from ``busbw_from`` bytes (below it the table's two decimals round it away)."""
    points = []
    n = len(group)
    for row in rows:
        size = float(row["size_B"])

        def time(m: Machines, s: float = size) -> float:
            key = ("allreduce", machine, tuple(group), s, mode)
            if key not in m.cache:
                m.cache[key] = run_collective(m[machine], "all_reduce", group, s,
                                              mode=mode).time_s
            return m.cache[key]

        points.append(Point(src, machine, f"all_reduce_perf {row['size_B']} B, {n} GPUs, "
                            f"{mode} (time)", "collective", row["oop_time_us"] * 1e-6, time))
        if size >= busbw_from:
            points.append(Point(
                src, machine, f"all_reduce_perf {row['size_B']} B, {n} GPUs, {mode} (busbw)",
                "busbw", row["oop_busbw_GBps"] * 1e9,
                lambda m, s=size, t=time: s / t(m) * 2 * (n - 1) / n))
    return points


def epyc_points() -> list[Point]:
    """The points of the two-socket direct-attach RTX PRO 6000 machine (no switch)."""
    src, machine = "rtx6kpro-epyc9124-direct-attach-gen5", "epyc9124-2s"
    data = _load(src)
    points = bidirectional_matrix(src, machine, data)
    for row in _measurement(data, "specific_pairs")["rows"]:
        a, b = (int(x[-1]) for x in row["pair"].split()[0].split("<->"))
        values = [float(x) for x in str(row["unidirectional"]).split(" / ")]
        if len(values) == 1:  # one figure for both directions
            values *= 2
        for (s, d), value in zip([(a, b), (b, a)], values, strict=True):
            points.append(Point(src, machine, f"unidirectional {row['pair']} {s}->{d}",
                                "bandwidth", value * 1e9, uni(machine, gpu(s), gpu(d), "p2p")))
    points += [Point(src, machine, f"p2p_enabled_write_latency {r}->{c}", "latency-gpu",
                     v * 1e-6, latency(machine, gpu(r), gpu(c), "p2p"))
               for r, c, v in _matrix(_measurement(data, "p2p_enabled_write_latency"))]
    for row in _measurement(data, "p2pmark_single_reader_all_7_peers")["rows"]:
        reader = row["gpu"]
        pairs = [(gpu(peer), gpu(reader)) for peer in range(8) if peer != reader]
        points.append(Point(src, machine, f"p2pmark GPU{reader} reads all 7 peers (total)",
                            "bandwidth", row["bw"] * 1e9, aggregate(machine, pairs)))
    every = _measurement(data, "p2pmark_all_gpus_read_all_peers_56_transfers")
    pairs = [(gpu(a), gpu(b)) for a in range(8) for b in range(8) if a != b]
    points.append(Point(src, machine, "p2pmark all GPUs read all peers, 56 transfers (total)",
                        "bandwidth", every["total_system_bandwidth"] * 1e9,
                        aggregate(machine, pairs)))
    eight = [gpu(i) for i in range(8)]
    points += kernel_and_nccl(src, machine, eight, _measurement(
        data, "pcie_oneshot_allreduce_vs_nccl_tp8_bf16")["rows"], "TP8")
    return points


def genoa_points() -> list[Point]:
    """The points of the four GeForce RTX 5090 without P2P (NCCL over host memory)."""
    src, machine = "genoa-4x-rtx5090-gen5-nop2p-allreduce", "genoa-4x5090"
    rows = _measurement(_load(src), "all_reduce_perf_float_sum")["parsed"]
    return nccl_points(src, machine, [gpu(i) for i in range(4)], rows, "host")


def all_points() -> list[Point]:
    """Every calibration point, in a fixed order."""
    return [*v100_points(), *rtx6k_points(), *della_points(), *tiny14_points(),
            *epyc_points(), *genoa_points()]


# -- errors and the fit ----------------------------------------------------------------------

def predict(points: Sequence[Point], model: LinkModel = DEFAULT_MODEL) -> list[float]:
    """Predictions for ``points`` with ``model``."""
    machines = Machines(model)
    return [p.predict(machines) for p in points]


def relative_error(predicted: float, measured: float) -> float:
    """(predicted - measured) / measured."""
    return (predicted - measured) / measured


