"""Retry decisions: which request may be tried again, after what, and how long to wait first.

The rules, in the order they are checked: a retry needs a policy, a method the policy lists
(or a route that opts in), a body that can be sent again, a listed condition, attempts left,
and time left before the request's deadline. 429 is never retried.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from werkzeug.exceptions import ClientDisconnected

from app.proxy.policy import RetryPolicy
from app.proxy.transport import ClientBody

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["NOT_REPLAYABLE", "backoff_delay", "read_replayable_body", "retries_allowed", "retry_on_status"]

#: ``read_replayable_body``'s answer when the body cannot be sent twice.
NOT_REPLAYABLE = object()


def retries_allowed(method: str, policy: RetryPolicy | None, opt_in: bool = False) -> int:
    """How many retries this request may have: 0 unless its method is listed or the route opts in."""
    if policy is None or not (method in policy.methods or opt_in):
        return 0
    return policy.attempts


def read_replayable_body(environ: WSGIEnvironment, limit: int) -> bytes | None | object:
    """The request body held in memory so it can be replayed; None when there is none.

    Only a body with a Content-Length up to ``limit`` bytes is held. A chunked body, or a
    larger one, is streamed to the upstream as it arrives and cannot be sent again: the answer
    is then ``NOT_REPLAYABLE`` and nothing has been read.
    """
    if "HTTP_TRANSFER_ENCODING" in environ:
        return NOT_REPLAYABLE
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length <= 0:
        return None
    if length > limit:
        return NOT_REPLAYABLE
    data: bytes = ClientBody(environ["wsgi.input"]).read(length)
    if len(data) != length:
        raise ClientDisconnected("The client sent less than its Content-Length.")
    return data


def retry_on_status(status: int, policy: RetryPolicy) -> bool:
    """Whether an answer with this status is thrown away and the call tried again."""
    return status != 429 and status in policy.statuses


def backoff_delay(retry: int, base: float, rand: Callable[[], float] = random.random) -> float:
    """The wait before retry number ``retry`` (1, 2, ...): ``base`` doubled each time, jittered ±50 %.

    Jitter spreads the retries of many clients that failed together, so they do not return
    together.
    """
    return float(base * (2 ** (retry - 1)) * (0.5 + rand()))
