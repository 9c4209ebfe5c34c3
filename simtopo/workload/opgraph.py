"""Decoders to op graphs: every op with its FLOPs, bytes, weights and kind, per shape.

One pass of the model is a DAG (``networkx.DiGraph``) of named ops (``embed``,
``layers.12.attn.qkv``, ``layers.12.attn.core``, ..., ``lm_head``); edges carry the bytes of
the activation they pass. A :class:`Shape` says what the pass computes:

- prefill: ``tokens`` new tokens per sequence (the prompt, or a compiled prompt-length chunk)
  attending to ``context`` positions;
- decode: one new token per sequence attending to ``context`` positions (the compiled context
  length, masked, or the positions filled so far).

GEMMs are written W[K_in, N_out] (K the input features, N the output features) with their
token count; GEMM FLOPs are 2 x tokens x K x N. The LM head computes logits at each
sequence's last position only (what sampling needs), in prefill as in decode. Weights of GEMMs
take the weight precision (mxfp6 is 6.25 bits: 6-bit elements and an 8-bit scale per 32);
embeddings, activations and the KV cache take theirs. Decode reads every GEMM weight and the
attended KV cache once per step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import networkx as nx

from ..spec.model import DecoderSpec

WEIGHT_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "mxfp6": 6.25 / 8}
"""Bytes per GEMM weight by precision."""

ACTIVATION_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}
"""Bytes per activation or KV-cache element by precision."""


def compute_precision(weights: str, activations: str) -> str:
    """The arithmetic a GEMM with these weights and activations runs at: int8 only when both
    are int8 (the int8 peak); bf16 when either is bf16 (the AI 100 lists no bf16 rate and runs
    it at its fp16 one, with a warning); else fp16 (fp32 and mxfp6 weights, and int8 weights
    beside 16-bit activations, are expanded to fp16 and multiplied there)."""
    if weights == "int8" and activations == "int8":
        return "int8"
    if "bf16" in (weights, activations):
        return "bf16"
    return "fp16"


@dataclass(frozen=True)
class Precision:
    """Precisions of GEMM weights, activations (and embeddings), and the KV cache."""

    weights: str = "fp16"
    activations: str = "fp16"
    kv_cache: str = "fp16"

    def __post_init__(self) -> None:
        for what, value, table in (("weights", self.weights, WEIGHT_BYTES),
                                   ("activations", self.activations, ACTIVATION_BYTES),
                                   ("kv_cache", self.kv_cache, ACTIVATION_BYTES)):
            if value not in table:
                raise ValueError(f"{what} precision must be one of {', '.join(table)} "
                                 f"(got {value!r})")


@dataclass(frozen=True)
class Shape:
    """What one pass computes: ``tokens`` new tokens for each of ``batch`` sequences, each
    query attending to ``attended`` positions on average out of a ``context``-long cache."""

    phase: str
    batch: int
    tokens: int
    context: int
    attended: float
    mixed_rows: int = 0
    """A continuous-batching iteration (phase ``mixed``): its token rows, decode tokens and
    prefill chunks together (0: ``batch`` x ``tokens``)."""
    mixed_positions: float = 0.0
    """The KV-cache positions such an iteration reads, all its sequences together (its
    ``context`` is their mean, rounded, for display)."""

    @property
    def rows(self) -> int:
        """Token rows through every GEMM: batch x tokens (or the iteration's rows)."""
        return self.mixed_rows or self.batch * self.tokens


def iteration_shape(rows: int, sequences: int, positions: float, pairs: float) -> Shape:
    """One iteration of dynamic-shape continuous batching: ``rows`` new tokens (one per
    decoding sequence, and the prefill chunks) of ``sequences`` sequences (one logit row each),
    reading ``positions`` KV-cache positions in all and computing ``pairs`` query-key pairs
    (a decode at context c reads c positions and computes c pairs; a chunk of k prompt tokens
    after o cached ones reads o + k and computes k (o + (k + 1) / 2)). A sliding window is the
    caller's to apply: these are the totals."""
    if not 1 <= sequences <= rows:
        raise ValueError(f"an iteration of {rows} rows has 1 to {rows} sequences "
                         f"(got {sequences})")
    return Shape("mixed", sequences, 1, max(1, round(positions / sequences)), pairs / rows,
                 mixed_rows=rows, mixed_positions=float(positions))


def prefill_shapes(batch: int, prompt: int, compiled: bool = True,
                   compiled_prompt: int | None = None,
                   compiled_context: int | None = None) -> list[Shape]:
    """The passes that prefill a prompt.

    Compiled (the AI 100 default): the prompt runs in chunks of the compiled prompt length
    (padded), each attending over the whole compiled context buffer (masked). Dynamic: one pass
    of ``prompt`` tokens with causal attention (on average (prompt + 1) / 2 positions).
    """
    if compiled:
        chunk = compiled_prompt or prompt
        context = compiled_context or prompt
        if chunk > context:
            raise ValueError(f"compiled prompt length {chunk} exceeds the compiled context "
                             f"length {context}")
        return [Shape("prefill", batch, chunk, context, float(context))
                for _ in range(math.ceil(prompt / chunk))]
    return [Shape("prefill", batch, prompt, prompt, (prompt + 1) / 2)]


def windowed(shape: Shape, window: int | None) -> tuple[float, float]:
    """(positions the KV cache holds and a pass reads, positions a query attends on average)
    under a sliding window: at most ``window`` of each. A causal prefill of t > w tokens
    attends 1, 2, ..., w, w, ..., w positions: (w (w + 1) / 2 + (t - w) w) / t on average."""
    if shape.phase == "mixed":  # totals over its sequences, the window already applied
        return shape.mixed_positions / shape.batch, shape.attended
    if window is None or shape.context <= window:
        return shape.context, shape.attended
    t, w = shape.tokens, window
    if shape.phase == "prefill" and shape.context == t and shape.attended == (t + 1) / 2:
        return w, (w * (w + 1) / 2 + (t - w) * w) / t
    return w, min(shape.attended, w)


def decode_shape(batch: int, position: int, compiled: bool = True,
                 compiled_context: int | None = None) -> Shape:
    """One decode step for the token at ``position`` (0-based): compiled shapes attend over
    the whole compiled context buffer (masked), dynamic ones over ``position + 1`` tokens."""
    context = (compiled_context or position + 1) if compiled else position + 1
    return Shape("decode", batch, 1, context, float(context))


@dataclass(frozen=True)
class Op:
    """One op of a pass. Bytes read include the weights; FLOPs are multiply-adds x 2."""

    name: str
    kind: str
    """``gemm``, ``lm_head``, ``attention``, ``norm``, ``elementwise``, ``embedding``,
    ``experts`` (a mixture-of-experts layer's routed experts; and ``conv``, ``other`` in graph
    files)."""
    flops: float
    bytes_read: float
    bytes_written: float
    weight_bytes: float = 0.0
    """The op's weights at their precision (an embedding's whole table)."""
    weight_params: float = 0.0
    stored_bytes: float = 0.0
    """What the op keeps in DRAM (a tied LM head stores only its bias)."""
    layer: int | None = None
    precision: str = "fp16"
    k_in: int = 0
    n_out: int = 0
    rows: int = 0
    parts: tuple[tuple[str, int], ...] = ()
    heads: int = 0
    kv_heads: int = 0
    kv_read_bytes: float = 0.0
    kv_write_bytes: float = 0.0
    output_bytes: float | None = None
    extra: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def out_bytes(self) -> float:
        """Bytes of the activation this op hands to its consumers (the KV-cache write of an
        attention op stays on the SoC)."""
        return self.bytes_written if self.output_bytes is None else self.output_bytes

    @property
    def weights_read_bytes(self) -> float:
        """Weight bytes one pass reads: all of a GEMM's or a norm's weights; an embedding is a
        gather of a few rows (counted in ``bytes_read`` with the activations), never the whole
        table it stores."""
        return 0.0 if self.kind == "embedding" else self.weight_bytes

    @property
    def activation_bytes(self) -> float:
        """Bytes moved that are neither weights read nor the KV cache."""
        return self.bytes - self.weights_read_bytes - self.kv_read_bytes - self.kv_write_bytes

    @property
    def bytes(self) -> float:
        """Bytes moved to and from memory."""
        return self.bytes_read + self.bytes_written

    @property
    def is_gemm(self) -> bool:
        """A matrix multiply with a weight W[K_in, N_out] (projections and the LM head)."""
        return self.kind in ("gemm", "lm_head")


def _gemm(name: str, k_in: int, n_out: int, rows: int, prec: Precision, layer: int | None,
          bias: bool, kind: str = "gemm", parts: tuple[tuple[str, int], ...] = ()) -> Op:
    act = ACTIVATION_BYTES[prec.activations]
    w_params = k_in * n_out
    w_bytes = w_params * WEIGHT_BYTES[prec.weights] + (n_out * act if bias else 0)
    flops = 2.0 * rows * k_in * n_out + (rows * n_out if bias else 0)
    return Op(name=name, kind=kind, flops=flops, bytes_read=w_bytes + rows * k_in * act,
              bytes_written=rows * n_out * act, weight_bytes=w_bytes, stored_bytes=w_bytes,
              weight_params=w_params + (n_out if bias else 0), layer=layer,
              precision=compute_precision(prec.weights, prec.activations), k_in=k_in,
              n_out=n_out, rows=rows, parts=parts)


def _vector(name: str, kind: str, rows: int, width: int, inputs: int, prec: Precision,
            layer: int | None, flops_per_element: float, params: int = 0) -> Op:
    act = ACTIVATION_BYTES[prec.activations]
    return Op(name=name, kind=kind, flops=flops_per_element * rows * width,
              bytes_read=inputs * rows * width * act + params * act,
              bytes_written=rows * width * act, weight_bytes=params * act,
              stored_bytes=params * act, weight_params=params, layer=layer,
              precision=prec.activations, rows=rows)


def experts_touched(experts: int, top_k: int, tokens: int) -> float:
    """Expected distinct experts ``tokens`` tokens route to, each choosing ``top_k`` of
    ``experts`` uniformly and independently: E (1 - (1 - k / E)^tokens) (assumption: real
    routers correlate tokens, and a skewed router touches fewer)."""
    return experts * (1.0 - (1.0 - top_k / experts) ** tokens)


def _experts(name: str, m: DecoderSpec, rows: int, prec: Precision, layer: int) -> Op:
    """The routed experts of a layer as one op: every token through ``top_k`` expert FFNs,
    and the weights of the experts the pass touches read (all of them stored)."""
    act = ACTIVATION_BYTES[prec.activations]
    width = m.expert_width
    up_width = 2 * width if m.ffn_gated else width
    per_token = 2.0 * m.hidden * up_width + 2.0 * width * m.hidden + 5.0 * width
    params = m.ffn_params(width)
    matrices = m.hidden * up_width + width * m.hidden  # at the weight precision; biases at
    per_expert = matrices * WEIGHT_BYTES[prec.weights] + (params - matrices) * act  # act's
    touched = experts_touched(m.experts, m.experts_per_token, rows)
    read = touched * per_expert  # a pass reads the experts it touches
    return Op(name=name, kind="experts", flops=rows * m.experts_per_token * per_token,
              bytes_read=read + rows * m.hidden * act, bytes_written=rows * m.hidden * act,
              weight_bytes=read, stored_bytes=m.experts * per_expert,
              weight_params=float(m.experts * params), layer=layer,
              precision=compute_precision(prec.weights, prec.activations), k_in=m.hidden,
              n_out=m.hidden, rows=rows,
              extra={"experts": float(m.experts), "top_k": float(m.experts_per_token),
                     "touched": touched, "expert_matrices": float(matrices)})


@dataclass
class _Builder:
    model: DecoderSpec
    shape: Shape
    prec: Precision
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)

    def add(self, op: Op, *inputs: str) -> str:
        self.graph.add_node(op.name, op=op)
        for source in inputs:
            width = self.graph.nodes[source]["op"].out_bytes
            self.graph.add_edge(source, op.name, bytes=width)
        return op.name

    def norm(self, name: str, layer: int | None, source: str) -> str:
        m = self.model
        params = m.hidden if m.norm == "rmsnorm" else 2 * m.hidden
        return self.add(_vector(name, "norm", self.shape.rows, m.hidden, 1, self.prec, layer,
                                5.0, params), source)

    def attention(self, layer: int, source: str) -> str:
        m, s, p = self.model, self.shape, self.prec
        act, kvb = ACTIVATION_BYTES[p.activations], ACTIVATION_BYTES[p.kv_cache]
        q_elems = s.rows * m.q_width
        if m.encoder:  # the whole sequence, its K and V straight from the projection
            kv_read = kv_write = 0.0
            attended = float(s.tokens)
        else:
            held, attended = windowed(s, m.sliding_window)
            kv_read = s.batch * held * 2 * m.kv_width * kvb
            kv_write = s.rows * 2 * m.kv_width * kvb
        scores = s.rows * m.heads * attended  # query-key pairs computed
        flops = 2 * 2 * scores * m.d_head + 5 * scores  # QK^T, AV, softmax
        qkv_in = s.rows * (m.q_width + 2 * m.kv_width) * act
        op = Op(name=f"layers.{layer}.attn.core", kind="attention", flops=flops,
                bytes_read=qkv_in + kv_read, bytes_written=q_elems * act + kv_write,
                layer=layer, precision=p.activations, rows=s.rows, heads=m.heads,
                kv_heads=m.n_kv, kv_read_bytes=kv_read, kv_write_bytes=kv_write,
                output_bytes=q_elems * act,
                extra={"attended": attended, "context": s.context, "head_dim": m.d_head})
        return self.add(op, source)

    def layer(self, i: int, x: str) -> str:
        m, s, p = self.model, self.shape, self.prec
        attn_bias = m.linear_bias == "all"
        mlp_bias = m.linear_bias in ("all", "mlp")
        h = self.norm(f"layers.{i}.attn_norm", i, x)
        qkv = self.add(_gemm(f"layers.{i}.attn.qkv", m.hidden, m.q_width + 2 * m.kv_width,
                             s.rows, p, i, attn_bias, parts=(("q", m.q_width),
                                                             ("k", m.kv_width),
                                                             ("v", m.kv_width))), h)
        core = self.attention(i, qkv)
        o = self.add(_gemm(f"layers.{i}.attn.o", m.q_width, m.hidden, s.rows, p, i,
                           attn_bias), core)
        if m.parallel_block:
            mlp_in = h
        else:
            res = self.add(_vector(f"layers.{i}.attn_residual", "elementwise", s.rows,
                                   m.hidden, 2, p, i, 1.0), o, x)
            mlp_in = self.norm(f"layers.{i}.mlp_norm", i, res)
        outs = []
        if m.is_moe(i):  # a router, the routed experts, and any shared experts beside them
            router = self.add(_gemm(f"layers.{i}.moe.router", m.hidden, m.experts, s.rows, p,
                                    i, False), mlp_in)
            outs.append(self.add(_experts(f"layers.{i}.moe.experts", m, s.rows, p, i),
                                 mlp_in, router))
        width = m.ffn if not m.is_moe(i) else m.shared_experts * m.expert_width
        if width:
            up_width = 2 * width if m.ffn_gated else width
            up = self.add(_gemm(f"layers.{i}.mlp.up", m.hidden, up_width, s.rows, p, i,
                                mlp_bias), mlp_in)
            act = self.add(_vector(f"layers.{i}.mlp.act", "elementwise", s.rows, width,
                                   2 if m.ffn_gated else 1, p, i, 5.0), up)
            outs.append(self.add(_gemm(f"layers.{i}.mlp.down", width, m.hidden, s.rows, p, i,
                                       mlp_bias), act))
        if m.parallel_block:
            return self.add(_vector(f"layers.{i}.residual", "elementwise", s.rows, m.hidden,
                                    2 + len(outs), p, i, 1.0 + len(outs)), o, *outs, x)
        return self.add(_vector(f"layers.{i}.mlp_residual", "elementwise", s.rows, m.hidden,
                                1 + len(outs), p, i, float(len(outs))), *outs, res)

    def build(self) -> nx.DiGraph:
        m, s, p = self.model, self.shape, self.prec
        act = ACTIVATION_BYTES[p.activations]
        rows_bytes = s.rows * m.hidden * act
        table = m.vocab * m.hidden
        embed = Op(name="embed", kind="embedding", flops=0.0,
                   bytes_read=rows_bytes + s.rows * 4, bytes_written=rows_bytes,
                   weight_bytes=table * act, stored_bytes=table * act, weight_params=table,
                   precision=p.activations,
                   rows=s.rows, n_out=m.hidden, extra={"table_rows": m.vocab})
        x = self.add(embed)
        if m.learned_positions:
            pos_table = m.learned_positions * m.hidden
            x = self.add(Op(name="pos_embed", kind="embedding", flops=s.rows * m.hidden,
                            bytes_read=2 * rows_bytes, bytes_written=rows_bytes,
                            weight_bytes=pos_table * act, stored_bytes=pos_table * act,
                            weight_params=pos_table,
                            precision=p.activations, rows=s.rows, n_out=m.hidden,
                            extra={"table_rows": m.learned_positions}), x)
        for i in range(m.layers):
            x = self.layer(i, x)
        x = self.norm("final_norm", None, x)
        if m.encoder:  # a task head at every position (BERT for SQuAD: start and end logits)
            self.add(_gemm("qa_head", m.hidden, m.head_outputs, s.rows, p, None, True), x)
            return self.graph
        # logits only at each sequence's last position: prefill needs nothing else, decode
        # has one position anyway
        head_rows = s.batch
        if m.tied_embeddings:
            # the head multiplies by the embedding table itself: fp16 (activation precision),
            # never mxfp6; it stores nothing of its own beyond a bias (the table is counted
            # once, on the embedding, unless a pipeline puts the two in different stages)
            tied = Precision(weights=p.activations if p.activations in WEIGHT_BYTES
                             else "fp16", activations=p.activations, kv_cache=p.kv_cache)
            head = _gemm("lm_head", m.hidden, m.vocab, head_rows, tied, None, m.lm_head_bias,
                         kind="lm_head")
            bias = m.vocab if m.lm_head_bias else 0
            head = replace(head, weight_params=float(bias),
                           stored_bytes=bias * ACTIVATION_BYTES[p.activations],
                           extra={"tied": 1.0})
        else:
            head = _gemm("lm_head", m.hidden, m.vocab, head_rows, p, None, m.lm_head_bias,
                         kind="lm_head")
        self.add(head, x)
        return self.graph


def build_graph(model: DecoderSpec, shape: Shape, precision: Precision | None = None
                ) -> nx.DiGraph:
    """The op DAG of one pass of ``model`` with ``shape`` (kept in ``graph.graph``)."""
    precision = precision or Precision()
    graph = _Builder(model, shape, precision).build()
    graph.graph.update(model=model.name, shape=shape, precision=precision)
    return graph


def ops(graph: nx.DiGraph) -> Iterator[Op]:
    """The graph's ops in topological (execution) order."""
    for name in nx.topological_sort(graph):
        yield graph.nodes[name]["op"]
