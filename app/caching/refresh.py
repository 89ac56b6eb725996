"""Background refreshes for stale-while-revalidate: one greenlet per key, bounded in time, owned by the runtime."""

from __future__ import annotations

import contextvars
import io
import logging
from collections.abc import Callable
from typing import Any

import gevent
from gevent.pool import Group

from app.current import current_gateway, current_globals, current_request

__all__ = ["Refreshes"]

log = logging.getLogger("frontdesk.cache")


class Refreshes:
    """The refreshes one app (one worker) runs; ``close`` ends them, so none outlives its app."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.group = Group()

    def __len__(self) -> int:
        return len(self.group)

    def start(self, work: Callable[[], object], release: Callable[[], None]) -> gevent.Greenlet[Any, Any]:
        """Run ``work`` after this request, in a copy of its request context; ``release`` runs however it ends."""
        app = current_gateway()
        served = current_request()
        environ = dict(served.environ)
        environ["wsgi.input"] = io.BytesIO()  # the client's body is not the refresh's (GET has none anyway)
        environ.pop("werkzeug.request", None)
        saved = dict(vars(current_globals()))  # the verified caller, which forwarding may use

        def run() -> None:
            with app.request_context(environ):
                vars(current_globals()).update(saved)
                with gevent.Timeout(self.deadline, False):  # the refresh gives up silently at the deadline
                    work()

        # STACK-NOTES: spawned greenlets do not inherit contextvars (trace context); copy them.
        greenlet = gevent.Greenlet(contextvars.copy_context().run, run)
        # A link runs however the greenlet ends: finished, raised, timed out, or killed before it started.
        greenlet.link(lambda _: release())
        self.group.start(greenlet)
        return greenlet

    def close(self, timeout: float | None = None) -> None:
        """Kill every refresh still running (the app is going away); their slots are released by their links."""
        self.group.kill(timeout=timeout)
        gevent.sleep(0)  # let the links run
