"""The public surface blueprints use: the ``upstreams`` extension and ``Upstream`` handles."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import requests
from flask import Blueprint, Flask, current_app, request
from flask.blueprints import BlueprintSetupState

from app.config import ConfigError
from app.edge import UPSTREAM_ENVIRON
from app.errors import UpstreamBusy
from app.proxy.client import UpstreamState, build_session, build_states
from app.proxy.paths import check_path
from app.proxy.settings import UpstreamSettings, read_upstreams
from app.proxy.transport import ProxyResponse, build_request, build_response, send

__all__ = ["Upstream", "Upstreams", "raw_target", "upstreams"]

_EXTENSION = "frontdesk.upstreams"
# Characters a path may carry unencoded; "%" keeps escapes the caller already made.
_PATH_SAFE = "/!$&'()*+,;=:@-._~%"


@dataclass(frozen=True)
class _Runtime:
    session: requests.Session
    states: dict[str, UpstreamState]


class Upstreams:
    """The app-less extension that owns the Session, the pools and each upstream's state."""

    def init_app(self, app: Flask) -> None:
        """Read [upstreams] and build this app's (this worker's) Session and pools."""
        settings = read_upstreams(app.config)
        session = build_session(settings)
        app.extensions[_EXTENSION] = _Runtime(session, build_states(session, settings))

    def settings(self, app: Flask | None = None) -> dict[str, UpstreamSettings]:
        """Every configured upstream's settings, by name."""
        runtime: _Runtime = (app or current_app).extensions[_EXTENSION]
        return {name: state.settings for name, state in runtime.states.items()}

    def session(self, app: Flask | None = None) -> requests.Session:
        """The app's Session, for calls that are not a forward (JSON fetches and the like)."""
        runtime: _Runtime = (app or current_app).extensions[_EXTENSION]
        return runtime.session


#: The one instance ``create_app`` initialises.
upstreams = Upstreams()


class Upstream:
    """A handle on one configured upstream: ``users = Upstream("users", bp)``.

    Passing the blueprint makes registration check that the upstream is configured, so a
    missing one stops the start instead of failing the first request.
    """

    def __init__(self, name: str, blueprint: Blueprint | None = None) -> None:
        self.name = name
        if blueprint is not None:
            blueprint.record_once(self._check)

    def _check(self, state: BlueprintSetupState) -> None:
        if self.name not in state.app.extensions[_EXTENSION].states:
            raise ConfigError(f"upstreams.{self.name}", None,
                              f"an [upstreams.{self.name}] table: blueprint {state.blueprint.name!r} forwards to it")

    def forward(self, path: str | None = None, *, query: str | None = None) -> ProxyResponse:
        """Forward the current request here, at ``path`` (default: the client's own path and query)."""
        environ = request.environ
        raw_path, _, raw_query = raw_target(environ)
        check_path(raw_path)
        upstream_path = raw_path if path is None else quote(path, safe=_PATH_SAFE)
        query = raw_query if query is None else query
        url = f"{upstream_path}?{query}" if query else upstream_path

        state: UpstreamState = current_app.extensions[_EXTENSION].states[self.name]
        settings = state.settings
        if state.in_flight >= settings.max_in_flight:
            raise UpstreamBusy(f"The upstream already has {settings.max_in_flight} requests in flight.")
        target, pool = state.pick()
        host = environ.get("HTTP_HOST", target.netloc) if settings.preserve_host else target.netloc
        upstream_request = build_request(environ, host, url)
        if not settings.forward_authorization:
            upstream_request.headers.pop("Authorization", None)
        environ[UPSTREAM_ENVIRON] = (self.name, target.url)
        state.in_flight += 1
        try:
            answer = send(state, pool, upstream_request)
        except BaseException:
            state.in_flight -= 1
            raise
        return build_response(answer, upstream_request.method, state)


def raw_target(environ: dict[str, object]) -> tuple[str, str, str]:
    """The path and query exactly as the client sent them (absolute-form reduced to origin-form)."""
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(uri, str) and uri:
        if not uri.startswith("/"):
            parts = urlsplit(uri)
            return parts.path or "/", "?", parts.query
        return uri.partition("?")
    path = quote(str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "")), safe=_PATH_SAFE)
    return path, "?", str(environ.get("QUERY_STRING", ""))
