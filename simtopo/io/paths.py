"""Paths as the user typed them, and existence checks that never raise."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""An experiment's, variant's or output's name: one plain file name (letters, digits, ``.``,
``_``, ``-``; not starting with ``.``; at most 100 characters)."""


def is_file(path: str | Path) -> bool:
    """Whether ``path`` names a file; False, not an exception, for a name the system cannot
    even look up (too long, a NUL byte)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def child_path(base: str | Path, name: str, what: str = "a name") -> Path:
    """``base / name``, where ``name`` must be one plain file name (:data:`NAME`) and the
    path must stay inside ``base`` once links are followed: no name can reach or replace
    anything outside the folder the user chose."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{what} {name!r} cannot name a file: expected letters, digits, "
                          "'.', '_' and '-', starting with a letter or digit (at most 100)")
    base = Path(base)
    folder = base / name
    try:
        inside = folder.resolve().parent == base.resolve()
    except (OSError, ValueError, RuntimeError):
        inside = False
    if not inside:
        raise ConfigError(f"{display_path(folder)} leads outside {display_path(base)} (a "
                          "symbolic link?): refusing to write there")
    return folder


ALLOW = "SIMTOPO_PATHS"
"""Environment variable naming more folders (separated by ``os.pathsep``) that files may
include or refer to."""


def allowed_roots(*files: str | Path) -> list[Path]:
    """Folders whose files an input may include or refer to: the folders of ``files`` (the
    files the user named), the working folder, and those of :data:`ALLOW`."""
    roots = [Path(f).resolve().parent for f in files]
    roots.append(Path.cwd().resolve())
    roots += [Path(p).resolve() for p in os.environ.get(ALLOW, "").split(os.pathsep) if p]
    return list(dict.fromkeys(roots))


def confined(target: Path, roots: list[Path]) -> bool:
    """Is ``target`` (resolved, links followed) inside one of ``roots``?"""
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(resolved == root or root in resolved.parents for root in roots)
