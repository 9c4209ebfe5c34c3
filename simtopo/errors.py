"""The project's error hierarchy: every failure a user can cause is one of these.

Each error renders as one line, ``file:line: key.path: message``, where the message names the
bad value and what was expected. The CLI prints that line and exits 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

KeyPath = tuple[str | int, ...]


def format_key_path(path: Sequence[str | int]) -> str:
    """Render a key path the way a user reads it: ``switches[1].uplink.lanes``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class SimtopoError(Exception):
    """Base class of every error simtopo raises on purpose."""


class ConfigError(SimtopoError):
    """A bad input file or value: says where (file, line, key path) and what is wrong."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        path: Sequence[str | int] = (),
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.path: KeyPath = tuple(path)
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.path:
            where.append(format_key_path(self.path))
        return ": ".join([*where, self.message])

    def located(self, file: str, line: int | None = None) -> ConfigError:
        """The same error attributed to ``file`` (kept if it already names one)."""
        if self.file is not None:
            return self
        return type(self)(self.message, file=file, path=self.path, line=line)


class TopologyError(ConfigError):
    """A topology that parses but cannot be built: unknown ids, cycles, impossible wiring."""


class PlanError(ConfigError):
    """A partition plan that does not fit the model or the topology."""


class RouteError(SimtopoError):
    """A transfer the platform cannot carry as asked (names the switch, root complex or link)."""
