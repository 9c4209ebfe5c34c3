"""The models against measurements: benchmark-shaped simulations (p2pBandwidthLatencyTest,
nccl-tests, bandwidthTest), the link and SoC fits, and the validation report.
"""
