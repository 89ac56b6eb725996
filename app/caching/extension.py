"""The ``cache`` extension, the ``cache_response`` decorator, invalidation after writes, the purge endpoint."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from app.admin import BearerToken, admin_authorized
from app.auth import public
from app.caching.errors import BadPurge, PurgeRefused
from app.caching.local import KINDS
from app.caching.runtime import CacheRuntime
from app.caching.serve import serve
from app.caching.settings import RouteCache, read_cache, route_cache
from app.current import current_request
from app.policies import add_policy, route_policy

__all__ = ["EXTENSION", "Cache", "apply_cache", "cache", "cache_response", "cache_policy_of", "invalidate_after_write"]

#: Where the cache runtime lives in ``app.extensions``.
EXTENSION = "frontdesk.cache"
# RFC 9111 4.4: a successful answer to any unsafe method (not just the four common ones) invalidates.
_SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

View = TypeVar("View", bound=Callable[..., Any])


class Cache:
    """The app-less extension: ``init_app`` builds this worker's tiers; ``blueprints`` adds the purge endpoint."""

    def init_app(self, app: Flask) -> None:
        """Read [cache] and build this app's (this worker's) tiers."""
        app.extensions[EXTENSION] = CacheRuntime(read_cache(app.config))

    def runtime(self, app: Flask | None = None) -> CacheRuntime:
        """The app's cache state (tests and benchmarks reach the tiers through it)."""
        runtime: CacheRuntime = (app or current_app).extensions[EXTENSION]
        return runtime

    def stop(self, app: Flask) -> None:
        """End the app's background refreshes, so none outlives it (like ``upstreams.stop``)."""
        self.runtime(app).close()

    def blueprints(self, app: Flask) -> tuple[Blueprint, ...]:
        """The purge and statistics endpoints, when a purge token is configured; nothing otherwise."""
        settings = self.runtime(app).settings
        if settings.purge_token is None:
            return ()
        blueprint = Blueprint("cache", __name__, url_prefix=settings.admin_path)
        blueprint.add_url_rule("/purge", endpoint="purge", view_func=_purge, methods=["POST"])
        blueprint.add_url_rule("/stats", endpoint="stats", view_func=_stats, methods=["GET"])
        return (blueprint,)


#: The one instance ``create_app`` initialises.
cache = Cache()


def apply_cache(policy: RouteCache) -> Callable[[View], View]:
    """The decorator that serves a view through the cache under ``policy`` (the cache layer of its record)."""
    def decorate(view: View) -> View:
        return add_policy(view, "cache", policy, _cached)

    return decorate


def _cached(policies: tuple[Any, ...], view: Callable[..., Any]) -> Callable[..., Any]:
    """The cache layer: answers from the cache, ``view`` on a miss."""
    policy: RouteCache = policies[0]

    @functools.wraps(view)
    def cached(*args: Any, **kwargs: Any) -> Any:
        return serve(policy, functools.partial(view, *args, **kwargs))

    return cached


def cache_policy_of(view: Callable[..., Any]) -> RouteCache | None:
    """The cache policy a registered view was given, or None."""
    policies = route_policy(view).settings("cache")
    policy = policies[0] if policies else None
    return policy if isinstance(policy, RouteCache) else None


def cache_response(*, ttl: float, vary: Iterable[str] = (), scope: str = "public", freshness: str = "route",
                   stale_while_revalidate: float | None = None, stale_if_error: float | None = None,
                   ignore_client_no_cache: bool = False) -> Callable[[View], View]:
    """Serve GET/HEAD from the cache for up to ``ttl`` seconds; it runs after auth and limit wherever it is written."""
    if isinstance(vary, str):
        vary = (vary,)
    return apply_cache(route_cache("cache_response", ttl, tuple(vary), scope, freshness=freshness,
                                   stale_while_revalidate=stale_while_revalidate, stale_if_error=stale_if_error,
                                   ignore_client_no_cache=ignore_client_no_cache))


def invalidate_after_write(response: Response) -> Response:
    """After a successful unsafe request (POST, PUT, DELETE, M-SEARCH...), drop the path everywhere (RFC 9111 4.4)."""
    served = current_request()
    if served.method not in _SAFE and response.status_code < 400:
        runtime: CacheRuntime = current_app.extensions[EXTENSION]
        if runtime.in_use is None:  # once per worker: an app without cached routes writes no journal
            runtime.in_use = any(cache_policy_of(view) is not None for view in current_app.view_functions.values())
        if runtime.in_use:
            runtime.purge("path", served.path)
    return response


def _admin() -> CacheRuntime:
    """The runtime, once the request has shown the admin bearer token."""
    runtime: CacheRuntime = current_app.extensions[EXTENSION]
    token = runtime.settings.purge_token
    if token is None or not admin_authorized(request.headers.get("Authorization"), BearerToken(token)):
        raise PurgeRefused("The cache admin endpoints need their bearer token.")
    return runtime


@public  # not the gateway's auth: the admin endpoints check their own credential
def _stats() -> Response:
    """This worker's local tier: bytes charged against max_bytes."""
    runtime = _admin()
    runtime.journal.poll()
    return jsonify({"pid": os.getpid(), "local_bytes": runtime.local.size, "local_items": len(runtime.local),
                    "max_bytes": runtime.settings.max_bytes,
                    "shared": None if runtime.shared is None else runtime.shared.available})


@public  # not the gateway's auth: the admin endpoints check their own credential
def _purge() -> Response:
    """Purge stored answers by exact path, path prefix or surrogate key."""
    runtime = _admin()
    document = request.get_json(silent=True)
    if not isinstance(document, dict) or len(document) != 1:
        raise BadPurge('Send a JSON object with exactly one of "path", "prefix" or "tag".')
    kind, value = next(iter(document.items()))
    if kind not in KINDS or not isinstance(value, str) or not value or len(value) > 2048:
        raise BadPurge('Send a JSON object with exactly one of "path", "prefix" or "tag" (a non-empty string).')
    if kind != "tag" and not value.startswith("/"):
        raise BadPurge(f"A {kind} starts with /.")
    shared = runtime.purge(kind, value)
    return jsonify({"purged": {kind: value}, "shared_keys_deleted": shared})
