"""Caching through the Flask app: settings, hits and misses, conditionals, scopes, invalidation, purges."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import gevent
import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient

from app import ConfigError, Upstream
from app.auth import public
from app.caching import cache, cache_response, mark_uncacheable
from app.errors import UpstreamUnreachable
from app.proxy import ProxyResponse
from tests.conftest import AppFactory, echo_config
from tests.fakes.backend import Backend, pattern_bytes

PURGE_TOKEN = "purge-token-for-tests-0123456789abcdef"
TEST_KEY = "frontdesk-test-key-0000000000000000"
OTHER_KEY = "frontdesk-other-key-111111111111111"


def cached_app(make_app: AppFactory, backend: Backend, tmp_path: Path, cache_policy: dict[str, Any] | None = None,
               auth: object = "public", **cache_settings: Any) -> Flask:
    """A gateway with one cached catch-all route to ``backend``."""
    return make_app(
        UPSTREAMS={"echo": {"targets": [backend.url]}},
        ROUTES=[{"path": "/<path:rest>", "upstream": "echo", "auth": auth, "methods": ["GET", "POST", "DELETE"],
                 "cache": {"ttl": 60} if cache_policy is None else cache_policy}],
        CACHE={"journal": str(tmp_path / "journal"), "purge_token": PURGE_TOKEN, **cache_settings},
        AUTH={"api_keys": {"header": "X-API-Key", "consumers": {
            "tests": {"key_sha256": hashlib.sha256(TEST_KEY.encode()).hexdigest(), "scopes": []},
            "other": {"key_sha256": hashlib.sha256(OTHER_KEY.encode()).hexdigest(), "scopes": []},
        }}},
    )


@pytest.fixture
def gateway(make_app: AppFactory, backend: Backend, tmp_path: Path) -> FlaskClient:
    return cached_app(make_app, backend, tmp_path).test_client(use_cookies=False)


@pytest.mark.parametrize(("settings", "key"), [
    ({"max_bytes": 10}, "cache.max_bytes"),
    ({"max_item_bytes": 0}, "cache.max_item_bytes"),
    ({"max_bytes": 2048, "max_item_bytes": 4096}, "cache.max_item_bytes"),
    ({"shared_uri": "http://localhost"}, "cache.shared_uri"),
    ({"shared_uri": "redis://:secret-password@localhost:notaport/0"}, "cache.shared_uri"),
    ({"purge_token": "short"}, "cache.purge_token"),
    ({"admin_path": "no-slash"}, "cache.admin_path"),
    ({"admin_path": "/trailing/"}, "cache.admin_path"),
    ({"wait_timeout": 0}, "cache.wait_timeout"),
    ({"surrogate_header": "Bad Header"}, "cache.surrogate_header"),
    ({"mystery": 1}, "cache.mystery"),
])
def test_bad_cache_settings_stop_the_start(make_app: AppFactory, settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(CACHE=settings)
    assert caught.value.key == key
    assert "short" not in str(caught.value) or key != "cache.purge_token"  # secrets are never echoed
    assert "secret-password" not in str(caught.value)


@pytest.mark.parametrize(("policy", "key"), [
    ({"ttl": 0}, "routes[0].cache.ttl"),
    ({}, "routes[0].cache.ttl"),
    ({"ttl": 5, "scope": "everyone"}, "routes[0].cache.scope"),
    ({"ttl": 5, "vary": ["Authorization"]}, "routes[0].cache.vary"),
    ({"ttl": 5, "vary": ["*"]}, "routes[0].cache.vary"),
    ({"ttl": 5, "extra": True}, "routes[0].cache.extra"),
    ("60", "routes[0].cache"),
])
def test_bad_route_cache_stops_the_start(make_app: AppFactory, backend: Backend, tmp_path: Path, policy: Any,
                                         key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cached_app(make_app, backend, tmp_path, policy)
    assert caught.value.key == key


def test_second_request_is_a_hit_with_age_and_cache_status(gateway: FlaskClient, backend: Backend) -> None:
    first = gateway.get("/items?b=2&a=1")
    assert first.headers.getlist("Cache-Status") == ["frontdesk; fwd=uri-miss; stored"]
    second = gateway.get("/items?a=1&b=2")  # the same parameters in another order
    assert second.headers["Cache-Status"].startswith("frontdesk; hit; ttl=")
    assert second.headers["Age"] == "0"
    assert second.data == first.data and second.status_code == 200
    assert len(backend.received) == 1


def test_hosts_are_kept_apart(gateway: FlaskClient, backend: Backend) -> None:
    gateway.get("/page", headers={"Host": "a.example"})
    other = gateway.get("/page", headers={"Host": "evil.example"})
    assert other.headers["Cache-Status"] == "frontdesk; fwd=uri-miss; stored"
    assert b"evil.example" in other.data and len(backend.received) == 2


def test_head_is_answered_from_a_stored_get(gateway: FlaskClient, backend: Backend) -> None:
    assert gateway.head("/h").headers["Cache-Status"] == "frontdesk; fwd=miss; detail=head"  # not stored
    body = gateway.get("/h").data
    head = gateway.head("/h")
    assert head.headers["Cache-Status"].startswith("frontdesk; hit")
    assert head.data == b"" and head.headers["Content-Length"] == str(len(body))
    assert [r.method for r in backend.received] == ["HEAD", "GET"]


def test_if_none_match_gets_304_from_the_stored_etag(gateway: FlaskClient, backend: Backend) -> None:
    url = '/_/respond?header=ETag:"v1"&header=Cache-Control:max-age%3D30&body=hello'
    first = gateway.get(url, headers={"If-None-Match": '"v1"'})
    # The upstream was asked for the whole answer (to store it); the client still gets its 304.
    assert backend.received[0].header("If-None-Match") is None
    assert first.status_code == 304 and first.data == b"" and first.headers["ETag"] == '"v1"'
    assert gateway.get(url, headers={"If-None-Match": 'W/"v1"'}).status_code == 304
    other = gateway.get(url, headers={"If-None-Match": '"v0"'})
    assert other.status_code == 200 and other.data == b"hello"
    assert len(backend.received) == 1


@pytest.mark.parametrize(("query", "reason"), [
    ("header=Cache-Control:no-store", "no-store"),
    ("header=Cache-Control:private,max-age%3D60", "private"),
    ("header=Set-Cookie:session%3D1", "set-cookie"),
    ("header=Vary:*", "vary-star"),
    ("header=X-Frontdesk-Partial:1", "partial"),
    ("status=500", "status"),
    ("status=206", "status"),
])
def test_unstorable_answers_are_not_stored(gateway: FlaskClient, backend: Backend, query: str, reason: str) -> None:
    for _ in range(2):
        answer = gateway.get(f"/_/respond?{query}&body=x")
        assert answer.headers["Cache-Status"] == f"frontdesk; fwd=uri-miss; detail={reason}"
    assert len(backend.received) == 2


def test_credentials_are_not_shared_unless_public(gateway: FlaskClient, backend: Backend) -> None:
    gateway.get("/mine", headers={"Authorization": "Bearer x"})
    answer = gateway.get("/mine")
    assert answer.headers["Cache-Status"] == "frontdesk; fwd=uri-miss; stored"  # not the credentialed answer
    assert gateway.get("/_/respond?header=Cache-Control:public&body=p", headers={"Cookie": "a=1"}).headers[
        "Cache-Status"] == "frontdesk; fwd=uri-miss; stored"
    assert len(backend.received) == 3


def test_consumer_scope_keeps_consumers_apart(make_app: AppFactory, backend: Backend, tmp_path: Path) -> None:
    client = cached_app(make_app, backend, tmp_path, {"ttl": 60, "scope": "consumer"}, auth={"scopes": []}
                        ).test_client(use_cookies=False)
    one = client.get("/me", headers={"X-API-Key": TEST_KEY})
    two = client.get("/me", headers={"X-API-Key": OTHER_KEY})
    assert two.headers["Cache-Status"] == "frontdesk; fwd=uri-miss; stored"
    assert b'"X-Auth-Consumer", "other"' in two.data and b'"tests"' not in two.data
    again = client.get("/me", headers={"X-API-Key": TEST_KEY})
    assert again.headers["Cache-Status"].startswith("frontdesk; hit") and again.data == one.data
    assert client.get("/me").status_code == 401  # auth runs before the cache: no key, no entry
    assert len(backend.received) == 2


def test_a_successful_write_invalidates_the_path(gateway: FlaskClient, backend: Backend) -> None:
    gateway.get("/orders/1?view=full")
    gateway.get("/orders/2")
    assert gateway.post("/orders/1").status_code == 200
    assert gateway.get("/orders/1?view=full").headers["Cache-Status"] == "frontdesk; fwd=vary-miss; stored"
    assert gateway.get("/orders/2").headers["Cache-Status"].startswith("frontdesk; hit")
    gateway.delete("/_/status/404?orders/2")  # a failed write invalidates nothing
    assert gateway.get("/orders/2").headers["Cache-Status"].startswith("frontdesk; hit")


def _purge(client: FlaskClient, document: object, token: str = PURGE_TOKEN) -> Any:
    return client.post("/_frontdesk/cache/purge", json=document, headers={"Authorization": f"Bearer {token}"})


def test_purge_by_path_prefix_and_tag(gateway: FlaskClient) -> None:
    tagged = "/_/respond?header=Surrogate-Key:cat-1%20all&body=t"
    for url in ("/a/1", "/a/2", "/b", tagged):
        gateway.get(url)
    assert "Surrogate-Key" not in gateway.get(tagged).headers  # tags are the gateway's, not the client's
    assert _purge(gateway, {"path": "/a/1"}).json == {"purged": {"path": "/a/1"}, "shared_keys_deleted": None}
    assert "hit" not in gateway.get("/a/1").headers["Cache-Status"]
    assert "hit" in gateway.get("/a/2").headers["Cache-Status"]
    _purge(gateway, {"prefix": "/a/"})
    assert "hit" not in gateway.get("/a/2").headers["Cache-Status"]
    assert "hit" in gateway.get("/b").headers["Cache-Status"]
    _purge(gateway, {"tag": "cat-1"})
    assert "hit" not in gateway.get(tagged).headers["Cache-Status"]


@pytest.mark.parametrize(("document", "token", "status"), [
    ({"path": "/a"}, "wrong-token-wrong-token-wrong-token-00", 401),
    ({"path": "/a"}, "", 401),
    ({"path": "a"}, PURGE_TOKEN, 400),
    ({"path": "/a", "tag": "t"}, PURGE_TOKEN, 400),
    ({"query": "x"}, PURGE_TOKEN, 400),
    ({"tag": ""}, PURGE_TOKEN, 400),
    (["/a"], PURGE_TOKEN, 400),
])
def test_bad_purges_are_refused(gateway: FlaskClient, document: object, token: str, status: int) -> None:
    answer = _purge(gateway, document, token)
    assert answer.status_code == status
    assert answer.mimetype == "application/problem+json"
    assert PURGE_TOKEN not in answer.get_data(as_text=True)


def test_no_purge_endpoint_without_a_token(make_app: AppFactory, backend: Backend, tmp_path: Path) -> None:
    client = cached_app(make_app, backend, tmp_path, purge_token="").test_client()
    assert _purge(client, {"path": "/a"}).status_code == 200
    assert backend.received[-1].target == "/_frontdesk/cache/purge"  # the catch-all route forwarded it


def test_large_answers_stream_through_unstored(make_app: AppFactory, backend: Backend, tmp_path: Path) -> None:
    client = cached_app(make_app, backend, tmp_path, max_item_bytes=100_000).test_client()
    for query in ("", "?chunked=1"):
        answer = client.get(f"/_/bytes/300000{query}")
        assert answer.headers["Cache-Status"] == "frontdesk; fwd=uri-miss; detail=too-large"
        assert answer.data == pattern_bytes(300000)
    small = client.get("/_/bytes/5000?chunked=1")
    assert small.headers["Content-Length"] == "5000"  # read whole, so it is stored with its length
    assert client.get("/_/bytes/5000?chunked=1").data == pattern_bytes(5000)


def test_range_requests_bypass(gateway: FlaskClient) -> None:
    gateway.get("/r")
    assert gateway.get("/r", headers={"Range": "bytes=0-1"}).headers["Cache-Status"] == (
        "frontdesk; fwd=bypass; detail=range")


def test_code_routes_use_the_decorator(make_app: AppFactory, backend: Backend, tmp_path: Path) -> None:
    bp = Blueprint("catalog", __name__)
    upstream = Upstream("echo", bp)

    @bp.get("/catalog/<item>")
    @public
    @cache_response(ttl=30, vary=("Accept-Language",))
    def item(item: str) -> ProxyResponse:
        return upstream.forward(f"/items/{item}")

    @bp.get("/partial")
    @public
    @cache_response(ttl=30)
    def partial() -> ProxyResponse:
        mark_uncacheable()
        return upstream.forward("/p")

    app = make_app(UPSTREAMS={"echo": {"targets": [backend.url]}}, blueprints=(bp,),
                   CACHE={"journal": str(tmp_path / "j")})
    client = app.test_client()
    client.get("/catalog/1", headers={"Accept-Language": "en"})
    assert "hit" in client.get("/catalog/1", headers={"Accept-Language": "en"}).headers["Cache-Status"]
    assert "hit" not in client.get("/catalog/1", headers={"Accept-Language": "de"}).headers["Cache-Status"]
    assert client.get("/partial").headers["Cache-Status"] == "frontdesk; fwd=uri-miss; detail=partial"
    assert cache.runtime(app).local.size > 0


def _flaky_app(make_app: AppFactory, tmp_path: Path, fail_first: int, headers: dict[str, str],
               delay: float = 0.05, **settings: Any) -> tuple[Flask, dict[str, int]]:
    """A code route whose view counts its concurrent runs, fails ``fail_first`` times, then answers."""
    bp = Blueprint("flaky", __name__)
    state = {"active": 0, "peak": 0, "calls": 0}

    @bp.get("/flaky")
    @public
    @cache_response(ttl=30)
    def flaky() -> Any:
        state["calls"] += 1
        state["active"] += 1
        state["peak"] = max(state["peak"], state["active"])
        try:
            gevent.sleep(delay)
            if state["calls"] <= fail_first:
                raise UpstreamUnreachable("down")
            return "ok", 200, headers
        finally:
            state["active"] -= 1

    return make_app(blueprints=(bp,), CACHE={"journal": str(tmp_path / "j"), **settings}), state


def _concurrently(app: Flask, count: int) -> list[int]:
    greenlets = [gevent.spawn(app.test_client().get, "/flaky") for _ in range(count)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    return [greenlet.value.status_code for greenlet in greenlets]


def test_concurrent_misses_make_one_call(make_app: AppFactory, tmp_path: Path) -> None:
    app, state = _flaky_app(make_app, tmp_path, 0, {})
    assert _concurrently(app, 50) == [200] * 50
    assert state["calls"] == 1


def test_after_a_failure_waiters_retry_one_at_a_time(make_app: AppFactory, tmp_path: Path) -> None:
    app, state = _flaky_app(make_app, tmp_path, 3, {})
    statuses = _concurrently(app, 20)
    assert sorted(statuses) == [200] * 17 + [502] * 3
    assert state == {"active": 0, "peak": 1, "calls": 4}


def test_unshareable_answers_release_the_waiters_at_once(make_app: AppFactory, tmp_path: Path) -> None:
    app, state = _flaky_app(make_app, tmp_path, 0, {"Cache-Control": "private"})
    assert _concurrently(app, 20) == [200] * 20
    assert state["calls"] == 20 and state["peak"] > 1  # each caller needs its own answer: no queue


def test_waiting_is_bounded(make_app: AppFactory, tmp_path: Path) -> None:
    app, state = _flaky_app(make_app, tmp_path, 0, {}, delay=0.5, wait_timeout=0.1)
    greenlets = [gevent.spawn(app.test_client().get, "/flaky") for _ in range(5)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    answers = [greenlet.value for greenlet in greenlets]
    assert sorted(answer.status_code for answer in answers) == [200] + [504] * 4
    assert all(answer.mimetype == "application/problem+json" for answer in answers if answer.status_code == 504)
    assert state["calls"] == 1


def test_an_app_without_cached_routes_keeps_no_journal(make_app: AppFactory, backend: Backend,
                                                       tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    uncached = make_app(**echo_config(backend), CACHE={"journal": str(journal)}).test_client()
    assert uncached.post("/x").status_code == 200
    assert not journal.exists()
    cached = cached_app(make_app, backend, tmp_path).test_client()
    assert cached.post("/x").status_code == 200
    assert journal.read_text().startswith('["path", "/x", ')


def test_stats_need_the_admin_token(gateway: FlaskClient) -> None:
    refused = gateway.get("/_frontdesk/cache/stats", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.mimetype == "application/problem+json"
    gateway.get("/s")
    stats = gateway.get("/_frontdesk/cache/stats", headers={"Authorization": f"Bearer {PURGE_TOKEN}"}).json
    assert stats is not None
    assert stats["local_items"] == 2 and 0 < stats["local_bytes"] <= stats["max_bytes"]  # vary spec + entry
