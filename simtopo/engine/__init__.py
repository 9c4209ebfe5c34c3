"""The transfer engine: max-min fair sharing of links, host memory and DMA engines in SimPy,
transfers (P2P, host-routed bounces, host <-> device) and collectives decomposed into them.
"""
