"""Request streams for serving: arrival times and prompt and output lengths, from a seed.

Poisson arrivals have exponential gaps of mean ``1 / rate``; gamma arrivals have gamma gaps of
the same mean and a coefficient of variation ``cv`` (shape ``1 / cv^2``: bursty above 1);
a trace gives each request's time and lengths. Lengths are fixed, uniform on ``[low, high]``
or lognormal (``median x exp(sigma N)``), rounded, at least 1. One seed gives one stream
(numpy's PCG64), so identical inputs give identical runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..spec.serving import LengthSpec, ServingSpec

TRACE_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")

MAX_TOKENS = 1 << 20
"""Longest prompt or output a request may have (lognormal tails are cut there)."""


@dataclass(frozen=True)
class Requests:
    """A request stream, sorted by arrival."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)


def _lengths(spec: LengthSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    if spec.dist == "fixed":
        return np.full(n, spec.value, dtype=np.int64)
    if spec.dist == "uniform":
        return rng.integers(spec.low, spec.high + 1, size=n, dtype=np.int64)
    values = spec.median * np.exp(spec.sigma * rng.standard_normal(n))
    return np.clip(np.rint(values), 1, MAX_TOKENS).astype(np.int64)


def generate(spec: ServingSpec, base: Path | None = None) -> Requests:
    """The stream ``spec`` describes: ``warmup + requests`` of them (a trace: its first
    that many); ``base`` resolves a trace's path."""
    n = spec.warmup + spec.requests
    arrivals = spec.arrivals
    if arrivals.process == "trace":
        assert arrivals.trace is not None
        return read_trace((base or Path()) / arrivals.trace, n)
    rng = np.random.default_rng(spec.seed)
    assert arrivals.rate is not None
    mean = 1.0 / arrivals.rate
    if arrivals.process == "poisson":
        gaps = rng.exponential(mean, n)
    else:
        shape = 1.0 / arrivals.cv**2
        gaps = rng.gamma(shape, mean / shape, n)
    return Requests(np.cumsum(gaps), _lengths(spec.prompt_tokens, n, rng),
                    _lengths(spec.output_tokens, n, rng))


def read_trace(path: Path, limit: int) -> Requests:
    """A trace file: CSV, or JSON lines (``.jsonl``), with the columns of
    :data:`TRACE_COLUMNS`; its first ``limit`` requests by arrival."""
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"trace file not found: {path}")
    try:
        frame = pd.read_json(path, lines=True) if path.suffix == ".jsonl" else pd.read_csv(path)
    except ValueError as exc:
        raise ConfigError(f"not a readable trace ({exc})", file=str(path)) from None
    missing = [c for c in TRACE_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"a trace needs the columns {', '.join(TRACE_COLUMNS)} (missing: "
                          f"{', '.join(missing)})", file=str(path))
    if len(frame) < limit:
        raise ConfigError(f"the trace has {len(frame)} requests; warmup + requests asks for "
                          f"{limit}", file=str(path))
    numbers = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
               for c in TRACE_COLUMNS}
    order = np.argsort(numbers["arrival_s"], kind="stable")[:limit]
    times = numbers["arrival_s"][order]
    if not np.isfinite(times).all() or times.min() < 0:
        raise ConfigError("arrival_s: numbers of 0 or more expected", file=str(path))
    lengths = []
    for column in TRACE_COLUMNS[1:]:
        values = numbers[column][order]
        if not np.isfinite(values).all() or (values < 1).any() or (values > MAX_TOKENS).any() \
                or (values != np.rint(values)).any():
            raise ConfigError(f"{column}: whole numbers from 1 to {MAX_TOKENS} expected",
                              file=str(path))
        lengths.append(values.astype(np.int64))
    return Requests(times, lengths[0], lengths[1])
