"""Experiment files: a topology, a model, a workload and a plan, with variants to compare.

```yaml
name: ultra8
topology: ../topologies/ultra8.yaml      # relative to this file
model: llama-2-70b                       # a preset, or a decoder / graph YAML, or .onnx
workload: {kind: llm, batch: 1, prompt: 1024, generate: 1024, context: 2048,
           precision: fp16}
plan: {tp: 16, connection: p2p}          # a parallel spec, or {mdp: file.json}
variants:                                # each deep-merges onto the base
  - {name: tp16-p2p}
  - {name: tp16-host, plan: {connection: host}}
ci: {workload: {generate: 32}}           # a reduced size for CI (deep-merged too)
```

Loading resolves every path, validates every variant (a bad one is reported with its key
path, e.g. ``variants[2].plan.tp``), and builds nothing yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .. import limits
from ..errors import ConfigError, KeyPath
from ..io.documents import Document, deep_merge, read_yaml, validate_document
from ..io.paths import display_path, is_file
from .load import LoadSpec
from .serving import DEFAULT_TOKEN_BUDGET, ServingSpec
from .topology import TransferSpec
from .types import Duration, Name, SizeOrZero, Spec, bounded


class WorkloadSpec(Spec):
    """What to run: LLM inference (prefill then decode) or one pass of a graph."""

    kind: Literal["llm", "inference", "load", "serving"] = "llm"
    batch: Annotated[int, bounded(limits.MAX_BATCH)] = 1
    prompt: Annotated[int, bounded(limits.MAX_TOKENS)] = 128
    generate: Annotated[int, bounded(limits.MAX_TOKENS)] = 128
    context: Annotated[int, bounded(limits.MAX_TOKENS)] | None = None
    compiled_prompt: Annotated[int, bounded(limits.MAX_TOKENS)] | None = None
    shapes: Literal["compiled", "dynamic"] = "compiled"
    precision: Literal["fp32", "fp16", "bf16", "int8", "mxfp6"] = "fp16"
    activations: Literal["fp32", "fp16", "bf16", "int8"] = "fp16"
    groups: Annotated[int, bounded(limits.MAX_GROUPS)] = 1
    micro_batches: Annotated[int, bounded(limits.MAX_CHUNKS)] = 1
    sample_time: Duration | None = None
    scenario: Literal["pass", "offline", "single-stream", "multi-stream"] = "pass"
    """For ``kind: inference``: one forward pass of the batch (``pass``), or an MLPerf
    scenario read off it (docs/metrics.md): ``offline`` (samples/s through the host input
    feed), ``single-stream`` (a query of one sample), ``multi-stream`` (a query of the batch)."""
    input_bytes: SizeOrZero | None = None
    """Bytes of one sample's input from host memory (default: the model's inputs)."""
    output_bytes: SizeOrZero | None = None
    """Bytes of one sample's result back to host memory (default: the model's outputs)."""
    host_samples_per_s: float | None = Field(default=None, gt=0, le=1e12,
                                             allow_inf_nan=False)
    """The host's preprocessing rate, samples/s across all its cores (default: unbounded,
    inputs preprocessed ahead, as MLPerf's offline runs load them)."""

    @model_validator(mode="after")
    def _lengths(self) -> WorkloadSpec:
        if self.kind == "serving" and self.context_length - (self.compiled_prompt
                                                             or self.prompt) < 2:
            raise ValueError(f"a served program needs a compiled context longer than its "
                             f"prompt chunk plus one token (context {self.context_length}, "
                             f"chunk {self.compiled_prompt or self.prompt})")
        if self.kind in ("llm", "load"):
            context = self.context if self.context is not None else self.prompt + self.generate
            if self.prompt + self.generate > context and self.shapes == "compiled":
                raise ValueError(f"prompt {self.prompt} + generate {self.generate} exceeds the "
                                 f"compiled context {context}")
            chunk = self.compiled_prompt or self.prompt
            if chunk > context:
                raise ValueError(f"compiled_prompt {chunk} exceeds the context {context}")
            if -(-self.prompt // chunk) > limits.MAX_CHUNKS:
                raise ValueError(f"a prompt of {self.prompt} in chunks of {chunk} is "
                                 f"{-(-self.prompt // chunk)} chunks (at most "
                                 f"{limits.MAX_CHUNKS}: raise compiled_prompt)")
            if self.prompt + self.generate > limits.MAX_TOKENS:
                raise ValueError(f"prompt {self.prompt} + generate {self.generate} exceeds "
                                 f"{limits.MAX_TOKENS:,} tokens")
        if self.scenario != "pass" and self.kind != "inference":
            raise ValueError(f"scenario {self.scenario!r} is for kind: inference")
        if self.scenario == "single-stream" and self.batch != 1:
            raise ValueError(f"a single-stream query is one sample: batch 1 (got {self.batch}; "
                             "multi-stream takes a query of the batch)")
        if self.kind == "inference" and self.batch % self.micro_batches:
            raise ValueError(f"batch {self.batch} does not split into {self.micro_batches} "
                             "micro-batches")
        return self

    @property
    def positions(self) -> int:
        """Positions a sequence's KV cache must hold: the compiled context, or with dynamic
        shapes whatever the prompt and generation reach."""
        return max(self.context_length, self.prompt + self.generate)

    @property
    def context_length(self) -> int:
        """The compiled (or largest) context length."""
        return self.context if self.context is not None else self.prompt + self.generate


class PlanSpec(Spec):
    """A parallel spec (tensor-parallel size and mode, pipeline stages, replicas, cores per SoC,
    P2P or host-routed, GEMM split rules, the SoCs in logical order), or an MDP partition
    config."""

    tp: Annotated[int, bounded(limits.MAX_SOCS)] = 1
    mode: Literal["weight", "batch"] = "weight"
    pp: Annotated[int, bounded(limits.MAX_SOCS)] = 1
    replicas: Annotated[int, bounded(limits.MAX_SOCS)] = 1
    cores: Annotated[int, bounded(limits.MAX_THREADS)] | None = None
    per_soc: Annotated[int, bounded(limits.MAX_THREADS)] = 1
    """Instances of a one-SoC plan on each SoC, each on ``cores`` cores (default: the SoC's
    cores / per_soc), as MLPerf's AI 100 submissions run a CNN: they share the SoC's DRAM."""
    connection: Literal["p2p", "host"] = "p2p"
    fabric: bool = True
    """P2P routes take the topology's device fabric (NeuronLink, NVLink bridges) where it
    joins two devices, before the PCIe tree, as NCCL prefers NVLink (default); ``false``: the
    PCIe tree only, to see what the fabric buys on the same machine."""
    rules: dict[str, Literal["M", "K", "replicate", "E"]] = Field(default_factory=dict,
                                                                  max_length=1024)
    expert_imbalance: float = Field(default=1.0, ge=1.0, le=64.0, allow_inf_nan=False)
    """Routed tokens on the busiest expert-parallel device over the mean (1: even; a
    mixture-of-experts model's routed experts split over a stage's devices)."""
    devices: list[str] | None = Field(default=None, max_length=limits.MAX_SOCS)
    mdp: str | None = None

    @property
    def socs_needed(self) -> int:
        """SoCs a parallel spec occupies: tp x pp x replicas."""
        return self.tp * self.pp * self.replicas

    @property
    def split_rules(self) -> tuple[tuple[str, str], ...]:
        """The GEMM split rules as (pattern, split) pairs in the order given (first match
        wins)."""
        return tuple(self.rules.items())

    @model_validator(mode="after")
    def _per_soc_alone(self) -> PlanSpec:
        if self.per_soc > 1 and (self.tp, self.pp, self.mdp) != (1, 1, None):
            raise ValueError(f"per_soc {self.per_soc} puts instances of a one-SoC plan side by "
                             "side on a SoC; drop tp, pp and mdp (or per_soc)")
        return self

    @model_validator(mode="after")
    def _mdp_alone(self) -> PlanSpec:
        if self.mdp is not None and (self.tp, self.pp, self.mode) != (1, 1, "weight"):
            raise ValueError("an 'mdp' plan takes its partitions from the file; drop tp, pp "
                             "and mode (replicas, devices and connection still apply)")
        return self


def plan_spec(values: Mapping[str, Any], where: str = "plan") -> PlanSpec:
    """A :class:`PlanSpec` from plain values (command-line options, code), refused with the
    schema's one-line error naming ``where`` and the key."""
    return validate_document(Document(dict(values), where), PlanSpec)


class VariantFields(Spec):
    """What a variant may change (everything but the name is optional)."""

    name: Name
    description: str = ""
    topology: str | None = None
    model: str | None = None
    workload: dict[str, Any] = Field(default_factory=dict)
    plan: dict[str, Any] = Field(default_factory=dict)
    transfer: dict[str, Any] = Field(default_factory=dict)
    load: dict[str, Any] = Field(default_factory=dict)
    serving: dict[str, Any] = Field(default_factory=dict)


class ExperimentSpec(Spec):
    """A whole experiment file."""

    name: Name
    description: str = ""
    topology: str
    model: str
    workload: WorkloadSpec = WorkloadSpec()
    plan: PlanSpec = PlanSpec()
    transfer: dict[str, Any] = Field(default_factory=dict)
    variants: list[VariantFields] = Field(default_factory=list, max_length=1024)
    ci: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, Any] = Field(default_factory=dict)
    load: LoadSpec | None = None
    serving: ServingSpec | None = None

    @model_validator(mode="after")
    def _load_needs_a_section(self) -> ExperimentSpec:
        if self.workload.kind == "load" and self.load is None:
            raise ValueError("workload kind 'load' needs a 'load:' section (sources, "
                             "strategies)")
        if self.workload.kind == "serving" and self.serving is None:
            raise ValueError("workload kind 'serving' needs a 'serving:' section (arrivals, "
                             "lengths, scheduler)")
        if self.workload.kind == "serving" and self.serving is not None:
            _check_serving(self.workload, self.serving)
        return self


def _check_serving(w: WorkloadSpec, s: ServingSpec) -> None:
    """What a serving section may ask of its workload's program."""
    if w.shapes == "dynamic":
        if s.scheduler == "static" or s.specializations is not None:
            raise ValueError("dynamic shapes are served by continuous batching with a token "
                             "budget: drop scheduler: static and specializations, or use "
                             "workload.shapes: compiled")
        budget = s.token_budget or DEFAULT_TOKEN_BUDGET
        if budget < w.batch:
            raise ValueError(f"token_budget {budget} is below the {w.batch} slots "
                             "(workload.batch): every running sequence decodes in each "
                             "iteration (as vLLM's max_num_batched_tokens >= max_num_seqs)")
        return
    if s.token_budget is not None:
        raise ValueError("token_budget is for dynamic shapes (workload.shapes: dynamic); a "
                         "compiled program prefills in chunks of workload.compiled_prompt")
    if s.priority == "decode":
        raise ValueError("priority 'decode' mixes decodes and prompt chunks in one iteration, "
                         "which needs dynamic shapes (workload.shapes: dynamic); compiled "
                         "programs prefill first")
    if s.priority is not None and s.scheduler == "static":
        raise ValueError("priority is for continuous batching (static batches prefill, then "
                         "decode)")
    if s.specializations and max(x.batch for x in s.specializations) != w.batch:
        raise ValueError(f"the largest specialization's batch is the program's slots: make it "
                         f"workload.batch ({w.batch}), or change workload.batch to "
                         f"{max(x.batch for x in s.specializations)}")
    for x in s.specializations or ():
        if w.context_length - x.prompt < 2:
            raise ValueError(f"specialization (batch {x.batch}, prompt {x.prompt}) leaves no "
                             f"room for a decode step in the compiled context "
                             f"{w.context_length}")


@dataclass(frozen=True)
class Variant:
    """One resolved run: absolute paths, validated workload, plan and transfer overrides."""

    name: str
    description: str
    topology: Path
    model: str
    workload: WorkloadSpec
    plan: PlanSpec
    transfer: dict[str, Any]
    load: LoadSpec | None = None
    serving: ServingSpec | None = None

    def inputs(self) -> dict[str, Any]:
        """The resolved inputs as plain data (for summaries)."""
        plan = self.plan.model_dump(exclude_none=True, exclude_defaults=True)
        if "mdp" in plan:  # the file's name: summaries must not depend on where a checkout is
            plan["mdp"] = Path(plan["mdp"]).name
        out = {"topology": self.topology.name, "model": Path(self.model).name,
               "workload": self.workload.model_dump(exclude_none=True),
               "plan": plan, "transfer": dict(sorted(self.transfer.items()))}
        if self.load is not None:  # only then, so that other summaries keep their shape
            out["load"] = self.load.model_dump(mode="json")
        if self.serving is not None and self.workload.kind == "serving":
            serving = self.serving.model_dump(mode="json", exclude_none=True)
            if self.serving.arrivals.trace is not None:  # the name: not where a checkout is
                serving["arrivals"]["trace"] = Path(self.serving.arrivals.trace).name
            out["serving"] = serving
        return out


@dataclass(frozen=True)
class Experiment:
    """An experiment file, resolved into its variants."""

    name: str
    description: str
    source: Path
    """The experiment file, as given."""
    variants: tuple[Variant, ...]
    sweep: dict[str, Any] = field(default_factory=dict)
    """The file's ``sweep:`` block, as written (see :mod:`simtopo.analysis.sweep`)."""



def _model_path(text: str, base: Path) -> str:
    candidate = base / text
    if text.endswith((".yaml", ".yml", ".onnx", ".json")) and is_file(candidate):
        return str(candidate.resolve())
    return text


def load_experiment(path: str | Path, reduced: bool = False,
                    overrides: dict[str, Any] | None = None,
                    only: str | None = None) -> Experiment:
    """Read an experiment file; ``reduced`` applies its ``ci:`` block (the CI size).

    ``overrides`` deep-merge onto every variant last (a sweep point's values); ``only``
    resolves just that variant.
    """
    path = Path(path)
    doc = read_yaml(path)
    spec = validate_document(doc, ExperimentSpec)
    base_dir = path.resolve().parent
    raw: dict[str, Any] = dict(doc.data)
    variants_raw = raw.pop("variants", None) or [{"name": spec.name}]
    ci = raw.pop("ci", {}) if reduced else {}
    raw.pop("ci", None)
    raw.pop("sweep", None)
    out = []
    for i, variant in enumerate(variants_raw):
        if only is not None and variant.get("name", spec.name) != only:
            continue
        merged = deep_merge(raw, {k: v for k, v in variant.items() if k not in ("name",
                                                                           "description")})
        merged = deep_merge(deep_merge(merged, ci), overrides or {})
        where: KeyPath = ("variants", i) if "variants" in doc.data else ()
        vdoc = Document(data=merged, file=doc.file, origins={
            p[len(where):] if p[:len(where)] == where else p: o
            for p, o in doc.origins.items()})
        try:
            resolved = validate_document(vdoc, ExperimentSpec)
        except ConfigError as err:
            raise ConfigError(err.message, file=doc.file,
                              path=(*where, *err.path), line=err.line) from None
        topology = (base_dir / resolved.topology).resolve()
        if not is_file(topology):
            where_key = (*where, "topology") if "topology" in variant else ("topology",)
            raise doc.error(f"topology file {resolved.topology!r} not found (looked for "
                            f"{display_path(topology)})", where_key)
        plan = resolved.plan
        if plan.mdp is not None:
            mdp = (base_dir / plan.mdp).resolve()
            if not is_file(mdp):
                raise doc.error(f"MDP file {plan.mdp!r} not found (looked for "
                                f"{display_path(mdp)})",
                                (*where, "plan", "mdp"))
            plan = plan.model_copy(update={"mdp": str(mdp)})
        transfer = dict(resolved.transfer)
        try:
            TransferSpec.model_validate(transfer)
        except Exception as exc:  # reported with its key path below
            bad = validate_document(Document(transfer, doc.file), TransferSpec) \
                if not isinstance(exc, ConfigError) else None
            raise doc.error(f"bad transfer settings ({exc})", (*where, "transfer")) from bad
        serving = resolved.serving
        if serving is not None and serving.arrivals.trace is not None:
            trace = (base_dir / serving.arrivals.trace).resolve()
            if not is_file(trace):
                raise doc.error(f"trace file {serving.arrivals.trace!r} not found (looked for "
                                f"{display_path(trace)})", (*where, "serving", "arrivals",
                                                            "trace"))
            serving = serving.model_copy(update={"arrivals": serving.arrivals.model_copy(
                update={"trace": str(trace)})})
        out.append(Variant(name=variant.get("name", spec.name),
                           description=variant.get("description", ""), topology=topology,
                           model=_model_path(resolved.model, base_dir),
                           workload=resolved.workload, plan=plan, transfer=transfer,
                           load=resolved.load, serving=serving))
    names = [str(v.get("name", spec.name)) for v in variants_raw]
    folded = [name.casefold() for name in names]  # they name figure files, on any disk
    for i, name in enumerate(names):
        first = folded.index(folded[i])
        if first != i:
            same = "" if names[first] == name else f" (as {names[first]!r}, up to case)"
            raise doc.error(f"duplicate variant name {name!r}{same}", ("variants", i, "name"))
    if only is not None and only not in names:
        raise ConfigError(f"unknown variant {only!r} (expected one of: {', '.join(names)})",
                          file=doc.file)
    return Experiment(name=spec.name, description=spec.description, source=path,
                      variants=tuple(out), sweep=dict(spec.sweep))
