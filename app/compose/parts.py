"""One part of an aggregate: a GET through the upstream's pools, read whole and decoded to a JSON value."""

from __future__ import annotations

import json
from typing import Any

import gevent
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import HTTPError

from app.observability import metrics
from app.errors import GatewayError, PROBLEM_BASE, UpstreamBusy, UpstreamTimeout
from app.proxy import Endpoint, UpstreamRequest, UpstreamState, call_upstream, start_attempt
from app.observability.tracing import CallSpan
from app.compose.xmljson import XMLRefused, xml_to_json

__all__ = ["MAX_PART_BYTES", "PartFailure", "fetch_part"]

#: A part's answer is held in memory to be merged: larger ones fail the part rather than the worker.
MAX_PART_BYTES = 4 * 1024 * 1024
_READ_SIZE = 64 * 1024
_ACCEPT = {"json": "application/json", "xml": "application/xml, text/xml"}


class PartFailure(Exception):
    """Why a part has no value: the status the client would get for it, a kind, and a safe detail."""

    def __init__(self, name: str, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.name = name
        self.status = status
        self.kind = kind  # "timeout", "unreachable", "busy", "down", "status", "body"
        self.detail = detail

    def problem(self) -> dict[str, Any]:
        """The problem-detail entry (RFC 9457 members plus ``part``) for a partial answer."""
        return {"type": PROBLEM_BASE + "part-" + self.kind, "title": "Part missing", "status": self.status,
                "detail": self.detail, "part": self.name}


_KINDS = {504: "timeout", 502: "unreachable", 503: "down"}


def fetch_part(name: str, path: str, format: str, state: UpstreamState, headers: dict[str, str],
               environ: dict[str, Any], timeout: float | None) -> Any:
    """The part's JSON value; PartFailure when it cannot be had (nothing internal in the detail)."""
    settings = state.settings
    if state.in_flight >= settings.max_in_flight:
        metrics.record_rejected(settings.name)
        raise PartFailure(name, 503, "busy", f"The upstream already has {settings.max_in_flight} requests in flight.")
    headers = {**headers, "Accept": _ACCEPT[format], "Accept-Encoding": "gzip, deflate"}
    if not settings.forward_authorization:
        headers.pop("Authorization", None)
    netloc = settings.targets[0].netloc
    if settings.preserve_host and environ.get("HTTP_HOST"):
        netloc = environ["HTTP_HOST"]
    headers["Host"] = netloc
    upstream_request = UpstreamRequest("GET", path, headers, None, False)
    spans: list[CallSpan] = []

    def note(endpoint: Endpoint) -> None:
        start_attempt(environ, settings, headers, spans, endpoint)

    own = gevent.Timeout(timeout) if timeout is not None else None
    error: str | None = "killed"
    state.in_flight += 1
    metrics.set_in_flight(settings.name, state.in_flight)
    try:
        if own is not None:
            own.start()
        endpoint, answer = call_upstream(state, environ, upstream_request, on_attempt=note)
        try:
            body = _read(name, answer)
        finally:
            endpoint.in_flight -= 1
            if not answer.closed:
                answer.close()  # not read to its end: the connection cannot carry another request
            answer.release_conn()
        error = None if answer.status < 500 else f"status {answer.status}"
        value = _decode(name, answer, body, format)
        return value
    except gevent.Timeout as expired:
        if expired is not own:
            raise
        error = "timeout"
        raise PartFailure(name, 504, "timeout", f"The part did not answer within {timeout:g} s.") from None
    except (UpstreamTimeout, UpstreamBusy, GatewayError) as failure:
        error = type(failure).__name__
        status = failure.code or 502
        raise PartFailure(name, status, _KINDS.get(status, "unreachable"), failure.description or "") from None
    except PartFailure as failure:
        error = failure.kind
        raise
    finally:
        if own is not None:
            own.close()
        state.in_flight -= 1
        metrics.set_in_flight(settings.name, state.in_flight)
        if spans:
            spans[-1].end(error)


def _read(name: str, answer: BaseHTTPResponse) -> bytes:
    """The whole (decoded) body, refusing more than MAX_PART_BYTES."""
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = answer.read(_READ_SIZE, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_PART_BYTES:
                raise PartFailure(name, 502, "body", f"The part's answer is larger than {MAX_PART_BYTES} bytes.")
            chunks.append(chunk)
    except (HTTPError, OSError):
        raise PartFailure(name, 502, "unreachable", "The part's answer broke off.") from None


def _decode(name: str, answer: BaseHTTPResponse, body: bytes, format: str) -> Any:
    if not 200 <= answer.status < 300:
        raise PartFailure(name, 502, "status", f"The part's upstream answered {answer.status}.")
    if answer.status == 204 or not body:
        return None
    if format == "xml":
        try:
            return xml_to_json(body)
        except XMLRefused as refused:
            raise PartFailure(name, 502, "body", f"The part's answer is not usable XML: {refused}.") from None
    try:
        return json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise PartFailure(name, 502, "body", "The part's answer is not JSON.") from None
