"""The serving section of an experiment (``serving:``): arrivals, lengths, scheduler, SLOs.

```yaml
workload: {kind: serving, batch: 8, prompt: 1024, context: 2048}  # the compiled program
serving:
  arrivals: {process: poisson, rate: 2.0}      # requests/s; gamma with cv; or trace: f.csv
  prompt_tokens: {dist: uniform, low: 128, high: 1024}
  output_tokens: {dist: fixed, value: 128}
  requests: 2000                               # after the warm-up
  warmup: 200                                  # requests left out of the metrics
  seed: 1
  scheduler: continuous                        # or static
  router: least-outstanding                    # or round-robin
  slo: {ttft: 2s, tpot: 100ms}
```

With ``workload.shapes: dynamic`` the program is served as vLLM and Sarathi-Serve serve one:
iterations of up to ``token_budget`` token rows mixing decodes and prompt chunks, a KV pool
with preemption (``priority`` chooses decodes-first or prefills-first). With compiled shapes a
static batch runs at the smallest of the program's ``specializations`` it fits.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .types import Duration, Spec

DEFAULT_TOKEN_BUDGET = 512
"""Token rows per dynamic-shape iteration unless ``token_budget`` says (assumption: a budget
of the size Sarathi-Serve runs for tight decode latency; vLLM's defaults vary by version)."""

MAX_REQUESTS = 1_000_000
"""Requests one serving run may simulate (warm-up included)."""


class ArrivalSpec(Spec):
    """When requests arrive: a Poisson process, a gamma renewal process (bursty for a
    coefficient of variation above 1), or the times of a trace file."""

    process: Literal["poisson", "gamma", "trace"] = "poisson"
    rate: float | None = Field(default=None, gt=0, le=1e6, allow_inf_nan=False)
    """Mean requests/s (poisson, gamma)."""
    cv: float = Field(default=1.0, gt=0, le=100, allow_inf_nan=False)
    """Coefficient of variation of the gaps (gamma; 1 is Poisson)."""
    trace: str | None = None
    """A CSV or JSON-lines file with ``arrival_s``, ``prompt_tokens``, ``output_tokens``
    (relative to the experiment file)."""

    @model_validator(mode="after")
    def _complete(self) -> ArrivalSpec:
        if self.process == "trace" and self.trace is None:
            raise ValueError("process 'trace' needs a 'trace:' file")
        if self.process != "trace" and self.rate is None:
            raise ValueError(f"process {self.process!r} needs a 'rate' (requests/s)")
        return self


class LengthSpec(Spec):
    """Token counts of requests: fixed, uniform on [low, high], or lognormal (the median and
    the sigma of its logarithm), rounded and kept at 1 or more."""

    dist: Literal["fixed", "uniform", "lognormal"] = "fixed"
    value: int = Field(default=128, ge=1, le=1 << 20)
    low: int = Field(default=1, ge=1, le=1 << 20)
    high: int = Field(default=128, ge=1, le=1 << 20)
    median: float = Field(default=128.0, gt=0, le=1 << 20, allow_inf_nan=False)
    sigma: float = Field(default=0.5, ge=0, le=10, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> LengthSpec:
        if self.dist == "uniform" and self.low > self.high:
            raise ValueError(f"low {self.low} exceeds high {self.high}")
        return self


class SloSpec(Spec):
    """Latency targets a request must meet to count towards goodput."""

    ttft: Duration | None = None
    tpot: Duration | None = None


class SpecializationSpec(Spec):
    """One shape an AI 100 program is compiled for: a batch and a prompt chunk length."""

    batch: int = Field(ge=1, le=4096)
    prompt: int = Field(ge=1, le=1 << 20)


class ServingSpec(Spec):
    """An experiment's ``serving:`` section."""

    arrivals: ArrivalSpec
    prompt_tokens: LengthSpec = LengthSpec()
    output_tokens: LengthSpec = LengthSpec()
    requests: int = Field(default=1000, ge=1, le=MAX_REQUESTS)
    warmup: int = Field(default=0, ge=0, le=MAX_REQUESTS)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    scheduler: Literal["continuous", "static"] = "continuous"
    batch_wait: Duration | None = None
    """Static batching: start a batch once its oldest request has waited this long, full or
    not (default: only full batches, and the last requests)."""
    router: Literal["round-robin", "least-outstanding"] = "round-robin"
    slo: SloSpec = SloSpec()
    token_budget: int | None = Field(default=None, ge=1, le=1 << 16)
    """Dynamic shapes: token rows one iteration may hold, decodes and prompt chunks together
    (default :data:`DEFAULT_TOKEN_BUDGET`)."""
    priority: Literal["decode", "prefill"] | None = None
    """Continuous batching: ``decode`` runs every running sequence's next token in each
    iteration and fills the rest of the budget with prompt chunks (dynamic shapes only);
    ``prefill`` runs a waiting prompt first while the decodes wait. Default: ``decode`` with
    dynamic shapes, ``prefill`` (QEfficient's) with compiled ones."""
    specializations: list[SpecializationSpec] | None = Field(default=None, max_length=64)
    """Compiled shapes: the (batch, prompt chunk) pairs the program is compiled for (default:
    the workload's batch and prompt chunk alone). Static batching runs each batch at the
    smallest batch that holds it and the chunk that prefills it fastest; continuous batching
    decodes at the largest batch and prefills one request at its fastest chunk."""

    @model_validator(mode="after")
    def _bounded(self) -> ServingSpec:
        if self.requests + self.warmup > MAX_REQUESTS:
            raise ValueError(f"requests + warmup is {self.requests + self.warmup:,}; at most "
                             f"{MAX_REQUESTS:,}")
        if self.batch_wait is not None and self.scheduler != "static":
            raise ValueError("batch_wait is how long static batching waits for a batch: "
                             "drop it, or use scheduler: static")
        if self.specializations is not None:
            shapes = [(x.batch, x.prompt) for x in self.specializations]
            if len(set(shapes)) != len(shapes):
                raise ValueError("specializations repeat a (batch, prompt) pair")
        given = {"prompt_tokens", "output_tokens"} & self.model_fields_set
        if self.arrivals.process == "trace" and given:
            raise ValueError("a trace gives its requests' lengths: drop "
                             f"{', '.join(sorted(given))}")
        return self
