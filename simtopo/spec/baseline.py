"""Baseline files: a summary with how to reproduce it and its tolerances."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .types import Spec


class BaselineHeader(Spec):
    """What a baseline covers and how strictly it compares."""

    experiment: str = Field(min_length=1)
    reduced: bool = False
    variants: list[str] | None = None
    tolerance: dict[str, float] = Field(default_factory=dict)


class BaselineFile(Spec):
    """A whole baseline file."""

    baseline: BaselineHeader
    summary: dict[str, Any]
