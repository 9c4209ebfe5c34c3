"""Benchmark mode: simulated measurements in the shapes people read from real machines.

- :func:`p2p_matrices`: CUDA ``p2pBandwidthLatencyTest``: unidirectional and bidirectional
  bandwidth matrices (bidirectional counts both directions) and a latency matrix (time per
  copy of small copies queued back to back, as the test measures it), with P2P on (pairs the
  platform cannot connect fall back to host staging, as CUDA does) or off.
- :func:`collective_sweep`: ``nccl-tests``: time, algbw and busbw against message size;
  :func:`group_sweep` runs it with P2P on or off, and with P2P on a group the platform cannot
  connect peer-to-peer (a pair refused, or over ``platform.max_p2p_group``) runs host-routed
  instead, as NCCL falls back to its shared-memory transport, saying why.
- :func:`copy_sweep`: CUDA ``bandwidthTest``: host-to-device and device-to-host bandwidth
  against transfer size.

Each point runs alone on an idle fabric. Pairs whose transfers load resources of the same
capacities in the same pattern give the same result, so a matrix simulates each such shape
once.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.collective_result import CollectiveResult
from ..engine.idle_collective import run_collective
from ..engine.network import Network
from ..engine.transfers import Fabric
from ..errors import RouteError
from ..spec.topology import TransferSpec
from ..topology import routing
from ..topology.fabric import group_ring
from ..topology.graph import Topology
from ..topology.matrix import PATH_CLASSES, path_matrix
from ..topology.routing import BounceRoute, Route

MATRIX_BYTES = 40_000_000
"""p2pBandwidthLatencyTest copies 10,000,000 ints per repetition."""

LATENCY_BYTES = 4
"""p2pBandwidthLatencyTest's latency test moves one int."""

LATENCY_REPEAT = 100
"""Copies the latency test queues back to back; it reports the time per copy."""

COLLECTIVE_SIZES = tuple(4**k for k in range(5, 14))
"""1 KiB to 64 MiB by factors of 4 (16 KiB and 64 MiB included)."""

COPY_SIZES = tuple(4**k for k in range(5, 16))
"""1 KiB to 1 GiB by factors of 4."""


@dataclass(frozen=True, eq=False)
class P2PMatrices:
    """Bandwidth and latency matrices of one mode, in the shape of p2pBandwidthLatencyTest."""

    devices: tuple[str, ...]
    p2p: bool
    uni_Bps: np.ndarray
    bi_Bps: np.ndarray
    latency_s: np.ndarray
    staged: np.ndarray
    """True where the pair went through host memory (P2P off, or not possible)."""


def _copies(topo: Topology, pairs: Sequence[tuple[str, str]], mode: str,
            params: TransferSpec | None) -> tuple[list[Route | BounceRoute], list[str]]:
    routes, modes = [], []
    for src, dst in pairs:
        use = mode
        if mode == "p2p":
            try:
                route: Route | BounceRoute = routing.route(topo, src, dst, mode="p2p")
            except RouteError:
                use = "host"
                route = routing.route(topo, src, dst, mode="host")
        else:
            route = routing.route(topo, src, dst, mode="host")
        routes.append(route)
        modes.append(use)
    return routes, modes


def _shape(net: Network, routes: Sequence[Route | BounceRoute]) -> tuple[Any, ...]:
    """What the simulation of these concurrent copies depends on, with resources renamed by
    first appearance (so that isomorphic pairs share one simulation)."""
    rename: dict[int, int] = {}
    out: list[Any] = []
    for route in routes:
        legs = [route.to_host, route.from_host] if isinstance(route, BounceRoute) else [route]
        for leg in legs:
            res = []
            for r in net.resources(leg):
                rename.setdefault(r, len(rename))
                res.append((rename[r], float(net.capacity[r]), bool(net._endpoint[r])))
            out.append((tuple(res), leg.latency_s))
        if isinstance(route, BounceRoute):
            out.append(("bounce", route.handoff_s))
    return tuple(out)


def timed_copies(topo: Topology, pairs: Sequence[tuple[str, str]], size_bytes: float,
                 mode: str, params: TransferSpec | None = None,
                 cache: dict[Any, float] | None = None) -> tuple[float, list[str]]:
    """Start copies of ``size_bytes`` for every (src, dst) at once; time until the last ends.

    ``mode="p2p"`` falls back to host staging where P2P is impossible (as CUDA does); the
    modes used are returned alongside.
    """
    routes, modes = _copies(topo, pairs, mode, params)
    fab = Fabric.create(topo, params)
    key = (_shape(fab.net, routes), size_bytes)
    if cache is not None and key in cache:
        return cache[key], modes
    for (src, dst), use in zip(pairs, modes, strict=True):
        fab.copy(src, dst, size_bytes, mode=use)
    fab.env.run()
    if cache is not None:
        cache[key] = fab.env.now
    return fab.env.now, modes


def queued_copy_time(topo: Topology, src: str, dst: str, size_bytes: float, mode: str,
                     params: TransferSpec | None = None, repeat: int = LATENCY_REPEAT,
                     cache: dict[Any, float] | None = None) -> float:
    """Time per copy of ``repeat`` small copies queued back to back (the latency tests' way).

    A direct copy's route latency overlaps the next copy's set-up; a staged copy does not.
    ``mode="p2p"`` falls back to host staging where P2P is impossible.
    """
    routes, modes = _copies(topo, [(src, dst)], mode, params)
    fab = Fabric.create(topo, params)
    key = ("queue", _shape(fab.net, routes), size_bytes, repeat)
    if cache is not None and key in cache:
        return cache[key]
    fab.queue(src, dst, size_bytes, repeat, mode=modes[0])
    fab.env.run()
    value = fab.env.now / repeat
    if cache is not None:
        cache[key] = value
    return value


def p2p_matrices(topo: Topology, devices: Sequence[str], p2p: bool,
                 params: TransferSpec | None = None, size_bytes: float = MATRIX_BYTES
                 ) -> P2PMatrices:
    """Unidirectional, bidirectional and latency matrices with P2P on or off."""
    n = len(devices)
    uni, bi, lat = (np.full((n, n), np.nan) for _ in range(3))
    staged = np.zeros((n, n), dtype=bool)
    mode = "p2p" if p2p else "host"
    cache: dict[Any, float] = {}
    for i, a in enumerate(devices):
        for j, b in enumerate(devices):
            if i == j:
                continue
            t, modes = timed_copies(topo, [(a, b)], size_bytes, mode, params, cache)
            uni[i, j] = size_bytes / t
            staged[i, j] = modes[0] == "host"
            t, _ = timed_copies(topo, [(a, b), (b, a)], size_bytes, mode, params, cache)
            bi[i, j] = 2 * size_bytes / t
            lat[i, j] = queued_copy_time(topo, a, b, LATENCY_BYTES, mode, params, cache=cache)
    return P2PMatrices(tuple(devices), p2p, uni, bi, lat, staged)


def collective_sweep(topo: Topology, op: str, group: Sequence[str], mode: str,
                     sizes: Sequence[float] = COLLECTIVE_SIZES,
                     params: TransferSpec | None = None) -> list[CollectiveResult]:
    """One collective at each size, alone on the fabric."""
    return [run_collective(topo, op, group, size, mode=mode, params=params) for size in sizes]


def p2p_refusal(topo: Topology, group: Sequence[str]) -> str | None:
    """Why ``group`` cannot run P2P collectives: the first pair the platform refuses (the
    route's message without its hint) or the P2P group limit; ``None`` if it can."""
    limit = topo.platform.max_p2p_group
    if limit is not None and len(group) > limit:
        return (f"{len(group)} SoCs is over {topo.name}'s P2P limit of {limit} "
                "(platform.max_p2p_group)")
    matrix = path_matrix(topo, group)
    refused = np.argwhere(matrix.path_class == PATH_CLASSES.index("host"))
    if not len(refused) or group_ring(topo, group) is not None:
        return None  # (a fabric ring: its collectives step between fabric neighbours)
    i, j = refused[0]
    try:
        routing.route(topo, group[i], group[j])
    except RouteError as err:
        return str(err).removesuffix(f"; {routing.HOST_HINT}")
    raise AssertionError(f"the path matrix and route() disagree on {group[i]}, {group[j]}")


def group_sweep(topo: Topology, op: str, group: Sequence[str], p2p: bool,
                sizes: Sequence[float] = COLLECTIVE_SIZES, params: TransferSpec | None = None
                ) -> tuple[list[CollectiveResult], str | None]:
    """:func:`collective_sweep` with P2P on or off; with P2P on, a group that cannot use P2P
    runs host-routed (the reason is returned alongside, else ``None``)."""
    fallback = p2p_refusal(topo, group) if p2p else None
    mode = "p2p" if p2p and fallback is None else "host"
    return collective_sweep(topo, op, group, mode, sizes, params), fallback


def copy_sweep(topo: Topology, device: str, sizes: Sequence[float] = COPY_SIZES,
               params: TransferSpec | None = None) -> list[tuple[float, float, float]]:
    """(size, host-to-device B/s, device-to-host B/s) for each size."""
    rows = []
    for size in sizes:
        h2d, _ = timed_copies(topo, [("host", device)], size, "p2p", params)
        d2h, _ = timed_copies(topo, [(device, "host")], size, "p2p", params)
        rows.append((float(size), size / h2d, size / d2h))
    return rows


# -- text in the shapes of the tools ----------------------------------------------------------

def format_matrix(title: str, devices: Sequence[str], values: np.ndarray, scale: float,
                  staged: np.ndarray | None = None) -> str:
    """A numbered device matrix; ``*`` marks pairs staged through host memory."""
    n = len(devices)
    cells = [["-" if i == j else f"{values[i, j] / scale:.4g}"
              + ("*" if staged is not None and staged[i, j] else "") for j in range(n)]
             for i in range(n)]
    width = max(6, *(len(c) for row in cells for c in row)) + 1
    label = max(len(d) for d in devices) + len(str(n)) + 3
    lines = [title, f"{'':<{label}}" + "".join(f"{j:>{width}}" for j in range(n))]
    for i, device in enumerate(devices):
        lines.append(f"{f'{device} [{i}]':<{label}}" + "".join(f"{c:>{width}}"
                                                                 for c in cells[i]))
    return "\n".join(lines)


def format_matrices(m: P2PMatrices) -> str:
    """The three matrices of one mode, as p2pBandwidthLatencyTest prints them."""
    state = "Enabled" if m.p2p else "Disabled"
    staged = m.staged if m.p2p else None  # with P2P off every pair is staged
    note = ("\n(* host-staged: this pair has no P2P path on this platform)"
            if m.p2p and m.staged.any() else "")
    return "\n\n".join([
        format_matrix(f"Unidirectional P2P={state} Bandwidth Matrix (GB/s)", m.devices,
                      m.uni_Bps, 1e9, staged),
        format_matrix(f"Bidirectional P2P={state} Bandwidth Matrix (GB/s)", m.devices,
                      m.bi_Bps, 1e9, staged),
        format_matrix(f"P2P={state} Latency Matrix (us)", m.devices, m.latency_s, 1e-6,
                      staged),
    ]) + note


def format_collective_table(op: str, p2p: Sequence[CollectiveResult],
                            host: Sequence[CollectiveResult], fallback: str | None = None,
                            width: int = 80) -> str:
    """nccl-tests columns with P2P on (``p2p``), off (``host``), or both side by side with the
    P2P speed-up; ``fallback`` is why the P2P runs went through host memory. Rows fit 80
    columns (up to sizes of 10 digits and times of 9 characters; the algorithm columns widen
    for a longer name than ``host-staged``)."""
    runs = p2p or host
    group = runs[0].group
    rows = [f"{op} over {len(group)} devices ({group[0]} .. {group[-1]})"]
    w = max(11, *(len(r.algorithm) for r in (*p2p, *host)))  # "hierarchical": one more
    if p2p and host:
        first = "fallback" if fallback else "p2p alg"
        rows.append(f"{'size (B)':>10} {first:>{w}} {'time (us)':>9} {'busbw':>6}  "
                    f"{'host alg':>{w}} {'time (us)':>9} {'busbw':>6} {'speed-up':>8}")
        rows += [f"{a.size_bytes:>10.0f} {a.algorithm:>{w}} {a.time_s * 1e6:>9.2f} "
                 f"{a.busbw_Bps / 1e9:>6.2f}  {b.algorithm:>{w}} {b.time_s * 1e6:>9.2f} "
                 f"{b.busbw_Bps / 1e9:>6.2f} {b.time_s / a.time_s:>7.2f}x"
                 for a, b in zip(p2p, host, strict=True)]
    else:
        rows.append(f"{'size (B)':>12} {'via':>4} {'algorithm':>{w}} {'time (us)':>11} "
                    f"{'algbw':>8} {'busbw':>8}")
        rows += [f"{r.size_bytes:>12.0f} {r.mode:>4} {r.algorithm:>{w}} {r.time_s * 1e6:>11.2f} "
                 f"{r.algbw_Bps / 1e9:>8.3f} {r.busbw_Bps / 1e9:>8.3f}" for r in runs]
    factor = "2(n-1)/n" if op == "all_reduce" else "(n-1)/n"
    rows.append(f"(busbw = size / time x {factor}, GB/s)" if p2p and host else
                f"(algbw = size / time; busbw = algbw x {factor}, GB/s)")
    if fallback:
        rows += textwrap.wrap(f"(P2P on, but host-routed here, as NCCL falls back to its "
                              f"shared-memory transport: {fallback})", width,
                              break_long_words=False, break_on_hyphens=False)
    return "\n".join(rows)


def format_copy_table(device: str, rows: list[tuple[float, float, float]]) -> str:
    """bandwidthTest-style host <-> device bandwidth against size."""
    lines = [f"Host <-> {device} bandwidth (GB/s)",
             f"{'size (B)':>14} {'host to device':>15} {'device to host':>15}"]
    lines += [f"{s:>14.0f} {h / 1e9:>15.3f} {d / 1e9:>15.3f}" for s, h, d in rows]
    return "\n".join(lines)
