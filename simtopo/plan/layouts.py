"""Shard layouts: what each device of a stage does for each op, and the collectives that follow.

A plan is a list of pipeline stages, each a group of devices that tensor-slices the stage's ops
(weight mode, by GEMM splits) or splits the batch (batch mode); replicas are copies of the plan
on disjoint SoCs. Communication is derived, not listed: every tensor carries a layout

- ``R`` replicated (each device has all of it),
- ``S`` sharded along features (an M-split GEMM's output, attention heads),
- ``P`` partial sums (a K-split GEMM's output: the devices' tensors add up to the result),
- ``B`` split by batch (batch mode), ``T`` split by token after an expert all-to-all,

each op states the layout it needs and the one it produces, and a collective appears exactly
where a consumer needs ``R`` and gets ``P`` (all-reduce) or ``S``, ``T`` (all-gather); routed
experts add their all-to-alls (:mod:`simtopo.plan.experts`). Partial sums
that meet in one add are summed locally first, so GPT-J's parallel block has one all-reduce.

GEMM splits use SambaNova's vocabulary for W[K_in, N_out]: ``M`` divides the output features
(no reduction), ``K`` the input features (partial sums, then an all-reduce). Default rules:
QKV on M, attention output on K, FFN up/gate on M, FFN down on K, the LM head on M (its
vocabulary slices all-gathered for the host); the token embedding is split by vocabulary rows
(its partial rows need one all-reduce). With more devices than KV heads, each KV head (its K/V
projection columns and cache) is replicated on ``tp / kv_heads`` devices.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx

from ..errors import PlanError
from ..spec.model import DecoderSpec
from ..workload.opgraph import ACTIVATION_BYTES, Op, Precision
from .experts import batch_expert_weights, expert_shard
from .splits import check_tp, gemm_shard, kv_share, tied_head_storage

DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    ("*.attn.qkv", "M"),
    ("*.attn.o", "K"),
    ("*.mlp.up", "M"),
    ("*.mlp.down", "K"),
    ("lm_head", "M"),
    ("*.moe.experts", "E"),
)
"""GEMM splits (SambaNova's usual LLM rule). The LM head splits its output features (the
vocabulary) and all-gathers the logits for the host: a K split would all-reduce the whole
logits, twice the traffic for the same weights per device."""

SPLITS = ("M", "K", "replicate", "E")


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its devices (physical SoC ids, logical ids, cores) and ops."""

    index: int
    name: str
    devices: tuple[str, ...]
    """Physical SoC ids, rank by rank."""
    logical: tuple[int, ...]
    """Logical device ids (an MDP config's ``deviceId``), rank by rank."""
    cores: tuple[int, ...]
    ops: tuple[str, ...]
    mode: str = "weight"

    @property
    def tp(self) -> int:
        """Devices slicing this stage."""
        return len(self.devices)


@dataclass(frozen=True)
class Shard:
    """What each device of a stage does for one op (identical across the stage's devices)."""

    op: str
    split: str
    """How the op divides: ``M``, ``K``, ``replicate`` (GEMMs), ``heads`` (attention),
    ``vocab`` (the embedding), ``follow`` (elementwise), ``batch`` or ``none``."""
    layout_in: str
    layout_out: str
    """Layouts of its input and output: ``R``, ``S``, ``P`` or ``B`` (module docstring)."""
    flops: float
    bytes: float
    """Bytes each device moves to and from its DRAM."""
    stored_bytes: float
    """Weight bytes each device holds."""
    mxfp6_weights: float = 0.0
    kv_bytes_per_position: float = 0.0
    """KV-cache bytes this device keeps per position of one sequence (attention ops)."""
    activation_bytes: float = 0.0
    """Bytes of activations this device reads and writes for the op (its working set)."""
    dram_bytes: float = 0.0
    """Bytes this device always moves to and from DRAM in the pass: the KV cache it reads and
    writes, the rows a table lookup gathers."""

    @property
    def weights_read_bytes(self) -> float:
        """Weight bytes this device reads in one pass: what is neither activations nor
        :attr:`dram_bytes`."""
        return max(0.0, self.bytes - self.activation_bytes - self.dram_bytes)


@dataclass(frozen=True)
class Comm:
    """A collective the layouts require: ``op`` on the output of ``after`` within ``stage``."""

    stage: int
    after: str
    before: str
    kind: str  # all_reduce | all_gather
    bytes: float


@dataclass(frozen=True)
class Handoff:
    """Activations passed from one stage to the next (rank i to rank i)."""

    stage: int
    after: str
    bytes: float


# -- splitting one op -------------------------------------------------------------------------

def split_of(name: str, rules: Sequence[tuple[str, str]]) -> str:
    """The split the first matching rule (user rules, then the defaults) gives a GEMM."""
    for pattern, split in (*rules, *DEFAULT_RULES):
        if fnmatch.fnmatchcase(name, pattern):
            return split
    return "replicate"


# -- layouts ----------------------------------------------------------------------------------

@dataclass
class _Sharder:
    graph: nx.DiGraph
    model: DecoderSpec | None
    precision: Precision
    rules: Sequence[tuple[str, str]]
    imbalance: float = 1.0
    shards: dict[str, Shard] = field(default_factory=dict)
    comms: list[Comm] = field(default_factory=list)
    layout: dict[str, str] = field(default_factory=dict)

    def need(self, stage: int, producer: str, consumer: str, want: str) -> None:
        """Bring ``producer``'s output to layout ``want`` for ``consumer``. A collective makes
        the tensor whole once: later consumers read that copy."""
        have = self.layout[producer]
        size = self.graph.edges[producer, consumer]["bytes"]
        if want == "R" and have in ("P", "S", "T"):
            kind = "all_reduce" if have == "P" else "all_gather"
            self.comms.append(Comm(stage, producer, consumer, kind, size))
            self.layout[producer] = "R"
        elif want == "T" and have == "P":  # each device keeps the sum of its own tokens
            self.comms.append(Comm(stage, producer, consumer, "reduce_scatter", size))
            self.layout[producer] = "T"
        elif want == "T" and have == "S":  # gathered, then each device slices its tokens
            self.need(stage, producer, consumer, "R")

    def __post_init__(self) -> None:
        # routed experts split E run on tokens split by device; the residual stream then
        # stays split by token between them (``T``), gathered only where an op needs it whole
        self.stream = "T" if any(op.kind == "experts" and (self.user_split(name) or "E") == "E"
                                 for name, op in self.graph.nodes(data="op")) else "R"

    def gathered(self, op: Op) -> float:
        """Bytes a table lookup reads from its table (in DRAM): what it reads besides its
        inputs' activations (0 for other ops)."""
        if op.kind != "embedding":
            return 0.0
        inputs = sum(self.graph.edges[u, op.name]["bytes"] for u in self.graph.predecessors(
            op.name))
        return max(0.0, op.bytes_read - inputs)

    @property
    def kv_width(self) -> int:
        """Features of one KV-cache position's K (or V): none for an encoder (no cache)."""
        return 0 if self.model is None or self.model.encoder else self.model.kv_width

    def user_split(self, name: str) -> str | None:
        """The split a user rule gives ``name``, if any."""
        return next((split for pattern, split in self.rules
                     if fnmatch.fnmatchcase(name, pattern)), None)

    def gemm_split(self, op: Op) -> str:
        """User rules first; then, for decoders, the defaults (a tied LM head splits by
        vocabulary, like the embedding whose rows it shares); other graphs replicate."""
        chosen = self.user_split(op.name)
        if chosen == "E":
            raise PlanError(f"rule {op.name}=E: E splits routed experts (*.moe.experts), not a "
                            "GEMM (expected M, K or replicate)")
        if chosen is not None:
            return chosen
        if self.model is None:
            return "replicate"
        if op.kind == "lm_head" and op.extra.get("tied"):
            return "M"
        return split_of(op.name, ())

    def run(self, stage: Stage, names: Sequence[str]) -> None:
        n, mode = stage.tp, stage.mode
        kv_bytes = ACTIVATION_BYTES[self.precision.kv_cache]
        for name in names:
            op: Op = self.graph.nodes[name]["op"]
            inputs = list(self.graph.predecessors(name))
            if n == 1 or mode == "batch":
                frac = 1.0 / n
                kv = (2 * self.kv_width * kv_bytes * frac
                      if op.kind == "attention" and self.model is not None else 0.0)
                gathered = self.gathered(op)
                act = (op.activation_bytes - gathered) * frac
                dram = (op.kv_read_bytes + op.kv_write_bytes + gathered) * frac
                mx = (float(op.k_in * op.n_out) if self.precision.weights == "mxfp6"
                      and op.is_gemm and not op.extra.get("tied") else 0.0)
                weights = op.weights_read_bytes
                if op.kind == "experts":  # the experts this device's own tokens touch
                    weights, mx_params = batch_expert_weights(op, frac)
                    mx = mx_params if self.precision.weights == "mxfp6" else 0.0
                split = "batch" if n > 1 else "none"
                layout = "B" if n > 1 else "R"
                # every device reads the weights whole (they are replicated), its own part of
                # the batch's activations and KV cache
                self._set(op, split, layout, layout, op.flops * frac, weights + dram + act,
                          op.stored_bytes, mx, kv, act, dram)
                continue
            self.weight_mode(stage.index, op, inputs, n, kv_bytes)

    def weight_mode(self, stage: int, op: Op, inputs: list[str], n: int,
                    kv_bytes: float) -> None:
        name = op.name
        act_bytes = ACTIVATION_BYTES[self.precision.activations]
        if op.kind == "embedding":
            gathered = self.gathered(op)  # rows read from the table in DRAM
            if name == "embed":  # vocabulary-parallel: each device owns vocab / n rows and
                # writes a full-size partial (zeros where another device owns the row)
                self._set(op, "vocab", "R", "P", op.flops, gathered / n + op.bytes_written,
                          op.stored_bytes / n, activations=op.bytes_written,
                          dram=gathered / n)
                return
            for source in inputs:
                self.need(stage, source, name, "R")
            self._set(op, "replicate", "R", "R", op.flops, op.bytes, op.stored_bytes,
                      activations=op.activation_bytes - gathered, dram=gathered)
            return
        if op.kind == "experts":
            split = self.user_split(name) or "E"
            for source in inputs:  # E: the tokens come split by token (module docstring)
                self.need(stage, source, name, "T" if split == "E" else "R")
            part = expert_shard(op, split, n, self.imbalance, act_bytes,
                                self.precision.weights == "mxfp6")
            if part.all_to_all_bytes:  # dispatch after the router, combine after the experts
                self.comms.append(Comm(stage, inputs[-1], name, "all_to_all",
                                       part.all_to_all_bytes))
                self.comms.append(Comm(stage, name, name, "all_to_all", part.all_to_all_bytes))
            self._set(op, split, "T" if split == "E" else "R", "T" if split == "E" else "P",
                      part.flops, part.bytes, part.stored_bytes, part.mxfp6_weights,
                      activations=part.activation_bytes)
            return
        if op.is_gemm and op.k_in and op.n_out and len(inputs) == 1:
            split = self.gemm_split(op)
            (source,) = inputs
            want = "R" if split in ("M", "replicate") else "S"
            have = self.layout[source]
            if split == "replicate" and have == "T":  # each device its own tokens (a router)
                act = (op.bytes - op.weight_bytes) / n
                self._set(op, split, "T", "T", op.flops / n, op.weight_bytes + act,
                          op.stored_bytes, activations=act)
                return
            if want == "R" or have in ("P", "T"):
                self.need(stage, source, name, "R")
            elif have == "S" and split == "K" and not self._aligned(source):
                self.need(stage, source, name, "R")  # a sharded input of another width
            flops, nbytes, stored, weights, act = gemm_shard(op, split, n, self.model,
                                                              act_bytes)
            mx = weights if self.precision.weights == "mxfp6" and not op.extra.get("tied") \
                else 0.0
            out = {"M": "S", "K": "P", "replicate": "R"}[split]
            self._set(op, split, want, out, flops, nbytes, stored, mx, activations=act)
            return
        if op.kind == "attention" and self.model is not None:
            (source,) = inputs
            have = self.layout[source]
            if have == "P":
                self.need(stage, source, name, "R")
                have = "R"
            kv_traffic = op.kv_read_bytes + op.kv_write_bytes
            if have == "S":  # heads split: queries / n, KV heads as replicated
                share_kv = kv_share(self.model, n)
                act = op.activation_bytes / n
                self._set(op, "heads", "S", "S", op.flops / n, act + kv_traffic * share_kv,
                          0.0, kv_per_position=2 * self.kv_width * kv_bytes * share_kv,
                          activations=act, dram=kv_traffic * share_kv)
            else:
                self._set(op, "replicate", "R", "R", op.flops, op.bytes, 0.0,
                          kv_per_position=2 * self.kv_width * kv_bytes,
                          activations=op.activation_bytes, dram=kv_traffic)
            return
        layouts = [self.layout[s] for s in inputs]
        if not inputs:
            self._set(op, "replicate", "R", "R", op.flops, op.bytes, op.stored_bytes,
                      activations=op.activation_bytes)
            return
        if op.kind == "elementwise" and len(inputs) == 1 and layouts[0] in ("S", "R"):
            frac = 1.0 / n if layouts[0] == "S" else 1.0
            self._set(op, "follow", layouts[0], layouts[0], op.flops * frac, op.bytes * frac,
                      op.stored_bytes, activations=op.activation_bytes * frac)
            return
        partial = [s for s, lay in zip(inputs, layouts, strict=True) if lay == "P"]
        if self.stream == "T":  # the residual stream split by token: reduce-scatter partials
            if partial:
                self.need(stage, partial[-1], name, "T")
            for s, lay in zip(inputs, layouts, strict=True):
                if lay == "S":
                    self.need(stage, s, name, "R")  # then each device slices its tokens
            self._set(op, "tokens", "T", "T", op.flops / n, op.bytes / n, op.stored_bytes,
                      activations=op.activation_bytes / n)
            return
        if partial:  # partial sums meeting here are added locally, then reduced once
            self.need(stage, partial[-1], name, "R")
        for s, lay in zip(inputs, layouts, strict=True):
            if lay in ("S", "T"):
                self.need(stage, s, name, "R")
        self._set(op, "replicate", "R", "R", op.flops, op.bytes, op.stored_bytes,
                  activations=op.activation_bytes)

    def _aligned(self, source: str) -> bool:
        """Is ``source``'s sharded output laid out along the K of the GEMM that follows?
        (an M-split GEMM or attention heads feeding the K-split GEMM of the same block)."""
        return self.shards[source].split in ("M", "heads", "follow")

    def _set(self, op: Op, split: str, lin: str, lout: str, flops: float, nbytes: float,
             stored: float, mxfp6: float = 0.0, kv_per_position: float = 0.0,
             activations: float = 0.0, dram: float = 0.0) -> None:
        self.shards[op.name] = Shard(op.name, split, lin, lout, flops, nbytes, stored, mxfp6,
                                     kv_per_position, activations, dram)
        self.layout[op.name] = lout


def _final_comms(sharder: _Sharder, stage: Stage, output: str) -> None:
    """The host needs the logits whole: reduce or gather them at the end of the last stage."""
    have = sharder.layout[output]
    op: Op = sharder.graph.nodes[output]["op"]
    if have == "P":
        sharder.comms.append(Comm(stage.index, output, "<host>", "all_reduce", op.out_bytes))
    elif have in ("S", "T"):
        sharder.comms.append(Comm(stage.index, output, "<host>", "all_gather", op.out_bytes))


def shard_stages(graph: nx.DiGraph, model: DecoderSpec | None, stages: Sequence[Stage],
                 precision: Precision, rules: Sequence[tuple[str, str]] = (),
                 imbalance: float = 1.0) -> tuple[dict[str, Shard], list[Comm], list[Handoff]]:
    """Shards, collectives and stage hand-offs for ``graph`` laid out over ``stages``.

    ``model`` is the decoder the graph came from (for heads); ``None`` for other graphs,
    whose GEMMs split only by the user's rules and whose other ops are replicated.
    """
    for stage in stages:
        if stage.mode == "weight" and stage.tp > 1 and model is not None:
            check_tp(model, stage.tp)
    sharder = _Sharder(graph, model, precision, rules, imbalance)
    handoffs: list[Handoff] = []
    stage_of = {name: s.index for s in stages for name in s.ops}
    for stage in stages:
        for name in stage.ops:  # inputs from an earlier stage arrive whole (R)
            for source in graph.predecessors(name):
                if stage_of[source] != stage.index and source not in sharder.layout:
                    raise PlanError(f"op {name} in {stage.name} needs {source}, which no "
                                    "earlier stage computes")
        for name in stage.ops:
            for source in graph.predecessors(name):
                if stage_of[source] != stage.index:
                    sharder.need(stage_of[source], source, name, "R")
                    handoffs.append(Handoff(stage.index, source,
                                            graph.edges[source, name]["bytes"]))
        sharder.run(stage, stage.ops)
    last = [n for n in graph if graph.out_degree(n) == 0]
    by_index = {s.index: s for s in stages}
    for output in last:
        _final_comms(sharder, by_index[stage_of[output]], output)
    tied_head_storage(graph, stages, sharder.shards)
    unique_handoffs = list(dict.fromkeys(handoffs))
    return sharder.shards, sharder.comms, unique_handoffs


# -- stages from a parallel spec --------------------------------------------------------------


