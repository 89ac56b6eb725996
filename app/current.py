"""The objects behind Flask's context proxies, for code that runs on every request.

Each attribute read through ``flask.request``, ``current_app`` or ``g`` goes through werkzeug's
``LocalProxy``: 0.7–1.2 µs a read (timeit), against 0.1 µs to take the object once with the proxy's
documented ``_get_current_object()`` and read it directly. A cache hit read them about sixteen
times (docs/performance-tuning.md, sixth round). Hold what these return no longer than the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import Flask, Request, current_app, g, request

from app.internals import switch

if TYPE_CHECKING:
    from flask.ctx import _AppCtxGlobals  # g's class, for the type checker only

__all__ = ["current_gateway", "current_globals", "current_request"]

# Off when werkzeug is not the version this was written for: the proxies themselves (app/internals.py).
_OBJECTS = switch("werkzeug-proxy-objects")


def current_request() -> Request:
    """The request being served."""
    if _OBJECTS.on:
        return cast(Request, request._get_current_object())  # type: ignore[attr-defined]
    return request


def current_gateway() -> Flask:
    """The app serving it."""
    if _OBJECTS.on:
        return cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    return current_app


def current_globals() -> _AppCtxGlobals:
    """Its ``g``."""
    if _OBJECTS.on:
        return cast("_AppCtxGlobals", g._get_current_object())
    return g
