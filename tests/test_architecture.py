"""The layout keeps its promises: light imports, small modules, a map that names every module.

The import layers themselves are import-linter's contracts in pyproject.toml (``.ci/run`` runs
``lint-imports``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "simtopo"
HEAVY = ("numpy", "pandas", "matplotlib", "simpy")
MAX_LINES = 400


def _loaded(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip().splitlines()
    return [m for m in out[-1].split(",") if m] if out else []


def test_import_simtopo_loads_no_heavy_library():
    code = f"import sys, simtopo; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    assert _loaded(code) == []


def test_the_public_names_resolve_lazily():
    code = ("import sys, simtopo; assert 'numpy' not in sys.modules; simtopo.Topology; "
            "print('numpy' if 'numpy' in sys.modules else '')")
    assert _loaded(code) == []  # a data class alone needs no numpy
    import simtopo

    assert sorted(simtopo.__all__) == sorted(set(simtopo.__all__))
    for name in simtopo.__all__:
        assert getattr(simtopo, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        simtopo.nope  # noqa: B018


def test_the_command_line_starts_without_heavy_libraries():
    code = ("import contextlib, io, sys\n"
            "from simtopo.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert _loaded(code) == []


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it"


def test_the_architecture_page_names_every_module():
    """docs/architecture.md is the map of simtopo/: every module is on it."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        name = str(rel.parent) + "/" if rel.name == "__init__.py" else str(rel)
        if rel.parent == Path(".") and rel.name == "__init__.py":
            continue
        if f"`{name}`" not in page and f"`{rel.name}`" not in page:
            missing.append(str(rel))
    assert missing == []
