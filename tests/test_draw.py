"""The drawing: layered by depth, no overlapping labels (measured on the rendered text)."""

from __future__ import annotations

import io
import itertools
import struct

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import simtopo
from simtopo.report.draw import DPI, draw_topology, layout

from .conftest import BUILTIN, ROOT, tiny_spec


def rendered_boxes(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    boxes = []
    for text in ax.texts:
        patch = text.get_bbox_patch()
        box = patch.get_window_extent(renderer) if patch else text.get_window_extent(renderer)
        boxes.append((text.get_text(), box))
    legend = ax.get_legend()
    boxes.append(("<legend>", legend.get_window_extent(renderer)))
    return boxes, fig.bbox


def assert_no_overlap(boxes) -> None:
    """No two rendered boxes share more than half a pixel in both directions."""
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        overlap_w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        overlap_h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        assert overlap_w <= 0.5 or overlap_h <= 0.5, f"{a!r} overlaps {b!r}"


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: p.name)
def test_no_labels_overlap_and_all_fit(path):
    fig = draw_topology(simtopo.load_topology(path))
    boxes, frame = rendered_boxes(fig)
    assert_no_overlap(boxes)
    for name, box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, f"{name!r} leaves the figure"
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1, f"{name!r} leaves the figure"


def test_wide_ids_do_not_overlap():
    spec = tiny_spec()
    spec["switches"] = [{"id": name, "parent": "rc0", "uplink": {"gen": 4, "lanes": 16}}
                        for name in ("WWWWWWWWWWWWWWWWWWWW", "MMMMMMMMMMMMMMMMMMMM", "WMWMWMWMWM")]
    spec["cards"] = [{"type": "solo", "parent": name} for name in
                     ("WWWWWWWWWWWWWWWWWWWW", "MMMMMMMMMMMMMMMMMMMM", "WMWMWMWMWM")]
    fig = draw_topology(simtopo.topology_from_dict(spec))
    assert_no_overlap(rendered_boxes(fig)[0])


@pytest.mark.parametrize("suffix", [".svg", ".pdf", ".png"])
def test_drawings_are_byte_identical(ultra8, tmp_path, suffix):
    from simtopo.report.draw import save_figure

    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    save_figure(draw_topology(ultra8), first)
    save_figure(draw_topology(ultra8), second)
    assert first.read_bytes() == second.read_bytes()


def test_nodes_are_layered_by_depth(ultra8):
    pos = layout(ultra8)
    by_depth: dict[int, set[float]] = {}
    for node, (_, y) in pos.items():
        by_depth.setdefault(ultra8.graph.nodes[node]["depth"], set()).add(round(y, 9))
    assert all(len(ys) == 1 for ys in by_depth.values())
    ys = [next(iter(by_depth[d])) for d in sorted(by_depth)]
    assert ys == sorted(ys, reverse=True)  # host at the top, SoCs at the bottom
    # a parent sits above the middle of its children
    x = {n: p[0] for n, p in pos.items()}
    assert x["card0.sw"] == pytest.approx((x["card0.soc0"] + x["card0.soc3"]) / 2)


def test_committed_drawing_matches_the_current_layout(ultra8):
    """reports/topologies/ultra8.png is regenerated when the layout changes its size."""
    committed = (ROOT / "reports" / "topologies" / "ultra8.png").read_bytes()
    fresh = io.BytesIO()
    save_figure_to(draw_topology(ultra8), fresh)
    assert png_size(committed) == png_size(fresh.getvalue())


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def save_figure_to(fig, handle) -> None:
    fig.savefig(handle, format="png", dpi=DPI)
