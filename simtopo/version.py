"""The package version (one place: summaries and ``simtopo --version`` read it)."""

__version__ = "0.1.0"
