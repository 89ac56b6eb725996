"""Forwarding is exact: what the client sent reaches the upstream, and what it answered comes back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import AppFactory, echo_config
from tests.fakes import free_port
from tests.fakes.backend import GZIP_BODY, Backend


def test_method_path_and_query_reach_the_upstream_as_sent(client: FlaskClient, backend: Backend) -> None:
    response = client.patch("/items/a%20b/%C3%A9?q=1&q=2&empty=&x=%2F", data=b"{}")
    assert response.status_code == 200
    [seen] = backend.wait_for(1)
    assert seen.method == "PATCH"
    assert seen.target == "/items/a%20b/%C3%A9?q=1&q=2&empty=&x=%2F"
    assert seen.body == b"{}"


def test_declared_upstream_path_template_is_filled_and_encoded(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(UPSTREAMS={"echo": {"targets": [backend.url]}},
                   ROUTES=[{"path": "/api/users/<path:rest>", "upstream": "echo", "upstream_path": "/v2/u/{rest}",
                            "auth": "public"}])
    response = app.test_client().get("/api/users/a%20b/c?x=1")
    assert response.status_code == 200
    assert backend.wait_for(1)[0].target == "/v2/u/a%20b/c?x=1"


@pytest.mark.parametrize("path", [
    "/a/../b", "/a/%2e%2e/b", "/a/%2E%2e/b", "/a/.%2e/b", "/a/%2f/b", "/a/b%2Fc", "/a/%5c/b", "/a/%252e%252e/b",
])
def test_paths_that_climb_out_are_refused_and_never_forwarded(client: FlaskClient, backend: Backend,
                                                              path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert response.json is not None and response.json["type"].endswith("/path-refused")
    assert backend.received == []


def test_hop_by_hop_headers_are_removed_in_both_directions(client: FlaskClient, backend: Backend) -> None:
    response = client.get("/_/hop", headers={
        "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1", "Keep-Alive": "timeout=5",
        "TE": "trailers", "Proxy-Authorization": "Basic eA==", "Upgrade": "websocket", "X-Kept": "yes",
    })
    [seen] = backend.wait_for(1)
    sent = {name.lower() for name, _ in seen.headers}
    assert not sent & {"x-secret-hop", "keep-alive", "te", "proxy-authorization", "upgrade"}
    assert seen.header("X-Kept") == "yes"
    assert seen.header("Connection") in (None, "keep-alive")  # urllib3's own, for its pool
    got = {name.lower() for name in response.headers.keys()}
    assert not got & {"x-private", "keep-alive", "proxy-authenticate", "upgrade", "connection"}
    assert response.headers["X-Public"] == "ok"


def test_forwarded_headers_and_via_are_set(client: FlaskClient, backend: Backend) -> None:
    client.get("/x", headers={"Host": "api.example.com", "X-Forwarded-For": "198.51.100.7", "Via": "1.0 edge"})
    [seen] = backend.wait_for(1)
    assert seen.header("X-Forwarded-For") == "198.51.100.7, 127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-Host") == "api.example.com"
    assert seen.header("Via") == "1.0 edge, 1.1 frontdesk"
    assert seen.header("Host") == f"127.0.0.1:{backend.port}"


def test_preserve_host_sends_the_clients_host(make_app: AppFactory, backend: Backend) -> None:
    make_app(**echo_config(backend, preserve_host=True)).test_client().get("/x", headers={"Host": "api.example"})
    assert backend.wait_for(1)[0].header("Host") == "api.example"


def test_client_address_comes_from_trusted_hops_only(make_app: AppFactory, backend: Backend) -> None:
    forged = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    untrusting = make_app(**echo_config(backend)).test_client()
    untrusting.get("/x", headers=forged, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    trusting = make_app(**echo_config(backend), EDGE={"trusted_proxies": 1}).test_client()
    trusting.get("/x", headers=forged, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    first, second = backend.wait_for(2)
    # The chain always ends with the real TCP peer; what it claims before that is passed on as claimed.
    assert first.header("X-Forwarded-For") == "6.6.6.6, 203.0.113.9, 10.0.0.2"
    assert second.header("X-Forwarded-For") == "6.6.6.6, 203.0.113.9, 10.0.0.2"


def test_request_id_is_accepted_when_well_formed(client: FlaskClient, backend: Backend) -> None:
    response = client.get("/x", headers={"X-Request-ID": "req-42.a_b"})
    assert response.headers["X-Request-ID"] == "req-42.a_b"
    assert backend.wait_for(1)[0].header("X-Request-ID") == "req-42.a_b"


@pytest.mark.parametrize("bad", ["", "x" * 129, "a b", "é", "a\tb", "<script>"])
def test_malformed_request_id_is_replaced(client: FlaskClient, backend: Backend, bad: str) -> None:
    response = client.get("/x", headers={"X-Request-ID": bad})
    generated = response.headers["X-Request-ID"]
    assert generated != bad and len(generated) == 32
    assert backend.wait_for(1)[0].header("X-Request-ID") == generated


def test_upstream_request_id_header_is_replaced_by_ours(client: FlaskClient) -> None:
    response = client.get("/_/respond?header=X-Request-ID:upstream-made", headers={"X-Request-ID": "ours"})
    assert response.headers.getlist("X-Request-ID") == ["ours"]


def test_compressed_body_passes_untouched(client: FlaskClient) -> None:
    response = client.get("/_/gzip", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Length"] == str(len(GZIP_BODY))
    assert response.get_data() == GZIP_BODY


def test_no_accept_encoding_or_user_agent_is_invented(client: FlaskClient, backend: Backend) -> None:
    client.get("/x", headers={"User-Agent": ""}, environ_overrides={"HTTP_USER_AGENT": ""})
    [seen] = backend.wait_for(1)
    assert seen.header("Accept-Encoding") is None
    assert not (seen.header("User-Agent") or "").startswith("python-urllib3")


def test_duplicate_set_cookie_headers_survive(client: FlaskClient) -> None:
    response = client.get("/_/cookies")
    assert response.headers.getlist("Set-Cookie") == ["a=1; Path=/; HttpOnly", "b=2; Path=/; Secure"]


def test_upstream_cookies_are_never_stored_or_replayed(client: FlaskClient, backend: Backend) -> None:
    client.get("/_/cookies")
    client.delete_cookie("a")
    client.delete_cookie("b")
    client.get("/next")
    _, second = backend.wait_for(2)
    assert second.header("Cookie") is None


def test_redirects_pass_through_unfollowed(client: FlaskClient, backend: Backend) -> None:
    response = client.get("/_/redirect")
    assert response.status_code == 302
    assert response.headers["Location"] == "/elsewhere"
    assert len(backend.wait_for(1)) == 1


def test_head_has_headers_and_no_body(client: FlaskClient, backend: Backend) -> None:
    response = client.head("/x")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) > 0
    assert response.get_data() == b""
    assert backend.wait_for(1)[0].method == "HEAD"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_have_no_body(client: FlaskClient, status: int) -> None:
    response = client.get(f"/_/status/{status}")
    assert response.status_code == status
    assert response.get_data() == b""


def test_connection_is_reused_after_bodiless_answers(client: FlaskClient, backend: Backend) -> None:
    for _ in range(3):
        client.head("/x")
        client.get("/_/status/204")
    assert client.get("/x").status_code == 200


@pytest.mark.parametrize("status", [400, 404, 409, 500, 503])
def test_upstream_errors_pass_through_untouched(client: FlaskClient, status: int) -> None:
    response = client.get(f"/_/respond?status={status}&header=Content-Type:text/plain&body=upstream+says+no")
    assert response.status_code == status
    assert response.content_type == "text/plain"
    assert response.get_data() == b"upstream says no"


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = json.loads(response.get_data())
    assert body["status"] == status
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_refused_connection_is_502(make_app: AppFactory) -> None:
    app = make_app(UPSTREAMS={"echo": {"targets": [f"http://127.0.0.1:{free_port()}"]}},
                   ROUTES=[{"path": "/<path:rest>", "upstream": "echo", "auth": "public"}])
    body = _problem(app.test_client().get("/x"), 502)
    assert body["type"].endswith("/upstream-unreachable")
    assert "127.0.0.1" not in json.dumps(body)  # nothing internal leaks


def test_reset_connection_is_502(client: FlaskClient) -> None:
    _problem(client.get("/_/reset"), 502)


def test_slow_upstream_is_504_at_the_deadline(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**echo_config(backend, timeout=0.3, read_timeout=5))
    body = _problem(app.test_client().get("/_/slow/2"), 504)
    assert body["type"].endswith("/upstream-timeout")


def test_read_timeout_is_504(make_app: AppFactory, backend: Backend) -> None:
    _problem(make_app(**echo_config(backend, read_timeout=0.2)).test_client().get("/_/slow/2"), 504)


def test_too_many_in_flight_is_503_at_once(make_app: AppFactory, backend: Backend) -> None:
    import gevent

    app = make_app(**echo_config(backend, max_in_flight=2))
    slow = [gevent.spawn(app.test_client().get, "/_/slow/0.5") for _ in range(2)]
    gevent.sleep(0.15)
    response = app.test_client().get("/x")
    body = _problem(response, 503)
    assert body["type"].endswith("/upstream-busy")
    assert response.headers["Retry-After"] == "1"
    answers = [greenlet.get() for greenlet in slow]
    assert [answer.status_code for answer in answers] == [200, 200]
    for answer in answers:
        answer.close()  # as every WSGI server does when the body is sent
    # The slots are given back once those answers are done.
    assert app.test_client().get("/x").status_code == 200


def test_round_robin_over_targets(make_app: AppFactory) -> None:
    with Backend("one") as one, Backend("two") as two:
        app = make_app(UPSTREAMS={"echo": {"targets": [one.url, two.url]}},
                       ROUTES=[{"path": "/<path:rest>", "upstream": "echo", "auth": "public"}])
        client = app.test_client()
        names = [client.get("/x").json["backend"] for _ in range(4)]  # type: ignore[index]
    assert names == ["one", "two", "one", "two"]


def test_unknown_route_and_wrong_method_are_problems(client: FlaskClient) -> None:
    _problem(client.get("/"), 404)
    response = client.open("/x", method="TRACE")
    _problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_content_length_body_goes_up_with_one_framing(client: FlaskClient, backend: Backend) -> None:
    client.post("/x", data=b"a" * 100_000, headers={"Content-Type": "application/octet-stream"})
    [seen] = backend.wait_for(1)
    assert seen.framing == "content-length"
    assert seen.body == b"a" * 100_000
    assert seen.header("Content-Type") == "application/octet-stream"
