"""Composition for views: several upstream calls in parallel, within one deadline, as JSON parts.

```python
results = parallel(Call("users", f"/users/{sub}", name="user"),
                   Call("orders", f"/orders?user={sub}", name="orders", required=False),
                   deadline=1.5)
return results.response({"name": results["user"]["name"], "orders": results.get("orders", [])})
```

Each call goes through the upstream's pools like a forward (balancing, retries, breakers, the
upstream's timeouts and ``max_in_flight``, metrics, a trace span), carries the client's headers
(so the request id and identity headers) and runs in its own greenlet, spawned with a copy of
the view's context and finished before ``parallel`` returns. A required part that fails fails
the whole answer (502, or 504 for a timeout); an optional one makes the answer partial.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.pool
from flask import Response, request
from werkzeug.exceptions import BadGateway, GatewayTimeout

from app.observability import metrics
from app.caching import PARTIAL_HEADER, mark_uncacheable
from app.environ import ROUTE_ENVIRON
from app.errors import GatewayError, PROBLEM_BASE
from app.compose.parts import PartFailure, fetch_part
from app.proxy import UpstreamState, request_headers, upstreams

__all__ = [
    "DEFAULT_CONCURRENCY", "AggregateFailed", "AggregateTimeout", "Call", "PartFailure", "Results", "parallel",
]

log = logging.getLogger("frontdesk.compose")

#: Calls of one aggregate in flight at once, unless the view asks for another cap.
DEFAULT_CONCURRENCY = 8
# A part with no outcome: its greenlet was killed at the deadline, or never started.
_MISSING = object()
# Client headers that make no sense on a part's GET: no body goes, and a conditional or ranged
# part would answer 304/206, which cannot be merged.
_NOT_FOR_PARTS = frozenset({
    "Content-Length", "Content-Type", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since",
    "If-Range", "Range", "Cookie",
})


@dataclass(frozen=True)
class Call:
    """One part of an aggregate: a GET of ``path`` (origin-form, encoded) on ``upstream``."""

    upstream: str
    path: str
    name: str
    timeout: float | None = None  # None: the upstream's own timeout only
    required: bool = True
    format: str = "json"  # or "xml": the answer is converted to JSON (app/compose/xmljson.py)
    #: Runs on the part's value in its greenlet (Flask's request context is there): shape early.
    transform: Callable[[Any], Any] | None = None


class AggregateFailed(GatewayError, BadGateway):
    """A required part failed: the whole answer fails with it."""

    problem = PROBLEM_BASE + "aggregate-part-failed"


class AggregateTimeout(GatewayError, GatewayTimeout):
    """A required part did not answer in time (its own timeout or the aggregate's deadline)."""

    problem = PROBLEM_BASE + "aggregate-part-timeout"


class Results:
    """The parts' values by name, and the optional parts that failed."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.failures: dict[str, PartFailure] = {}

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def get(self, name: str, default: Any = None) -> Any:
        """A part's value, or ``default`` when it failed (optional parts only ever fail this way)."""
        return self.values.get(name, default)

    @property
    def partial(self) -> bool:
        """Whether an optional part is missing."""
        return bool(self.failures)

    def problems(self) -> list[dict[str, Any]]:
        """One problem-detail entry per failed part."""
        return [failure.problem() for failure in self.failures.values()]

    def response(self, document: Mapping[str, Any] | None = None, status: int = 200) -> Response:
        """``document`` (default: every value under its part's name) as JSON, marked when partial.

        A partial answer carries ``X-Frontdesk-Partial`` (the missing parts) and ``_problems``,
        and is never stored: not by the gateway's cache, not by any other (``no-store``).
        """
        body = dict(self.values if document is None else document)
        response = Response(status=status, mimetype="application/json")
        if self.partial:
            body["_problems"] = self.problems()
            response.headers[PARTIAL_HEADER] = ", ".join(self.failures)
            response.headers["Cache-Control"] = "no-store"
            mark_uncacheable()
            metrics.record_partial_answer(request.environ.get(ROUTE_ENVIRON))
        response.set_data(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        return response


def parallel(*calls: Call, deadline: float, concurrency: int = DEFAULT_CONCURRENCY,
             into: Results | None = None) -> Results:
    """Run ``calls`` concurrently (at most ``concurrency`` at once) and wait for all, or ``deadline`` seconds.

    ``into`` adds the parts to earlier results (a sequential step). Raises AggregateFailed or
    AggregateTimeout naming the first required part that failed; by then no call is running.
    """
    names = [call.name for call in calls]
    if len(set(names)) != len(names) or (into is not None and set(names) & (set(into.values) | set(into.failures))):
        raise ValueError(f"part names must be unique: {names}")
    if not calls:
        return into or Results()
    states: dict[str, UpstreamState] = {call.upstream: upstream_state(call.upstream) for call in calls}
    headers = _part_headers(request.environ)
    outcomes: dict[str, Any] = {}
    settled = gevent.event.Event()
    required = {call.name for call in calls if call.required}

    def run(call: Call) -> None:
        try:
            value = fetch_part(call.name, call.path, call.format, states[call.upstream], headers,
                               request.environ, call.timeout)
            outcomes[call.name] = call.transform(value) if call.transform else value
        except PartFailure as failure:
            outcomes[call.name] = failure
        except Exception as error:  # noqa: BLE001 - a bug in a transform: re-raised in the view, below
            outcomes[call.name] = _Crashed(error)
        finally:
            outcome = outcomes.get(call.name, _MISSING)
            failed = outcome is _MISSING or isinstance(outcome, (PartFailure, _Crashed))
            if (failed and (call.name in required or isinstance(outcome, _Crashed))) or len(outcomes) == len(calls):
                settled.set()  # everything is in, or a required part failed: stop waiting

    pool = gevent.pool.Pool(concurrency)
    timer = gevent.Timeout(deadline)
    timer.start()
    try:
        for call in calls:
            # Spawned greenlets do not inherit contextvars: each runs in a copy of the view's
            # context (Flask's request context, the request id the log lines carry).
            pool.spawn(contextvars.copy_context().run, run, call)
        settled.wait()
    except gevent.Timeout as expired:
        if expired is not timer:
            raise
    finally:
        timer.close()
        pool.kill(block=True)  # nothing outlives the view: killed calls release what they hold
    return _collect(calls, outcomes, deadline, into or Results())


class _Crashed:
    """An unexpected exception from a part's greenlet, carried back to the view."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _collect(calls: Iterable[Call], outcomes: Mapping[str, Any], deadline: float, results: Results) -> Results:
    calls = tuple(calls)
    required = {call.name for call in calls if call.required}
    # What really happened first, in the order it came in: a required failure stops the wait and
    # kills the parts still running, and those must not then be blamed as timed out.
    for name, outcome in outcomes.items():
        if isinstance(outcome, _Crashed):
            raise outcome.error
        if isinstance(outcome, PartFailure) and name in required:
            raise _required_failed(name, outcome)
    for call in calls:
        outcome = outcomes.get(call.name, _MISSING)
        if outcome is _MISSING:
            outcome = PartFailure(call.name, 504, "timeout",
                                  f"No answer within the aggregate's deadline of {deadline:g} s.")
        if not isinstance(outcome, PartFailure):
            results.values[call.name] = outcome
            continue
        if call.required:
            raise _required_failed(call.name, outcome)
        log.info("optional part failed", extra={"fields": {"part": call.name, "status": outcome.status}})
        results.failures[call.name] = outcome
    return results


def _required_failed(name: str, failure: PartFailure) -> AggregateTimeout | AggregateFailed:
    detail = f"The required part {name!r} failed: {failure.detail}"
    return AggregateTimeout(detail) if failure.status == 504 else AggregateFailed(detail)


def upstream_state(name: str) -> UpstreamState:
    """The run-time state of a configured upstream; LookupError names a missing one."""
    try:
        return upstreams.state(name)
    except KeyError:
        raise LookupError(f"no [upstreams.{name}] table: an aggregate calls it") from None


def _part_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The client's headers as a forward sends them (request id, identity, X-Forwarded-*), minus a body's."""
    headers = request_headers(environ, "")
    for name in _NOT_FOR_PARTS:
        headers.pop(name, None)
    return headers
