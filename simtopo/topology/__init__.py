"""The server as a graph: topology files built into a networkx graph of sockets, root complexes,
switches, SoCs and storage; PCIe link rates; routes (P2P or host-routed); the all-pairs path
matrix; platform checks.
"""
