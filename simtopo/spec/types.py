"""Annotated field types and the base of every input schema: unit strings parsed at the edge."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

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


def _matching(pattern: re.Pattern[str], rule: str, why: str) -> Callable[[str], str]:
    """A check that a string is all of ``pattern``: the message gives the rule, the value
    and why the rule is there."""
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{rule} (got {_shown(value)}){why}")
        return value
    return check


_check_id = _matching(_ID, "ids are letters, digits, '_' and '-', starting with a letter, at "
                      "most 64", "; dots are reserved for generated ids such as 'card3.soc1'")
_check_name = _matching(_NAME, "names are letters, digits, '.', '_' and '-', starting with a "
                        "letter or digit, at most 100", ": they name files and folders")


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


# -- how the unit strings read, for the JSON Schemas (docs/schemas/) --------------------------
# The string forms of units.py's parsers, as JSON Schema (ECMA-262) patterns: for ASCII text
# exactly the strings the parsers read (tests/test_schemas.py compares them); a non-ASCII
# character may stand where a digit may, because Python reads Unicode digits too, so that the
# patterns never refuse what simtopo reads. Ranges are the parsers' to check, not the patterns'.
_SPACES = r"[\s\x1c-\x1f\x85]*"  # Python's \s (ECMA-262's \s lacks these three)
_DIGIT = r"[^\x00-\x2f\x3a-\x7f]"  # 0-9, or any non-ASCII character
_NUMBER_TEXT = rf"[-+]?(?:{_DIGIT}+\.?{_DIGIT}*|\.{_DIGIT}+)(?:[eE][-+]?{_DIGIT}+)?"
_PREFIX = "(?:[kKMGTP]|[KMGTP]i)?"


def _quantity_pattern(unit: str) -> str:
    return f"^{_SPACES}{_NUMBER_TEXT}{_SPACES}(?:{unit})?{_SPACES}$"


SIZE_PATTERN = _quantity_pattern(f"{_PREFIX}B")
"""The string form of a size: ``32GB``, ``2GiB``, ``4096``."""

BANDWIDTH_PATTERN = _quantity_pattern(f"{_PREFIX}(?:B/s|Bps|b/s|bps)")
"""The string form of a bandwidth: ``25GB/s``, ``25GBps``, ``100Gb/s``."""

DURATION_PATTERN = _quantity_pattern("s|ms|us|\u00b5s|ns|ps|min|h")
"""The string form of a duration: ``90us``, ``150ns``, ``2ms``."""

FLOPS_PATTERN = _quantity_pattern(f"{_PREFIX}(?:FLOPS|FLOP/s|OPS|OP/s)")
"""The string form of a compute rate: ``72.5TFLOPS``, ``870TOPS``, ``4.5TFLOP/s``."""


def quantity_schema(pattern: str, what: str, low: float, high: float) -> WithJsonSchema:
    """The JSON Schema of a unit field: a number in SI units from ``low`` to ``high``, or a
    string matching ``pattern``; ``what`` describes it, with examples and its range."""
    return WithJsonSchema({"anyOf": [{"type": "number", "minimum": low, "maximum": high},
                                     {"type": "string", "pattern": pattern}],
                           "description": what})


def _unit_schema(what: str, examples: str, pattern: str, span: tuple[float, float],
                 show: Callable[[float], str], zero: bool = False) -> WithJsonSchema:
    """:func:`quantity_schema` of a field that :func:`_within` checks (same words, same span)."""
    low, high = span
    between = f"from {show(low)} to {show(high)}" if low else f"up to {show(high)}"
    return quantity_schema(pattern, f"{what}: {examples}; {'0, or ' if zero and low else ''}"
                                    f"{between}", 0.0 if zero else low, high)


Id = Annotated[str, AfterValidator(_check_id), WithJsonSchema({
    "type": "string", "pattern": f"^{_ID.pattern}$",
    "description": "an id: letters, digits, '_' and '-', starting with a letter, at most 64"})]


MaxPayload = Annotated[float, BeforeValidator(_mps), WithJsonSchema({
    "anyOf": [{"enum": [128, 256, 512, 1024, 2048, 4096]},
              {"type": "string", "pattern": SIZE_PATTERN}],
    "description": "a PCIe max payload size: 128, 256, 512, 1024, 2048 or 4096 bytes, as a "
                   "number or a string such as '256B' or '4KiB'"})]


Name = Annotated[str, AfterValidator(_check_name), WithJsonSchema({
    "type": "string", "pattern": f"^{_NAME.pattern}$",
    "description": "a name (of files and folders): letters, digits, '.', '_' and '-', "
                   "starting with a letter or digit, at most 100"})]


Bandwidth = Annotated[float, BeforeValidator(_within(
    units.parse_bandwidth, "a bandwidth", limits.BANDWIDTH_Bps, units.format_bandwidth)),
    _unit_schema("a bandwidth", "a number of bytes/s, or a string such as '25GB/s', '25GBps' "
                 "or '100Gb/s' (bits)", BANDWIDTH_PATTERN, limits.BANDWIDTH_Bps,
                 units.format_bandwidth)]


_SIZE_EXAMPLES = "a number of bytes, or a string such as '32GB' (10^9 bytes) or '2GiB' (2^30)"


Size = Annotated[float, BeforeValidator(_within(
    units.parse_bytes, "a size", limits.SIZE_BYTES, units.format_bytes)),
    _unit_schema("a size", _SIZE_EXAMPLES, SIZE_PATTERN, limits.SIZE_BYTES, units.format_bytes)]


SizeOrZero = Annotated[float, BeforeValidator(_within(
    units.parse_bytes, "a size", limits.SIZE_BYTES, units.format_bytes, zero=True)),
    _unit_schema("a size", _SIZE_EXAMPLES, SIZE_PATTERN, limits.SIZE_BYTES, units.format_bytes,
                 zero=True)]


Duration = Annotated[float, BeforeValidator(_within(
    units.parse_time, "a duration", limits.DURATION_S, units.format_time, zero=True)),
    _unit_schema("a duration", "a number of seconds, or a string such as '90us', '150ns' or "
                 "'2ms'", DURATION_PATTERN, limits.DURATION_S, units.format_time, zero=True)]


Flops = Annotated[float, BeforeValidator(_within(
    units.parse_flops, "a compute rate", limits.FLOPS, units.format_flops)),
    _unit_schema("a compute rate", "a number of operations/s, or a string such as "
                 "'72.5TFLOPS', '870TOPS' or '4.5TFLOP/s'", FLOPS_PATTERN, limits.FLOPS,
                 units.format_flops)]


Count = Annotated[int, Field(ge=1, le=2**31)]


def bounded(high: int, low: int = 1) -> object:
    """An integer field from ``low`` to ``high`` (a limit of :mod:`simtopo.limits`)."""
    return Field(ge=low, le=high)


Precision = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]


class Spec(BaseModel):
    """Base of every input schema: frozen, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


Fraction = Annotated[float, Field(gt=0, le=1)]
