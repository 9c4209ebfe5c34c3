"""Link-model defaults: the fitted constants and the documented assumptions, in one place.

The fitted constants come from ``simtopo calibrate`` on the measurements in
``../shared/calibration/`` (see ``docs/validation.md`` for predicted vs measured and the
leave-one-machine-out errors); the assumptions say where they come from.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

# -- fitted (docs/validation.md) -------------------------------------------------------------
TLP_OVERHEAD_BYTES = 54.7
"""Per-TLP bytes besides payload (Gen1-5): sets the payload efficiency MPS / (MPS + this)."""

DMA_SETUP_S = 449e-9
"""Fixed cost of one DMA transfer (descriptor, doorbell, completion), before the first byte."""

HANDOFF_S = 43.6e-6
"""One host-mediated hand-off of a staged chunk (interrupt or poll, driver, wake-up)."""

SWITCH_HOP_S = 150e-9
"""Latency a PCIe switch adds per traversal. Not fitted (the data reach it only in one sum with
the root-complex hop): the middle of ../shared/DESIGN.md's 100-200 ns per hop."""

RC_HOP_S = 101e-9
"""Latency a root complex adds per traversal (P2P between ports, or to host memory)."""

CONCURRENCY_EFFICIENCY = 0.576
"""Share of an endpoint's bandwidth that survives many concurrent streams: an endpoint serving
k flows in one direction delivers e(k) = c + (1 - c) / k of its capacity."""

DUPLEX_EFFICIENCY = 1
"""Share of twice a link's one-way bandwidth that both directions reach together: each direction
also carries the other's acknowledgements and flow-control updates (DLLPs), so a link moves
at most d x (up + down capacity) in total; one direction alone is not limited by it. The fit
finds no loss (1): with one payload efficiency for Gen3-5, one-way Gen5 copies are already
predicted a few percent low, and bidirectional ones right."""

HOST_DUPLEX_EFFICIENCY = 0.557
"""Share of twice a device's link rate its DMA engine moves when it writes to host memory and
reads from it at once (the staged legs of host-routed copies, host <-> device copies): reads
of host memory are non-posted (the engine waits for completions), so pushing and pulling
together stalls it, where P2P traffic in both directions is posted writes on both sides."""

SOCKET_P2P_EFFICIENCY = 0.738
"""Share of the slower device link a peer-to-peer stream keeps when it crosses the socket link
(the inter-socket fabric forwards peer writes below the devices' link rate)."""

COLLECTIVE_LAUNCH_S = 12.6e-6
"""Software cost of one collective call with the low-latency protocol (kernel launch, set-up
and the final synchronisation); the bandwidth protocol costs SIMPLE_LAUNCH_RATIO times this."""

COLLECTIVE_STEP_S = 398e-9
"""Software cost of one algorithm step with the low-latency protocol (flag write and wait
between neighbours); the bandwidth protocol costs SIMPLE_STEP_RATIO times this."""

# -- assumptions -----------------------------------------------------------------------------
DEFAULT_MAX_PAYLOAD_BYTES = 256
"""The PCIe max payload size most servers negotiate for accelerators (assumption; a topology
sets its own with ``pcie.max_payload``)."""

CHUNK_BYTES = 256 * 1024
"""Staging chunk of a host-routed copy (assumption; with the fitted hand-off it reproduces the
V100 host-staged bidirectional bandwidth and latency together, see docs/validation.md;
what-if band 64 KiB to 1 MiB)."""

STAGING_BUFFERS = 4
"""Staging buffers per host-routed copy (assumption). A chunk holds its buffer from its write
to the end of its read, so with B buffers the pipeline period is at least (a + h + b) / B;
with 2 buffers a balanced bounce would run at 2/3 of its links, against measurements that show
a one-way host-staged copy as fast as P2P (../shared/calibration/v100pcie-...)."""

HANDOFF_THREADS = 4
"""Host threads serving hand-offs and host-side sums (assumption; what-if band 1 to 16)."""

HOST_THREAD_BW_BPS = 10e9
"""Memory traffic one host thread drives while summing buffers (assumption: a server core
streams about 10-20 GB/s alone, STREAM-style single-thread figures); a host sum runs at
min(threads x this, the socket's memory bandwidth)."""

# NCCL's protocol model (src/graph/tuning.cc, PCI tables): the low-latency protocol (LL) has a
# base latency of 6.6 us and 1.0 us per ring step, the bandwidth protocol (Simple) 8.4 us and
# 5.7 us; LL reaches a quarter of Simple's bus bandwidth on an all-reduce ring (half its bytes
# are flags, and its polling loop moves the rest at half the rate). Used as ratios: the fit
# sets the scale (COLLECTIVE_LAUNCH_S, COLLECTIVE_STEP_S), these set the shape.
SIMPLE_LAUNCH_RATIO = 8.4 / 6.6
"""Bandwidth protocol's launch cost over the low-latency protocol's (NCCL tuning.cc)."""

SIMPLE_STEP_RATIO = 5.7 / 1.0
"""Bandwidth protocol's per-step cost over the low-latency protocol's (NCCL tuning.cc, PCI)."""

LL_BANDWIDTH_SHARE = 0.25
"""Share of the bandwidth protocol's throughput the low-latency protocol reaches (NCCL
tuning.cc: ring LL bus bandwidth x 1/4 for all-reduce)."""

REDUCTION_TRAFFIC = 3.0
"""Memory bytes moved per byte reduced: read two operands, write one."""


# -- the SoC model (roofline), fitted on calibration/qualcomm-ai100-standard-gptj-decode -------
COMPUTE_EFFICIENCY = 0.75
"""Fraction of peak FLOP/s a GEMM reaches (assumption: no calibration file measures a
compute-bound pass; batch-1 decode never reaches this roof)."""

DRAM_EFFICIENCY = 0.7478
"""Fraction of the DRAM bandwidth the cores' streams reach (at most 1; fitted on fp16 GPT-J
decode, docs/validation.md)."""

OP_LAUNCH_S = 2e-6
"""Fixed cost per op (dispatch and synchronisation across the cores) (assumption)."""

MXFP6_OVERLAP = True
"""How mxfp6 expansion meets the DRAM stream: overlapped (the cores' DMA streams the next tile
of weights into VTCM while the vector unit expands the one before; an op takes the longer of
the two). The one calibration pair cannot tell this from an expansion in series with the
stream; the hardware's DMA-and-scratchpad design says overlapped (docs/validation.md)."""

MXFP6_EXPAND_OPS_PER_WEIGHT = 1169.5
"""Work to expand one mxfp6 weight to fp16, in units of the core's fp16 peak operations: a core
expands a weight in this / (its fp16 FLOP/s) seconds, so the cost follows the core's clock (an
Ultra core at 4.5 TFLOP/s takes 1.5x a Standard core's 6.9) and divides over the cores and SoCs
that share the weights (fitted on mxfp6 GPT-J decode in the :data:`MXFP6_OVERLAP` form,
docs/validation.md)."""

MXFP6_SERIAL_EXPAND_OPS_PER_WEIGHT = 333.1
"""The same, fitted with the expansion in series with the DRAM stream: the other form, which
``simtopo whatif`` runs beside the chosen one."""

CONV_EFFICIENCY = 0.6473
"""Fraction of peak operations/s a convolution reaches (fitted on MLPerf ResNet-50 offline on
two AI 100 Ultra cards, docs/validation.md)."""

ONCHIP_FRACTION = 1.0
"""Share of a partition's VTCM that holds activations and resident weights (assumption: all of
it; the compiler also stages weight tiles there). 0 turns the on-chip rules off: every
activation a DRAM round trip, nothing fused (``simtopo whatif`` shows the difference)."""

HOST_STEP_S = 200e-6
"""Host time per generated token besides the transfers: sampling the logits and dispatching the
next step (assumption)."""


@dataclass(frozen=True)
class SocModel:
    """Free parameters of the SoC cost model (each documented where its default is set)."""

    compute_efficiency: float = COMPUTE_EFFICIENCY
    """Fraction of peak FLOP/s."""
    dram_efficiency: float = DRAM_EFFICIENCY
    """Fraction of the DRAM bandwidth."""
    op_launch_s: float = OP_LAUNCH_S
    mxfp6_expand_ops_per_weight: float = MXFP6_EXPAND_OPS_PER_WEIGHT
    mxfp6_overlap: bool = MXFP6_OVERLAP
    """Expansion overlapped with the DRAM stream (else in series)."""
    host_step_s: float = HOST_STEP_S
    onchip_fraction: float = ONCHIP_FRACTION
    """Share of the cores' on-chip memory that holds tensors."""
    conv_efficiency: float = CONV_EFFICIENCY
    """Fraction of peak operations/s for convolutions."""


@dataclass(frozen=True)
class LinkModel:
    """The fitted link-model parameters: what a topology leaves unsaid takes these values."""

    tlp_overhead_bytes: float = TLP_OVERHEAD_BYTES
    dma_setup_s: float = DMA_SETUP_S
    handoff_s: float = HANDOFF_S
    switch_hop_s: float = SWITCH_HOP_S
    rc_hop_s: float = RC_HOP_S
    concurrency_efficiency: float = CONCURRENCY_EFFICIENCY
    duplex_efficiency: float = DUPLEX_EFFICIENCY
    host_duplex_efficiency: float = HOST_DUPLEX_EFFICIENCY
    socket_p2p_efficiency: float = SOCKET_P2P_EFFICIENCY
    collective_launch_s: float = COLLECTIVE_LAUNCH_S
    collective_step_s: float = COLLECTIVE_STEP_S

    def with_values(self, **values: float) -> LinkModel:
        """A copy with some parameters changed."""
        return replace(self, **values)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The parameter names, in order."""
        return tuple(f.name for f in fields(cls))


DEFAULT_MODEL = LinkModel()
DEFAULT_SOC_MODEL = SocModel()
