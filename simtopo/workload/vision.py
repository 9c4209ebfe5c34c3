"""Vision models generated from their published architecture: ResNet-50 v1.5.

ResNet-50 v1.5 (He et al., "Deep Residual Learning for Image Recognition", 2015, Table 1; v1.5
moves the stride-2 of a downsampling bottleneck from its first 1x1 convolution to its 3x3 one,
as torchvision's ``resnet50`` and MLPerf Inference's reference model do): a 7x7/2 stem of 64
channels and a 3x3/2 max pool, then four stages of 3, 4, 6 and 3 bottlenecks of width 64, 128,
256 and 512 (1x1, 3x3, 1x1 with 4x the width out; the first block of a stage downsamples its
shortcut with a 1x1 convolution), a global average pool and a 2048 x 1000 classifier, on
224 x 224 RGB images.

Inference folds each batch norm into the convolution before it (a bias per output channel),
as the MLPerf submissions' int8 models do; each ReLU and each residual add (with its ReLU) is an
elementwise op of its own, which the on-chip rules fuse into its producer. Sizes are written
at fp16 (weights and activations, 2 bytes); a workload's precision rescales them
(:mod:`simtopo.workload.precision`). Names follow torchvision's modules (``layer2.0.conv2``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import networkx as nx

from .opgraph import Op, Precision

BYTES = 2.0
"""Bytes per weight and activation element as written (fp16)."""

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
"""ResNet-50's stages: (bottleneck width, blocks, stride of the first block) (He et al.,
Table 1)."""

IMAGE = 224
"""Input side in pixels (ImageNet at 224 x 224, as MLPerf's ResNet-50 benchmark feeds it)."""

CLASSES = 1000


@dataclass
class _Net:
    """A graph under construction, with the tensor each op hands on: (channels, side)."""

    batch: int
    graph: nx.DiGraph
    shape: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, op: Op, shape: tuple[int, int], *inputs: str) -> str:
        self.graph.add_node(op.name, op=op)
        for source in inputs:
            self.graph.add_edge(source, op.name, bytes=self.graph.nodes[source]["op"].out_bytes)
        self.shape[op.name] = shape
        return op.name

    def elements(self, channels: int, side: int) -> int:
        return self.batch * channels * side * side

    def conv(self, name: str, source: str | None, c_in: int, c_out: int, kernel: int,
             stride: int, side_in: int) -> str:
        side = side_in // stride
        out = self.elements(c_out, side)
        weights = c_out * c_in * kernel * kernel + c_out  # the folded batch norm's bias
        inp = self.elements(c_in, side_in)
        op = Op(name=name, kind="conv", flops=2.0 * out * c_in * kernel * kernel + out,
                bytes_read=(inp + weights) * BYTES, bytes_written=out * BYTES,
                weight_bytes=weights * BYTES, stored_bytes=weights * BYTES,
                weight_params=float(weights))
        return self.add(op, (c_out, side), *([source] if source else []))

    def pointwise(self, name: str, inputs: tuple[str, ...], flops_per_element: float) -> str:
        channels, side = self.shape[inputs[0]]
        n = self.elements(channels, side)
        op = Op(name=name, kind="elementwise", flops=flops_per_element * n,
                bytes_read=len(inputs) * n * BYTES, bytes_written=n * BYTES)
        return self.add(op, (channels, side), *inputs)

    def pool(self, name: str, source: str, window: int, stride: int) -> str:
        channels, side_in = self.shape[source]
        side = 1 if window == 0 else side_in // stride
        out = self.elements(channels, side)
        flops = self.elements(channels, side_in) if window == 0 else out * window * window
        op = Op(name=name, kind="other", flops=float(flops),
                bytes_read=self.elements(channels, side_in) * BYTES, bytes_written=out * BYTES)
        return self.add(op, (channels, side), source)

    def bottleneck(self, prefix: str, x: str, width: int, stride: int) -> str:
        c_in, side = self.shape[x]
        a = self.pointwise(f"{prefix}.relu1", (self.conv(f"{prefix}.conv1", x, c_in, width, 1,
                                                         1, side),), 1.0)
        b = self.pointwise(f"{prefix}.relu2", (self.conv(f"{prefix}.conv2", a, width, width, 3,
                                                         stride, side),), 1.0)
        c = self.conv(f"{prefix}.conv3", b, width, 4 * width, 1, 1, side // stride)
        shortcut = x
        if stride != 1 or c_in != 4 * width:
            shortcut = self.conv(f"{prefix}.downsample", x, c_in, 4 * width, 1, stride, side)
        return self.pointwise(f"{prefix}.add", (c, shortcut), 2.0)  # add, then ReLU


def resnet50(batch: int) -> nx.DiGraph:
    """ResNet-50 v1.5 for ``batch`` images of 224 x 224 (module docstring)."""
    net = _Net(batch, nx.DiGraph(model="resnet50", batch=batch, precision=Precision()))
    stem = net.conv("conv1", None, 3, 64, 7, 2, IMAGE)  # reads the images
    x = net.pool("maxpool", net.pointwise("relu", (stem,), 1.0), 3, 2)
    for stage, (width, blocks, stride) in enumerate(STAGES, start=1):
        for block in range(blocks):
            x = net.bottleneck(f"layer{stage}.{block}", x, width, stride if block == 0 else 1)
    x = net.pool("avgpool", x, 0, 1)
    weights = 2048 * CLASSES + CLASSES
    fc = Op(name="fc", kind="gemm", flops=2.0 * batch * 2048 * CLASSES + batch * CLASSES,
            bytes_read=(batch * 2048 + weights) * BYTES, bytes_written=batch * CLASSES * BYTES,
            weight_bytes=weights * BYTES, stored_bytes=weights * BYTES,
            weight_params=float(weights), k_in=2048, n_out=CLASSES, rows=batch)
    net.add(fc, (CLASSES, 1), x)
    return net.graph


VISION: dict[str, Callable[[int], nx.DiGraph]] = {"resnet50": resnet50}
"""Generated vision models by name."""


@lru_cache(maxsize=16)
def vision_graph(name: str, batch: int) -> nx.DiGraph:
    """A generated model's pass for ``batch`` images, built once per process (shared: read
    it, do not change it)."""
    return VISION[name](batch)
