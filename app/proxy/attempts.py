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
    expires = time.monotonic() + settings.timeout
    try:
        if retries and policy is not None and request.body is not None:
            request, retries = _replayable(request, environ, policy.buffer, retries)
        tried: list[Endpoint] = []
        while True:
            endpoint = state.pick(key, tried)
            # pick() only offers endpoints whose breaker lets a call through, and nothing yields
            # in between: admit() takes the half-open probe, so no other greenlet gets it.
            ticket = endpoint.admit() if endpoint is not None else None
            if endpoint is None or ticket is None:
                raise UpstreamDown(f"No target of the upstream {settings.name!r} can take calls now.",
                                   state.retry_after())
            tried.append(endpoint)
            if on_attempt is not None:
                on_attempt(endpoint)
            if request.body is not None and isinstance(request.body, io.BytesIO):
                request.body.seek(0)
            endpoint.in_flight += 1
            try:
                answer = send(state, endpoint.pool, request, deadline)
            except (UpstreamUnreachable, UpstreamTimeout) as error:
                endpoint.in_flight -= 1
                endpoint.record_call(ticket, False)
                if len(tried) > retries or policy is None or error.condition not in policy.conditions:
                    raise
                delay = _delay_within(len(tried), policy.backoff, rand, expires)
                if delay is None:
                    raise
                gevent.sleep(delay)
                continue
            except BaseException:
                # The client went away or the worker is stopping: the call's outcome is unknown,
                # but a half-open breaker's probe must not stay taken for ever.
                endpoint.in_flight -= 1
                endpoint.record_call(ticket, False)
                raise
            endpoint.record_call(ticket, answer.status not in FAILING_STATUSES)
            if len(tried) <= retries and policy is not None and retry_on_status(answer.status, policy):
                delay = _delay_within(len(tried), policy.backoff, rand, expires)
                if delay is not None:
                    endpoint.in_flight -= 1
                    _discard(answer)
                    gevent.sleep(delay)
                    continue
            return endpoint, answer
    except gevent.Timeout as expired:
        if expired is not deadline:
            raise
        raise UpstreamTimeout(f"The upstream did not answer within {settings.timeout:g} s.") from None
    finally:
        deadline.close()


def _replayable(request: UpstreamRequest, environ: WSGIEnvironment, limit: int,
                retries: int) -> tuple[UpstreamRequest, int]:
    """The request with its body held in memory, or unchanged with no retries when it cannot be."""
    body = read_replayable_body(environ, limit)
    if body is NOT_REPLAYABLE:
        return request, 0  # streamed as it arrives: it cannot be sent a second time
    if isinstance(body, bytes):
        return dataclasses.replace(request, body=io.BytesIO(body)), retries
    return request, retries


def _delay_within(retry: int, base: float, rand: Callable[[], float], expires: float) -> float | None:
    """The pause before the next attempt, or None when the deadline would pass during it."""
    delay = backoff_delay(retry, base, rand)
    return None if time.monotonic() + delay >= expires else delay


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
