"""DNS discovery: a target named by host name becomes one endpoint per address behind the name."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

__all__ = ["MAX_ADDRESSES", "Resolver", "is_address", "resolve_host"]

#: What resolves a host name and port to addresses; tests pass one they control.
Resolver = Callable[[str, int], list[str]]

#: Addresses used per host name: a name behind which hundreds of instances hide is better
#: served by a balancer in front of them than by one pool each in every worker.
MAX_ADDRESSES = 16


def is_address(host: str) -> bool:
    """Whether ``host`` is an IP literal (used as is, never resolved)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve_host(host: str, port: int) -> list[str]:
    """Every TCP address of ``host``, sorted so that the same answer gives the same order.

    Under gevent's patching ``getaddrinfo`` runs in the resolver's thread pool: it does not
    block the event loop. Raises OSError when the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})
