"""Atomic writers: a reader sees the old file (or folder) or the whole new one, never part of it.

What they will not do: replace anything but a regular file (a device node, a symbolic link or
a folder named as an output is refused, never overwritten), or replace a folder that the
caller does not recognise as its own output. Temporary files and folders carry the writing
process's id, so that what a killed run left behind is removed by the next one.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigError

TEMPORARY = ".tmp."
"""Marks a temporary sibling: ``.<name>.tmp.<pid>.<random>``."""


def _failed(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write {path} ({exc.strerror or exc})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def remove_stale(path: Path) -> None:
    """Remove temporary siblings of ``path`` that a killed writer left (their process is
    gone)."""
    prefix = f".{path.name}{TEMPORARY}"
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        if not sibling.name.startswith(prefix):
            continue
        pid = sibling.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


def check_output(path: str | Path) -> Path:
    """``path`` as an output: refused (one line) when empty or when it exists as anything but
    a regular file (a device node, a symbolic link, a folder)."""
    if str(path) == "":
        raise ConfigError("an output path is empty")
    path = Path(path)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return path
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot write {path} ({getattr(exc, 'strerror', None) or exc})") \
            from None
    if not stat.S_ISREG(info.st_mode):
        what = ("a symbolic link" if stat.S_ISLNK(info.st_mode) else
                "a folder" if stat.S_ISDIR(info.st_mode) else "a device or special file")
        raise ConfigError(f"{path} is {what}, not a regular file: refusing to replace it")
    return path


def _temporary(path: Path) -> str:
    return f".{path.name}{TEMPORARY}{os.getpid()}."


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place: a reader
    sees the old file or the whole new one, never half of it. I/O failures become one line."""
    path = check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=_temporary(path), dir=path.parent)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot write {path} ({getattr(exc, 'strerror', None) or exc})") \
            from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _failed(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system cannot, and the caller falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def write_directory_atomic(path: str | Path, fill: Callable[[Path], object],
                           ours: Callable[[Path], bool] = lambda _p: False) -> Path:
    """Call ``fill`` on an empty temporary folder beside ``path``, then put it in place of
    ``path``: on Linux the two folders are swapped in one atomic step and the old one removed;
    elsewhere the previous folder is renamed aside and the new one renamed in (``path`` is
    then briefly absent: POSIX has no portable atomic swap of folders). If ``fill`` fails, the
    temporary folder goes and ``path`` is untouched.

    An existing ``path`` is replaced only if ``ours(path)`` recognises it as this kind of
    output (or it is empty): a folder simtopo did not write is never removed."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ConfigError(f"{path} exists and is not a folder: refusing to replace it")
    if path.is_dir() and any(path.iterdir()) and not ours(path):
        raise ConfigError(f"{path} holds files simtopo did not write: refusing to replace it "
                          "(choose another folder, or empty it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        tmp = Path(tempfile.mkdtemp(prefix=_temporary(path), dir=path.parent))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot write {path} ({getattr(exc, 'strerror', None) or exc})") \
            from None
    try:
        fill(tmp)
        umask = _umask()
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder the usual mode
        for child in tmp.iterdir():
            os.chmod(child, 0o666 & ~umask)
        if path.exists() and _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous folder
        else:
            old = None
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=_temporary(path), dir=path.parent))
                os.replace(path, old / path.name)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _failed(path, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))
