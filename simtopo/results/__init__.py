"""Results as plain data: metrics of each simulated variant (docs/metrics.md), summaries,
data frames, comparisons; ``run`` turns an experiment into a Result.
"""
