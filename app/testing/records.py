"""What a fake upstream received (``Received``) and what it is scripted to answer (``Reply``)."""

from __future__ import annotations

import json as jsonlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["UNSET", "HeaderInput", "Received", "Reply", "mismatches"]

#: Headers as a mapping, or as (name, value) pairs when a name repeats.
HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]


class _Unset:
    """The type of ``UNSET``: an argument not given (``None`` is a JSON value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks an optional argument that was not passed."""


@dataclass(frozen=True)
class Received:
    """One request as the fake upstream saw it: the raw request-target, headers in order, the body."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    framing: str | None
    body_length: int

    @property
    def path(self) -> str:
        """The raw path, percent-encoding as sent, without the query."""
        if self.target.startswith(("http://", "https://")):
            return urlsplit(self.target).path or "/"
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The raw query string as sent ("" without one)."""
        return self.target.partition("?")[2]

    @property
    def args(self) -> dict[str, list[str]]:
        """The query parsed: each name with all its values, in order."""
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return jsonlib.loads(self.body)

    def header(self, name: str) -> str | None:
        """First value of a header (name matched case-insensitively), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of a header (name matched case-insensitively), in arrival order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


@dataclass(frozen=True)
class Reply:
    """A scripted answer: status, headers as sent (Content-Length is added unless given), body, delay."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.status, int) and 100 <= self.status <= 599):
            raise ValueError(f"status must be an int from 100 to 599, got {self.status!r}")
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError(f"delay must be finite seconds >= 0, got {self.delay!r}")

    @classmethod
    def of(cls, status: int = 200, *, json: Any = UNSET, body: bytes | str | None = None,
           headers: HeaderInput | None = None, delay: float = 0.0) -> Reply:
        """A reply from friendly arguments: ``json`` is serialised and typed application/json."""
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
        if json is not UNSET:
            if body is not None:
                raise ValueError("give json or body, not both")
            body = jsonlib.dumps(json).encode("utf-8")
            if not any(name.lower() == "content-type" for name, _ in pairs):
                pairs.insert(0, ("Content-Type", "application/json"))
        data = body.encode("utf-8") if isinstance(body, str) else body or b""
        return cls(status=status, headers=tuple(pairs), body=data, delay=float(delay))


def mismatches(received: Received, *, method: str | None = None, path: str | None = None,
               query: str | None = None, headers: Mapping[str, str | None] | None = None,
               body: bytes | None = None, json: Any = UNSET) -> list[str]:
    """Each way ``received`` differs from what was expected (a header expected as None must be absent)."""
    found: list[str] = []

    def compare(what: str, expected: object, actual: object) -> None:
        if expected != actual:
            found.append(f"{what}: expected {expected!r}, got {actual!r}")

    if method is not None:
        compare("method", method.upper(), received.method)
    if path is not None:
        compare("path", path, received.path)
    if query is not None:
        compare("query", query, received.query)
    for name, value in (headers or {}).items():
        values = received.header_all(name)
        compare(f"header {name}", value, ", ".join(values) if values else None)
    if body is not None:
        compare("body", body, received.body)
    if json is not UNSET:
        try:
            compare("json body", json, received.json())
        except ValueError:
            found.append(f"json body: expected {json!r}, got non-JSON {received.body[:200]!r}")
    return found
