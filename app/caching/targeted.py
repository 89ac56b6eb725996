"""Targeted cache-control fields (RFC 9213): CDN-Cache-Control and an operator-named one, as Structured Fields.

A targeted field is an RFC 8941 dictionary; one that does not parse, or gives a delta-seconds directive a
non-integer value, is ignored as a whole (and Cache-Control applies instead).
"""

from __future__ import annotations

import re

__all__ = ["targeted_directives"]

_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_BARE = re.compile(r'-?\d{1,15}(\.\d{1,3})?|"(?:[^"\\]|\\["\\])*"|[A-Za-z*][A-Za-z0-9:/!#$%&\'*+.^_`|~-]*|'
                   r":[A-Za-z0-9+/=]*:|\?[01]")
_PARAMETER = re.compile(rf";\s*{_KEY.pattern}(=(?:{_BARE.pattern}))?")
_INTEGER = re.compile(r"\d{1,15}")
# Directives whose value is delta-seconds: an integer item, or the field is not valid.
_SECONDS = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})


def targeted_directives(headers: list[tuple[str, str]], fields: tuple[str, ...]) -> dict[str, str | None] | None:
    """The directives of the first targeted field present with a valid, non-empty value; None: use Cache-Control."""
    for field in fields:
        wanted = field.lower()
        values = [value for name, value in headers if name.lower() == wanted]
        if values:
            directives = _dictionary(", ".join(values))
            if directives:
                return directives
    return None


def _dictionary(value: str) -> dict[str, str | None] | None:
    """An RFC 8941 dictionary's members (parameters dropped; a True item as None), or None when it is invalid."""
    members: dict[str, str | None] = {}
    for member in _split(value):
        key = _KEY.match(member or "")
        if member is None or key is None:
            return None
        rest = member[key.end():]
        item: str | None = None
        if rest.startswith("="):
            item, rest = _item(rest[1:])
            if item is None:
                return None
        if rest and not _all_parameters(rest):
            return None
        name = key.group(0)
        if name in _SECONDS and (item is None or not _INTEGER.fullmatch(item)):
            return None
        members[name] = None if item is None or item == "?1" else item.strip('"')
    return members


def _item(text: str) -> tuple[str | None, str]:
    """A bare item and the parameters after it."""
    match = _BARE.match(text)
    if match is None:
        return None, ""
    return match.group(0), text[match.end():]


def _all_parameters(text: str) -> bool:
    position = 0
    while position < len(text):
        match = _PARAMETER.match(text, position)
        if match is None:
            return False
        position = match.end()
    return True


def _split(value: str) -> list[str | None]:
    """Members split on commas outside strings; None marks an empty member (invalid)."""
    members: list[str | None] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if quoted:
            escaped = not escaped and char == "\\"
            quoted = escaped or char != '"'
        elif char == '"':
            quoted = True
        elif char == ",":
            members.append("".join(current).strip() or None)
            current = []
            continue
        current.append(char)
    members.append("".join(current).strip() or None)
    return [] if members == [None] else members
