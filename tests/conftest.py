"""Shared fixtures: the built-in topologies and a tiny topology small enough to check by hand."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

import simtopo

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "topologies"
BUILTIN = sorted(TOPOLOGIES.glob("*.yaml"))

SOC: dict[str, Any] = {
    "cores": 4,
    "peak_flops": {"fp16": "40TFLOPS"},
    "dram": "16GB",
    "dram_bw": "100GB/s",
    "bar_size": "2GiB",
}

TINY: dict[str, Any] = {
    "name": "tiny",
    "pcie": {"tlp_overhead": 24},
    "platform": {"root_complex_p2p": True, "max_p2p_group": 8, "bar_space": "64GiB"},
    "host": {
        "handoff_latency": "10us",
        "sockets": [{"id": "cpu0", "cores": 8, "memory": "64GB", "memory_bw": "100GB/s",
                     "root_complexes": [{"id": "rc0", "hop_latency": "300ns"}]}],
    },
    "card_types": {
        "duo": {
            "name": "Duo",
            "host_link": {"gen": 4, "lanes": 16},
            "switch": {"hop_latency": "100ns"},
            "soc_link": {"gen": 4, "lanes": 8},
            "socs": 2,
            "soc": SOC,
        },
        "solo": {"name": "Solo", "host_link": {"gen": 3, "lanes": 16}, "soc": SOC},
    },
    "switches": [
        {"id": "sw0", "parent": "rc0", "uplink": {"gen": 4, "lanes": 16}, "hop_latency": "200ns"},
        {"id": "sw1", "parent": "rc0", "uplink": {"gen": 3, "lanes": 8}, "hop_latency": "200ns"},
    ],
    "cards": [
        {"type": "duo", "parent": "sw0", "count": 2},  # card0, card1
        {"type": "solo", "parent": "sw1"},  # card2
    ],
}
"""One socket; sw0 (Gen4 x16 up) holds two 2-SoC cards, sw1 (Gen3 x8 up) one 1-SoC card.
Every link-model value is pinned (24-byte TLP overhead, hop latencies), so tests on it do not
depend on the calibration."""


def payload_rate(gt_per_s: float, lanes: int, overhead_bytes: float) -> float:
    """Hand formula for a Gen3-5 link: GT/s x lanes x 128/130 / 8 x 256 / (256 + overhead)."""
    return gt_per_s * lanes * (128 / 130) / 8 * 256 / (256 + overhead_bytes)


def tiny_spec(**changes: Any) -> dict[str, Any]:
    """A deep copy of TINY with top-level keys replaced or, for dicts, updated."""
    spec = copy.deepcopy(TINY)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key].update(value)
        else:
            spec[key] = value
    return spec


@pytest.fixture
def tiny() -> simtopo.Topology:
    return simtopo.topology_from_dict(tiny_spec(), name="tiny")


@pytest.fixture(scope="session")
def ultra8() -> simtopo.Topology:
    return simtopo.load_topology(TOPOLOGIES / "ultra8.yaml")


@pytest.fixture(scope="session")
def ultra8_acs() -> simtopo.Topology:
    return simtopo.load_topology(TOPOLOGIES / "ultra8-acs.yaml")


@pytest.fixture(scope="session")
def ultra16_2s() -> simtopo.Topology:
    return simtopo.load_topology(TOPOLOGIES / "ultra16-2s.yaml")


@pytest.fixture
def no_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    """An experiment run that reaches a variant's simulation fails the test: what it must
    refuse, it refuses before simulating anything."""
    import simtopo.results.run as runner

    def simulated(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("simulated before the experiment's inputs were checked")

    monkeypatch.setattr(runner, "run_setup", simulated)
