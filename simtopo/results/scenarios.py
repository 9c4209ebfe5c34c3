"""MLPerf inference scenarios read off one simulated pass: offline throughput through the host
input feed, and the latency of a single-stream or multi-stream query.

**Offline.** Every instance of the plan (each replica; ``plan.per_soc`` of them side by side on
each SoC of a one-SoC plan) runs passes of ``B`` samples back to back, so on its own it
completes ``c`` samples/s, the pipeline's steady state ``(B / M) / stage_max_s``. The samples
come from host memory and the results go back to it: per sample, an instance moves

- ``input`` bytes on every resource of the route from its socket's memory to each SoC of its
  first stage (the links, the socket's memory, the SoC's DMA receive side),
- ``output`` bytes on every resource of the route from the first SoC of its last stage back,
- one sample of the host's preprocessing rate (``host_samples_per_s``, if given).

The resources are the flow engine's, with its concurrency efficiency on an endpoint (host
memory, a SoC behind a switch) that serves several streams at once.

The instances' sample rates are max-min fair with each capped at its own ``c`` (progressive
filling: every rate rises together until a resource fills or an instance reaches ``c``), as the
flow engine shares links. ``offline_samples_per_s`` is their sum: ``N x c`` for N identical
instances until a shared resource binds, then what that resource carries.

**Single-stream, multi-stream.** A query of ``B`` samples (1 and 8 in MLPerf): preprocessing
``B / host_samples_per_s``, the inputs copied to every first-stage SoC at once, the pass, the
outputs copied back from the last stage (copies on the flow engine, alone on the fabric):
``query_latency_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..engine.maxmin import fill
from ..engine.resources import Resources, endpoint_efficiency
from ..engine.transfers import Fabric
from ..plan.layouts import Stage
from ..plan.stages import PartitionPlan
from ..sim.setup import TOKEN_ID_BYTES, Setup
from ..topology import routing
from ..topology.graph import Topology


@dataclass(frozen=True)
class Feed:
    """The offline steady state: each instance's sample rate and what binds it."""

    rates: tuple[float, ...]
    """Samples/s of each instance (a SoC's ``per_soc`` instances count once each)."""
    bound: str
    """``compute``, or the resource that stops the instances reaching it (a directed link
    ``u->v``, ``<socket> memory``, ``host preprocessing``)."""
    utilization: dict[str, float]
    """Each feed resource's load over its capacity, busiest first."""

    @property
    def samples_per_s(self) -> float:
        """Samples/s of all the instances together."""
        return float(sum(self.rates))


def sample_bytes(setup: Setup, graph: nx.DiGraph) -> tuple[float, float]:
    """(input, output) bytes of one sample: the workload's ``input_bytes`` and
    ``output_bytes`` where given; else a decoder's or encoder's token ids in (4 bytes per
    token) and a graph's inputs in (what its first ops read besides weights), and the last
    ops' outputs out, per sample of the pass."""
    w = setup.variant.workload
    batch = w.batch // setup.forward_passes
    if w.input_bytes is not None:
        into = w.input_bytes
    elif setup.ref.decoder is not None:
        into = w.prompt * TOKEN_ID_BYTES
    else:
        firsts = [graph.nodes[n]["op"] for n in graph if graph.in_degree(n) == 0]
        into = sum(op.bytes_read - op.weights_read_bytes - op.kv_read_bytes
                   for op in firsts) / batch
    if w.output_bytes is not None:
        out = w.output_bytes
    else:
        out = sum(graph.nodes[n]["op"].out_bytes for n in graph
                  if graph.out_degree(n) == 0) / batch
    return float(into), float(out)


def _socket(topo: Topology, soc: str) -> str:
    return topo.ancestors(soc)[-1]


def _copies(stages: tuple[Stage, ...], into: float, out: float) -> list[tuple[str, float,
                                                                               bool]]:
    """(SoC, bytes per sample, towards the SoC) of one replica's inputs and outputs: every
    device of a weight-mode first stage gets the whole input and the last stage's first
    device returns the output; in batch mode each device gets and returns its share."""
    first, last = stages[0], stages[-1]
    share_in = 1 / first.tp if first.mode == "batch" else 1.0
    outs = last.devices if last.mode == "batch" else last.devices[:1]
    return ([(d, into * share_in, True) for d in first.devices]
            + [(d, out / len(outs), False) for d in outs])


def offline_feed(setup: Setup, instance_rate: float, into: float, out: float) -> Feed:
    """Each instance's offline sample rate through the host feed (module docstring). The
    resources and their capacities are the flow engine's (:mod:`simtopo.engine.resources`:
    links, socket memory, each SoC's DMA sides), with its concurrency efficiency on an
    endpoint that serves several streams."""
    topo, plan = setup.topo, setup.plan
    res = Resources.of(topo, setup.params)
    loads: list[dict[int, float]] = []  # per instance: resource -> bytes per sample
    streams: dict[int, int] = {}
    for stages in plan.replicas:
        load: dict[int, float] = {}
        for soc, size, towards in _copies(stages, into, out):
            if size <= 0:
                continue
            socket = _socket(topo, soc)
            path = routing.route(topo, socket, soc) if towards else \
                routing.route(topo, soc, socket)
            assert not isinstance(path, routing.BounceRoute)
            for r in res.of_route(path):
                load[r] = load.get(r, 0.0) + size
                streams[r] = streams.get(r, 0) + plan.per_soc
        loads.extend([load] * plan.per_soc)
    used = sorted(streams)
    c = setup.params.concurrency_efficiency
    capacity = [res.capacity[r] * (endpoint_efficiency(c, streams[r])
                                   if res.endpoint[r] and streams[r] > 1 else 1.0)
                for r in used]
    names = [res.names[r] for r in used]
    matrix = np.array([[load.get(r, 0.0) for r in used] for load in loads]).reshape(
        len(loads), len(used))
    preprocess = setup.variant.workload.host_samples_per_s
    if preprocess is not None:  # one sample of the host's rate per sample, every instance
        names.append("host preprocessing")
        capacity.append(preprocess)
        matrix = np.hstack([matrix, np.ones((len(loads), 1))])
    caps = np.array(capacity, dtype=float)
    rates, bound = fill(caps, matrix, np.full(len(loads), instance_rate))
    binding = [names[b] if b >= 0 else "compute" for b in bound]
    share = rates @ matrix / caps if len(names) else np.zeros(0)
    order = sorted(range(len(names)), key=lambda k: (-share[k], names[k]))
    return Feed(tuple(float(r) for r in rates), max(sorted(set(binding)), key=binding.count),
                {names[k]: float(share[k]) for k in order})


def query_latency(setup: Setup, plan: PartitionPlan, pass_s: float, into: float,
                  out: float) -> float:
    """One query of the workload's batch through replica 0: preprocessing, inputs in, the
    pass, outputs out (module docstring)."""
    w = setup.variant.workload
    batch = w.batch
    fabric = Fabric.create(setup.topo, setup.params)
    env = fabric.env
    copies = _copies(plan.replicas[0], into, out)
    ins = [fabric.copy(_socket(setup.topo, d), d, batch * size) for d, size, towards in copies
           if towards and size > 0]
    if ins:
        env.run(env.all_of(ins))
    outs = [fabric.copy(d, _socket(setup.topo, d), batch * size) for d, size, towards in copies
            if not towards and size > 0]
    if outs:
        env.run(env.all_of(outs))
    copies_s = env.now
    preprocess = batch / w.host_samples_per_s if w.host_samples_per_s else 0.0
    return preprocess + copies_s + pass_s
