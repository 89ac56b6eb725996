"""The ``limiter``: Flask-Limiter configured from [ratelimit], with the gateway's headers and errors."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits.errors import ConfigurationError
from limits.storage import RedisStorage
from limits.strategies import RateLimiter

from app.observability import metrics
from app.auth import auth
from app.config import ConfigError, problems_of
from app.current import current_gateway, current_globals, current_request
from app.environ import RATE_LIMIT_ENVIRON
from app.errors import PROBLEM_BASE, problem_response
from app.internals import switch
from app.policies import route_policy
from app.ratelimit.headers import Usage, ietf_headers, legacy_headers, retry_after
from app.ratelimit.keys import by_client_address, by_consumer, plan_of
from app.ratelimit.layer import PolicyLimit, policy_limit
from app.ratelimit.runtime import EXTENSION, RateLimitRuntime
from app.ratelimit.settings import RateLimitSettings, read_ratelimit, worker_count
from app.ratelimit.storage import MeteredStrategy, RequestCounts
from app.sharedstate import REDIS_ERRORS, OutageGuard, client_options, refresh_topology, without_password

__all__ = ["EXTENSION", "GatewayLimiter", "RateLimitRuntime", "limit_declared_route", "limiter", "plan_quota"]

RATE_LIMITED = PROBLEM_BASE + "rate-limited"
_COUNTS = "_frontdesk_ratelimit_counts"

View = TypeVar("View", bound=Callable[..., Any])
# Off when flask-limiter is not the version this was written for: its own before-request pass (app/internals.py).
_SKIP = switch("limiter-before-request")
log = logging.getLogger("frontdesk.ratelimit")


class GatewayLimiter(Limiter):
    """Flask-Limiter, configured per app from the frozen [ratelimit] settings instead of RATELIMIT_* keys.

    Flask-Limiter keeps its storage on the instance and only fills unset options on a second
    ``init_app``; this one sets every option from the settings each time, so each app (each
    test, each worker) gets exactly its own configuration.
    """

    def init_app(self, app: Flask) -> None:
        """Read [ratelimit], build the storage and strategy, register the hooks and the 429 handler."""
        settings = read_ratelimit(app.config)
        _check_plans(settings, app)
        self._storage_uri = settings.storage_uri
        self._storage_options = _storage_options(settings)
        self._strategy = settings.strategy
        self._key_prefix = settings.key_prefix
        self._swallow_errors = False  # MeteredStrategy decides what an outage does
        self._headers_enabled = False  # the gateway writes its own (_write_headers)
        self._in_memory_fallback_enabled = False  # per-worker counts would silently replace shared ones
        self._storage_dead = False
        self.limit_manager.set_application_limits(
            [ApplicationLimit(";".join(settings.default), key_function=by_client_address).bind(self)]
            if settings.default else [])
        try:
            super().init_app(app)
        except ConfigurationError as error:
            raise ConfigError("ratelimit.storage_uri", without_password(settings.storage_uri),
                              f"a usable storage ({error})") from None
        assert self._limiter is not None
        fail_open = settings.on_storage_error == "open"
        guard = OutageGuard("rate limit storage", "limits are not enforced by it until it answers" if fail_open
                            else "limited requests are answered 503 until it answers", settings.retry_interval,
                            settings.storage_timeout, logger=log, errors=_storage_errors(self._limiter),
                            on_probe=functools.partial(_refresh_topology, self._limiter))
        strategy = MeteredStrategy(self._limiter, guard=guard, fail_open=fail_open, counts=_request_counts)
        self._limiter = strategy
        app.extensions[EXTENSION] = RateLimitRuntime(settings, guard, strategy)
        app.after_request(_write_headers)
        app.register_error_handler(RateLimitExceeded, _render_rate_limited)

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        """Flask-Limiter's check; its before-request pass is skipped while nothing could be counted there."""
        # In its before_request hook Flask-Limiter only counts app-wide, default, blueprint and meta
        # limits; with none of them it resolves nothing and costs ~100 µs per request anyway (about
        # a tenth of a pass-through's CPU, docs/performance-tuning.md). These are the attributes its
        # resolve_limits reads (flask-limiter 4.1.1); a decorated route still checks its own limits.
        if in_middleware and _SKIP.on:
            manager = self.limit_manager
            if not (manager._application_limits or manager._default_limits or manager._blueprint_limits
                    or self._meta_limits):
                return
        super()._check_request_limit(callable_name, in_middleware)

    def limit(self, *args: Any, **kwargs: Any) -> PolicyLimit:
        """Flask-Limiter's ``limit``, as the limit layer of the view's policy record (app/ratelimit/layer.py)."""
        return policy_limit(super().limit(*args, **kwargs), self)

    def shared_limit(self, *args: Any, **kwargs: Any) -> PolicyLimit:
        """Flask-Limiter's ``shared_limit``, as the limit layer of the view's policy record."""
        return policy_limit(super().shared_limit(*args, **kwargs), self)

    def check(self, app: Flask) -> None:
        """Refuse memory:// with several workers when ``exact`` asks for exact counts and a limit exists."""
        settings = self.runtime(app).settings
        reason = _per_worker(settings, worker_count())
        if settings.exact and reason is not None and _uses_limits(app, settings):
            problems_of(app).report(ConfigError(
                "ratelimit.storage_uri", settings.storage_uri,
                f"a shared storage (redis://...) with ratelimit.exact = true: {reason}"), after="RATELIMIT")

    def per_worker_warning(self, app: Flask) -> str | None:
        """The warning the configuration check prints once per start when limits will count per worker."""
        settings = self.runtime(app).settings
        reason = _per_worker(settings, worker_count())
        if reason is None or not _uses_limits(app, settings):
            return None
        return (f"RATE LIMITS ARE PER WORKER: ratelimit.storage_uri = memory:// ({reason}); set a redis:// "
                f"storage, or exact = true to refuse")

    def has_plans(self, app: Flask) -> bool:
        """Whether [ratelimit.plans] names a plan (False when the section was refused: ``gateway check``)."""
        runtime: RateLimitRuntime | None = app.extensions.get(EXTENSION)
        return runtime is not None and bool(runtime.settings.plans)

    def runtime(self, app: Flask | None = None) -> RateLimitRuntime:
        """The app's rate limit state (tests and benchmarks reach the storage through it)."""
        runtime: RateLimitRuntime = (app or current_app).extensions[EXTENSION]
        return runtime


#: The one instance: ``create_app`` initialises it, code routes decorate with ``limiter.limit(...)``.
limiter = GatewayLimiter(key_func=by_client_address)


@limiter.request_filter
def _never_counted() -> bool:
    # CORS preflights carry no credentials and must not eat the quota of the request they announce.
    return current_request().method == "OPTIONS"


def _plan_limits() -> str:
    principal = current_globals().get("principal")
    if principal is None:
        return ""
    settings: RateLimitSettings = current_gateway().extensions[EXTENSION].settings
    plan = plan_of(principal, settings.plan_claim)
    if plan not in settings.plans:
        plan = settings.default_plan
    return ";".join(settings.plans[plan]) if plan is not None else ""


#: The consumer's plan quota, one counter per consumer across every route that carries it.
plan_quota = limiter.shared_limit(_plan_limits, scope="plan", key_func=by_consumer)


def limit_declared_route(limits: tuple[str, ...], *, plan: bool) -> Callable[[View], View]:
    """A declared route's limit layer: its ``limits`` per consumer (or address), and the plan quota when ``plan``.

    The same ``limiter.limit`` a code route uses; the plan quota depends on the caller, so
    Flask-Limiter resolves it on each request, while the route's own limits never change and are
    resolved once (decision 52).
    """
    counted = limiter.limit(";".join(limits), key_func=by_consumer) if limits else None

    def decorate(view: View) -> View:
        limited: Callable[..., Any] = view
        if plan:
            limited = plan_quota(limited)
        if counted is not None:
            limited = counted(limited)
        return cast(View, limited)

    return decorate


def _request_counts() -> RequestCounts:
    state = current_globals()
    counts: RequestCounts | None = state.get(_COUNTS)
    if counts is None:
        counts = RequestCounts()
        setattr(state, _COUNTS, counts)
    return counts


def _storage_options(settings: RateLimitSettings) -> dict[str, Any]:
    if not settings.shared_storage:
        return {}
    # One bounded attempt per call, as for every shared state; the guard's deadline covers connect and answer.
    return client_options(settings.storage_timeout)


def _refresh_topology(strategy: RateLimiter) -> None:
    """Before a probe: a Redis Cluster storage re-reads its slot map (app/sharedstate/uri.py says why)."""
    storage = strategy.storage
    if isinstance(storage, RedisStorage):
        refresh_topology(storage.get_connection())


def _storage_errors(strategy: RateLimiter) -> tuple[type[BaseException], ...]:
    """What a failed storage call raises: Redis's errors (a cluster's included) and the storage's own."""
    errors = strategy.storage.base_exceptions
    return (*REDIS_ERRORS, *(errors if isinstance(errors, tuple) else (errors,)))


def _per_worker(settings: RateLimitSettings, workers: int) -> str | None:
    """Why counts are not exact, when memory:// storage meets several workers; None when they are."""
    if settings.shared_storage or workers < 2:
        return None
    return (f"memory:// counts per worker, and {workers} workers would let up to {workers} times each limit "
            f"through")


def _uses_limits(app: Flask, settings: RateLimitSettings) -> bool:
    """Whether anything in the built app counts: an app-wide limit, a plan, a blueprint limit or a route's."""
    manager = limiter.limit_manager
    return bool(settings.default or settings.plans or manager._blueprint_limits or any(
        route_policy(view).settings("limit") for view in app.view_functions.values()))


def _check_plans(settings: RateLimitSettings, app: Flask) -> None:
    keys = auth.runtime(app).settings.api_keys
    if not settings.plans or keys is None:
        return
    for consumer in keys.consumers.values():
        if consumer.plan is not None and consumer.plan not in settings.plans:
            raise ConfigError(f"auth.api_keys.consumers.{consumer.name}.plan", consumer.plan,
                              "a plan named in [ratelimit.plans] (" + ", ".join(settings.plans) + ")")


def _usages(counts: RequestCounts, endpoint: str, strategy: MeteredStrategy) -> list[Usage]:
    kinds = []
    for counted in counts.counted:
        scope = counted.identifiers[-1]
        if scope == "global":
            kinds.append("default")
        elif scope == endpoint or scope.startswith(endpoint + ":"):
            kinds.append("route")
        else:
            kinds.append(scope)  # "plan", or a shared limit's scope
    usages = []
    for kind, counted in zip(kinds, counts.counted):
        item = counted.item
        # Redis hits bring their window along; a memory hit reads it back in-process.
        stats = counted.stats or strategy.get_window_stats(item, *counted.identifiers)
        window = item.get_expiry()
        name = kind if kinds.count(kind) == 1 else f"{kind}-{window}s"
        usages.append(Usage(name=name, quota=item.amount, window=window, remaining=stats.remaining,
                            reset_at=stats.reset_time, breached=not counted.allowed))
    return usages


def _write_headers(response: Response) -> Response:
    counts: RequestCounts | None = current_globals().get(_COUNTS)
    if counts is None:
        return response  # no limit applied to this request
    served = current_request()
    rule = served.url_rule
    decision = "storage_error" if counts.outage else "limited" if response.status_code == 429 else "allowed"
    metrics.record_rate_limit(rule.rule if rule is not None else None, decision)
    served.environ[RATE_LIMIT_ENVIRON] = decision
    if not counts.counted:
        return response
    runtime: RateLimitRuntime = current_gateway().extensions[EXTENSION]
    settings = runtime.settings
    now = time.time()
    usages = _usages(counts, served.endpoint or "", runtime.strategy)
    if settings.headers in ("ietf", "both"):
        response.headers.extend(ietf_headers(usages, now))
    if settings.headers in ("legacy", "both"):
        response.headers.extend(legacy_headers(usages))
    wait = retry_after(usages, now) if response.status_code == 429 else None
    if wait is not None:
        response.headers["Retry-After"] = wait
    return response


def _render_rate_limited(error: RateLimitExceeded) -> Response:
    limit = error.limit.limit
    return problem_response(429, "Too Many Requests", f"Rate limit exceeded: {limit}.", RATE_LIMITED)
