"""PCIe link bandwidth from generation, lane count and payload efficiency.

Per direction, a link moves::

    bw = GT/s per lane x lanes x encoding efficiency / 8 bits  x  MPS / (MPS + TLP overhead)

- GT/s per lane: 2.5, 5, 8, 16, 32, 64 for Gen1..Gen6 (PCI-SIG base specifications).
- Encoding: 8b/10b for Gen1-2, 128b/130b for Gen3-5. Gen6 uses fixed 256-byte FLITs of which
  236 bytes carry TLPs (the rest is DLLP payload, CRC and FEC), so its "encoding" is 236/256.
- Payload efficiency: each TLP carries at most MPS (max payload size) bytes of data and pays a
  fixed overhead. Without FLITs that is about 6 dwords = 24 bytes: framing, sequence number, a
  4-dword header (64-bit addresses) and the LCRC (Intel AN 855, "Protocol Overhead": "The
  overhead is six dwords if the optional ECRC is not included"). In FLIT mode framing, sequence
  number and LCRC move into the FLIT, leaving the 16-byte header.

This is one payload efficiency, not a free factor per generation: DMA engines, read
completions and flow-control updates that make measured copies slower still (Gen4 x16 moves
about 24-26 GB/s in practice) belong to the transfer model, not to the link.
"""

from __future__ import annotations

from ..constants import DEFAULT_MAX_PAYLOAD_BYTES

GT_PER_LANE: dict[int, float] = {1: 2.5e9, 2: 5e9, 3: 8e9, 4: 16e9, 5: 32e9, 6: 64e9}
"""Transfers per second per lane, by generation."""

ENCODING: dict[int, float] = {
    1: 8 / 10, 2: 8 / 10, 3: 128 / 130, 4: 128 / 130, 5: 128 / 130, 6: 236 / 256,
}
"""Fraction of line bits that carry TLP bytes, by generation."""

LANES = (1, 2, 4, 8, 16, 32)


DEFAULT_TLP_OVERHEAD_BYTES = 24
"""Per-TLP bytes besides payload, non-FLIT (Gen1-5): Intel AN 855, six dwords without ECRC."""

FLIT_TLP_OVERHEAD_BYTES = 16
"""Per-TLP bytes besides payload in FLIT mode (Gen6): the 4-dword header only."""


def payload_efficiency(max_payload_bytes: float, tlp_overhead_bytes: float) -> float:
    """Fraction of TLP bytes that are payload when every TLP is full: MPS / (MPS + overhead)."""
    if max_payload_bytes <= 0:
        raise ValueError(f"max payload size must be positive (got {max_payload_bytes})")
    if tlp_overhead_bytes < 0:
        raise ValueError(f"TLP overhead must not be negative (got {tlp_overhead_bytes})")
    return max_payload_bytes / (max_payload_bytes + tlp_overhead_bytes)


def encoded_bandwidth(gen: int, lanes: int) -> float:
    """Bytes/s per direction after line encoding, before packet overhead."""
    if gen not in GT_PER_LANE:
        raise ValueError(f"PCIe generation must be one of 1..6 (got {gen})")
    if lanes not in LANES:
        raise ValueError(f"lane count must be one of {', '.join(map(str, LANES))} (got {lanes})")
    return GT_PER_LANE[gen] * lanes * ENCODING[gen] / 8.0


def link_bandwidth(
    gen: int,
    lanes: int,
    max_payload_bytes: float = DEFAULT_MAX_PAYLOAD_BYTES,
    tlp_overhead_bytes: float | None = None,
) -> float:
    """Payload bytes/s per direction of a PCIe link (see the module docstring for the formula).

    ``tlp_overhead_bytes`` defaults to 24 for Gen1-5 and 16 (header only) for Gen6 FLIT mode.
    """
    if tlp_overhead_bytes is None:
        tlp_overhead_bytes = FLIT_TLP_OVERHEAD_BYTES if gen >= 6 else DEFAULT_TLP_OVERHEAD_BYTES
    return encoded_bandwidth(gen, lanes) * payload_efficiency(max_payload_bytes,
                                                              tlp_overhead_bytes)
