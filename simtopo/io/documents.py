"""Files to validated specs: YAML reading, includes, and one-line errors with key paths.

Every failure here becomes a :class:`~simtopo.errors.ConfigError` that names the file, the line
when known, the key path, the bad value and what was expected.
"""

from __future__ import annotations

import copy
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, KeyPath
from .paths import display_path

M = TypeVar("M", bound=BaseModel)

MAX_DOCUMENT_NODES = 1_000_000
"""A document whose aliases expand beyond this many nodes is refused (alias bombs)."""


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
    """Map key paths to (file, 1-based line); refuse duplicate keys and alias bombs."""
    lines: dict[KeyPath, Origin] = {}
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, active: frozenset[int]) -> int:
        key = id(node)
        if key in active:
            raise ConfigError("recursive YAML alias (a node that contains itself)", file=file,
                              line=node.start_mark.line + 1)
        if key in sizes:
            return sizes[key]
        inner = active | {key}
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k, inner) + size(v, inner) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, inner) for item in node.value)
        if total > MAX_DOCUMENT_NODES:
            raise ConfigError(
                f"document expands to more than {MAX_DOCUMENT_NODES:,} nodes through aliases",
                file=file, line=node.start_mark.line + 1,
            )
        sizes[key] = total
        return total

    def walk(node: yaml.Node, path: KeyPath, seen: set[int]) -> None:
        lines.setdefault(path, (file, node.start_mark.line + 1))
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None:
                    if key in first_line:
                        raise ConfigError(
                            f"duplicate key {key!r} (first on line {first_line[key]})",
                            file=file, path=path, line=key_node.start_mark.line + 1,
                        )
                    first_line[key] = key_node.start_mark.line + 1
                    lines.setdefault((*path, key), (file, key_node.start_mark.line + 1))
                    walk(value_node, (*path, key), seen)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index), seen)

    size(root, frozenset())
    walk(root, (), set())
    return lines


def deep_merge(base: Any, change: Any) -> Any:
    """``change`` merged onto ``base``: mappings key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(change, dict):
        merged = dict(base)
        for key, value in change.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return change


def read_yaml(path: str | Path) -> Document:
    """Read one YAML file safely (``yaml.safe_load``), with line numbers for its key paths."""
    path = Path(path)
    file = display_path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such file", file=file) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a YAML file", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", file=file) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (bad byte at offset {exc.start})", file=file) from None
    data, lines = _parse(text, file)
    return Document(data=copy.deepcopy(data), file=file, origins=lines)


@functools.lru_cache(maxsize=256)
def _parse(text: str, file: str) -> tuple[Any, dict[KeyPath, Origin]]:
    """Data and line index of a YAML text; memoized, since sweeps and experiments read the
    same topology and preset files many times (callers get a deep copy of the data)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        lines = _index_lines(root, file) if root is not None else {}
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        raise ConfigError(f"malformed YAML: {problem}", file=file,
                          line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError("YAML nested too deeply", file=file) from None
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
