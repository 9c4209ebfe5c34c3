"""Views offered on data objects for notebooks, without the data depending on the views.

``topology.draw()`` or ``result.plot_comparison()`` are conveniences: the drawing lives in
:mod:`simtopo.report`, a later stage of the pipeline that imports the data modules, not the
other way round. A data class names the view by its dotted path and this module imports it on
first use (as pandas' ``DataFrame.plot`` defers its plotting backend), so importing a data
module never imports matplotlib or a report module, and the import layers stay one-way.
"""

from __future__ import annotations

import importlib
from typing import Any


def view(path: str) -> Any:
    """The function ``"package.module:function"`` under :mod:`simtopo`, imported now."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(f"simtopo.{module}"), name)
