"""The answers auth gives: 401 with a challenge, 403 naming the scope, 503 when no key can be had."""

from __future__ import annotations

from collections.abc import Iterable

from werkzeug.exceptions import Forbidden, ServiceUnavailable, Unauthorized

from app.errors import GatewayError, PROBLEM_BASE

__all__ = ["InsufficientScope", "InvalidCredentials", "KeysUnavailable", "Rejected", "challenge"]


class Rejected(Exception):
    """A credential that is not acceptable; the message is safe to show the client (it holds no secret)."""


def challenge(scheme: str, realm: str, **params: str) -> str:
    """One WWW-Authenticate challenge (RFC 9110 11.6.1); values are quoted, never client text."""
    fields = [f'realm="{realm}"', *(f'{name}="{value}"' for name, value in params.items())]
    return f"{scheme} " + ", ".join(fields)


class InvalidCredentials(GatewayError, Unauthorized):
    """No usable credential, or one that failed verification (RFC 6750 3.1)."""

    problem = PROBLEM_BASE + "unauthorized"

    def __init__(self, detail: str, challenges: Iterable[str], presented: bool = False) -> None:
        super().__init__(detail)
        self.challenges = tuple(challenges)
        self.extra_headers = tuple(("WWW-Authenticate", value) for value in self.challenges)  # one per scheme
        self.presented = presented  # a credential was sent and failed (not merely missing)


class InsufficientScope(GatewayError, Forbidden):
    """A verified caller without a scope the route needs."""

    problem = PROBLEM_BASE + "insufficient-scope"

    def __init__(self, detail: str, challenges: Iterable[str]) -> None:
        super().__init__(detail)
        self.challenges = tuple(challenges)
        # The Bearer challenge with error="insufficient_scope" and the scope needed.
        self.extra_headers = tuple(("WWW-Authenticate", value) for value in self.challenges)


class KeysUnavailable(GatewayError, ServiceUnavailable):
    """No verification key was ever fetched and the identity provider cannot be reached."""

    problem = PROBLEM_BASE + "keys-unavailable"
    extra_headers = (("Retry-After", "5"),)  # the keys may come in a moment: ask clients to retry shortly
