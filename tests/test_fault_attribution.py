"""The fault rule: the client's faults are answered 400/408 and never counted against the upstream;
every slot a call takes is released on every path, exceptions forced included."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from flask import Flask
from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkSize
from werkzeug.exceptions import ClientDisconnected
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app import upstreams
from app.errors import RequestBodyInvalid, RequestBodyTimeout
from app.proxy.breaker import HALF_OPEN
from app.proxy.transport import ClientBody
from tests.conftest import AppFactory
from tests.fakes.backend import Backend


class Breaking(io.RawIOBase):
    """A client body that gives ``good`` bytes, then fails with ``error``."""

    def __init__(self, good: bytes, error: BaseException) -> None:
        self.good = good
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.good:
            data, self.good = self.good[:len(buffer)], self.good[len(buffer):]
            buffer[:len(data)] = data
            return len(data)
        raise self.error


@pytest.mark.parametrize("error, expected", [
    (InvalidChunkSize(b"zz"), RequestBodyInvalid),  # gunicorn's chunk parser
    (ChunkMissingTerminator(b"xx"), RequestBodyInvalid),
    (ConnectionResetError(104, "reset"), RequestBodyInvalid),
    (ClientDisconnected(), RequestBodyInvalid),  # Werkzeug's LimitedStream: shorter than its Content-Length
    (gevent.Timeout(), RequestBodyTimeout),  # the deadline passed while waiting for the client
])
def test_a_body_that_cannot_be_read_is_the_clients_fault(error: BaseException, expected: type[Exception]) -> None:
    body = ClientBody(Breaking(b"", error))  # type: ignore[arg-type]
    with pytest.raises(expected):
        body.read(10)


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend("echo") as running:
        yield running


def strict_gateway(make_app: AppFactory, backend: Backend) -> Flask:
    """Ejected after 3 failures in a row, a breaker that opens on 3 calls at 50 %."""
    return make_app(
        UPSTREAMS={"svc": {"targets": [backend.url], "timeout": 1, "eject": {"failures": 3, "seconds": 60},
                           "breaker": {"min_requests": 3, "failure_ratio": 0.5, "open_for": 60}}},
        ROUTES=[{"path": "/<path:rest>", "upstream": "svc", "auth": "public", "methods": ["GET", "POST"]}])


@pytest.mark.parametrize("error, status", [
    (InvalidChunkSize(b"zz"), 400), (ConnectionResetError(104, "reset"), 400), (gevent.Timeout(), 408)])
@pytest.mark.parametrize("chunked", [False, True])
def test_client_faults_neither_eject_nor_trip_the_breaker(make_app: AppFactory, backend: Backend,
                                                          error: BaseException, status: int, chunked: bool) -> None:
    app = strict_gateway(make_app, backend)
    client = app.test_client()
    framing = {"HTTP_TRANSFER_ENCODING": "chunked"} if chunked else {"CONTENT_LENGTH": "100"}
    for _ in range(5):
        response = client.post("/x", environ_overrides={**framing, "wsgi.input": Breaking(b"first", error)})
        assert response.status_code == status
        assert response.mimetype == "application/problem+json"
    answer = client.get("/x")
    assert answer.status_code == 200  # neither ejected nor behind an open breaker
    answer.close()
    state = upstreams.state("svc", app)
    (endpoint,) = state.endpoints
    assert endpoint.breaker is not None and endpoint.breaker.counts() == (1, 0)
    assert state.in_flight == 0 and endpoint.in_flight == 0


def test_a_client_fault_gives_the_half_open_probe_back(make_app: AppFactory, backend: Backend) -> None:
    app = strict_gateway(make_app, backend)
    (endpoint,) = upstreams.state("svc", app).endpoints
    breaker = endpoint.breaker
    assert breaker is not None
    breaker.state, breaker.opened_at = "open", -1000.0  # open long enough ago: the next call is the probe
    client = app.test_client()
    response = client.post("/x", environ_overrides={"CONTENT_LENGTH": "10",
                                                    "wsgi.input": Breaking(b"", ConnectionResetError())})
    assert response.status_code == 400
    assert breaker.state == HALF_OPEN and not breaker.probing  # the probe is free for the next caller
    assert client.get("/x").status_code == 200
    assert breaker.state == "closed"


def test_a_head_the_server_refuses_releases_the_call_and_answers_502(make_app: AppFactory, backend: Backend) -> None:
    """A server's start_response that raises (gunicorn did, on fields it found invalid): 502, and every slot back."""
    app = strict_gateway(make_app, backend)
    calls: list[str] = []

    def refusing(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        calls.append(status)
        if len(calls) == 1:
            raise ValueError("invalid header")
        return lambda data: None

    body, status, _ = run_wsgi_app(app, EnvironBuilder(path="/x").get_environ())  # the ordinary path first
    assert status.startswith("200") and b"".join(body)
    getattr(body, "close")()
    iterable = app(EnvironBuilder(path="/x").get_environ(), refusing)
    payload = b"".join(iterable)
    getattr(iterable, "close", lambda: None)()
    assert calls[-1].startswith("502")
    assert json.loads(payload)["type"].endswith("/upstream-unreachable")
    state = upstreams.state("svc", app)
    assert state.in_flight == 0 and state.endpoints[0].in_flight == 0
