"""simtopo: a topology-aware simulator and cost model for multi-accelerator PCIe servers.

Load a topology, ask for routes and the all-pairs path matrix, check the platform::

    import simtopo
    topo = simtopo.load_topology("topologies/ultra8.yaml")
    topo.route("card0.soc0", "card4.soc0")            # P2P through the root complex
    topo.route("card0.soc0", "card4.soc0", mode="host")  # bounced through host memory
    topo.path_matrix().to_dataframe()
"""

from .errors import ConfigError, PlanError, RouteError, SimtopoError, TopologyError
from .matrix import PATH_CLASSES, PathMatrix, path_matrix
from .routing import BounceRoute, Route, route
from .topofile import load_card_library, load_topology, topology_from_dict
from .topology import Card, Topology, build_topology

__version__ = "0.1.0"

__all__ = [
    "PATH_CLASSES",
    "BounceRoute",
    "Card",
    "ConfigError",
    "PathMatrix",
    "PlanError",
    "Route",
    "RouteError",
    "SimtopoError",
    "Topology",
    "TopologyError",
    "__version__",
    "build_topology",
    "load_card_library",
    "load_topology",
    "path_matrix",
    "route",
    "topology_from_dict",
]
