"""Shaping JSON values: keep or drop fields by dot path, rename them, group or merge parts.

A dot path (``items.total``) walks objects by key and goes through lists element by element,
so ``items.total`` means "the total of every item". Plain functions over plain values; the
declared aggregates (app/compose/aggregate.py) and hand-written views use the same ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Shape", "allow", "deny", "dot_path", "group", "rename"]

Tree = dict[str, "Tree"]


def dot_path(text: str) -> tuple[str, ...]:
    """``"a.b"`` as ``("a", "b")``; ValueError for an empty path or segment."""
    segments = tuple(text.split("."))
    if not text or not all(segments):
        raise ValueError(f"{text!r} is not a dot path (names joined by '.')")
    return segments


def _tree(paths: Iterable[tuple[str, ...]]) -> Tree:
    """The paths as a tree of keys; an empty subtree means "this whole field"."""
    root: Tree = {}
    for path in paths:
        node = root
        for index, segment in enumerate(path):
            if segment in node and not node[segment]:
                break  # a shorter path already keeps the whole field
            node = node.setdefault(segment, {})
            if index == len(path) - 1:
                node.clear()
    return root


def _keep(value: Any, tree: Tree) -> Any:
    if isinstance(value, list):
        return [_keep(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    kept = {}
    for key, subtree in tree.items():
        if key in value:
            kept[key] = _keep(value[key], subtree) if subtree else value[key]
    return kept


def allow(value: Any, paths: Iterable[tuple[str, ...]]) -> Any:
    """Only the fields the paths name (a scalar where an object was expected is kept as it is)."""
    return _keep(value, _tree(paths))


def _drop(value: Any, path: tuple[str, ...]) -> Any:
    if isinstance(value, list):
        return [_drop(item, path) for item in value]
    if not isinstance(value, dict) or path[0] not in value:
        return value
    if len(path) == 1:
        return {key: item for key, item in value.items() if key != path[0]}
    return {**value, path[0]: _drop(value[path[0]], path[1:])}


def deny(value: Any, paths: Iterable[tuple[str, ...]]) -> Any:
    """Everything but the fields the paths name."""
    for path in paths:
        value = _drop(value, path)
    return value


def _rename(value: Any, path: tuple[str, ...], new: str) -> Any:
    if isinstance(value, list):
        return [_rename(item, path, new) for item in value]
    if not isinstance(value, dict) or path[0] not in value:
        return value
    if len(path) == 1:
        # Rebuilt in order, so the renamed field keeps its place.
        return {(new if key == path[0] else key): item for key, item in value.items()}
    return {**value, path[0]: _rename(value[path[0]], path[1:], new)}


def rename(value: Any, renames: Mapping[tuple[str, ...], str]) -> Any:
    """Each field a path names renamed (in place: its parent keeps it, under the new key)."""
    for path, new in renames.items():
        value = _rename(value, path, new)
    return value


@dataclass(frozen=True)
class Shape:
    """What to do to one part's value: allow, then deny, then rename."""

    allow: tuple[tuple[str, ...], ...] = ()
    deny: tuple[tuple[str, ...], ...] = ()
    rename: Mapping[tuple[str, ...], str] = field(default_factory=dict)

    def apply(self, value: Any) -> Any:
        """The shaped value."""
        if self.allow:
            value = allow(value, self.allow)
        if self.deny:
            value = deny(value, self.deny)
        if self.rename:
            value = rename(value, self.rename)
        return value


def group(parts: Iterable[tuple[str, Any, bool]]) -> dict[str, Any]:
    """One object from ``(name, value, merge)`` parts: under its name, or its fields at the top level.

    A merged part that is not an object (a list, a string) stays under its name; later parts win.
    """
    document: dict[str, Any] = {}
    for name, value, merge in parts:
        if merge and isinstance(value, dict):
            document.update(value)
        else:
            document[name] = value
    return document
