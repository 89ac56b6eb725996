"""Resilience through the app, against real local backends that the tests stop, restart and break."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import upstreams
from tests.conftest import AppFactory
from tests.fakes import wait_until
from tests.fakes.backend import Backend

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


@pytest.fixture
def pair() -> Iterator[tuple[Backend, Backend]]:
    """Two running backends, ``a`` and ``b``."""
    with Backend("a") as a, Backend("b") as b:
        yield a, b


def gateway(make_app: AppFactory, targets: list[Any], **upstream: Any) -> Flask:
    """An app with one upstream ``svc`` at ``targets`` and a catch-all route to it."""
    return make_app(UPSTREAMS={"svc": {"targets": targets, **upstream}},
                    ROUTES=[{"path": "/<path:rest>", "upstream": "svc", "auth": "public", "methods": METHODS}])


def answered_by(response: TestResponse) -> str:
    """The name of the backend that echoed the request (closing the response, as a server would)."""
    response.close()
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json is not None
    return str(response.json["backend"])


def assert_problem(response: TestResponse, status: int, problem: str) -> None:
    response.close()
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    assert response.json is not None and response.json["type"].endswith("/" + problem)


# --- balancing ------------------------------------------------------------------------------


def test_weights_are_respected(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    client = gateway(make_app, [{"url": a.url, "weight": 3}, b.url]).test_client()
    counts = Counter(answered_by(client.get("/x")) for _ in range(400))
    assert counts == {"a": 300, "b": 100}


def test_hash_by_header_keeps_each_consumer_on_one_target(make_app: AppFactory) -> None:
    with Backend("a") as a, Backend("b") as b, Backend("c") as c:
        client = gateway(make_app, [a.url, b.url, c.url], balance="hash", hash_on="header:X-Consumer").test_client()
        seen: dict[str, set[str]] = {}
        for round_ in range(3):
            for consumer in range(30):
                response = client.get("/x", headers={"X-Consumer": f"consumer-{consumer}"})
                seen.setdefault(f"consumer-{consumer}", set()).add(answered_by(response))
        assert all(len(targets) == 1 for targets in seen.values())
        assert len({next(iter(targets)) for targets in seen.values()}) == 3  # and all three get some


def test_hash_by_client_address(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    client = gateway(make_app, [a.url, b.url], balance="hash").test_client()
    for address in ("10.0.0.1", "10.0.0.2", "192.0.2.77"):
        served = {answered_by(client.get("/x", environ_base={"REMOTE_ADDR": address})) for _ in range(5)}
        assert len(served) == 1


def test_least_in_flight_avoids_the_busy_target(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    app = gateway(make_app, [a.url, b.url], balance="least_in_flight")
    slow = gevent.spawn(app.test_client().get, "/_/slow/0.5")  # occupies one target
    wait_until(lambda: len(a.received) + len(b.received) == 1, timeout=3.0)
    busy = "a" if a.received else "b"
    client = app.test_client()
    assert {answered_by(client.get("/x")) for _ in range(6)} == {"b" if busy == "a" else "a"}
    slow.join()


# --- ejection, health checks, all down ----------------------------------------------------------


def test_a_dead_target_is_routed_around_once_ejected(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    client = gateway(make_app, [a.url, b.url], eject={"failures": 1, "seconds": 30}).test_client()
    b.stop()
    statuses = [client.get("/x").status_code for _ in range(20)]
    assert statuses.count(502) == 1  # the call that found it dead; none after the ejection
    assert statuses.count(200) == 19


def test_with_retries_no_client_sees_the_dead_target(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    client = gateway(make_app, [a.url, b.url], eject={"failures": 2, "seconds": 30},
                     retries={"on": ["connect"]}).test_client()
    b.stop()
    assert [answered_by(client.get("/x")) for _ in range(20)] == ["a"] * 20


def test_ejection_ends_after_its_period(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    client = gateway(make_app, [a.url, b.url], eject={"failures": 1, "seconds": 0.3},
                     retries={"on": ["connect"]}).test_client()
    b.stop()
    assert {answered_by(client.get("/x")) for _ in range(4)} == {"a"}
    b.start()  # back on its port
    time.sleep(0.35)
    assert Counter(answered_by(client.get("/x")) for _ in range(10)) == {"a": 5, "b": 5}


def test_active_checks_take_a_target_out_and_bring_it_back(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    app = gateway(make_app, [a.url, b.url],
                  health={"path": "/health", "interval": 0.05, "timeout": 0.5, "healthy_after": 2,
                          "unhealthy_after": 2})
    client = app.test_client()
    assert Counter(answered_by(client.get("/x")) for _ in range(4)) == {"a": 2, "b": 2}
    state = upstreams.state("svc", app)
    b.status = 503  # sick: its health checks fail, though it still answers
    wait_until(lambda: not state.endpoints[1].healthy, timeout=3.0)
    b.clear()
    assert {answered_by(client.get("/x")) for _ in range(6)} == {"a"}
    wait_until(lambda: len(b.received) >= 2, timeout=3.0)  # the checks go on
    assert all(seen.target == "/health" for seen in b.received)  # only the checks reached it
    assert b.received[0].header("User-Agent") == "frontdesk-health"
    b.status = None
    wait_until(lambda: state.endpoints[1].healthy, timeout=3.0)
    assert Counter(answered_by(client.get("/x")) for _ in range(4)) == {"a": 2, "b": 2}


def test_all_targets_down_is_503_at_once_with_retry_after(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    client = gateway(make_app, [a.url, b.url], eject={"failures": 1, "seconds": 30},
                     retries={"on": ["connect"], "attempts": 1}).test_client()
    a.stop()
    b.stop()
    assert_problem(client.get("/x"), 502, "upstream-unreachable")  # finds both dead, one try each
    started = time.perf_counter()
    response = client.get("/x")
    elapsed = time.perf_counter() - started
    assert_problem(response, 503, "upstream-down")
    assert elapsed < 0.05
    [retry_after] = response.headers.getlist("Retry-After")
    assert 29 <= int(retry_after) <= 30
    assert "127.0.0.1" not in response.get_data(as_text=True)  # nothing internal leaked


def test_readiness_follows_critical_upstreams(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    app = make_app(UPSTREAMS={"core": {"targets": [a.url], "critical": True, "eject": {"failures": 1}},
                              "extra": {"targets": [b.url], "eject": {"failures": 1}}},
                   ROUTES=[{"path": "/core/<path:rest>", "upstream": "core", "auth": "public"},
                           {"path": "/extra/<path:rest>", "upstream": "extra", "auth": "public"}])
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    b.stop()
    assert client.get("/extra/x").status_code == 502
    assert client.get("/readyz").status_code == 200  # not critical: the gateway still serves the rest
    a.stop()
    assert client.get("/core/x").status_code == 502
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "not ready", "unavailable": ["core"]}


# --- retries --------------------------------------------------------------------------------


def retrying(make_app: AppFactory, targets: list[Any], **retries: Any) -> FlaskClient:
    return gateway(make_app, targets, retries={"on": ["connect", "timeout", "reset", "503"], "backoff": 0.01,
                                               **retries}).test_client()


@pytest.mark.parametrize("path", ["/x", "/_/reset"])
def test_a_post_is_never_sent_twice(make_app: AppFactory, pair: tuple[Backend, Backend], path: str) -> None:
    a, b = pair
    a.status = b.status = 503
    client = retrying(make_app, [a.url, b.url], attempts=3)
    response = client.post(path, data=b"order")
    assert response.status_code in (502, 503)
    time.sleep(0.1)
    assert len(a.received) + len(b.received) == 1


def test_a_route_may_opt_a_post_into_retries(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    a.status = 503
    app = make_app(UPSTREAMS={"svc": {"targets": [a.url, b.url], "retries": {"on": ["503"], "backoff": 0.01}}})
    from flask import Blueprint

    from app import Upstream

    blueprint = Blueprint("orders", __name__)
    svc = Upstream("svc", blueprint)

    @blueprint.post("/orders")
    def create() -> Any:
        return svc.forward(retry_any_method=True)  # this upstream dedupes on Idempotency-Key

    app.register_blueprint(blueprint)
    response = app.test_client().post("/orders", data=b"order", headers={"Idempotency-Key": "k1"})
    assert answered_by(response) == "b"
    assert [seen.body for seen in a.received + b.received] == [b"order", b"order"]


def test_a_declared_route_may_opt_in_too(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    a.status = 503
    app = make_app(UPSTREAMS={"svc": {"targets": [a.url, b.url], "retries": {"on": ["503"], "backoff": 0.01}}},
                   ROUTES=[{"path": "/orders", "upstream": "svc", "auth": "public", "methods": ["POST"],
                            "retry_any_method": True},
                           {"path": "/payments", "upstream": "svc", "auth": "public", "methods": ["POST"]}])
    client = app.test_client()
    assert answered_by(client.post("/orders", data=b"order")) == "b"
    a.clear()
    b.clear()
    b.status = 503
    client.post("/payments", data=b"pay").close()  # not opted in: tried once
    assert len(a.received) + len(b.received) == 1


def test_an_idempotent_call_is_retried_on_another_target(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    a.status = 503
    client = retrying(make_app, [a.url, b.url])
    assert answered_by(client.put("/x", data=b"payload")) == "b"
    assert [seen.body for seen in a.received] == [b"payload"]
    assert [seen.body for seen in b.received] == [b"payload"]  # the buffered body, replayed whole


def test_retries_stop_after_the_attempts_and_the_last_answer_is_forwarded(
        make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    a.status = b.status = 503
    response = retrying(make_app, [a.url, b.url], attempts=3).get("/x")
    assert response.status_code == 503 and response.json == {"status": 503}  # the upstream's own answer
    assert len(a.received) + len(b.received) == 4


def test_a_streamed_body_is_not_retried(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    client = retrying(make_app, [a.url, b.url])
    a.stop()  # the first pick: a retry would be possible for a buffered body
    response = client.put("/x", input_stream=iter_stream([b"abc", b"def"]),
                          headers={"Transfer-Encoding": "chunked"})
    assert_problem(response, 502, "upstream-unreachable")
    assert b.received == []


def test_a_body_over_the_buffer_is_not_retried(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    client = retrying(make_app, [a.url, b.url], buffer=10)
    fresh = retrying(make_app, [a.url, b.url], buffer=10)
    a.stop()
    assert_problem(client.put("/x", data=b"x" * 11), 502, "upstream-unreachable")  # tried a, not retried
    assert b.received == []
    assert answered_by(fresh.put("/x", data=b"x" * 10)) == "b"  # a fresh app tries a first too
    # At the limit the body is held, and replayed whole to b.
    assert [seen.body for seen in b.received] == [b"x" * 10]


def test_a_timeout_before_any_byte_is_retried(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    a.delay = 1.0
    client = gateway(make_app, [a.url, b.url], read_timeout=0.2,
                     retries={"on": ["timeout"], "backoff": 0.01}).test_client()
    started = time.perf_counter()
    assert answered_by(client.get("/x")) == "b"
    assert time.perf_counter() - started < 0.6


def test_retries_never_run_past_the_deadline(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    a.status = b.status = 503
    a.delay = b.delay = 0.15
    app = gateway(make_app, [a.url, b.url], timeout=0.4,
                  retries={"on": ["503"], "attempts": 10, "backoff": 0.01})
    started = time.perf_counter()
    response = app.test_client().get("/x")
    elapsed = time.perf_counter() - started
    assert response.status_code in (503, 504)
    assert elapsed < 0.6  # ten attempts would take 1.5 s: the 0.4 s deadline stopped them
    assert len(a.received) + len(b.received) <= 3


def test_no_retry_once_the_body_is_on_its_way(make_app: AppFactory, pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    client = retrying(make_app, [a.url, b.url])
    response = client.get("/_/truncate")  # the head and the first bytes are passed on as they arrive
    with pytest.raises(ConnectionResetError):  # the head went out: the only signal left is a reset
        response.get_data()
    time.sleep(0.1)
    assert len(a.received) + len(b.received) == 1


def iter_stream(parts: list[bytes]) -> Any:
    """A readable stream of ``parts`` (a chunked body of unknown length)."""
    import io

    return io.BufferedReader(io.BytesIO(b"".join(parts)))


# --- circuit breaker ------------------------------------------------------------------------


def test_breaker_opens_fails_fast_then_lets_one_probe_through(make_app: AppFactory) -> None:
    with Backend("a") as a:
        app = gateway(make_app, [a.url], breaker={"failure_ratio": 0.5, "min_requests": 4, "window": 10,
                                                  "open_for": 0.3})
        client = app.test_client()
        a.status = 503
        assert [client.get("/x").status_code for _ in range(4)] == [503] * 4
        response = client.get("/x")
        assert_problem(response, 503, "upstream-down")
        assert response.headers.getlist("Retry-After") == ["1"]
        assert len(a.received) == 4  # open: it was not even asked
        a.status = None
        a.delay = 0.3
        time.sleep(0.3)
        a.clear()
        responses = gevent.joinall([gevent.spawn(app.test_client().get, "/x") for _ in range(10)])
        statuses = Counter(job.value.status_code for job in responses)
        assert statuses == {200: 1, 503: 9}
        assert len(a.received) == 1  # exactly one probe under concurrency
        a.delay = 0
        assert client.get("/x").status_code == 200  # closed again
