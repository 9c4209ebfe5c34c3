"""Collective software costs and the alpha-beta estimates that choose algorithm and protocol.

Two protocols, after NCCL's: ``LL`` (low latency: cheap launch and steps, a quarter of the
bandwidth) and ``simple`` (the bandwidth protocol). The fitted scale of the costs is the
transfer setting's ``collective_launch`` and ``collective_step``; the ratios between the
protocols are NCCL's (:mod:`simtopo.constants`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import constants
from ..topology import routing
from ..topology.fabric import fabric_port, joined_bw
from ..topology.graph import Topology
from ..topology.routing import BounceRoute
from .resources import endpoint_efficiency, shares_switch_port

PROTOCOLS = ("LL", "simple")
"""The low-latency and the bandwidth protocol. A third, ``handoff``, is what host-routed steps
synchronised by host hand-offs run: the launch, and no step cost of its own (the hand-off is
the step's synchronisation), at full bandwidth."""


def costs(params: Any, protocol: str) -> tuple[float, float, float]:
    """(launch s, per-step s, bandwidth share) of ``protocol`` under transfer ``params``."""
    launch = params.collective_launch or 0.0
    step = params.collective_step or 0.0
    if protocol == "LL":
        return launch, step, constants.LL_BANDWIDTH_SHARE
    if protocol == "handoff":
        return launch, 0.0, 1.0
    return launch * constants.SIMPLE_LAUNCH_RATIO, step * constants.SIMPLE_STEP_RATIO, 1.0


def alpha_beta(topo: Topology, params: Any, ring: list[str],
               mode: str = "p2p") -> tuple[float, float]:
    """Per-message latency and bandwidth of the ring's neighbour routes (a collective's copies
    pay no DMA set-up: its step cost stands for it)."""
    routes = [routing.route(topo, a, b, mode=mode)
              for a, b in zip(ring, ring[1:] + ring[:1], strict=True)]
    if mode == "host" and params.host_collectives == "polled":
        # a leg in, the flag's read round trip, a leg out
        latency = max(r.to_host.latency_s + 3 * r.from_host.latency_s
                      for r in routes if isinstance(r, BounceRoute))
    else:
        latency = max(r.latency_s for r in routes)
    return latency, min(r.bottleneck_Bps for r in routes)


def estimates(topo: Topology, params: Any, ring: list[str], size: float,
              reduce_s_per_byte: Callable[[str], float], mode: str = "p2p",
              runs: list[list[str]] | None = None) -> dict[tuple[str, str], float]:
    """Alpha-beta estimates of an all-reduce by (algorithm, protocol), software costs
    included; ``reduce_s_per_byte(device)`` prices the reductions. With ``runs`` (the ring cut
    by fabric port: :func:`simtopo.topology.fabric.port_runs`) also the hierarchical one, whose
    k rings across the ports share each link between them."""
    n = len(ring)
    alpha, bw = alpha_beta(topo, params, ring, mode)
    # a one-shot fan-out loses the concurrency efficiency where the network applies it
    c = params.concurrency_efficiency if any(shares_switch_port(topo, d) for d in ring) else 1.0
    fan = (n - 1) if n > 1 else 1
    levels = math.ceil(math.log2(n))
    per_byte = max(reduce_s_per_byte(d) for d in ring)
    out = {}
    for protocol in PROTOCOLS:
        launch, step, share = costs(params, protocol)
        rate = bw * share
        out[("ring", protocol)] = launch + 2 * (n - 1) * (step + alpha + size / (n * rate)) \
            + (n - 1) * size / n * per_byte
        out[("tree", protocol)] = launch + 2 * levels * (step + alpha + size / rate) \
            + levels * size * per_byte
        out[("direct", protocol)] = launch + step + alpha \
            + fan * size / (rate * endpoint_efficiency(c, fan)) + fan * size * per_byte
    if runs is not None:
        k, ports = len(runs[0]), len(runs)
        inside = [alpha_beta(topo, params, run, mode) for run in runs]
        alpha_in, bw_in = max(a for a, _ in inside), min(b for _, b in inside)
        across = [run[0] for run in runs]
        alpha_out, bw_out = alpha_beta(topo, params, across, mode)
        # the k rings across the ports share each fabric link between two of them
        at = [fabric_port(topo.graph, a) for a in across]
        link_bw = min(joined_bw(topo.graph, p, q)  # type: ignore[arg-type]
                      for p, q in zip(at, at[1:] + at[:1], strict=True))
        bw_out = min(k * bw_out, link_bw)
        for protocol in PROTOCOLS:
            launch, step, share = costs(params, protocol)
            out[("hierarchical", protocol)] = launch \
                + 2 * (k - 1) * (step + alpha_in + size / (k * bw_in * share)) \
                + 2 * (ports - 1) * (step + alpha_out + size / (ports * bw_out * share)) \
                + ((k - 1) / k + (ports - 1) / (k * ports)) * size * per_byte
    return out


def fastest(table: dict[tuple[str, str], float],
            algorithm: str | tuple[str, ...] = "auto") -> tuple[str, str]:
    """(algorithm, protocol) with the lowest estimate (``algorithm`` fixed, or one of several,
    unless ``auto``); ties go to the ring, then to the bandwidth protocol."""
    allowed = (algorithm,) if isinstance(algorithm, str) else algorithm
    keys = [k for k in table if "auto" in allowed or k[0] in allowed] or list(table)
    return min(keys, key=lambda k: (table[k], k[0] != "ring", k[1] != "simple"))
