"""Key functions: whose counter a request counts against. None ever returns an empty key.

Flask-Limiter silently skips a limit whose key is empty, so every function here falls back to
the client address rather than let a request through uncounted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from app.auth import Principal
from app.current import current_globals, current_request

__all__ = ["by_client_address", "by_consumer", "by_header", "plan_of"]

# Values used as they are in a storage key; anything else (long, odd bytes) is hashed.
_PLAIN = re.compile(r"[A-Za-z0-9_.:@+=-]{1,64}")


def by_client_address() -> str:
    """The client's address: the TCP peer, or the one the trusted proxy hops report ([edge])."""
    # ProxyFix at the edge has already replaced REMOTE_ADDR with the address the trusted hops
    # vouch for; a client-sent X-Forwarded-For beyond them changes nothing here.
    return "addr:" + (current_request().remote_addr or "unknown")


def by_consumer() -> str:
    """The authenticated consumer (or token subject); the client address for anonymous requests."""
    principal: Principal | None = current_globals().get("principal")
    if principal is not None:
        if principal.consumer:
            return "consumer:" + _plain(principal.consumer)
        if principal.subject:
            return "subject:" + _plain(principal.subject)
    return by_client_address()


def by_header(name: str) -> Callable[[], str]:
    """A key function counting by the value of header ``name``; the client address when it is absent."""
    label = name.lower()

    def key() -> str:
        value = current_request().headers.get(name)
        return f"header:{label}:{_plain(value)}" if value else by_client_address()

    key.__name__ = f"by_header_{re.sub(r'[^a-z0-9]', '_', label)}"
    return key


def plan_of(principal: Principal | None, claim: str) -> str | None:
    """The caller's plan: its API key consumer's, else the token's ``claim``; None when it names none."""
    if principal is None:
        return None
    if principal.plan:
        return principal.plan
    value = principal.claims.get(claim)
    return value if isinstance(value, str) and value else None


def _plain(value: str) -> str:
    if _PLAIN.fullmatch(value):
        return value
    return "sha256-" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:32]
