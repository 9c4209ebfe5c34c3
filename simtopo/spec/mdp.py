"""Qualcomm MDP partition config schema (``../shared/seeds/qualcomm-mdp-partition-config.txt``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import limits
from .types import Spec


class MdpDevice(Spec):
    """A logical device of a partition."""

    deviceId: int = Field(ge=0, lt=limits.MAX_MDP_DEVICES)
    numCores: int = Field(ge=1, le=limits.MAX_THREADS)


class MdpPartition(Spec):
    """One partition (pipeline stage)."""

    name: str = Field(min_length=1)
    devices: list[MdpDevice] = Field(min_length=1, max_length=limits.MAX_MDP_DEVICES)
    nodeList: list[str] | None = Field(default=None, max_length=limits.MAX_GRAPH_NODES)


class MdpConnection(Spec):
    """A connection type between two or more logical devices."""

    devices: list[int] = Field(min_length=2, max_length=limits.MAX_MDP_DEVICES)
    type: Literal["p2p", "host"]


class MdpConfig(Spec):
    """A whole partition config."""

    connections: list[MdpConnection] = Field(default_factory=list,
                                             max_length=limits.MAX_MDP_PARTITIONS)
    partitions: list[MdpPartition] = Field(min_length=1, max_length=limits.MAX_MDP_PARTITIONS)

    def logical_devices(self) -> list[int]:
        """Device ids in partition order."""
        return [d.deviceId for p in self.partitions for d in p.devices]
