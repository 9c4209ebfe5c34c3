"""The weight-loading section of an experiment (``load:``): sources, strategies, host threads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .. import limits
from .types import Bandwidth, Size, Spec, bounded

STRATEGIES = ("shard-on-compile-first", "shard-on-compile", "shard-on-load")


Strategy = Literal["shard-on-compile-first", "shard-on-compile", "shard-on-load"]


PHASES = ("storage read", "page-cache read", "sharding", "serialization", "pageable copy",
          "host to device")


class HostLoadSpec(Spec):
    """The host's side of loading (every rate is per worker thread)."""

    workers: Annotated[int, bounded(limits.MAX_THREADS)] = 16
    compile_workers: Annotated[int, bounded(limits.MAX_THREADS)] = 1
    shard_rate: Bandwidth = 2e9
    serialize_rate: Bandwidth = 2e9
    buffers: Literal["pinned", "pageable"] = "pinned"
    copy_rate: Bandwidth = 8e9


class LoadSpec(Spec):
    """An experiment's ``load:`` section."""

    sources: list[str] = Field(min_length=1)
    strategies: list[Strategy] = Field(default_factory=lambda: list(STRATEGIES), min_length=1)
    cache: Literal["cold", "warm"] = "cold"
    precision: Literal["fp32", "fp16", "bf16", "int8", "mxfp6"] | None = None
    tp: Annotated[int, bounded(1 << 16)] | None = None
    virtual_core_size: Annotated[int, bounded(limits.MAX_THREADS)] | None = None
    """Physical cores per rank (a logical core, like Neuron's LNC); default a whole device."""
    chunks: Annotated[int, bounded(limits.MAX_LOAD_CHUNKS)] = 16
    cache_reserve: Size = 32e9
    host: HostLoadSpec = HostLoadSpec()

    @model_validator(mode="after")
    def _once_each(self) -> LoadSpec:
        for name in ("sources", "strategies"):
            values = getattr(self, name)
            for value in values:
                if values.count(value) > 1:
                    raise ValueError(f"{name} lists {value!r} twice")
        return self
