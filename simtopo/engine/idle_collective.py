"""One collective alone on an idle fabric: the calibration points, ``simtopo bench`` and
notebooks ask for one at a time (:mod:`simtopo.engine.collectives` runs them inside a
simulation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import RouteError
from ..topology import routing
from ..topology.graph import Topology
from .collective_result import CollectiveResult
from .collectives import Collectives
from .transfers import Fabric


def run_collective(topo: Topology, op: str, group: Sequence[str], size_bytes: float,
                   mode: str = "p2p", algorithm: str = "auto", params: Any = None,
                   root: str | None = None) -> CollectiveResult:
    """Run one collective alone on an idle fabric and return its result. A P2P collective
    over more SoCs than the platform's ``max_p2p_group`` is refused, as plans refuse it."""
    limit = topo.platform.max_p2p_group
    if mode == "p2p" and op != "send" and limit is not None and len(group) > limit:
        raise RouteError(f"a P2P {op} over {len(group)} SoCs exceeds {topo.name}'s P2P limit "
                         f"of {limit} (platform.max_p2p_group): use fewer SoCs, or "
                         f"{routing.HOST_HINT}")
    fab = Fabric.create(topo, params)
    process = Collectives(fab, solo=True).run(op, group, size_bytes, mode, algorithm, root)
    fab.env.run()
    result = process.value
    assert isinstance(result, CollectiveResult)
    return result
