"""Edge protections in one process: order of checks, IP rules, user agents, body limits, CORS, headers."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Blueprint

from app.auth import public
from app.config import ConfigError
from app.edge.guard import edge_policy
from tests.conftest import AppFactory
from tests.fakes.backend import Backend

API_KEY = "frontdesk-test-key-0000000000000000"
ORIGIN = "https://app.example.com"


def gateway(backend: Backend, *, edge: dict[str, Any] | None = None, route_edge: dict[str, Any] | None = None,
            **extra: Any) -> dict[str, Any]:
    """An echo upstream; /admin/... needs the test API key and allows 1/minute; /open/... is public."""
    admin: dict[str, Any] = {"path": "/admin/<path:rest>", "upstream": "echo", "methods": ["GET", "POST"],
                             "auth": {"schemes": ["api_key"]}, "limits": ["1/minute"]}
    if route_edge is not None:
        admin["edge"] = route_edge
    return {
        "UPSTREAMS": {"echo": {"targets": [backend.url]}},
        "ROUTES": [admin, {"path": "/open/<path:rest>", "upstream": "echo", "auth": "public",
                           "methods": ["GET", "POST"]},
                   {"path": "/_/respond", "upstream": "echo", "auth": "public"}],  # the backend's scripted answer
        "EDGE": edge or {},
        **extra,
    }


def test_a_denied_client_never_reaches_auth_the_limiter_or_the_upstream(
        make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**gateway(backend, route_edge={"allow_ips": ["10.0.0.0/8"]},
                             RATELIMIT={"default": ["2/minute"]}))
    client = app.test_client()
    outsider = {"REMOTE_ADDR": "192.0.2.1"}
    for _ in range(3):  # the route allows 1/minute and the app 2/minute per address: neither may count these
        answer = client.get("/admin/x", environ_base=outsider)  # no API key: auth would say 401
        assert answer.status_code == 403
        assert answer.mimetype == "application/problem+json"
        assert answer.json is not None and answer.json["type"].endswith("/client-refused")
        assert "RateLimit" not in answer.headers and "WWW-Authenticate" not in answer.headers
    # The app-wide 2/minute for this address is untouched: both of these pass.
    assert [client.get("/open/x", environ_base=outsider).status_code for _ in range(2)] == [200, 200]
    assert client.get("/open/x", environ_base=outsider).status_code == 429
    assert [r.target for r in backend.received] == ["/open/x", "/open/x"]
    # An allowed address goes on to auth as before.
    assert client.get("/admin/x", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 401


@pytest.mark.parametrize(("peer", "forwarded", "status"), [
    ("127.0.0.1", "203.0.113.7", 403),  # the trusted proxy reports a denied client
    ("127.0.0.1", "198.51.100.1, 203.0.113.7", 403),  # forged first hop: the proxy's own entry counts
    ("127.0.0.1", "203.0.113.7, 198.51.100.1", 200),  # a forged denied address is not believed either
    ("127.0.0.1", "2001:db8:bad::1", 403),
    ("127.0.0.1", "2001:db8:900d::1", 200),
    ("127.0.0.1", "::ffff:203.0.113.9", 403),  # IPv4-mapped IPv6 is the IPv4 address
    ("203.0.113.7", None, 403),  # no XFF: ProxyFix keeps the peer, which is denied here
])
def test_deny_ips_through_one_trusted_proxy(make_app: AppFactory, backend: Backend, peer: str,
                                            forwarded: str | None, status: int) -> None:
    app = make_app(**gateway(backend, edge={"trusted_proxies": 1,
                                            "deny_ips": ["203.0.113.0/24", "2001:db8:bad::/48"]}))
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert app.test_client().get("/open/x", headers=headers, environ_base={"REMOTE_ADDR": peer}).status_code == status


@pytest.mark.parametrize(("peer", "forwarded", "status"), [
    ("10.1.2.3", None, 200),
    ("fd00::5", None, 200),
    ("198.51.100.9", "10.1.2.3", 403),  # no trusted hops: a forged XFF changes nothing
    ("2001:db8::1", "fd00::5", 403),
    ("not-an-address", None, 403),  # unreadable: cannot be shown to be allowed
])
def test_allow_ips_without_trusted_proxies(make_app: AppFactory, backend: Backend, peer: str,
                                           forwarded: str | None, status: int) -> None:
    app = make_app(**gateway(backend, edge={"allow_ips": ["10.0.0.0/8", "fd00::/8"]}))
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert app.test_client().get("/open/x", headers=headers, environ_base={"REMOTE_ADDR": peer}).status_code == status


def test_deny_user_agents_and_route_deny_lists_add_to_the_app_wide_ones(
        make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**gateway(backend, edge={"deny_user_agents": ["(?i)sqlmap"]},
                             route_edge={"deny_user_agents": ["curl/"], "deny_ips": ["192.0.2.0/24"]}))
    client = app.test_client()
    key = {"X-API-Key": API_KEY}
    assert client.get("/open/x", headers={"User-Agent": "SQLMap/1.7"}).status_code == 403
    assert client.get("/open/x", headers={"User-Agent": "curl/8.0"}).status_code == 200
    assert client.get("/admin/x", headers={**key, "User-Agent": "sqlmap"}).status_code == 403
    assert client.get("/admin/x", headers={**key, "User-Agent": "curl/8.0"}).status_code == 403
    assert client.get("/admin/x", headers=key, environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code == 403
    assert client.get("/admin/x", headers={**key, "User-Agent": "browser"}).status_code == 200


def test_content_length_over_the_limit_is_refused_before_the_body_is_read(
        make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**gateway(backend, edge={"max_body_bytes": 100}, route_edge={"max_body_bytes": 10}))
    client = app.test_client()
    unread = io.BytesIO(b"x" * 101)
    answer = client.post("/open/x", input_stream=unread, content_length=101)
    assert answer.status_code == 413 and answer.mimetype == "application/problem+json"
    assert unread.tell() == 0  # refused on the header alone
    assert client.post("/open/x", data=b"x" * 100).status_code == 200
    assert client.post("/admin/x", data=b"x" * 11, headers={"X-API-Key": API_KEY}).status_code == 413
    assert [r.body_length for r in backend.received] == [100]


def test_a_chunked_body_past_the_limit_is_413_and_never_complete_upstream(
        make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**gateway(backend, edge={"max_body_bytes": 1000}))
    client = app.test_client()
    answer = client.post("/open/x", input_stream=io.BytesIO(b"y" * 5000),
                         environ_overrides={"HTTP_TRANSFER_ENCODING": "chunked"})
    assert answer.status_code == 413 and answer.json is not None and answer.json["status"] == 413
    assert backend.received == []  # the upstream saw no complete request
    ok = client.post("/open/x", input_stream=io.BytesIO(b"y" * 1000),
                     environ_overrides={"HTTP_TRANSFER_ENCODING": "chunked"})
    assert ok.status_code == 200 and ok.json is not None and ok.json["body_length"] == 1000


CORS = {"allow_origins": [ORIGIN, "https://*.example.org"], "allow_methods": ["GET", "POST"],
        "allow_headers": ["Authorization", "Content-Type", "X-API-Key"], "expose_headers": ["X-Request-ID"],
        "max_age": 600}


@pytest.mark.parametrize("credentials", [True, False])
@pytest.mark.parametrize(("origin", "allowed"), [
    (ORIGIN, True), ("https://eu.api.example.org", True), ("https://evil.example.com", False),
    ("https://evilexample.org", False), ("null", False),
])
@pytest.mark.parametrize("preflight", [True, False])
def test_cors_matrix(make_app: AppFactory, backend: Backend, credentials: bool, origin: str, allowed: bool,
                     preflight: bool) -> None:
    app = make_app(**gateway(backend, edge={"cors": {**CORS, "allow_credentials": credentials}}))
    client = app.test_client()
    if preflight:
        # /admin needs a key and allows 1/minute: a preflight asks for neither and is never counted.
        for _ in range(3):
            answer = client.options("/admin/x", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-api-key"})
            assert answer.status_code == 204
        assert backend.received == []
        assert "Origin" in answer.headers["Vary"]
        if allowed:
            assert answer.headers["Access-Control-Allow-Methods"] == "GET, POST"
            assert answer.headers["Access-Control-Max-Age"] == "600"
        assert client.get("/admin/x", headers={"X-API-Key": API_KEY}).status_code == 200  # quota untouched
    else:
        answer = client.get("/open/x", headers={"Origin": origin})
        assert answer.status_code == 200 and answer.headers["Vary"] == "Origin"
        assert ("X-Request-ID" in answer.headers.get("Access-Control-Expose-Headers", "")) is allowed
    assert answer.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
    assert answer.headers.get("Access-Control-Allow-Credentials") == ("true" if allowed and credentials else None)


def test_preflight_refusals_and_upstream_cors_headers(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**gateway(backend, edge={"cors": CORS}, route_edge={"cors": False}))
    client = app.test_client()
    refused = client.options("/open/x", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"})
    assert refused.status_code == 204 and "Access-Control-Allow-Origin" not in refused.headers
    refused = client.options("/open/x", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                                 "Access-Control-Request-Headers": "X-Secret"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    # The upstream's own grant is replaced by the gateway's decision.
    upstream = client.get("/_/respond?header=Access-Control-Allow-Origin:*&header=Vary:Accept",
                          headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in upstream.headers and upstream.headers["Vary"] == "Accept, Origin"
    # cors = false on /admin: no gateway CORS there.
    admin = client.get("/admin/x", headers={"Origin": ORIGIN, "X-API-Key": API_KEY})
    assert "Access-Control-Allow-Origin" not in admin.headers and "Vary" not in admin.headers
    star = make_app(**gateway(backend, edge={"cors": {"allow_origins": ["*"]}})).test_client()
    assert star.get("/open/x", headers={"Origin": "https://any.where"}).headers["Access-Control-Allow-Origin"] == "*"


def test_security_headers_and_stripped_upstream_headers(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**gateway(backend, edge={"trusted_proxies": 1}))
    client = app.test_client()
    proxied = client.get("/_/respond?header=Server:Apache/2.4.1&header=X-Powered-By:PHP/8.1")
    assert proxied.status_code == 200 and proxied.headers["Via"] == "1.1 frontdesk"
    assert "Server" not in proxied.headers and "X-Powered-By" not in proxied.headers
    assert proxied.headers["X-Content-Type-Options"] == "nosniff"
    assert proxied.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in proxied.headers  # plain http
    missing = client.get("/nowhere", headers={"X-Forwarded-Proto": "https"})  # a gateway answer, via TLS
    assert missing.status_code == 404 and missing.headers["X-Content-Type-Options"] == "nosniff"
    assert missing.headers["Strict-Transport-Security"] == "max-age=31536000"
    untrusted = make_app(**gateway(backend)).test_client()
    assert "Strict-Transport-Security" not in untrusted.get("/open/x", headers={"X-Forwarded-Proto": "https"}).headers


def test_code_routes_take_edge_policy(make_app: AppFactory) -> None:
    blueprint = Blueprint("internal", __name__)

    @blueprint.get("/internal")
    @edge_policy(allow_ips=["10.0.0.0/8"], max_body_bytes=5)
    @public
    def internal() -> str:
        """Only from the internal network."""
        return "ok"

    client = make_app(blueprints=(blueprint,)).test_client()
    assert client.get("/internal", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 200
    assert client.get("/internal", environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 403


@pytest.mark.parametrize(("edge", "route_edge", "key"), [
    ({"cors": {"allow_origins": ["*"], "allow_credentials": True}}, None, "edge.cors.allow_origins"),
    ({"cors": {"allow_origins": ["https://a.example"]}}, {"cors": {"allow_origins": ["*"],
                                                                   "allow_credentials": True}},
     "routes[0].edge.cors.allow_origins"),
    ({"deny_ips": ["10.0.0.1/8"]}, None, "edge.deny_ips"),  # host bits set: a typo, refused
    ({"allow_ips": ["nonsense"]}, None, "edge.allow_ips"),
    ({"deny_user_agents": ["("]}, None, "edge.deny_user_agents"),
    ({"cors": {"allow_origins": ["https://a.example/path"]}}, None, "edge.cors.allow_origins"),
    ({"cors": {"allow_origins": ["https://a.example"], "allow_origin": []}}, None, "edge.cors.allow_origin"),
    (None, {"max_body": 1}, "routes[0].edge.max_body"),
    ({"max_body_bytes": -1}, None, "edge.max_body_bytes"),
])
def test_bad_edge_settings_stop_the_start(make_app: AppFactory, backend: Backend, edge: dict[str, Any] | None,
                                          route_edge: dict[str, Any] | None, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_app(**gateway(backend, edge=edge, route_edge=route_edge))
    assert raised.value.key == key
