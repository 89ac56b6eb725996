"""The objects behind Flask's context proxies, for code that runs on every request.

Each attribute read through ``flask.request``, ``current_app`` or ``g`` goes through werkzeug's
``LocalProxy``: 0.7–1.2 µs a read (timeit), against 0.1 µs to take the object once with the proxy's
documented ``_get_current_object()`` and read it directly. A cache hit read them about sixteen
times (docs/performance-tuning.md, sixth round). Hold what these return no longer than the request.
"""

from __future__ import annotations

from typing import cast

from flask import Flask, Request, current_app, g, request
from flask.ctx import RequestContext, _AppCtxGlobals
from flask.globals import request_ctx

__all__ = ["current_gateway", "current_globals", "current_request", "current_request_context"]


def current_request() -> Request:
    """The request being served."""
    return cast(Request, request._get_current_object())  # type: ignore[attr-defined]


def current_request_context() -> RequestContext:
    """Its request context (where extensions such as Flask-Limiter keep per-request state)."""
    return cast(RequestContext, request_ctx._get_current_object())  # type: ignore[attr-defined]


def current_gateway() -> Flask:
    """The app serving it."""
    return cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]


def current_globals() -> _AppCtxGlobals:
    """Its ``g``."""
    return cast(_AppCtxGlobals, g._get_current_object())
