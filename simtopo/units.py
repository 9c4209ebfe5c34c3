"""Unit strings at the edge: ``"32GB/s"``, ``"1.5us"``, ``"4GiB"``, ``"290TFLOPS"`` <-> SI floats.

Inside simtopo every quantity is a float in SI units (bytes, seconds, bytes per second,
operations per second). GB means 1e9 bytes; GiB means 2**30.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµ/]*)\s*$")

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12, "min": 60.0,
         "h": 3600.0}


def _split(text: object, what: str, example: str) -> tuple[float, str]:
    if isinstance(text, bool):
        raise ValueError(f"expected {what} such as {example!r} (got {text!r})")
    if isinstance(text, int | float):
        return float(text), ""
    if not isinstance(text, str):
        raise ValueError(f"expected {what} such as {example!r} (got {text!r})")
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"expected {what} such as {example!r} (got {text!r})")
    return float(match.group(1)), match.group(2)


def _scaled(value: float, unit: str, suffixes: tuple[str, ...], text: object, what: str,
            example: str) -> float:
    for suffix in suffixes:
        if unit.endswith(suffix):
            prefix = unit[: len(unit) - len(suffix)]
            scale = _BINARY.get(prefix, _DECIMAL.get(prefix))
            if scale is not None:
                return value * scale
    raise ValueError(f"expected {what} such as {example!r} (got {text!r})")


def _checked(value: float, text: object, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite (got {text!r})")
    return value


def parse_bytes(text: object) -> float:
    """Parse a size: ``"32GB"`` -> 32e9, ``"2GiB"`` -> 2**31; a bare number is bytes."""
    value, unit = _split(text, "a size", "32GB")
    if unit:
        value = _scaled(value, unit, ("B",), text, "a size", "32GB")
    return _checked(value, text, "a size")


def parse_bandwidth(text: object) -> float:
    """Parse bytes/s: ``"25GB/s"``, ``"25GBps"``, ``"100Gb/s"`` (bits); a bare number is B/s."""
    value, unit = _split(text, "a bandwidth", "25GB/s")
    if unit:
        if unit.endswith(("B/s", "Bps")):
            value = _scaled(value, unit, ("B/s", "Bps"), text, "a bandwidth", "25GB/s")
        elif unit.endswith(("b/s", "bps")):
            value = _scaled(value, unit, ("b/s", "bps"), text, "a bandwidth", "25GB/s") / 8.0
        else:
            raise ValueError(f"expected a bandwidth such as '25GB/s' (got {text!r})")
    return _checked(value, text, "a bandwidth")


def parse_time(text: object) -> float:
    """Parse seconds: ``"150ns"``, ``"1.5us"``, ``"2ms"``; a bare number is seconds."""
    value, unit = _split(text, "a duration", "1.5us")
    if unit:
        if unit not in _TIME:
            raise ValueError(f"expected a duration such as '1.5us' (got {text!r})")
        value *= _TIME[unit]
    return _checked(value, text, "a duration")


def parse_flops(text: object) -> float:
    """Parse a compute rate in operations/s: ``"290TFLOPS"``, ``"870TOPS"``, ``"4.5TFLOP/s"``."""
    value, unit = _split(text, "a compute rate", "290TFLOPS")
    if unit:
        value = _scaled(value, unit, ("FLOPS", "FLOP/s", "OPS", "OP/s"), text, "a compute rate",
                        "290TFLOPS")
    return _checked(value, text, "a compute rate")


def _significant(value: float, digits: int = 4) -> str:
    text = f"{value:.{digits}g}"
    return text if "e" not in text else f"{value:.{digits}e}"


def format_bandwidth(bw_Bps: float) -> str:
    """``28.807e9`` -> ``"28.81 GB/s"`` (decimal prefixes, 4 significant digits)."""
    if math.isinf(bw_Bps):
        return "unbounded"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(bw_Bps) >= scale:
            return f"{_significant(bw_Bps / scale)} {prefix}B/s"
    return f"{_significant(bw_Bps)} B/s"


def format_bytes(size_bytes: float, binary: bool = True) -> str:
    """``32e9`` -> ``"32 GB"``; exact binary multiples stay binary: ``2**31`` -> ``"2 GiB"``
    (with ``binary=False``, decimal always, for a column that must read one way)."""
    for prefix, scale in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        # binary only for round binary sizes (2 GiB, 256 KiB), not for any multiple of 1024
        if binary and scale <= size_bytes < 1024 * scale and size_bytes % scale == 0 \
                and size_bytes % 10**3 != 0:
            return f"{_significant(size_bytes / scale)} {prefix}B"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(size_bytes) >= scale:
            return f"{_significant(size_bytes / scale)} {prefix}B"
    return f"{_significant(size_bytes)} B"


def format_time(seconds: float) -> str:
    """``1.5e-7`` -> ``"150 ns"``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(seconds) >= scale:
            return f"{_significant(seconds / scale)} {unit}"
    if seconds == 0:
        return "0 s"
    return f"{_significant(seconds / 1e-12)} ps"


def format_flops(rate: float) -> str:
    """``4.53e12`` -> ``"4.53 TFLOP/s"``."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(rate) >= scale:
            return f"{_significant(rate / scale)} {prefix}FLOP/s"
    return f"{_significant(rate)} FLOP/s"
