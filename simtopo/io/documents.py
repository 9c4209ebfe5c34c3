"""Files to validated specs: YAML reading, includes, and one-line errors with key paths.

Every failure here becomes a :class:`~simtopo.errors.ConfigError` that names the file, the line
when known, the key path, the bad value and what was expected.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import stat
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .. import limits
from ..errors import ConfigError, KeyPath
from .paths import display_path
from .syntax import compose_yaml, construct_yaml, parse_json

M = TypeVar("M", bound=BaseModel)

Origin = tuple[str, int]
"""Where a key was written: (file, 1-based line)."""


@dataclass(frozen=True)
class Document:
    """Parsed data, the file it is named by, and where each key path was written.

    ``origins`` maps key paths to (file, line); a document merged from several files
    (``extends``) keeps the file each key came from, so errors point at the right file.
    """

    data: Any
    file: str
    origins: Mapping[KeyPath, Origin] = field(default_factory=dict)

    def origin_of(self, path: KeyPath) -> tuple[str, int | None]:
        """File and line of the deepest prefix of ``path`` that some file spells out."""
        for end in range(len(path), -1, -1):
            origin = self.origins.get(tuple(path[:end]))
            if origin is not None:
                return origin
        return self.file, None

    def error(self, message: str, path: KeyPath = (), cls: type[ConfigError] = ConfigError
              ) -> ConfigError:
        """An error located where ``path`` was written."""
        file, line = self.origin_of(path)
        return cls(message, file=file, path=path, line=line)

    def locate(self, err: ConfigError) -> ConfigError:
        """``err`` (raised with a key path only) attributed to this document."""
        file, line = self.origin_of(err.path)
        return err.located(file, line)


def _index_lines(root: yaml.Node, file: str) -> dict[KeyPath, Origin]:
    """Map key paths to (file, 1-based line); refuse duplicate keys. Iterative: the depth is
    the input's (checked by :func:`simtopo.io.syntax.compose_yaml`)."""
    lines: dict[KeyPath, Origin] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        lines.setdefault(path, (file, node.start_mark.line + 1))
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            children = []
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is None:
                    continue
                if key in first_line:
                    raise ConfigError(f"duplicate key {key!r} (first on line {first_line[key]})",
                                      file=file, path=path, line=key_node.start_mark.line + 1)
                first_line[key] = key_node.start_mark.line + 1
                lines.setdefault((*path, key), (file, key_node.start_mark.line + 1))
                children.append((value_node, (*path, key)))
            stack.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, index))
                         for index, item in reversed(list(enumerate(node.value))))
    return lines


def deep_merge(base: Any, change: Any) -> Any:
    """``change`` merged onto ``base``: mappings key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(change, dict):
        merged = dict(base)
        for key, value in change.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return change


def read_bytes(path: Path, file: str, what: str, limit: int = limits.MAX_FILE_BYTES) -> bytes:
    """The bytes of an input file: refused in one line when missing, a folder, not a regular
    file, or larger than ``limit``."""
    try:
        # opened without blocking and checked on the open descriptor: a FIFO would block,
        # /dev/zero never end, and a check of the name could be raced
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                raise ConfigError(f"not a regular file (a device, pipe or socket), expected "
                                  f"{what}", file=file)
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError("no such file", file=file) from None
    except IsADirectoryError:
        raise ConfigError(f"is a directory, expected {what}", file=file) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read file ({getattr(exc, 'strerror', None) or exc})",
                          file=file) from None
    if len(raw) > limit:
        raise ConfigError(f"larger than {limit // 2**20} MiB: not {what}", file=file)
    return raw


def _read_text(path: Path, file: str, what: str) -> str:
    raw = read_bytes(path, file, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (bad byte at offset {exc.start})", file=file) from None


def read_json(path: str | Path) -> Document:
    """Read one JSON file (:func:`simtopo.io.syntax.parse_json`: duplicate keys, deep
    nesting and huge numbers refused)."""
    path = Path(path)
    file = display_path(path)
    return Document(data=parse_json(_read_text(path, file, "a JSON file"), file), file=file)


def read_yaml(path: str | Path) -> Document:
    """Read one YAML file safely (``yaml.safe_load``), with line numbers for its key paths."""
    path = Path(path)
    file = display_path(path)
    data, lines = _parse(_read_text(path, file, "a YAML file"), file)
    return Document(data=copy.deepcopy(data), file=file, origins=lines)


@functools.lru_cache(maxsize=256)
def _parse(text: str, file: str) -> tuple[Any, dict[KeyPath, Origin]]:
    """Data and line index of a YAML text; memoized, since sweeps and experiments read the
    same topology and preset files many times (callers get a deep copy of the data)."""
    try:
        root = compose_yaml(text, file)
        lines = _index_lines(root, file) if root is not None else {}
        data = construct_yaml(root, file) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        raise ConfigError(f"malformed YAML: {problem}", file=file,
                          line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError(f"YAML nested more than {limits.MAX_NESTING} levels deep",
                          file=file) from None
    return data, lines


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the (sub)model at ``loc``, for 'unknown key' messages."""
    current: Any = model
    for part in loc:
        current = _descend(current, part)
        if current is None:
            return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _descend(annotation: Any, part: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(part) if isinstance(part, str) else None
        return _unwrap(info.annotation) if info is not None else None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple) and args and isinstance(part, int):
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated to the model or container inside."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


def _message(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    value = err.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {loc[-1]!r}{hint}"
    if kind == "missing":
        return "missing required key"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if msg.startswith("Input should be"):
        msg = "expected" + msg[len("Input should be"):]
    return f"{msg} (got {_short(value)})"


def _loc_path(loc: tuple[Any, ...]) -> KeyPath:
    # pydantic adds function-validator names to locations of union members; keep data keys only
    return tuple(p for p in loc if isinstance(p, int) or not str(p).startswith("function-"))


def validate_document(doc: Document, model: type[M], path: KeyPath = ()) -> M:
    """Validate ``doc.data`` (or the part at ``path``) against ``model``; errors get key paths."""
    data = doc.data
    for part in path:
        data = data[part]
    if not isinstance(data, dict):
        got = "an empty file" if data is None and not path else _short(data)
        raise doc.error(f"expected a mapping of keys to values (got {got})", path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = (*path, *_loc_path(tuple(first["loc"])))
        message = _message(first, model)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        raise doc.error(message, loc) from None
