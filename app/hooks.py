"""Flask-level hooks, registered in the order they run; the edge (app/edge/wsgi.py) wraps them all."""

from __future__ import annotations

from flask import Flask

from app.auth import take_credentials
from app.caching import invalidate_after_write
from app.current import current_request
from app.environ import ROUTE_ENVIRON

__all__ = ["install_hooks"]


def install_hooks(app: Flask) -> None:
    """Register every before/after-request hook, in execution order."""
    app.before_request(_note_route)
    app.before_request(take_credentials)  # before any view's auth policy reads the credentials
    app.after_request(invalidate_after_write)  # a successful write drops that path's stored answers


def _note_route() -> None:
    # The access log is written after Flask's request context is gone; it reads the matched
    # rule (a template, never the raw path) from the environ instead.
    served = current_request()
    rule = served.url_rule
    served.environ[ROUTE_ENVIRON] = rule.rule if rule is not None else None
