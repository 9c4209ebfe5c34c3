"""A sweep's folder: the append-only log of its points, the manifest naming its experiment,
and the lock that keeps one sweep at a time in it.

``points.jsonl`` gets one JSON line per finished point, flushed to disk before the next (a
line torn by a kill is ignored when read back). ``sweep.json`` names the experiment whose
points the folder holds: a sweep of another experiment is refused there rather than mixed
in. While a sweep runs it holds an exclusive lock on ``.lock``, so that a second sweep into
the same folder is refused instead of computing every point again beside the first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.atomic import write_text_atomic
from ..io.paths import display_path
from .sweep import LOG

MANIFEST = "sweep.json"
LOCK = ".lock"


def read_log(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Finished records by key and fingerprint (a torn line is ignored)."""
    path = folder / LOG
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(rec, dict) and isinstance(rec.get("key"), str):
            out[(rec["key"], str(rec.get("fingerprint")))] = rec
    return out


class Log:
    """Append-only ``points.jsonl``: each record is on disk before the next point starts.
    Opening it claims the folder for ``experiment`` (its manifest and lock, module
    docstring); :meth:`close` lets it go."""

    def __init__(self, folder: Path, experiment: Path | None = None) -> None:
        path = folder / LOG
        self._lock = _claim(folder, experiment) if experiment is not None else None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(
                    b"\n"):
                with path.open("ab") as f:  # end a torn line so the next record starts clean
                    f.write(b"\n")
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write the sweep's log here ({exc.strerror})",
                              file=str(path)) from None

    def write(self, rec: Mapping[str, Any]) -> None:
        """Append one record and flush it to disk."""
        self._file.write(json.dumps(rec, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file and release the folder."""
        self._file.close()
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the lock


def _claim(folder: Path, experiment: Path) -> Any:
    """Lock ``folder`` for this sweep and check (or write) its manifest; returns the open
    lock file."""
    source = str(experiment.resolve())
    manifest = folder / MANIFEST
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / LOCK).open("a")
    except OSError as exc:
        raise ConfigError(f"cannot write the sweep's folder ({exc.strerror})",
                          file=display_path(folder)) from None
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no advisory locks on this platform: one sweep at a time, by hand
        pass
    except OSError:
        handle.close()
        raise ConfigError("another sweep is writing here now: wait for it, or give --out "
                          "another folder", file=display_path(folder)) from None
    if manifest.is_file():
        try:
            named = json.loads(manifest.read_text(encoding="utf-8")).get("experiment")
        except (OSError, ValueError, AttributeError):
            named = None
        if named != source:
            handle.close()
            raise ConfigError(f"this folder holds a sweep of {named or 'another experiment'}, "
                              f"not of {display_path(experiment)}: give --out (folder=) "
                              "another folder", file=display_path(folder))
    elif not (folder / LOG).is_file() and any(p.name != LOCK for p in folder.iterdir()):
        handle.close()
        raise ConfigError("this folder holds files that are not a sweep's: give --out "
                          "(folder=) another folder", file=display_path(folder))
    if not manifest.is_file():
        write_text_atomic(manifest, json.dumps({"experiment": source}, indent=1) + "\n")
    return handle
