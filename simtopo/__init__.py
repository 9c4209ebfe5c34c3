"""simtopo: a topology-aware simulator and cost model for multi-accelerator PCIe servers.

Run an experiment and look at its results::

    import simtopo
    result = simtopo.run("experiments/ultra8.yaml")
    result.to_dataframe()                      # one row per variant, one column per metric
    result.comparisons()                       # P2P over host-routed speed-ups
    result.variant("tp16-p2p").plot_timeline()
    result.write_report("reports/ultra8")

Load a topology, ask for routes and the all-pairs path matrix, check the platform::

    topo = simtopo.load_topology("topologies/ultra8.yaml")
    topo.route("card0.soc0", "card4.soc0")            # P2P through the root complex
    topo.route("card0.soc0", "card4.soc0", mode="host")  # bounced through host memory
    topo.path_matrix().to_dataframe()

Sweep settings, and ask the advisor for a layout::

    s = simtopo.sweep("experiments/ultra8.yaml", {"plan.tp": [8, 16]}, variants=["tp16-p2p"])
    s.frame                                    # one row per point
    s.plot_scaling()
    simtopo.advise("llama-2-70b", "topologies/ultra8.yaml", objective="throughput")

The names below are imported on first use (PEP 562), so that ``import simtopo`` and the
command line start without numpy, pandas, matplotlib or SimPy.
"""

from __future__ import annotations

import importlib

from .version import __version__

TYPE_CHECKING = False
"""Not ``typing.TYPE_CHECKING``: importing ``typing`` here would put 5 ms of imports before
``python -m simtopo`` can catch a Ctrl-C (type checkers know this name all the same)."""

_EXPORTS: dict[str, tuple[str, str]] = {
    "PATH_CLASSES": ("topology.matrix", "PATH_CLASSES"),
    "BounceRoute": ("topology.routing", "BounceRoute"),
    "Card": ("topology.graph", "Card"),
    "ConfigError": ("errors", "ConfigError"),
    "Experiment": ("spec.experiment", "Experiment"),
    "PathMatrix": ("topology.matrix", "PathMatrix"),
    "PlanError": ("errors", "PlanError"),
    "Result": ("results.result", "Result"),
    "Route": ("topology.routing", "Route"),
    "RouteError": ("errors", "RouteError"),
    "SimtopoError": ("errors", "SimtopoError"),
    "SweepResult": ("analysis.executors", "SweepResult"),
    "Topology": ("topology.graph", "Topology"),
    "TopologyError": ("errors", "TopologyError"),
    "VariantResult": ("results.result", "VariantResult"),
    "advise": ("analysis.advisor", "advise_table"),
    "build_topology": ("topology.build", "build_topology"),
    "load_card_library": ("topology.files", "load_card_library"),
    "load_experiment": ("spec.experiment", "load_experiment"),
    "load_topology": ("topology.files", "load_topology"),
    "path_matrix": ("topology.matrix", "path_matrix"),
    "route": ("topology.routing", "route"),
    "run": ("results.run", "run"),
    "run_collective": ("engine.idle_collective", "run_collective"),
    "sweep": ("analysis.executors", "sweep"),
    "topology_from_dict": ("topology.files", "topology_from_dict"),
}
"""Public name -> (module under simtopo, attribute)."""

__all__ = [
    "PATH_CLASSES",
    "BounceRoute",
    "Card",
    "ConfigError",
    "Experiment",
    "PathMatrix",
    "PlanError",
    "Result",
    "Route",
    "RouteError",
    "SimtopoError",
    "SweepResult",
    "Topology",
    "TopologyError",
    "VariantResult",
    "__version__",
    "advise",
    "build_topology",
    "load_card_library",
    "load_experiment",
    "load_topology",
    "path_matrix",
    "route",
    "run",
    "run_collective",
    "sweep",
    "topology_from_dict",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'simtopo' has no attribute {name!r}")
    module, attribute = target
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and IDEs see
    from typing import Any

    from .analysis.advisor import advise_table as advise
    from .analysis.executors import SweepResult, sweep
    from .engine.idle_collective import run_collective
    from .errors import ConfigError, PlanError, RouteError, SimtopoError, TopologyError
    from .results.result import Result, VariantResult
    from .results.run import run
    from .spec.experiment import Experiment, load_experiment
    from .topology.build import build_topology
    from .topology.files import load_card_library, load_topology, topology_from_dict
    from .topology.graph import Card, Topology
    from .topology.matrix import PATH_CLASSES, PathMatrix, path_matrix
    from .topology.routing import BounceRoute, Route, route
