"""One forwarded call as a series of attempts: pick an endpoint, send, and maybe try another.

Everything here happens before the client's response is built, so no byte of a failed or
retried attempt ever reaches the client. One deadline (the upstream's ``timeout``) covers every
attempt and every backoff pause.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
from urllib3 import BaseHTTPResponse

from app.errors import UpstreamDown, UpstreamTimeout, UpstreamUnreachable
from app.proxy.client import UpstreamState
from app.proxy.endpoints import FAILING_STATUSES, Endpoint
from app.proxy.policy import RetryPolicy
from app.proxy.retry import NOT_REPLAYABLE, backoff_delay, read_replayable_body, retries_allowed, retry_on_status
from app.proxy.transport import UpstreamRequest, send

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["call", "hash_key"]

log = logging.getLogger("frontdesk.proxy")

# A retried answer is read to its end (so its connection can be reused) when it is this small;
# a larger one is cut off and its connection closed.
_DRAIN_LIMIT = 64 * 1024


def hash_key(environ: WSGIEnvironment, hash_on: str) -> str:
    """The hash balancer's key: a request header when configured and present, else the client address."""
    if hash_on.startswith("header:"):
        value = environ.get("HTTP_" + hash_on[7:].upper().replace("-", "_"))
        if value:
            return str(value)
    return str(environ.get("REMOTE_ADDR", ""))


def call(state: UpstreamState, environ: WSGIEnvironment, request: UpstreamRequest, *,
         retry_any_method: bool = False, rand: Callable[[], float] = random.random,
         on_attempt: Callable[[Endpoint], None] | None = None) -> tuple[Endpoint, BaseHTTPResponse]:
    """Send ``request`` to one endpoint after another until one answers or retrying must stop.

    The returned endpoint has the call counted in its ``in_flight``; the caller releases it when
    the response is closed. Raises UpstreamDown when no endpoint can take the call.
    """
    settings = state.settings
    policy = settings.resilience.retries
    retries = retries_allowed(request.method, policy, retry_any_method)
    key = hash_key(environ, settings.resilience.hash_on) if settings.resilience.balance == "hash" else ""
    deadline = gevent.Timeout(settings.timeout)
    deadline.start()
    try:
        if retries and policy is not None and request.body is not None:
            request, retries = _replayable(request, environ, policy.buffer, retries)
        attempts = _Attempts(state, request, policy, retries, rand, deadline, time.monotonic() + settings.timeout)
        return attempts.run(key, on_attempt)
    except gevent.Timeout as expired:
        if expired is not deadline:
            raise
        raise UpstreamTimeout(f"The upstream did not answer within {settings.timeout:g} s.") from None
    finally:
        deadline.close()


class _Attempts:
    """The attempts of one call, sharing its deadline."""

    def __init__(self, state: UpstreamState, request: UpstreamRequest, policy: RetryPolicy | None, retries: int,
                 rand: Callable[[], float], deadline: gevent.Timeout, expires: float) -> None:
        self.state = state
        self.request = request
        self.policy = policy
        self.retries = retries
        self.rand = rand
        self.deadline = deadline
        self.expires = expires

    def run(self, key: str, on_attempt: Callable[[Endpoint], None] | None) -> tuple[Endpoint, BaseHTTPResponse]:
        """Attempt until an answer is kept; the kept answer's endpoint still counts it in flight."""
        tried: list[Endpoint] = []
        while True:
            endpoint = self.state.pick(key, tried)
            # pick() only offers endpoints whose breaker lets a call through, and nothing yields
            # in between: admit() takes the half-open probe, so no other greenlet gets it.
            ticket = endpoint.admit() if endpoint is not None else None
            if endpoint is None or ticket is None:
                raise UpstreamDown("No target of the upstream can take calls now.", self.state.retry_after())
            tried.append(endpoint)
            answer = self._send(endpoint, ticket, len(tried), on_attempt)
            if answer is None:
                continue  # failed, and worth another try
            delay = self._retry_delay(len(tried)) if self._retry_status(answer.status) else None
            if delay is None:
                return endpoint, answer
            endpoint.in_flight -= 1
            _discard(answer)
            gevent.sleep(delay)

    def _send(self, endpoint: Endpoint, ticket: int, attempt: int,
              on_attempt: Callable[[Endpoint], None] | None) -> BaseHTTPResponse | None:
        """One attempt: the answer, or None after a failure that is retried (the pause taken).

        Only the upstream's own faults count against it (docs/decisions.md, the fault rule): a
        connect failure, a timeout, a broken answer, a failing status. The client's (its body
        broke off, was malformed or too slow) and unknown endings (the client went away, the
        worker is stopping) give the breaker's ticket back without a verdict.
        """
        body = self.request.body
        if isinstance(body, io.BytesIO):
            body.seek(0)
        endpoint.in_flight += 1
        try:
            if on_attempt is not None:
                on_attempt(endpoint)
            answer = send(self.state, endpoint.pool, self.request, self.deadline, endpoint.label)
        except (UpstreamUnreachable, UpstreamTimeout) as error:
            endpoint.in_flight -= 1
            endpoint.record_call(ticket, False)
            listed = self.policy is not None and error.condition in self.policy.conditions
            delay = self._retry_delay(attempt) if listed else None
            if delay is None:
                raise
            gevent.sleep(delay)
            return None
        except BaseException:
            # The client's fault, or no outcome at all: a half-open breaker's probe must still
            # not stay taken for ever.
            endpoint.in_flight -= 1
            endpoint.release(ticket)
            raise
        endpoint.record_call(ticket, answer.status not in FAILING_STATUSES)
        return answer

    def _retry_status(self, status: int) -> bool:
        return self.policy is not None and retry_on_status(status, self.policy)

    def _retry_delay(self, attempt: int) -> float | None:
        """The pause before the next attempt; None when no retry is left or it would pass the deadline."""
        if attempt > self.retries or self.policy is None:
            return None
        delay = backoff_delay(attempt, self.policy.backoff, self.rand)
        return None if time.monotonic() + delay >= self.expires else delay


def _replayable(request: UpstreamRequest, environ: WSGIEnvironment, limit: int,
                retries: int) -> tuple[UpstreamRequest, int]:
    """The request with its body held in memory, or unchanged with no retries when it cannot be."""
    body = read_replayable_body(environ, limit)
    if body is NOT_REPLAYABLE:
        return request, 0  # streamed as it arrives: it cannot be sent a second time
    if isinstance(body, bytes):
        return dataclasses.replace(request, body=io.BytesIO(body)), retries
    return request, retries


def _discard(answer: BaseHTTPResponse) -> None:
    """Throw a retried answer away and give its connection back (or close it when the body is big)."""
    length = answer.headers.get("Content-Length")
    drained = False
    try:
        if length is not None and length.isdigit() and int(length) <= _DRAIN_LIMIT:
            # urllib3 closes the connection itself when the read fails; only the deadline escapes.
            answer.drain_conn()
            drained = True
    finally:
        if not drained:
            answer.close()  # unread bytes are still on the wire: the connection cannot be reused
        answer.release_conn()
