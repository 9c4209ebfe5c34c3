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
"""

__version__ = "0.1.0"

from .advisor import advise_table as advise
from .errors import ConfigError, PlanError, RouteError, SimtopoError, TopologyError
from .experiment import Experiment, load_experiment
from .matrix import PATH_CLASSES, PathMatrix, path_matrix
from .result import Result, VariantResult
from .routing import BounceRoute, Route, route
from .runner import run
from .sweep_exec import SweepResult, sweep
from .topofile import load_card_library, load_topology, topology_from_dict
from .topology import Card, Topology, build_topology

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
    "sweep",
    "topology_from_dict",
]

