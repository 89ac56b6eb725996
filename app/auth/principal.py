"""Who the caller is, once verified, and the headers that tell the services behind."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Principal", "identity_headers"]

# A header value sent as it is: visible ASCII and inner spaces, nothing a proxy or parser could misread.
_PLAIN = re.compile(r"[\x21-\x7E](?:[\x20-\x7E]*[\x21-\x7E])?")


@dataclass(frozen=True)
class Principal:
    """A verified caller: by token (``scheme="jwt"``) or by API key (``scheme="api_key"``)."""

    scheme: str
    subject: str | None
    consumer: str | None
    scopes: frozenset[str]
    plan: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)


def _header_value(value: object) -> str:
    """Plain ASCII strings as they are; anything else as compact, ASCII-only JSON."""
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True, default=str)


def identity_headers(principal: Principal, prefix: str, forward_claims: tuple[str, ...]) -> dict[str, str]:
    """The identity headers for the upstream: ``<prefix>Subject``, ``Consumer``, ``Scopes``, claims..."""
    headers = {f"{prefix}Scheme": principal.scheme}
    if principal.subject is not None:
        headers[f"{prefix}Subject"] = _header_value(principal.subject)
    if principal.consumer is not None:
        headers[f"{prefix}Consumer"] = _header_value(principal.consumer)
    headers[f"{prefix}Scopes"] = " ".join(sorted(principal.scopes))
    if principal.plan is not None:
        headers[f"{prefix}Plan"] = _header_value(principal.plan)
    for claim in forward_claims:
        if claim in principal.claims:
            headers[f"{prefix}Claim-{claim}"] = _header_value(principal.claims[claim])
    return headers
