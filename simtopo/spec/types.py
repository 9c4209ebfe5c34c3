"""Annotated field types and the base of every input schema: unit strings parsed at the edge."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from .. import units

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


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
    if not _ID.match(value):
        raise ValueError(
            f"ids are letters, digits, '_' and '-', starting with a letter (got {value!r}); "
            "dots are reserved for generated ids such as 'card3.soc1'"
        )
    return value


def _positive(parse: Callable[[object], float], what: str) -> Callable[[object], float]:
    def check(value: object) -> float:
        parsed = parse(value)
        if parsed <= 0:
            raise ValueError(f"{what} must be positive (got {value!r})")
        return parsed

    return check


def _non_negative(parse: Callable[[object], float], what: str) -> Callable[[object], float]:
    def check(value: object) -> float:
        parsed = parse(value)
        if parsed < 0:
            raise ValueError(f"{what} must not be negative (got {value!r})")
        return parsed

    return check


Id = Annotated[str, AfterValidator(_check_id)]


MaxPayload = Annotated[float, BeforeValidator(_mps)]


Bandwidth = Annotated[float, BeforeValidator(_positive(units.parse_bandwidth, "a bandwidth"))]


Size = Annotated[float, BeforeValidator(_positive(units.parse_bytes, "a size"))]


SizeOrZero = Annotated[float, BeforeValidator(_non_negative(units.parse_bytes, "a size"))]


Duration = Annotated[float, BeforeValidator(_non_negative(units.parse_time, "a duration"))]


Flops = Annotated[float, BeforeValidator(_positive(units.parse_flops, "a compute rate"))]


Count = Annotated[int, Field(ge=1)]


Precision = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]


class Spec(BaseModel):
    """Base of every input schema: frozen, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


Fraction = Annotated[float, Field(gt=0, le=1)]
