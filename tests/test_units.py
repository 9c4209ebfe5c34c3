"""Unit strings at the edge: exact SI values and exact errors."""

import math

import pytest

from simtopo import units


@pytest.mark.parametrize(("text", "expected"), [
    ("32GB", 32e9), ("2GiB", 2 * 1024**3), ("126MB", 126e6), ("8 MB", 8e6), ("1TB", 1e12),
    ("512", 512.0), (256, 256.0), ("4KiB", 4096.0), ("1.5kB", 1500.0),
])
def test_parse_bytes(text, expected):
    assert units.parse_bytes(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("25GB/s", 25e9), ("25 GBps", 25e9), ("100Gb/s", 12.5e9), ("100Gbps", 12.5e9),
    ("460.8GB/s", 460.8e9), ("1e9", 1e9), ("2GiB/s", 2 * 1024**3),
])
def test_parse_bandwidth(text, expected):
    assert units.parse_bandwidth(text) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize(("text", "expected"), [
    ("150ns", 150e-9), ("1.5us", 1.5e-6), ("1.5µs", 1.5e-6), ("2ms", 2e-3), ("3s", 3.0),
    ("1min", 60.0), (0, 0.0),
])
def test_parse_time(text, expected):
    assert units.parse_time(text) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize(("text", "expected"), [
    ("290TFLOPS", 290e12), ("870TOPS", 870e12), ("4.5TFLOP/s", 4.5e12), ("1e12", 1e12),
])
def test_parse_flops(text, expected):
    assert units.parse_flops(text) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize(("parse", "text", "message"), [
    (units.parse_bandwidth, "25GB", "expected a bandwidth such as '25GB/s' (got '25GB')"),
    (units.parse_bandwidth, "fast", "expected a bandwidth such as '25GB/s' (got 'fast')"),
    (units.parse_bytes, "32GX", "expected a size such as '32GB' (got '32GX')"),
    (units.parse_time, "5 parsecs", "expected a duration such as '1.5us' (got '5 parsecs')"),
    (units.parse_time, True, "expected a duration such as '1.5us' (got True)"),
    (units.parse_bytes, [1], "expected a size such as '32GB' (got [1])"),
    (units.parse_bandwidth, "inf", "expected a bandwidth such as '25GB/s' (got 'inf')"),
    (units.parse_bandwidth, math.nan, "a bandwidth must be finite (got nan)"),
])
def test_parse_errors(parse, text, message):
    with pytest.raises(ValueError) as info:
        parse(text)
    assert str(info.value) == message


@pytest.mark.parametrize(("fmt", "value", "text"), [
    (units.format_bandwidth, 28.807033e9, "28.81 GB/s"),
    (units.format_bandwidth, 460.8e9, "460.8 GB/s"),
    (units.format_bandwidth, math.inf, "unbounded"),
    (units.format_bytes, 32e9, "32 GB"),
    (units.format_bytes, 2 * 1024**3, "2 GiB"),
    (units.format_bytes, 64 * 1024**3, "64 GiB"),
    (units.format_time, 150e-9, "150 ns"),
    (units.format_time, 16.2e-6, "16.2 us"),
    (units.format_time, 0.0, "0 s"),
    (units.format_flops, 72.5e12, "72.5 TFLOP/s"),
])
def test_format(fmt, value, text):
    assert fmt(value) == text
