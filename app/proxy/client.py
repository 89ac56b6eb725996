"""One requests Session per app (so per gunicorn worker), with an adapter and a pool per target."""

from __future__ import annotations

import http.cookiejar
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, Timeout

from app.proxy.settings import Target, UpstreamSettings

__all__ = ["UpstreamState", "build_session", "build_states"]

# Bytes per socket write of a request body (urllib3's default is 16 KiB); larger writes move
# big uploads with fewer system calls.
_BLOCK_SIZE = 64 * 1024


class _NoCookies(http.cookiejar.CookiePolicy):
    """Store no cookie and send none: a shared Session must never carry one user's cookie to another."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = False

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        """Refuse every cookie an upstream sets."""
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        """Send none."""
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        """Send none, whatever the domain."""
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        """Send none, whatever the path."""
        return False


class _UpstreamAdapter(HTTPAdapter):
    """An adapter whose pools write request bodies in large blocks."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        """Build the pool manager as requests does, with our block size."""
        super().init_poolmanager(connections, maxsize, block, blocksize=_BLOCK_SIZE, **pool_kwargs)


def build_session(upstreams: Mapping[str, UpstreamSettings]) -> requests.Session:
    """A Session that follows no redirect, keeps no cookie, ignores the environment, pools per target."""
    session = requests.Session()
    session.trust_env = False  # no proxies, CA bundles or ~/.netrc credentials from the environment
    session.max_redirects = 0
    session.cookies = requests.cookies.RequestsCookieJar(policy=_NoCookies())
    for upstream in upstreams.values():
        for target in upstream.targets:
            # pool_block stays False: a blocking pool waits forever and breaks under gevent.Timeout;
            # max_in_flight caps concurrency instead.
            adapter = _UpstreamAdapter(pool_connections=1, pool_maxsize=upstream.pool_size, max_retries=0)
            session.mount(target.url + "/", adapter)
    return session


@dataclass
class UpstreamState:
    """One upstream at run time in one worker: its settings, pools and calls in flight."""

    settings: UpstreamSettings
    pools: tuple[tuple[Target, HTTPConnectionPool], ...]
    timeout: Timeout
    in_flight: int = 0
    _order: Iterator[tuple[Target, HTTPConnectionPool]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._order = itertools.cycle(self.pools)

    def pick(self) -> tuple[Target, HTTPConnectionPool]:
        """The next target in round-robin order, with its connection pool."""
        return next(self._order)


def build_states(session: requests.Session, upstreams: Mapping[str, UpstreamSettings]) -> dict[str, UpstreamState]:
    """The run-time state of every upstream, using the pools the Session's adapters own."""
    states = {}
    for name, upstream in upstreams.items():
        pools = []
        for target in upstream.targets:
            adapter = session.get_adapter(target.url + "/")
            assert isinstance(adapter, HTTPAdapter)
            probe = requests.Request("GET", target.url + "/").prepare()
            # The same call requests makes per request, so forwarding and Session.request share one pool.
            pool = adapter.get_connection_with_tls_context(probe, verify=True)
            assert isinstance(pool, HTTPConnectionPool)
            pools.append((target, pool))
        timeout = Timeout(connect=upstream.connect_timeout, read=upstream.read_timeout)
        states[name] = UpstreamState(settings=upstream, pools=tuple(pools), timeout=timeout)
    return states
