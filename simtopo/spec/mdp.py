"""Qualcomm MDP partition config schema (``../shared/seeds/qualcomm-mdp-partition-config.txt``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .types import Spec


class MdpDevice(Spec):
    """A logical device of a partition."""

    deviceId: int = Field(ge=0)
    numCores: int = Field(ge=1)


class MdpPartition(Spec):
    """One partition (pipeline stage)."""

    name: str = Field(min_length=1)
    devices: list[MdpDevice] = Field(min_length=1)
    nodeList: list[str] | None = None


class MdpConnection(Spec):
    """A connection type between two or more logical devices."""

    devices: list[int] = Field(min_length=2)
    type: Literal["p2p", "host"]


class MdpConfig(Spec):
    """A whole partition config."""

    connections: list[MdpConnection] = Field(default_factory=list)
    partitions: list[MdpPartition] = Field(min_length=1)

    def logical_devices(self) -> list[int]:
        """Device ids in partition order."""
        return [d.deviceId for p in self.partitions for d in p.devices]
