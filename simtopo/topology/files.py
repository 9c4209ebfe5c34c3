"""Topology files: ``extends`` for variants, ``include`` for card types, then the build.

- ``extends: base.yaml`` deep-merges this file onto another topology: mappings merge key by key,
  lists and scalars replace. ``ultra8-acs.yaml`` is ``ultra8.yaml`` with one platform key changed.
- ``include: [cards/ai100-ultra.yaml]`` brings the card types of a card library (or of another
  topology) so that a card is defined once and placed many times.

Paths are relative to the file that names them. Errors name the file a key was written in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import limits
from ..constants import DEFAULT_MODEL, LinkModel
from ..errors import ConfigError, KeyPath
from ..io.documents import Document, Origin, deep_merge, read_yaml, validate_document
from ..io.paths import ALLOW, allowed_roots, confined, display_path, is_file
from ..spec.topology import CardLibrarySpec, CardTypeSpec, TopologySpec
from .build import build_topology
from .graph import Topology

CardTypes = dict[str, tuple[CardTypeSpec, str]]
"""Card type name -> (definition, file that defines it)."""



def _paths(data: Any, prefix: KeyPath = ()) -> Iterator[KeyPath]:
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, (*prefix, index))


def _add_types(into: CardTypes, new: CardTypes, doc: Document, path: KeyPath) -> None:
    for name, (card_type, file) in new.items():
        if name in into and into[name][1] != file:
            raise doc.error(f"card type {name!r} is defined both in {into[name][1]} and in "
                            f"{file}", path)
        into[name] = (card_type, file)


class _Reading:
    """One topology's files: where they may come from, how many, how deep, each read once
    (a file included along several paths is read and merged once, not once per path)."""

    def __init__(self, top: Path) -> None:
        self.roots = allowed_roots(top)
        self.done: dict[Path, tuple[Document, CardTypes]] = {}

    def resolve(self, path: Path, stack: tuple[Path, ...]) -> tuple[Document, CardTypes]:
        key = path.resolve()
        if key not in self.done:
            if len(self.done) >= limits.MAX_INCLUDED_FILES:
                raise ConfigError(f"more than {limits.MAX_INCLUDED_FILES} files through "
                                  "include and extends", file=display_path(path))
            self.done[key] = self._resolve(path, stack)
        return self.done[key]

    def _resolve(self, path: Path, stack: tuple[Path, ...]) -> tuple[Document, CardTypes]:
        """Read ``path``, follow its ``include`` and ``extends``; return merged data and card
        types."""
        doc = read_yaml(path)
        if not isinstance(doc.data, dict):
            got = "an empty file" if doc.data is None else _kind(doc.data)
            raise doc.error(f"expected a mapping of keys to values (got {got})")
        data = dict(doc.data)
        includes = data.pop("include", [])
        extends = data.pop("extends", None)
        if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
            raise doc.error(f"expected a list of file paths (got {_kind(includes)})",
                            ("include",))
        if extends is not None and not isinstance(extends, str):
            raise doc.error(f"expected a file path (got {_kind(extends)})", ("extends",))

        types: CardTypes = {}
        for i, rel in enumerate(includes):
            inc_doc, inc_types = self.follow(doc, path, rel, ("include", i), stack)
            if "host" in inc_doc.data:
                lib: CardLibrarySpec | TopologySpec = validate_document(inc_doc, TopologySpec)
            else:
                lib = validate_document(inc_doc, CardLibrarySpec)
            own = {name: (ct, inc_doc.origin_of(("card_types", name))[0])
                   for name, ct in lib.card_types.items()}
            _add_types(types, inc_types, doc, ("include", i))
            _add_types(types, own, doc, ("include", i))

        origins: dict[KeyPath, Origin] = dict(doc.origins)
        if extends is not None:
            base_doc, base_types = self.follow(doc, path, extends, ("extends",), stack)
            merged = deep_merge(base_doc.data, data)
            origins = {p: o for p in _paths(merged)
                       if (o := doc.origins.get(p) or base_doc.origins.get(p)) is not None}
            _add_types(types, base_types, doc, ("extends",))
            data = merged
        return Document(data=data, file=doc.file, origins=origins), types

    def follow(self, doc: Document, path: Path, rel: str, key: KeyPath,
               stack: tuple[Path, ...]) -> tuple[Document, CardTypes]:
        target = (path.parent / rel).resolve()
        if target in stack or target == path.resolve():
            raise doc.error(f"{rel!r} leads back to this file (a cycle of includes or "
                            "extends)", key)
        if len(stack) + 1 >= limits.MAX_INCLUDE_DEPTH:
            # the chain is the named file's doing, not the last file's (which may be a
            # shipped one that includes its card library)
            chain = [display_path(p) for p in (*stack, path, target)]
            shown = chain if len(chain) <= 5 else [*chain[:2], "...", *chain[-2:]]
            raise ConfigError(f"includes and extends go more than {limits.MAX_INCLUDE_DEPTH} "
                              f"files deep: {' -> '.join(shown)}", file=chain[0])
        if not confined(target, self.roots):
            raise doc.error(f"{rel!r} lies outside the topology's folder and the working folder "
                            f"(allow more folders with {ALLOW})", key)
        if not is_file(target):
            raise doc.error(f"file {rel!r} not found (looked for {display_path(target)})", key)
        return self.resolve(target, (*stack, path.resolve()))


def _kind(value: Any) -> str:
    """What a value is, without its content (which might be any file's)."""
    if isinstance(value, str):
        return f"a string of {len(value):,} characters"
    return {list: "a list", dict: "a mapping", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _resolve(path: Path, stack: tuple[Path, ...]) -> tuple[Document, CardTypes]:
    """``path`` with what it includes and extends (see :class:`_Reading`)."""
    return _Reading(path).resolve(path, stack)


def load_card_library(path: str | Path) -> dict[str, CardTypeSpec]:
    """Load a card library file (with what it includes); returns its card types by name."""
    doc, types = _resolve(Path(path), ())
    lib = validate_document(doc, CardLibrarySpec)
    for name in lib.card_types:
        if name in types:
            raise doc.error(f"card type {name!r} is also defined in {types[name][1]}",
                            ("card_types", name))
    return {**{name: ct for name, (ct, _) in types.items()}, **lib.card_types}


def load_topology(path: str | Path, model: LinkModel = DEFAULT_MODEL) -> Topology:
    """Load, validate and build a topology file with what it extends and includes.

    ``model`` supplies the link-model values the file leaves out (the calibrated defaults).
    """
    path = Path(path)
    doc, types = _resolve(path, ())
    spec = validate_document(doc, TopologySpec)
    for name in spec.card_types:
        if name in types:
            raise doc.error(f"card type {name!r} is also defined in {types[name][1]}",
                            ("card_types", name))
    try:
        return build_topology(spec, {name: ct for name, (ct, _) in types.items()},
                              source=doc.file, model=model)
    except ConfigError as err:
        raise doc.locate(err) from None


def topology_from_dict(data: dict[str, Any], name: str = "<dict>",
                       model: LinkModel = DEFAULT_MODEL) -> Topology:
    """Validate and build a topology given as a Python mapping (no ``extends`` or ``include``)."""
    doc = Document(data=data, file=name)
    spec = validate_document(doc, TopologySpec)
    try:
        return build_topology(spec, source=name, model=model)
    except ConfigError as err:
        raise doc.locate(err) from None
