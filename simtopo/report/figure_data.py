"""The numbers the figures plot, computed from a result and testable without drawing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..results.result import VariantResult
from ..sim.profiles import PassProfile, Span


def representative(result: VariantResult) -> tuple[str, PassProfile]:
    """The pass the figures show: the last simulated decode step, else the forward pass."""
    keys = [k for k in result.profiles if k.startswith("decode@")][-1:] or ["forward"]
    return keys[0], result.profiles[keys[0]]


@dataclass(frozen=True)
class StageShare:
    """Where one stage's SoCs spend a step: computing, in collectives compute does not hide,
    and waiting (for the other stages, the hand-offs and the host round trip)."""

    label: str
    compute_s: float
    communication_s: float
    host_s: float
    waiting_s: float

    @property
    def total_s(self) -> float:
        """The step."""
        return self.compute_s + self.communication_s + self.host_s + self.waiting_s


def step_shares(result: VariantResult) -> tuple[float, list[StageShare]]:
    """The step (the median decode step of the run, or the forward pass) and each stage's
    share of it. Every SoC of a stage runs the same program, so one row stands for them."""
    _, profile = representative(result)
    step = result.metrics.get("step_s") or sum(s.seconds for s in profile.stages) + sum(
        profile.handoff_s)
    host = result.metrics.get("host_round_trip_s", 0.0) if "step_s" in result.metrics else 0.0
    rows = []
    for stage, run in zip(result.plan.stages, profile.stages, strict=True):
        devices = stage.devices
        who = devices[0] if len(devices) == 1 else f"{devices[0]} .. {devices[-1]}"
        waiting = max(step - run.seconds - host, 0.0)
        rows.append(StageShare(f"stage {stage.index}: {len(devices)} SoC"
                               f"{'s' if len(devices) > 1 else ''} ({who})", run.compute_s,
                               run.comm_s, host, waiting))
    return step, rows


def _union_s(spans: list[Span]) -> float:
    """Length of the union of ``spans``' intervals."""
    total, end = 0.0, float("-inf")
    for s in sorted(spans, key=lambda x: x.start_s):
        if s.end_s > end:
            total += s.end_s - max(s.start_s, end)
            end = s.end_s
    return total


@dataclass(frozen=True)
class LinkBusy:
    """A directed link in the representative pass: bytes moved, time carrying traffic."""

    link: str
    bytes: float
    busy_s: float
    capacity_Bps: float
    pass_s: float

    @property
    def while_busy(self) -> float:
        """Share of the link's capacity used while it carries traffic."""
        return self.bytes / (self.capacity_Bps * self.busy_s) if self.busy_s else 0.0

    @property
    def busy_share(self) -> float:
        """Share of the pass the link carries traffic."""
        return self.busy_s / self.pass_s if self.pass_s else 0.0


def link_busy(result: VariantResult) -> dict[str, LinkBusy]:
    """Each directed link that the representative pass's blocks move data on: bytes and the
    union of its flows' intervals, over every repetition of every block."""
    _, profile = representative(result)
    moved: Counter[str] = Counter()
    busy: Counter[str] = Counter()
    for stage in profile.stages:
        for _, run, times in stage.blocks:
            for link, size in run.link_bytes.items():
                moved[link] += size * times
            by_link: dict[str, list[Span]] = {}
            for flow in run.flows:
                by_link.setdefault(flow.track, []).append(flow)
            for link, flows in by_link.items():
                busy[link] += _union_s(flows) * times
    pass_s = sum(s.seconds for s in profile.stages) + sum(profile.handoff_s)
    graph = result.topology.graph
    out = {}
    for link, size in moved.items():
        u, _, v = link.partition("->")
        if size > 0 and graph.has_edge(u, v):
            out[link] = LinkBusy(link, size, busy[link], graph.edges[u, v]["bw_Bps"], pass_s)
    return out
