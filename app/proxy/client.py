"""One requests Session per app (so per gunicorn worker), with an adapter and a pool per target."""

from __future__ import annotations

import functools
import http.cookiejar
import math
import select
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import requests
from gevent import monkey
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection

from app.proxy.balance import Balancer, build_balancer
from app.proxy.discovery import MAX_ADDRESSES, is_address
from app.proxy.endpoints import Endpoint
from app.proxy.settings import Target, UpstreamSettings
from app.proxy.wire import UpstreamResponse

__all__ = ["UpstreamState", "build_session", "build_states", "endpoint_pool"]

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


# The operating system's poll, not gevent's cooperative one: a poll with a zero timeout never
# blocks, so it needs no watcher, no timer and no switch to the hub.
_system_poll = monkey.get_original("select", "poll")


def _still_open(sock: Any) -> bool:
    """Whether a pooled connection can carry another request: nothing to read, neither data nor EOF."""
    poller = _system_poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class _ReuseCheck:
    """urllib3's test before a pooled connection is reused (readable means closed or broken), cheaper.

    urllib3 asks ``select.poll``, which under gevent is a cooperative poll: a watcher, a timer and
    a switch to the hub, about 13 µs on every forwarded call; the system's poll costs about 1 µs.
    """

    sock: Any

    @property
    def is_connected(self) -> bool:
        """Whether the connection can carry another request."""
        return self.sock is not None and _still_open(self.sock)


class _Connection(_ReuseCheck, HTTPConnection):
    # Answers are read by h11 (app/proxy/wire.py), through http.client's seam for the response class.
    response_class = UpstreamResponse


class _TlsConnection(_ReuseCheck, HTTPSConnection):
    response_class = UpstreamResponse


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


class _UpstreamAdapter(HTTPAdapter):
    """An adapter whose pools write bodies in large blocks, check reused connections and read answers strictly."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        """Build the pool manager as requests does, with our block size and connection classes."""
        super().init_poolmanager(connections, maxsize, block, blocksize=_BLOCK_SIZE, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


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
            # One pool per address behind the target's name (discovery): the adapter's pool manager
            # must hold them all, or it would close one still in use to make room.
            adapter = _UpstreamAdapter(pool_connections=2 * MAX_ADDRESSES, pool_maxsize=upstream.pool_size,
                                       max_retries=0)
            session.mount(target.url + "/", adapter)
    return session


class UpstreamState:
    """One upstream at run time in one worker: its settings, endpoints, balancer and calls in flight."""

    def __init__(self, settings: UpstreamSettings, timeout: Timeout,
                 make_pool: Callable[[Target, str], HTTPConnectionPool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.timeout = timeout
        self.clock = clock
        self.in_flight = 0
        self.balancer: Balancer = build_balancer(settings.resilience.balance)
        self.endpoints: tuple[Endpoint, ...] = ()
        self._make_pool = make_pool
        # IP literals are their own address; host names wait for discovery's first answer.
        self._addresses: dict[Target, tuple[str, ...]] = {
            target: (target.host,) if is_address(target.host) else () for target in settings.targets}
        self._rebuild()

    def hostnames(self) -> tuple[Target, ...]:
        """The targets named by host name, which discovery resolves."""
        return tuple(target for target in self.settings.targets if not is_address(target.host))

    def set_addresses(self, target: Target, addresses: Sequence[str]) -> bool:
        """Make ``addresses`` the endpoints of ``target``; whether anything changed."""
        wanted = tuple(sorted(set(addresses)))[:MAX_ADDRESSES]
        if self._addresses.get(target) == wanted:
            return False
        self._addresses[target] = wanted
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        # Endpoints that stay keep their state (health, breaker, in-flight count).
        old = {endpoint.key: endpoint for endpoint in self.endpoints}
        endpoints = []
        for target in self.settings.targets:
            for address in self._addresses[target]:
                endpoint = old.get(f"{target.url}@{address}")
                if endpoint is None:
                    endpoint = Endpoint(target, address, self._make_pool(target, address),
                                        self.settings.resilience, self.clock, self.settings.name)
                endpoints.append(endpoint)
        self.endpoints = tuple(endpoints)
        self.balancer.update(self.endpoints)

    def pick(self, key: str = "", tried: Collection[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for the next call, preferring ones not ``tried`` yet; None when none is available."""
        now = self.clock()
        available = [endpoint for endpoint in self.endpoints if endpoint.available(now)]
        fresh = [endpoint for endpoint in available if endpoint not in tried]
        candidates = fresh or available
        return self.balancer.choose(candidates, key) if candidates else None

    def has_available(self) -> bool:
        """Whether any endpoint can take a call now."""
        now = self.clock()
        return any(endpoint.available(now) for endpoint in self.endpoints)

    def retry_after(self) -> int:
        """Whole seconds until the soonest endpoint may take calls again (at least 1)."""
        now = self.clock()
        waits = [endpoint.retry_after(now) for endpoint in self.endpoints]
        return max(1, math.ceil(min(waits, default=1.0)))


def endpoint_pool(session: requests.Session, target: Target, address: str) -> HTTPConnectionPool:
    """The pool for ``target`` at ``address``, owned by the target's adapter (so its TLS settings apply)."""
    adapter = session.get_adapter(target.url + "/")
    assert isinstance(adapter, HTTPAdapter)
    probe = requests.Request("GET", target.url + "/").prepare()
    # The same pool key requests builds per request, so forwarding and Session.request share pools.
    _, key_attributes = adapter.build_connection_pool_key_attributes(probe, verify=True)
    pool_kwargs: dict[str, Any] = dict(key_attributes)
    if address != target.host and target.scheme == "https":
        # Connect to the address, but check the certificate against (and send SNI for) the name.
        pool_kwargs.update(server_hostname=target.host, assert_hostname=target.host)
    pool = adapter.poolmanager.connection_from_host(address, target.port, target.scheme, pool_kwargs=pool_kwargs)
    assert isinstance(pool, HTTPConnectionPool)
    return pool


def build_states(session: requests.Session, upstreams: Mapping[str, UpstreamSettings],
                 clock: Callable[[], float] = time.monotonic) -> dict[str, UpstreamState]:
    """The run-time state of every upstream, using the pools the Session's adapters own."""
    states = {}
    for name, upstream in upstreams.items():
        timeout = Timeout(connect=upstream.connect_timeout, read=upstream.read_timeout)
        states[name] = UpstreamState(upstream, timeout, functools.partial(endpoint_pool, session), clock)
    return states
