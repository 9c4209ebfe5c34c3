"""The sizing advisor: enumerate layouts of a model on a topology, drop what cannot work,
simulate the rest, rank them.

A layout is a tensor-parallel size and mode (weight or batch), a number of pipeline stages,
a number of replicas, the cores used per SoC, and P2P or host-routed communication. Sizes
are powers of two (and the SoC count itself); tensor-parallel sizes must divide the heads,
batch mode the batch. Every candidate goes through the same planning and memory checks as
``simtopo run``: one that does not fit, or asks for P2P the platform cannot give, is dropped
with that check's message. The rest are screened (in parallel, like a sweep), the leaders
simulated again exactly, and ranked:

- ``latency``: time per output token, then time to first token, then fewer SoCs;
- ``throughput``: tokens per second over all replicas, then fewer SoCs. A pipeline of S
  stages then serves S request groups (each its own batch and KV cache), as a deployment
  that wants throughput would; for latency it serves one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, PlanError
from ..plan.layouts import check_tp
from ..spec.experiment import PlanSpec, Variant, WorkloadSpec
from ..spec.model import DecoderSpec
from ..topology.files import load_topology
from .executors import Progress, Task
from .sweep import Point, topology_digest

if TYPE_CHECKING:
    import pandas as pd

OBJECTIVES = ("latency", "throughput")


@dataclass(frozen=True, order=True)
class Layout:
    """One way to lay the model out."""

    tp: int
    pp: int
    replicas: int
    mode: str = "weight"
    connection: str = "p2p"
    cores: int | None = None

    @property
    def socs(self) -> int:
        """SoCs used."""
        return self.tp * self.pp * self.replicas

    @property
    def label(self) -> str:
        """``tp16 pp2 x2 p2p`` (mode and cores only when not the default)."""
        parts = [f"tp{self.tp}" + ("-batch" if self.mode == "batch" else ""), f"pp{self.pp}"]
        if self.replicas > 1:
            parts.append(f"x{self.replicas}")
        if self.cores is not None:
            parts.append(f"{self.cores}cores")
        return " ".join([*parts, self.connection])

    def plan(self) -> PlanSpec:
        """The experiment plan of this layout."""
        return PlanSpec(tp=self.tp, pp=self.pp, replicas=self.replicas, mode=self.mode,
                        connection=self.connection, cores=self.cores)


def _powers(limit: int) -> list[int]:
    out, n = [], 1
    while n <= limit:
        out.append(n)
        n *= 2
    return sorted(set([*out, limit]) if limit > 0 else out)


def layouts(decoder: DecoderSpec, socs: int, batch: int,
            cores: Sequence[int | None] = (None,)) -> list[Layout]:
    """Every candidate layout on ``socs`` SoCs (not yet checked against the platform)."""
    out = []
    for tp in _powers(socs):
        try:
            check_tp(decoder, tp)
            modes = ["weight"]
        except PlanError:
            modes = []
        if tp > 1 and batch % tp == 0:
            modes.append("batch")
        for mode in modes:
            for pp in _powers(min(socs // tp, decoder.layers)):
                for replicas in _powers(socs // (tp * pp)):
                    for connection in (("p2p", "host") if tp * pp > 1 else ("p2p",)):
                        for c in cores:
                            out.append(Layout(tp, pp, replicas, mode, connection, c))
    return sorted(set(out))


@dataclass(frozen=True)
class Candidate:
    """A layout and what became of it: metrics, or the reason it was dropped."""

    layout: Layout
    metrics: dict[str, float] | None
    reason: str
    busiest_link: str = ""
    approximate: str = ""
    """Why the screened numbers shown may be optimistic (contention between pipeline stages
    or between replicas that only ``auto`` simulates), when the layout was not refined."""

    @property
    def kept(self) -> bool:
        """Simulated (it fits and the platform allows it)."""
        return self.metrics is not None


def _rank_key(objective: str):
    def key(c: Candidate) -> tuple[Any, ...]:
        m = c.metrics or {}
        tpot = m.get("tpot_mean_s", m["ttft_s"])  # generate: 1 has no decode step
        if objective == "latency":
            return (tpot, m["ttft_s"], c.layout.socs, c.layout)
        return (-m["tokens_per_s"], c.layout.socs, tpot, c.layout)
    return key


def _candidate(layout: Layout, rec: dict[str, Any]) -> Candidate:
    """A layout's candidate from its sweep record (approximate where the screen left
    contention out: ``auto`` simulates it)."""
    if rec["status"] != "ok":
        return Candidate(layout, None, rec["error"].removeprefix(f"{layout.label}: "))
    simulation = rec.get("simulation") or {}  # none: auto, all memoized (exact)
    missed = simulation.get("reason", "") if simulation.get("mode", "auto") != "auto" else ""
    return Candidate(layout, rec["metrics"], _why(rec["metrics"]), rec.get("busiest_link") or "",
                     missed)


def _why(m: dict[str, float]) -> str:
    """What a decode step is made of: compute, exposed communication, bubble."""
    if "step_s" not in m:
        return "no decode step"
    total = m["step_s"] or 1.0
    parts = [(m.get("step_compute_s", 0.0), "compute"), (m.get("step_comm_s", 0.0),
             "comm"), (m.get("step_bubble_s", 0.0), "bubble")]
    return ", ".join(f"{100 * t / total:.0f}% {name}" for t, name in parts
                     if t >= 0.005 * total)


REFINED = 3
"""Leading layouts re-simulated in the default ``auto`` mode when their screened numbers miss
contention between pipeline stages or replicas (the rest keep the screen)."""


def advise(model: str, topology: str | Path, workload: WorkloadSpec,
           objective: str = "latency", cores: Sequence[int | None] = (None,),
           executor: str = "local", jobs: int | None = None,
           socs: int | None = None, progress: Progress | None = None,
           exact: bool = False) -> list[Candidate]:
    """Candidates ranked by ``objective`` (kept ones first), dropped ones after with their
    reasons. ``socs`` caps the SoCs used (default: all of the topology's). ``progress(done,
    total, record)`` is called as each layout's simulation finishes (the refinements below
    add to the total).

    Every layout is screened first (:data:`simtopo.sim.driver.SCREEN`: the memoized
    shortcuts, each replica's collectives as if it were alone). The screen is optimistic
    only where pipeline stages in flight together, or replicas, contend
    (``docs/metrics.md``), so the leading :data:`REFINED` layouts with such contention are
    simulated again in the ``auto`` mode and the ranking redone, until the leaders are all
    exact; the others carry :attr:`Candidate.approximate`. ``exact`` simulates every layout
    in ``auto`` instead (slower: the whole table is exact)."""
    from ..sim.driver import SCREEN
    from ..workload.modelref import resolve_model
    from .executors import execute

    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective: expected one of {', '.join(OBJECTIVES)} (got "
                          f"{objective!r})")
    ref = resolve_model(model)
    if ref.decoder is None:
        raise ConfigError("--model: the advisor lays out decoders (a preset or a 'decoder:' "
                          "YAML)")
    topo_path = Path(topology).resolve()
    topo = load_topology(topo_path)
    available = len(topo.socs) if socs is None else min(socs, len(topo.socs))
    for c in cores:
        if c is not None and not 1 <= c <= topo.node(topo.socs[0])["cores"]:
            raise ConfigError(f"--cores: a SoC of {topo.name} has "
                              f"{topo.node(topo.socs[0])['cores']} cores (got {c})")
    if socs is not None and socs < 1:
        raise ConfigError(f"--socs: expected at least 1 SoC (got {socs})")
    digest = topology_digest(topo_path)
    candidates = layouts(ref.decoder, available, workload.batch, cores)
    def load(layout: Layout) -> WorkloadSpec:
        groups = layout.pp if objective == "throughput" else 1
        return workload.model_copy(update={"groups": groups})

    def task(layout: Layout, mode: str) -> Task:
        return (Point(layout.label, ()), Variant(
            name=layout.label, description="", topology=topo_path, model=model,
            workload=load(layout), plan=layout.plan(), transfer={}), "advisor", digest, mode)

    total = len(candidates)
    done = 0

    def collect(tasks: list[Task]) -> dict[str, dict[str, Any]]:
        nonlocal done
        records = {}
        for rec in execute(tasks, executor, jobs, None):
            records[rec["key"]] = rec
            done += 1
            if progress is not None:
                progress(done, total, rec)
        return records

    if progress is not None:
        progress(0, total, {})
    screened = collect([task(lay, "auto" if exact else SCREEN) for lay in candidates])
    out = [_candidate(layout, screened[layout.label]) for layout in candidates]
    key = _rank_key(objective)
    kept = sorted((c for c in out if c.kept), key=key)
    failed: list[Candidate] = []  # a refinement that fails drops the layout, with its error
    while todo := [c for c in kept[:REFINED] if c.approximate]:
        total += len(todo)
        again = collect([task(c.layout, "auto") for c in todo])
        redone = [_candidate(c.layout, again[c.layout.label]) if c.layout.label in again
                  else c for c in kept]
        failed += [c for c in redone if not c.kept]
        kept = sorted((c for c in redone if c.kept), key=key)
    dropped = sorted([*(c for c in out if not c.kept), *failed], key=lambda c: c.layout)
    return kept + dropped


def advise_table(model: str, topology: str | Path, objective: str = "latency",
                 batch: int = 1, prompt: int = 128, generate: int = 128, context: int = 2048,
                 precision: str = "fp16", jobs: int | None = None,
                 exact: bool = False) -> pd.DataFrame:
    """The sizing advisor's ranked layouts as a DataFrame (kept first, then dropped with
    their reasons; ``approximate`` says why a row's numbers are a screen's, optimistic, and
    ``exact`` simulates every row exactly): ``simtopo.advise`` in a notebook."""
    import pandas as pd

    workload = WorkloadSpec(batch=batch, prompt=prompt, generate=generate, context=context,
                            precision=precision)
    rows = []
    for rank, c in enumerate(advise(model, topology, workload, objective, jobs=jobs,
                                    exact=exact), 1):
        row = {"rank": rank if c.kept else None, "layout": c.layout.label,
               "socs": c.layout.socs, "kept": c.kept, "reason": c.reason,
               "approximate": c.approximate}
        row.update(c.metrics or {})
        rows.append(row)
    return pd.DataFrame(rows)
