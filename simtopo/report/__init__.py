"""Views of results and topologies: figures, the topology drawing and text views, the Chrome
trace, report.md and the report folder.
"""
