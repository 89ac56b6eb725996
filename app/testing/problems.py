"""Assertions on the gateway's own error answers: RFC 9457 problem+json with the request id."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.test import TestResponse

from app.errors import PROBLEM_BASE, PROBLEM_JSON

__all__ = ["PROBLEM_BASE", "assert_problem"]


def assert_problem(response: TestResponse, status: int, type: str | None = None, *,
                   detail: str | None = None) -> dict[str, Any]:
    """Check a problem+json answer (status, type, the request id of the response) and return its body.

    ``type`` is a full URI (``about:blank``) or the last part of one of the gateway's own
    (``insufficient-scope``); ``detail`` must occur in the body's ``detail``.
    """
    body_text = response.get_data(as_text=True)
    _expect(response.status_code == status, f"status {response.status_code}, expected {status}: {body_text[:500]}")
    _expect(response.mimetype == PROBLEM_JSON, f"Content-Type {response.content_type!r}, expected {PROBLEM_JSON}")
    try:
        body: Any = json.loads(body_text)
    except ValueError:
        raise AssertionError(f"a problem+json body that is not JSON: {body_text[:500]!r}") from None
    _expect(isinstance(body, dict), f"a problem document is an object, got {body!r}")
    _expect(body.get("status") == status, f"body status {body.get('status')!r}, expected {status}")
    _expect(isinstance(body.get("title"), str) and bool(body["title"]), f"no title in {body!r}")
    _expect(body.get("request_id") == response.headers.get("X-Request-ID"),
            f"body request_id {body.get('request_id')!r}, header {response.headers.get('X-Request-ID')!r}")
    if type is not None:
        expected = type if ":" in type else PROBLEM_BASE + type
        _expect(body.get("type") == expected, f"type {body.get('type')!r}, expected {expected!r}")
    if detail is not None:
        _expect(detail in str(body.get("detail")), f"detail {body.get('detail')!r} does not contain {detail!r}")
    document: dict[str, Any] = body
    return document


def _expect(condition: bool, message: str) -> None:
    # Not a bare assert: the check must hold under python -O too.
    if not condition:
        raise AssertionError(message)
