"""The simulation: task programs per stage, blocks and passes on the fabric, the pass-level
driver (memoized, full, or full where the shortcuts are known to be wrong), weight loading.
"""
