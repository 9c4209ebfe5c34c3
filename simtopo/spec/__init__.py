"""Input schemas (pydantic v2, frozen, unknown keys refused): topologies and card libraries,
experiments and their variants, models and graphs, MDP configs, weight loading, baselines.
Unit strings are parsed here, at the edge; everything after this package sees SI floats.
"""
