"""Helpers shared by the demo services: JSON answers, RFC 9457 problems, body parsing, health."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

PROBLEM_MIMETYPE = "application/problem+json"

JSONObject = dict[str, Any]


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """Answer `payload` as JSON with the given status and extra headers."""
    response = jsonify(payload)
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


def problem(status: int, title: str, detail: str | None = None) -> Response:
    """Answer an application/problem+json document (RFC 9457) with `status` and `title`."""
    body: JSONObject = {"title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    response = json_response(body, status)
    response.mimetype = PROBLEM_MIMETYPE
    return response


def json_object_body() -> JSONObject | None:
    """Return the request's JSON body if it is an object, else None (bad JSON included)."""
    # silent=True: a malformed body is a client mistake we answer with our own 422 problem,
    # not Flask's HTML 400 page.
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


def missing_fields(body: Mapping[str, Any], *names: str) -> list[str]:
    """Return the names in `names` that are absent from `body` or not non-empty strings."""
    return [
        name for name in names if not isinstance(body.get(name), str) or not body[name].strip()
    ]


def install_common(app: Flask) -> None:
    """Give `app` a `GET /health` route and problem+json answers for every HTTP error."""

    @app.get("/health")
    def health() -> Response:
        """Report that the service is up."""
        return json_response({"status": "ok"})

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        """Answer routing and method errors as problems, so clients only ever see JSON."""
        status = error.code or 500
        response = problem(status, (error.name or "error").lower())
        # 405 must keep its Allow header, which the original exception response carries.
        allow = error.get_response().headers.get("Allow")
        if allow:
            response.headers["Allow"] = allow
        return response
