"""The background work of one worker: active health checks and DNS re-resolution.

One greenlet per app, started by the first request that needs the upstreams (so in a gunicorn
worker, never in the master) and only when some upstream has checks or host names. It holds
the monitor through a weak reference between rounds, so an app that is dropped (tests build
hundreds) takes its greenlet with it; ``stop`` ends it at once.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Mapping

import gevent
from gevent.pool import Group
from urllib3 import Timeout
from urllib3.exceptions import HTTPError

from app.proxy.client import UpstreamState
from app.proxy.discovery import Resolver, resolve_host
from app.proxy.endpoints import Endpoint
from app.proxy.policy import HealthPolicy

__all__ = ["Monitor", "check_endpoint"]

log = logging.getLogger("frontdesk.proxy")

# Bounds of the loop's sleep: never spin, never oversleep a short interval by much.
_MIN_SLEEP = 0.01
_MAX_SLEEP = 60.0


def check_endpoint(endpoint: Endpoint, policy: HealthPolicy) -> bool:
    """One active check: GET the health path; any 2xx or 3xx within the timeout passes."""
    try:
        with gevent.Timeout(policy.timeout, False):
            answer = endpoint.pool.urlopen(
                "GET", policy.path, headers={"Host": endpoint.target.netloc, "User-Agent": "frontdesk-health"},
                retries=False, redirect=False, assert_same_host=False, preload_content=True,
                timeout=Timeout(connect=policy.timeout, read=policy.timeout),
            )
            return 200 <= answer.status < 400
        return False  # the timeout expired (it was told not to raise)
    except (HTTPError, OSError):
        return False


class Monitor:
    """Runs each upstream's health checks and re-resolves its host names, each on its own interval."""

    def __init__(self, states: Mapping[str, UpstreamState], resolver: Resolver = resolve_host,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.states = states
        self.resolver = resolver
        self.clock = clock
        self.started = False
        self._greenlet: gevent.Greenlet | None = None
        self._next_check = {name: 0.0 for name, state in states.items() if state.settings.resilience.health}
        self._next_resolve = {name: 0.0 for name, state in states.items() if state.hostnames()}

    def needed(self) -> bool:
        """Whether there is any background work at all."""
        return bool(self._next_check or self._next_resolve)

    def ensure_started(self) -> None:
        """Resolve host names now (the first call needs them) and start the loop; cheap once done."""
        if self.started:
            return
        self.started = True
        if not self.needed():
            return
        self.resolve_all()
        self._greenlet = gevent.spawn(_loop, weakref.ref(self))

    def stop(self) -> None:
        """End the background loop (idempotent)."""
        self.started = True  # a stopped monitor is never started again
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=False)

    def resolve_all(self) -> None:
        """Re-resolve every host name now."""
        now = self.clock()
        for name in self._next_resolve:
            self._resolve(self.states[name])
            self._next_resolve[name] = now + self.states[name].settings.resilience.resolve_interval

    def run_due(self) -> float:
        """Do the work that is due; seconds until the next is."""
        now = self.clock()
        for name, due in self._next_resolve.items():
            if due <= now:
                self._resolve(self.states[name])
                self._next_resolve[name] = self.clock() + self.states[name].settings.resilience.resolve_interval
        for name, due in self._next_check.items():
            if due <= now:
                self._check(self.states[name])
                policy = self.states[name].settings.resilience.health
                assert policy is not None
                self._next_check[name] = self.clock() + policy.interval
        upcoming = [*self._next_resolve.values(), *self._next_check.values()]
        return min(upcoming, default=now + _MAX_SLEEP) - self.clock()

    def _resolve(self, state: UpstreamState) -> None:
        for target in state.hostnames():
            try:
                addresses = self.resolver(target.host, target.port)
            except OSError as error:
                # Keep the last good answer: a DNS outage must not take healthy targets away.
                log.warning("resolution failed", extra={"fields": {
                    "upstream": state.settings.name, "host": target.host, "cause": str(error)}})
                continue
            if addresses and state.set_addresses(target, addresses):
                log.info("targets changed", extra={"fields": {
                    "upstream": state.settings.name, "host": target.host, "addresses": addresses}})

    def _check(self, state: UpstreamState) -> None:
        policy = state.settings.resilience.health
        assert policy is not None
        endpoints = state.endpoints
        group = Group()
        results = group.map(lambda endpoint: check_endpoint(endpoint, policy), endpoints)
        for endpoint, passed in zip(endpoints, results):
            was = endpoint.healthy
            endpoint.record_check(passed)
            if endpoint.healthy != was:
                log.warning("target health changed", extra={"fields": {
                    "upstream": state.settings.name, "target": endpoint.label, "healthy": endpoint.healthy}})


def _loop(ref: weakref.ref[Monitor]) -> None:
    while True:
        monitor = ref()
        if monitor is None:
            return
        delay = monitor.run_due()
        del monitor  # between rounds only the weak reference keeps it
        gevent.sleep(min(_MAX_SLEEP, max(_MIN_SLEEP, delay)))
