"""Annotated field types and the base of every input schema: unit strings parsed at the edge."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from .. import limits, units

_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _no_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not a boolean (got {value!r})")
    return value


def _mps(value: object) -> float:
    size = units.parse_bytes(value)
    if size not in (128, 256, 512, 1024, 2048, 4096):
        raise ValueError(f"a PCIe max payload size is 128, 256, 512, 1024, 2048 or 4096 bytes "
                         f"(got {value!r})")
    return size


def _check_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(
            f"ids are letters, digits, '_' and '-', starting with a letter, at most 64 "
            f"(got {_shown(value)}); dots are reserved for generated ids such as 'card3.soc1'"
        )
    return value


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"names are letters, digits, '.', '_' and '-', starting with a letter or digit, "
            f"at most 100 (got {_shown(value)}): they name files and folders"
        )
    return value


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _within(parse: Callable[[object], float], what: str, span: tuple[float, float],
            show: Callable[[float], str], zero: bool = False) -> Callable[[object], float]:
    """A parser that also refuses values outside ``span`` (``zero``: 0 is allowed too)."""
    low, high = span

    def check(value: object) -> float:
        parsed = parse(value)
        if zero and parsed == 0:
            return parsed
        if not low <= parsed <= high or (parsed == 0 and low == 0 and not zero):
            raise ValueError(f"{what} must be between {show(low)} and {show(high)} "
                             f"(got {value!r})")
        return parsed

    return check


Id = Annotated[str, AfterValidator(_check_id)]


MaxPayload = Annotated[float, BeforeValidator(_mps)]


Name = Annotated[str, AfterValidator(_check_name)]


Bandwidth = Annotated[float, BeforeValidator(_within(
    units.parse_bandwidth, "a bandwidth", limits.BANDWIDTH_Bps, units.format_bandwidth))]


Size = Annotated[float, BeforeValidator(_within(
    units.parse_bytes, "a size", limits.SIZE_BYTES, units.format_bytes))]


SizeOrZero = Annotated[float, BeforeValidator(_within(
    units.parse_bytes, "a size", limits.SIZE_BYTES, units.format_bytes, zero=True))]


Duration = Annotated[float, BeforeValidator(_within(
    units.parse_time, "a duration", limits.DURATION_S, units.format_time, zero=True))]


Flops = Annotated[float, BeforeValidator(_within(
    units.parse_flops, "a compute rate", limits.FLOPS, units.format_flops))]


Count = Annotated[int, Field(ge=1, le=2**31)]


def bounded(high: int, low: int = 1) -> object:
    """An integer field from ``low`` to ``high`` (a limit of :mod:`simtopo.limits`)."""
    return Field(ge=low, le=high)


Precision = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]


class Spec(BaseModel):
    """Base of every input schema: frozen, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


Fraction = Annotated[float, Field(gt=0, le=1)]
