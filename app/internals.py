"""Every use of a library's internals, in one table, and the start-up check that falls back on a version change.

Each entry names the library, the exact versions it was written for, what it does, what it gains
(measured, docs/performance-tuning.md and docs/decisions.md) and a ``check`` that fails when the
internal it relies on changes (tests/test_internals.py runs every check). ``check_internals`` compares
the installed versions (importlib.metadata) with the table at start-up: ``create_app`` checks the app's
entries, worker.py the server's. On a mismatch the entries of that library are switched off, the code
behind them takes the library's public behaviour, and one warning names them. An entry whose
internal has no public equivalent (``fallback`` says so) stays on; its check still runs in CI.
This module imports only the standard library: worker.py imports it in gunicorn's master.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

__all__ = ["HTTP_RESPONSE_STATE", "TABLE", "Internal", "Switch", "check_internals", "installed_versions", "switch"]

log = logging.getLogger("frontdesk.internals")

Side = Literal["app", "server"]
#: The pseudo-distribution for the standard library: its version is Python's ``major.minor``.
PYTHON = "python"


@dataclass
class Switch:
    """Whether the code behind one entry uses the internal (True) or the library's public behaviour."""

    on: bool = True


@dataclass(frozen=True)
class Internal:
    """One use of a library's internals."""

    name: str
    side: Side
    library: str
    versions: tuple[str, ...]
    where: str
    what: str
    gain: str
    fallback: str | None  # None: no public equivalent, the entry stays on after a mismatch
    check: Callable[[], None] = field(repr=False)
    switch: Switch = field(default_factory=Switch, compare=False, repr=False)


def _has(owner: Any, name: str, parameters: Iterable[str] | None = None) -> None:
    """Fail unless ``owner.name`` exists (and, for a callable, takes exactly ``parameters``)."""
    value = inspect.getattr_static(owner, name)  # AttributeError when it is gone
    if parameters is not None:
        function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        found = list(inspect.signature(function).parameters)
        assert found == list(parameters), f"{owner!r}.{name}{found}: expected {list(parameters)}"


def _gunicorn_response_class() -> type:
    """gunicorn's own Response class, also once worker.py has put its subclass in its place."""
    from gunicorn.http import wsgi

    found: type = next(cls for cls in wsgi.Response.__mro__ if cls.__module__ == "gunicorn.http.wsgi")
    return found


def _gunicorn_response() -> None:
    response = _gunicorn_response_class()
    _has(response, "__init__", ["self", "req", "sock", "cfg"])
    _has(response, "_emit_body", ["self", "data"])
    _has(response, "write", ["self", "arg"])
    _has(response, "default_headers", ["self"])


def _gunicorn_write_error() -> None:
    from gunicorn import util

    _has(util, "write_error", ["sock", "status_int", "reason", "mesg"])


def _gunicorn_server_banner() -> None:
    from gunicorn.http import wsgi

    assert isinstance(inspect.getattr_static(wsgi, "SERVER"), str)
    # Each Response takes its Server name from the module constant when it is made.
    assert "self.version = SERVER" in inspect.getsource(_gunicorn_response_class()), "Response no longer reads SERVER"


def _gunicorn_arbiter_stop() -> None:
    from gunicorn.arbiter import Arbiter

    _has(Arbiter, "stop", ["self", "graceful"])


def _gunicorn_force_close() -> None:
    response = _gunicorn_response_class()
    _has(response, "force_close", ["self"])
    _has(response, "start_response", ["self", "status", "headers", "exc_info"])


def _werkzeug_proxies() -> None:
    from werkzeug.local import LocalProxy

    _has(LocalProxy, "_get_current_object")


def _werkzeug_converters() -> None:
    from werkzeug.routing import Map, Rule

    rule = Rule("/<int:n>")
    Map([rule])
    assert isinstance(inspect.getattr_static(rule, "_converters"), dict)


def _limiter_options() -> None:
    from flask_limiter import Limiter

    limiter = Limiter(lambda: "")
    for name in ("_storage_uri", "_storage_options", "_strategy", "_key_prefix", "_swallow_errors",
                 "_headers_enabled", "_in_memory_fallback_enabled", "_storage_dead", "_limiter"):
        inspect.getattr_static(limiter, name)


def _limiter_before_request() -> None:
    from flask_limiter import Limiter

    _has(Limiter, "_check_request_limit", ["self", "callable_name", "in_middleware"])
    manager = Limiter(lambda: "").limit_manager
    for name in ("_application_limits", "_default_limits", "_blueprint_limits", "_decorated_limits"):
        inspect.getattr_static(manager, name)
    inspect.getattr_static(Limiter(lambda: ""), "_meta_limits")


def _prometheus_histogram() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    child = Histogram("frontdesk_check", "check", registry=CollectorRegistry())
    assert hasattr(child._sum, "inc") and all(hasattr(bucket, "inc") for bucket in child._buckets)
    assert len(child._buckets) == len(child._upper_bounds)


#: What http.client.HTTPResponse's __init__ sets on Pythons 3.11-3.13 (app/proxy/wire.py sets the
#: public ones itself; tests/test_internals.py checks that it does).
HTTP_RESPONSE_STATE = frozenset({
    "__IOBase_closed", "_finalizing", "_method", "chunk_left", "chunked", "debuglevel", "fp", "headers", "length",
    "msg", "reason", "status", "version", "will_close",
})


def _http_response() -> None:
    import http.client
    import socket

    left, right = socket.socketpair()
    try:
        found = set(vars(http.client.HTTPResponse(left)))
    finally:
        left.close()
        right.close()
    assert found == HTTP_RESPONSE_STATE, f"http.client.HTTPResponse now sets {sorted(found ^ HTTP_RESPONSE_STATE)}"


_GUNICORN = ("27.0.1",)
_WERKZEUG = ("3.1.9",)
_LIMITER = ("4.1.1",)
_PYTHONS = ("3.11", "3.12", "3.13")

#: The table. Dropped for a gain under 3 % of a pass-through's CPU (docs/decisions.md, 78): Flask-Limiter's
#: context property and its two wrapped hooks, logging._srcfile, flask_limiter._limits.RuntimeLimit as a
#: type, flask.globals.request_ctx. Flask's ensure_sync memo is back as the public override it is (93).
TABLE: tuple[Internal, ...] = (
    Internal("gunicorn-response", "server", "gunicorn", _GUNICORN, "worker.OneSendResponse",
             "gunicorn.http.wsgi.Response replaced by a subclass overriding write and _emit_body: the head "
             "leaves in the same send as the first body bytes",
             "pass-through 750 -> 705 CPU us (6 %), cache hit 485 -> 430 (11 %); decision 57",
             "gunicorn's Response: the head in its own send", _gunicorn_response),
    Internal("gunicorn-write-error", "server", "gunicorn", _GUNICORN, "worker.write_problem",
             "gunicorn.util.write_error replaced: gunicorn's own error answers (400, 414, 431) as problem+json",
             "a feature, not CPU: one error format; decision 56",
             "gunicorn's HTML error page", _gunicorn_write_error),
    Internal("gunicorn-server-banner", "server", "gunicorn", _GUNICORN, "worker.py (install)",
             "gunicorn.http.wsgi.SERVER set to 'frontdesk': the Server field names no software version",
             "a feature, not CPU; docs/edge.md",
             "Server: gunicorn", _gunicorn_server_banner),
    Internal("gunicorn-arbiter-stop", "server", "gunicorn", _GUNICORN, "worker.install_master_hooks",
             "the Arbiter's stop wrapped on the instance: the shared page says 'stopping' before workers get "
             "SIGTERM, so /readyz turns 503 and a stop is told from a reload",
             "a feature, not CPU: readiness during a stop; docs/operations.md",
             "a stop looks like a reload to the workers: they hand over, then drain", _gunicorn_arbiter_stop),
    Internal("gunicorn-force-close", "server", "gunicorn", _GUNICORN, "worker.DrainingWorker._drain_aware",
             "the Response behind start_response (its __self__) told force_close() during a drain",
             "a feature, not CPU: in-flight answers close their connection during a drain",
             "gunicorn decides keep-alive when the request starts", _gunicorn_force_close),
    Internal("werkzeug-proxy-objects", "app", "werkzeug", _WERKZEUG, "app/current.py",
             "LocalProxy._get_current_object() read once per function instead of one proxy lookup per attribute",
             "104,000 instructions of a cache hit (16 %), 8 % of a pass-through; decision 60",
             "the proxies themselves", _werkzeug_proxies),
    Internal("werkzeug-rule-converters", "app", "werkzeug", _WERKZEUG,
             "app/routes.py, app/operators/openapi/document.py",
             "Rule._converters: a declared route's converters tried once at start; path parameters typed in OpenAPI",
             "a feature, not CPU: bad converter arguments refused at start",
             "converter arguments fail on the first request; OpenAPI path parameters are strings",
             _werkzeug_converters),
    Internal("limiter-options", "app", "flask-limiter", _LIMITER, "app/ratelimit/extension.py (init_app)",
             "Limiter's private option attributes set from the frozen [ratelimit] settings on every init_app, "
             "and its strategy (_limiter) wrapped by MeteredStrategy (outages, timeouts)",
             "a feature, not CPU: each app gets its own settings; storage outages fail open or closed",
             None, _limiter_options),
    Internal("limiter-before-request", "app", "flask-limiter", _LIMITER, "GatewayLimiter._check_request_limit",
             "the before-request pass skipped when the manager holds no app-wide, default, blueprint or meta "
             "limit (reads _application_limits, _default_limits, _blueprint_limits, _meta_limits; the "
             "inventory reads _decorated_limits)",
             "about 100 us of a pass-through's 705 (14 %); the inventory: a feature",
             "Flask-Limiter's before-request pass on every request; the inventory lists no code-route limit",
             _limiter_before_request),
    Internal("prometheus-histogram", "app", "prometheus-client", ("0.26.0",), "app/observability/metrics_batch.py",
             "a histogram's batched observations written to its _sum and _buckets (no public call adds n "
             "observations to a bucket)",
             "part of decision 25's batching: observability 16 -> 8 % of a pass-through",
             "each observation goes to the histogram when it is made (observe)", _prometheus_histogram),
    Internal("http-client-response", "app", PYTHON, _PYTHONS, "app/proxy/wire.py",
             "http.client.HTTPResponse subclassed without its __init__, built through the public response_class "
             "seam: a plain answer read by the gateway's own reader, any other by h11",
             "a feature, not CPU: strict upstream framing; decision 63",
             None, _http_response),
)

_BY_NAME = {entry.name: entry for entry in TABLE}


def switch(name: str) -> Switch:
    """The switch of the entry ``name``, read where the internal is used."""
    return _BY_NAME[name].switch


def installed_versions(libraries: Iterable[str]) -> dict[str, str]:
    """Each library's installed version (Python's ``major.minor`` for the standard library)."""
    versions = {}
    for library in libraries:
        if library == PYTHON:
            versions[library] = f"{sys.version_info.major}.{sys.version_info.minor}"
        else:
            try:
                versions[library] = metadata.version(library)
            except metadata.PackageNotFoundError:
                versions[library] = "not installed"
    return versions


def check_internals(side: Side, installed: Mapping[str, str] | None = None) -> tuple[Internal, ...]:
    """Switch each of ``side``'s entries on or off by the installed versions; one warning names those changed.

    ``installed`` replaces importlib.metadata's answers (tests). Returns the entries not written for
    the installed version.
    """
    entries = [entry for entry in TABLE if entry.side == side]
    versions = dict(installed) if installed is not None else installed_versions({e.library for e in entries})
    changed = tuple(entry for entry in entries if versions.get(entry.library) not in entry.versions)
    for entry in entries:
        entry.switch.on = entry not in changed or entry.fallback is None
    if changed:
        log.warning("library versions differ from those the gateway's uses of their internals were written for "
                    "(app/internals.py): %s", "; ".join(_describe(entry, versions) for entry in changed))
    return changed


def _describe(entry: Internal, versions: Mapping[str, str]) -> str:
    found = versions.get(entry.library, "not installed")
    then = (f"now {entry.fallback}" if entry.fallback is not None
            else "kept: no public equivalent (its check runs in the test suite)")
    return f"{entry.name} ({entry.library} {found}, written for {', '.join(entry.versions)}): {then}"
