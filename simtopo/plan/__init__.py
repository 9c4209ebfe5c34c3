"""How a model is laid out: shard layouts and the collectives they require, pipeline stages and
device mapping, memory fit on the SoCs and the host, and Qualcomm MDP partition configs.
"""
