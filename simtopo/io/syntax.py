"""The two syntaxes simtopo reads, with YAML 1.2 semantics and bounded work.

YAML is read with YAML 1.2's core schema, not PyYAML's 1.1 defaults: only ``true`` and
``false`` are booleans (``yes``, ``no``, ``on``, ``off`` stay strings), ``1:30`` is a string
(not sexagesimal 90), ``010`` is ten, and ``1e9`` is a number. A document may nest at most
:data:`~simtopo.limits.MAX_NESTING` levels, hold integers of at most
:data:`~simtopo.limits.MAX_DIGITS` digits, and hold (or expand aliases by) at most
:data:`~simtopo.limits.MAX_DOCUMENT_NODES` values. JSON gets the same limits and refuses
duplicate keys, as YAML does. Every failure is one line (:class:`~simtopo.errors.ConfigError`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from .. import limits
from ..errors import ConfigError

_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


class Loader(yaml.SafeLoader):
    """A safe loader with YAML 1.2 core-schema scalars (module docstring)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                           "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
# PyYAML matches a resolver at the start of the scalar only: anchor both ends
Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                             re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(rf"^(?:{_INT.pattern})$"),
                             list("-+0123456789"))
Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(rf"^(?:{_FLOAT.pattern})$"),
                             list("-+.0123456789"))


def _digits(text: str, line: int | None, file: str) -> None:
    if sum(c.isdigit() for c in text) > limits.MAX_DIGITS:
        raise ConfigError(f"a number of more than {limits.MAX_DIGITS} digits", file=file,
                          line=line)


def _int(loader: Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    _digits(text, node.start_mark.line + 1, loader.name)
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    return int(text, 10)


def _float(loader: Loader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node)
    _digits(text, node.start_mark.line + 1, loader.name)
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(text)


Loader.add_constructor("tag:yaml.org,2002:int", _int)
Loader.add_constructor("tag:yaml.org,2002:float", _float)


def _size(root: yaml.Node, file: str) -> None:
    """Refuse recursive aliases, nesting beyond the limit and alias bombs, walking the
    composed tree without recursion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            children = ([n for pair in node.value for n in pair]
                        if isinstance(node, yaml.MappingNode) else
                        node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            on_path.discard(key)
            continue
        if key in on_path:
            raise ConfigError("recursive YAML alias (a node that contains itself)", file=file,
                              line=node.start_mark.line + 1)
        if key in sizes:
            continue
        if depth > limits.MAX_NESTING:
            raise ConfigError(f"YAML nested more than {limits.MAX_NESTING} levels deep",
                              file=file, line=node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, depth, True))
        children = ([n for pair in node.value for n in pair]
                    if isinstance(node, yaml.MappingNode) else
                    node.value if isinstance(node, yaml.SequenceNode) else [])
        stack.extend((c, depth + 1, False) for c in reversed(children))
    expanded, distinct = sizes[id(root)], len(sizes)
    if expanded - distinct > limits.MAX_DOCUMENT_NODES:
        raise ConfigError(f"aliases expand the document by more than "
                          f"{limits.MAX_DOCUMENT_NODES:,} values", file=file)


if yaml.__with_libyaml__:
    class _FastLoader(yaml.cyaml.CParser, yaml.constructor.SafeConstructor,  # type: ignore[misc]
                      yaml.resolver.Resolver):
        """:class:`Loader` on libyaml's parser and composer (PyYAML's wheels ship it),
        which composes a 100,000-op graph file in 5 s where the pure-Python one takes 30."""

        yaml_implicit_resolvers = Loader.yaml_implicit_resolvers
        yaml_constructors = Loader.yaml_constructors

        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _COMPOSER: type = _FastLoader
else:  # pragma: no cover - a PyYAML built without libyaml
    _COMPOSER = Loader


def _next_event(parser: Any, deep: ConfigError) -> Any:
    """The parser's next event; libyaml's own nesting limit (1,000) reads as ours."""
    try:
        return parser.get_event()
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in str(exc.problem):
            line = exc.problem_mark.line + 1 if exc.problem_mark else None
            raise ConfigError(deep.message, file=deep.file, line=line) from None
        raise


def _check_nesting(text: str, file: str) -> bool:
    """Refuse nesting beyond the limit from the event stream, before anything recursive
    (either composer) sees the document, and documents of more values than the limit before
    they take memory; returns whether it has aliases."""
    parser = _COMPOSER(text)
    depth, aliases, values = 0, False, 0
    deep = ConfigError(f"YAML nested more than {limits.MAX_NESTING} levels deep", file=file)
    try:
        while (event := _next_event(parser, deep)) is not None:
            if isinstance(event, yaml.NodeEvent):
                values += 1
                if values > limits.MAX_DOCUMENT_NODES:
                    raise ConfigError(f"more than {limits.MAX_DOCUMENT_NODES:,} values in one "
                                      "document (a graph this large belongs in an ONNX file)",
                                      file=file, line=event.start_mark.line + 1)
            if isinstance(event, yaml.AliasEvent):
                aliases = True
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limits.MAX_NESTING:
                    raise ConfigError(f"YAML nested more than {limits.MAX_NESTING} levels "
                                      "deep", file=file, line=event.start_mark.line + 1)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.StreamEndEvent):
                break
    finally:
        parser.dispose()
    return aliases


def compose_yaml(text: str, file: str) -> yaml.Node | None:
    """The node tree of a YAML text, checked against the limits."""
    aliases = _check_nesting(text, file)
    loader = _COMPOSER(text)
    loader.name = file
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if root is not None and aliases:  # without aliases, a tree as deep as checked above
        _size(root, file)
    return root


def construct_yaml(root: yaml.Node, file: str) -> Any:
    """The Python data of a composed (and checked) YAML tree."""
    loader = Loader("")
    loader.name = file
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _nesting(data: Any) -> int:
    """Levels of mappings and lists (a top-level object is one), as YAML's are counted."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1)
                         for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def parse_json(text: str, file: str) -> Any:
    """JSON data from ``text``: duplicate keys, deep nesting and huge numbers refused in one
    line naming ``file``."""

    def number(digits: str) -> int:
        if sum(c.isdigit() for c in digits) > limits.MAX_DIGITS:
            raise ConfigError(f"a number of more than {limits.MAX_DIGITS} digits")
        return int(digits)

    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=number)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"malformed JSON: {exc.msg}", file=file, line=exc.lineno) from None
    except ConfigError as err:
        raise err.located(file) from None
    except RecursionError:
        raise ConfigError(f"JSON nested more than {limits.MAX_NESTING} levels deep",
                          file=file) from None
    except ValueError as exc:  # a number the decoder cannot convert
        raise ConfigError(f"malformed JSON: {exc}", file=file) from None
    if _nesting(data) > limits.MAX_NESTING:
        raise ConfigError(f"JSON nested more than {limits.MAX_NESTING} levels deep", file=file)
    return data
