"""What an input may ask for: the work it sets in motion and the values it may give.

Every limit is checked before any work starts and refused in one line naming the key and the
limit (``docs/errors.md`` lists them). They are generous for real machines and models (a
1,024-SoC tree, a 405B model, a million tokens) and stop inputs that would run for hours or
exhaust memory. The plausibility ranges refuse numbers no hardware has (a bandwidth of
5e-324 B/s, 1e18 cores), which would otherwise turn into infinities and zeros downstream.
"""

from __future__ import annotations

# -- the work an input sets in motion ------------------------------------------------------
MAX_SOCS = 2048
"""SoCs (and other devices) in one topology."""

MAX_NODES = 8192
"""Nodes of a topology graph: sockets, root complexes, switches, SoCs, storage."""

MAX_DEPTH = 32
"""Levels of a topology below its sockets (PCIe trees are a few levels deep)."""

MAX_SOCS_PER_CARD = 64
"""SoCs on one card."""

MAX_INCLUDE_DEPTH = 16
"""Files followed through ``include`` and ``extends``, one inside the other."""

MAX_INCLUDED_FILES = 256
"""Files read through ``include`` and ``extends`` for one topology, all told."""

MAX_NESTING = 64
"""Levels of mappings and lists in one YAML or JSON document."""

MAX_DOCUMENT_NODES = 500_000
"""Values (keys, scalars, mappings and lists) in one YAML document, and values that aliases
may add by expansion (alias bombs): some 300 MB once read; a hand-written graph of 40,000 ops
(larger models belong in ONNX files)."""

MAX_FILE_BYTES = 64 * 2**20
"""Size of one input file (a YAML or JSON file; ONNX models excepted)."""

MAX_ONNX_BYTES = 2**31
"""Size of one ONNX file (protobuf's own limit; weights in external files are not read)."""

MAX_DIGITS = 100
"""Digits of an integer in an input file."""

MAX_GRAPH_NODES = 200_000
"""Ops in one graph file or ONNX model."""

MAX_MDP_PARTITIONS = 1024
"""Partitions (pipeline stages) in one MDP config."""

MAX_MDP_DEVICES = 4096
"""Logical devices in one MDP config, and devices in one of its connections."""

MAX_LAYERS = 1024
"""Layers of a decoder."""

MAX_TOKENS = 1_048_576
"""Prompt, generated and context tokens of a sequence."""

MAX_BATCH = 65_536
"""Sequences in a request group, inputs of a forward pass."""

MAX_GROUPS = 1024
"""Request groups in flight per replica."""

MAX_CHUNKS = 4096
"""Prefill chunks of a prompt, micro-batches of a forward pass."""

MAX_PASSES = 2_000_000
"""Passes the pass level simulates: replicas x groups x (chunks + decode steps) x stages."""

MAX_LIVE_TASKS = 20_000_000
"""Op-device tasks ``--simulation full`` runs live (passes x ops per pass x SoCs per stage);
about 17 us each on one core of the development machine, so this is six minutes."""

MAX_THREADS = 4096
"""Host threads (hand-off, loading workers) and cores of a socket or SoC."""

MAX_STAGING_BUFFERS = 1024
"""Staging buffers of one host-routed copy."""

MIN_CHUNK_BYTES = 4096
"""Smallest staging chunk of a host-routed copy (smaller ones mean millions of events)."""

MAX_CHUNK_BYTES = 2**30
"""Largest staging chunk."""

MAX_LOAD_CHUNKS = 4096
"""Pieces a rank's weights move in while loading."""

MAX_MATRIX_DEVICES = 2048
"""Devices of one all-pairs path matrix (its arrays grow with the square)."""

MAX_SWEEP_POINTS = 100_000
"""Points of one sweep."""

MAX_BENCH_VALUES = 64
"""Values of ``simtopo bench --sizes`` or ``--groups`` (nccl-tests sweeps some 30 sizes)."""

MAX_MESSAGE_BYTES = 10**12
"""Largest message ``simtopo bench --sizes`` sweeps (1 TB; nccl-tests go to a few GiB)."""

MAX_TENSOR_ELEMENTS = 2**53
"""Elements of one tensor of an ONNX model (exact as a float; no real model comes near)."""

# -- plausible values ----------------------------------------------------------------------
BANDWIDTH_Bps = (1e6, 1e14)
"""Bandwidths, from 1 MB/s to 100 TB/s."""

FLOPS = (1e6, 1e18)
"""Compute rates, from 1 MFLOP/s to 1 EFLOP/s."""

SIZE_BYTES = (1.0, 1e16)
"""Sizes and capacities, from 1 byte to 10 PB."""

DURATION_S = (0.0, 60.0)
"""Latencies and fixed costs, up to a minute."""
