"""Questions asked of many runs: sweeps and their executors, the sizing advisor and table,
what-if rankings and bands, baselines and regression checks, the error catalogue.
"""
