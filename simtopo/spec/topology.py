"""Input schemas for topology and card files (pydantic v2, frozen, unknown keys refused).

Unit strings (``"28GB/s"``, ``"150ns"``) are parsed here, at the edge; everything after this
module sees SI floats. Cross-references between ids (parents, card types) are checked when the
topology is built, where the whole file is known.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from .. import constants, limits, units
from .types import (
    SIZE_PATTERN,
    Bandwidth,
    Duration,
    Flops,
    Fraction,
    Id,
    MaxPayload,
    Precision,
    Size,
    SizeOrZero,
    Spec,
    _no_bool,
    bounded,
    quantity_schema,
)


class LinkSpec(Spec):
    """A full-duplex link: PCIe generation and lanes, or explicit bandwidths per direction.

    ``up`` is child to parent (towards the host), ``down`` parent to child.
    """

    gen: Annotated[Literal[1, 2, 3, 4, 5, 6] | None, BeforeValidator(_no_bool)] = None
    lanes: Annotated[Literal[1, 2, 4, 8, 16, 32] | None, BeforeValidator(_no_bool)] = None
    max_payload: MaxPayload | None = None
    bandwidth: Bandwidth | None = None
    bandwidth_up: Bandwidth | None = None
    bandwidth_down: Bandwidth | None = None
    latency: Duration = 0.0

    @model_validator(mode="after")
    def _one_way_to_say_bandwidth(self) -> LinkSpec:
        pcie_given = self.gen is not None or self.lanes is not None
        explicit = [self.bandwidth, self.bandwidth_up, self.bandwidth_down]
        if pcie_given:
            if self.gen is None or self.lanes is None:
                raise ValueError("a PCIe link needs both 'gen' and 'lanes'")
            if any(b is not None for b in explicit):
                raise ValueError("give either 'gen' and 'lanes' or an explicit bandwidth, not both")
        else:
            if self.max_payload is not None:
                raise ValueError("'max_payload' applies only to a PCIe link ('gen' and 'lanes')")
            if self.bandwidth is not None and (
                self.bandwidth_up is not None or self.bandwidth_down is not None
            ):
                raise ValueError("give 'bandwidth' or 'bandwidth_up'/'bandwidth_down', not both")
            one_way = self.bandwidth_up is None or self.bandwidth_down is None
            if self.bandwidth is None and one_way:
                raise ValueError(
                    "a link needs 'gen' and 'lanes', or 'bandwidth', or both "
                    "'bandwidth_up' and 'bandwidth_down'"
                )
        return self

    def label(self) -> str:
        """Short description for tables: ``Gen4 x16`` or ``explicit``."""
        return f"Gen{self.gen} x{self.lanes}" if self.gen is not None else "explicit"


class PcieSpec(Spec):
    """Topology-wide PCIe packet parameters used by every ``gen``/``lanes`` link."""

    max_payload: MaxPayload = constants.DEFAULT_MAX_PAYLOAD_BYTES
    tlp_overhead: SizeOrZero | None = None


def _chunk(value: object) -> float:
    size = units.parse_bytes(value)
    low, high = limits.MIN_CHUNK_BYTES, limits.MAX_CHUNK_BYTES
    if not low <= size <= high:
        raise ValueError(f"a staging chunk must be between {units.format_bytes(low)} and "
                         f"{units.format_bytes(high)} (got {value!r})")
    return size


class TransferSpec(Spec):
    """How transfers use the fabric: DMA set-up, concurrency, host staging, collectives.

    Fields left out take the calibrated link model (:mod:`simtopo.constants`) when the
    topology is built; a topology may override them for its platform.
    """

    dma_setup: Duration | None = None
    concurrency_efficiency: Fraction | None = None
    chunk: Annotated[float, BeforeValidator(_chunk), quantity_schema(
        SIZE_PATTERN, f"a staging chunk: a number of bytes, or a string such as '256KiB'; from "
        f"{units.format_bytes(limits.MIN_CHUNK_BYTES)} to "
        f"{units.format_bytes(limits.MAX_CHUNK_BYTES)}", limits.MIN_CHUNK_BYTES,
        limits.MAX_CHUNK_BYTES)] = constants.CHUNK_BYTES
    staging_buffers: Annotated[int, bounded(limits.MAX_STAGING_BUFFERS)] = \
        constants.STAGING_BUFFERS
    host_allreduce: Literal["auto", "ring", "tree", "host-staged"] = "auto"
    reduction_traffic: Annotated[float, Field(ge=0)] = constants.REDUCTION_TRAFFIC
    duplex_efficiency: Annotated[float, Field(ge=0.5, le=1)] | None = None
    """Both directions of a link together move at most this x (up + down capacity)."""
    host_duplex_efficiency: Annotated[float, Field(ge=0.5, le=1)] | None = None
    """A device's engine moves at most this x (tx + rx link rate) to and from host memory."""
    socket_p2p_efficiency: Fraction | None = None
    """Share of the device link rate a P2P stream keeps across the socket link."""
    collective_launch: Duration | None = None
    """Software cost of one collective call (low-latency protocol)."""
    collective_step: Duration | None = None
    """Software cost of one algorithm step (low-latency protocol)."""
    host_collectives: Literal["handoff", "polled"] = "handoff"
    """How the steps of host-routed collectives synchronise: a host hand-off per staged chunk
    (a runtime relaying through the host), or the devices polling a flag in host memory (as
    NCCL's shared-memory transport does)."""
    host_thread_bw: Bandwidth = constants.HOST_THREAD_BW_BPS
    """Memory traffic one host thread drives while summing (host-staged all-reduce)."""


class PlatformSpec(Spec):
    """What the platform allows: P2P limits, ACS default, the host's address space for BARs.

    ``acs`` is the ACS setting of every switch that does not state its own (BIOS and kernel
    usually set it system-wide).
    """

    max_p2p_group: Annotated[int, bounded(limits.MAX_SOCS)] | None = None
    root_complex_p2p: bool = False
    cross_socket_p2p: bool = False
    acs: bool = False
    bar_space: Size | None = None


class RootComplexSpec(Spec):
    """A root complex of a socket; its downstream links are the root ports."""

    id: Id
    p2p: bool | None = None
    hop_latency: Duration | None = None


class SocketSpec(Spec):
    """One CPU socket: cores, memory, memory bandwidth, and its root complexes."""

    id: Id
    cores: Annotated[int, bounded(limits.MAX_THREADS)]
    memory: Size
    memory_bw: Bandwidth
    root_complexes: list[RootComplexSpec] | None = Field(default=None, min_length=1)


class HostSpec(Spec):
    """The host: sockets, the link between them, and the host-mediated hand-off service."""

    sockets: list[SocketSpec] = Field(min_length=1, max_length=64)
    socket_link: LinkSpec | None = None
    handoff_latency: Duration | None = None
    handoff_threads: Annotated[int, bounded(limits.MAX_THREADS)] = constants.HANDOFF_THREADS


class SwitchSpec(Spec):
    """A server PCIe switch below a root complex or another switch.

    Switches naming one ``chip`` are partitions (virtual switches) of one physical switch chip,
    each with its own uplink: peer traffic between their devices crosses inside the chip.
    ``p2p: false`` is platform policy: no P2P route may pass through this switch.
    """

    id: Id
    parent: str
    uplink: LinkSpec
    acs: bool | None = None
    hop_latency: Duration | None = None
    model: str = ""
    chip: Id | None = None
    p2p: bool = True


class SocSpec(Spec):
    """An accelerator SoC (or a GPU): compute, memory and PCIe BAR needs.

    Peak compute is given per core (``peak_flops_per_core``) or for the whole SoC
    (``peak_flops``, as vendor tables state it, divided evenly over ``cores``).
    """

    cores: Annotated[int, bounded(limits.MAX_THREADS)]
    peak_flops: dict[Precision, Flops] | None = Field(default=None, min_length=1)
    peak_flops_per_core: dict[Precision, Flops] | None = Field(default=None, min_length=1)
    dram: Size
    dram_bw: Bandwidth
    noc_bw: Bandwidth | None = None
    sram: SizeOrZero = 0.0
    vtcm_per_core: SizeOrZero | None = None
    bar_size: SizeOrZero = 0.0
    dma_bw: Bandwidth | None = None
    dma_setup: Duration | None = None
    """Fixed cost of one copy on this SoC's DMA (copy) engine before its first byte: a property
    of the engine's generation; left out, the topology's ``transfer.dma_setup``."""

    @model_validator(mode="after")
    def _one_peak(self) -> SocSpec:
        if (self.peak_flops is None) == (self.peak_flops_per_core is None):
            raise ValueError("give exactly one of 'peak_flops' (whole SoC) and "
                             "'peak_flops_per_core'")
        return self

    def flops_per_core(self) -> dict[str, float]:
        """Peak operations/s of one core, by precision."""
        if self.peak_flops_per_core is not None:
            return dict(self.peak_flops_per_core)
        assert self.peak_flops is not None
        return {k: v / self.cores for k, v in self.peak_flops.items()}


class OnCardSwitchSpec(Spec):
    """The PCIe switch on a multi-SoC card."""

    acs: bool | None = None
    hop_latency: Duration | None = None
    model: str = ""


class CardTypeSpec(Spec):
    """A card defined once: its host link, optional on-card switch, and its SoCs.

    ``p2p: false``: its SoCs cannot be peer-to-peer endpoints at all (consumer GPUs); their
    traffic with other devices goes through host memory.
    """

    name: str
    host_link: LinkSpec
    switch: OnCardSwitchSpec | None = None
    soc_link: LinkSpec | None = None
    socs: Annotated[int, bounded(limits.MAX_SOCS_PER_CARD)] = 1
    soc: SocSpec
    p2p: bool = True

    @model_validator(mode="after")
    def _switch_iff_several_socs(self) -> CardTypeSpec:
        if self.switch is None:
            if self.socs != 1:
                raise ValueError(f"a card with {self.socs} SoCs needs an on-card 'switch'")
            if self.soc_link is not None:
                raise ValueError("'soc_link' needs an on-card 'switch' (without one the SoC "
                                 "uses 'host_link')")
        elif self.soc_link is None:
            raise ValueError("a card with an on-card 'switch' needs 'soc_link'")
        return self




class CardPlacementSpec(Spec):
    """``count`` cards of one type under ``parent``, numbered ``<prefix>0``, ``<prefix>1``, ..."""

    type: str
    parent: str
    count: Annotated[int, bounded(limits.MAX_SOCS)] = 1
    prefix: Id = "card"
    acs: bool | None = None


class StorageSpec(Spec):
    """A storage device: a local NVMe drive or a network volume reached through a NIC."""

    id: Id
    kind: Literal["nvme", "network"]
    parent: str
    link: LinkSpec
    read_bw: Bandwidth
    write_bw: Bandwidth
    latency: Duration = 0.0
    capacity: Size | None = None


class FabricLinkSpec(Spec):
    """A device-to-device link outside the PCIe tree (NeuronLink, an RDU's peer link, an
    NVLink bridge): between two SoCs or two cards (a card of several SoCs shares the link
    among them, through its on-card switch), full duplex, ``bandwidth`` in each direction."""

    between: list[str] = Field(min_length=2, max_length=2)
    bandwidth: Bandwidth
    latency: Duration = 0.0
    kind: Id = "fabric"
    """What the link is (``neuronlink``, ``nvlink``): tables and drawings name it."""


class FabricSwitchSpec(Spec):
    """A switch of a device fabric (an NVSwitch): fabric links join devices (or cards) to it,
    and it joins any two of them, non-blocking (each device's link to it bounds what that
    device moves over the fabric)."""

    id: Id
    hop_latency: Duration = 0.0
    kind: Id = "fabric-switch"
    """What it is (``nvswitch``): tables and drawings name it."""


class CardLibrarySpec(Spec):
    """A file that only defines card types, for topologies to include."""

    description: str = ""
    card_types: dict[Id, CardTypeSpec] = Field(min_length=1)


class TopologySpec(Spec):
    """A whole topology (after ``extends`` and ``include`` are resolved by the loader)."""

    name: Id
    description: str = ""
    pcie: PcieSpec = PcieSpec()
    transfer: TransferSpec = TransferSpec()
    platform: PlatformSpec = PlatformSpec()
    host: HostSpec
    switches: list[SwitchSpec] = Field(default_factory=list, max_length=limits.MAX_NODES)
    card_types: dict[Id, CardTypeSpec] = Field(default_factory=dict, max_length=1024)
    cards: list[CardPlacementSpec] = Field(default_factory=list, max_length=limits.MAX_NODES)
    storage: list[StorageSpec] = Field(default_factory=list, max_length=1024)
    fabric: list[FabricLinkSpec] = Field(default_factory=list, max_length=limits.MAX_NODES)
    """Device-to-device links beside the tree: a P2P route between two devices one joins takes
    it first (path class ``fabric``)."""
    fabric_switches: list[FabricSwitchSpec] = Field(default_factory=list, max_length=1024)
    """Switches of the device fabric, which its links may name as an end."""
