"""What runs: decoder presets and op graphs per pass shape, hand-written and ONNX graphs, and
the cost of one op on a SoC (the roofline).
"""
