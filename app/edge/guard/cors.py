"""CORS answers (the Fetch standard's CORS protocol): preflights and the headers on actual responses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.edge.guard.settings import CorsPolicy

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["actual_headers", "is_preflight", "preflight_headers"]

_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def is_preflight(environ: WSGIEnvironment) -> bool:
    """An OPTIONS request a browser sends before a cross-origin call (Origin and the method it asks about)."""
    return (environ.get("REQUEST_METHOD") == "OPTIONS" and "HTTP_ORIGIN" in environ
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ)


def preflight_headers(environ: WSGIEnvironment, cors: CorsPolicy) -> list[tuple[str, str]]:
    """The preflight answer's headers: the grant, or only Vary when the origin, method or a header is refused."""
    headers = [("Vary", _PREFLIGHT_VARY)]
    origin = environ["HTTP_ORIGIN"]
    method = environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"].strip()
    requested = [name.strip().lower() for name in environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").split(",")]
    if (
        not cors.allows(origin)
        or method not in cors.method_set
        or any(name and name not in cors.header_set for name in requested)
    ):
        return headers
    headers += _grant(origin, cors)
    headers.append(("Access-Control-Allow-Methods", cors.methods))
    if cors.headers:
        headers.append(("Access-Control-Allow-Headers", cors.headers))
    headers.append(("Access-Control-Max-Age", str(cors.max_age)))
    return headers


def actual_headers(environ: WSGIEnvironment, cors: CorsPolicy,
                   headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The response headers with the gateway's CORS grant; an upstream's own Access-Control-* are dropped."""
    kept = [(name, value) for name, value in headers if not name.lower().startswith("access-control-")]
    _add_vary_origin(kept)
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and cors.allows(origin):
        kept += _grant(origin, cors)
        if cors.expose_headers:
            kept.append(("Access-Control-Expose-Headers", cors.expose_headers))
    return kept


def _grant(origin: str, cors: CorsPolicy) -> list[tuple[str, str]]:
    if cors.any_origin and not cors.credentials:
        return [("Access-Control-Allow-Origin", "*")]
    grant = [("Access-Control-Allow-Origin", origin)]
    if cors.credentials:
        grant.append(("Access-Control-Allow-Credentials", "true"))
    return grant


def _add_vary_origin(headers: list[tuple[str, str]]) -> None:
    """Every CORS-dependent answer varies on Origin, so no shared cache hands one origin's grant to another."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            tokens = {token.strip().lower() for token in value.split(",")}
            if "*" not in tokens and "origin" not in tokens:
                headers[index] = (name, f"{value}, Origin")
            return
    headers.append(("Vary", "Origin"))
