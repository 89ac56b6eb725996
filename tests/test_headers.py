"""Header rules on hand-built WSGI environs, and the request id the edge accepts or replaces."""

from __future__ import annotations

import re
from typing import Any

import pytest
from urllib3.util import SKIP_HEADER
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import EnvironBuilder

from app.edge import SPOOFABLE, accept_request_id, scrub_client_fields
from app.proxy.headers import VIA, request_headers, response_headers

TARGET = "10.1.2.3:8080"
PEER = "192.0.2.10"

HOP_BY_HOP = {
    "HTTP_CONNECTION": "keep-alive",
    "HTTP_KEEP_ALIVE": "timeout=5, max=100",
    "HTTP_TE": "trailers",
    "HTTP_TRAILER": "X-Checksum",
    "HTTP_TRANSFER_ENCODING": "chunked",
    "HTTP_UPGRADE": "websocket",
    "HTTP_PROXY_AUTHORIZATION": "Basic dXNlcjpwYXNz",
    "HTTP_PROXY_CONNECTION": "keep-alive",
}


def environ(**headers: str) -> dict[str, Any]:
    """A WSGI environ as a server builds it: the TCP peer, the scheme, and the given CGI-style keys."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/x",
        "QUERY_STRING": "",
        "SERVER_NAME": "gateway.local",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": PEER,
        "wsgi.url_scheme": "http",
        **headers,
    }


def lower_names(headers: dict[str, str]) -> set[str]:
    return {name.lower() for name in headers}


# --- request headers --------------------------------------------------------------------------


def test_end_to_end_headers_pass_with_their_values() -> None:
    sent = request_headers(environ(HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION="Bearer t",
                                   HTTP_X_API_KEY="k", HTTP_COOKIE="a=1; b=2"), TARGET)
    assert sent["Accept"] == "application/json"
    assert sent["Authorization"] == "Bearer t"
    assert sent["X-Api-Key"] == "k"
    assert sent["Cookie"] == "a=1; b=2"


@pytest.mark.parametrize("key", sorted(HOP_BY_HOP))
def test_each_hop_by_hop_header_is_removed(key: str) -> None:
    sent = request_headers(environ(**{key: HOP_BY_HOP[key], "HTTP_X_KEPT": "yes"}), TARGET)
    name = key[5:].replace("_", "-").lower()
    assert name not in lower_names(sent)
    assert sent["X-Kept"] == "yes"


def test_all_hop_by_hop_headers_together_are_removed() -> None:
    sent = request_headers(environ(**HOP_BY_HOP), TARGET)
    assert not lower_names(sent) & {key[5:].replace("_", "-").lower() for key in HOP_BY_HOP}


@pytest.mark.parametrize("connection", [
    "X-Secret, X-Other",
    "x-secret,x-other",
    "close, X-SECRET , X-Other",
    "X-Other,,X-Secret",
    "keep-alive,X-Secret,X-Other,Upgrade",
])
def test_headers_named_in_connection_are_removed(connection: str) -> None:
    sent = request_headers(at_edge(HTTP_CONNECTION=connection, HTTP_X_SECRET="s", HTTP_X_OTHER="o",
                                   HTTP_X_KEPT="yes"), TARGET)
    assert not lower_names(sent) & {"connection", "x-secret", "x-other"}
    assert sent["X-Kept"] == "yes"


def at_edge(**headers: str) -> dict[str, Any]:
    """A request's environ as the edge leaves it (the client's Connection options and spoofable fields gone)."""
    env = environ(**headers)
    scrub_client_fields(env)
    return env


def test_connection_never_removes_what_the_gateway_adds() -> None:
    """The client's Connection options are applied to what it sent, before the gateway adds its own fields."""
    env = at_edge(HTTP_CONNECTION="X-Request-ID, X-Auth-Consumer, Host, Content-Length", HTTP_X_REQUEST_ID="mine",
                  HTTP_X_AUTH_CONSUMER="forged", HTTP_HOST="client.example", CONTENT_LENGTH="3")
    assert "HTTP_X_REQUEST_ID" not in env and "HTTP_X_AUTH_CONSUMER" not in env
    assert env["HTTP_HOST"] == "client.example" and env["CONTENT_LENGTH"] == "3"  # framing and routing stay
    env["HTTP_X_REQUEST_ID"] = "gateway-id"  # as the edge and the auth layer then set them
    env["HTTP_X_AUTH_CONSUMER"] = "verified"
    sent = request_headers(env, TARGET)
    assert sent["X-Request-Id"] == "gateway-id" and sent["X-Auth-Consumer"] == "verified"


@pytest.mark.parametrize("name", sorted(SPOOFABLE))
def test_spoofable_fields_never_pass_the_edge(name: str) -> None:
    sent = request_headers(at_edge(**{"HTTP_" + name.upper().replace("-", "_"): "/evil"}), TARGET)
    assert name not in lower_names(sent)


def test_connection_naming_a_header_that_is_absent_changes_nothing_else() -> None:
    plain = request_headers(environ(HTTP_X_KEPT="yes"), TARGET)
    named = request_headers(environ(HTTP_X_KEPT="yes", HTTP_CONNECTION="X-Absent"), TARGET)
    assert named == plain


@pytest.mark.parametrize("client_host", ["api.example.com", "gateway.local:8443", None])
def test_host_is_the_targets(client_host: str | None) -> None:
    headers = {"HTTP_HOST": client_host} if client_host else {}
    sent = request_headers(environ(**headers), TARGET)
    assert sent["Host"] == TARGET
    assert [name for name in sent if name.lower() == "host"] == ["Host"]


def test_host_given_by_the_caller_is_sent_as_is() -> None:
    # preserve_host: the transport passes the client's own Host.
    assert request_headers(environ(HTTP_HOST="api.example.com"), "api.example.com")["Host"] == "api.example.com"


def test_x_forwarded_for_starts_with_the_peer() -> None:
    assert request_headers(environ(), TARGET)["X-Forwarded-For"] == PEER


@pytest.mark.parametrize("chain", ["198.51.100.7", "198.51.100.7, 203.0.113.9", "unknown"])
def test_x_forwarded_for_appends_the_peer_to_the_claimed_chain(chain: str) -> None:
    sent = request_headers(environ(HTTP_X_FORWARDED_FOR=chain), TARGET)
    assert sent["X-Forwarded-For"] == f"{chain}, {PEER}"


def test_ipv6_peer_is_appended() -> None:
    sent = request_headers(environ(REMOTE_ADDR="2001:db8::7", HTTP_X_FORWARDED_FOR="198.51.100.7"), TARGET)
    assert sent["X-Forwarded-For"] == "198.51.100.7, 2001:db8::7"


def test_with_proxy_fix_the_original_peer_and_chain_are_used() -> None:
    seen: dict[str, Any] = {}

    def capture(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        return []

    base = EnvironBuilder(path="/x", headers=[
        ("Host", "10.9.9.9"),
        ("X-Forwarded-For", "6.6.6.6, 203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "api.example.com"),
    ], environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_environ()
    ProxyFix(capture, x_for=1, x_proto=1, x_host=1)(base, lambda *args: lambda data: None)
    assert seen["REMOTE_ADDR"] == "203.0.113.9"  # ProxyFix believed one hop
    assert seen["werkzeug.proxy_fix.orig"]["REMOTE_ADDR"] == "10.0.0.2"

    sent = request_headers(seen, TARGET)
    assert sent["X-Forwarded-For"] == "6.6.6.6, 203.0.113.9, 10.0.0.2"
    assert sent["X-Forwarded-Proto"] == "https"
    assert sent["X-Forwarded-Host"] == "api.example.com"
    assert sent["Host"] == TARGET


def test_hand_built_proxy_fix_original_is_used() -> None:
    env = environ(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="203.0.113.9")
    env["werkzeug.proxy_fix.orig"] = {"REMOTE_ADDR": "10.0.0.2", "wsgi.url_scheme": "http", "HTTP_HOST": None}
    assert request_headers(env, TARGET)["X-Forwarded-For"] == "203.0.113.9, 10.0.0.2"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_x_forwarded_proto_is_the_scheme(scheme: str) -> None:
    sent = request_headers(environ(**{"wsgi.url_scheme": scheme, "HTTP_X_FORWARDED_PROTO": "gopher"}), TARGET)
    assert sent["X-Forwarded-Proto"] == scheme


def test_x_forwarded_host_is_the_clients_host() -> None:
    sent = request_headers(environ(HTTP_HOST="api.example.com:8443", HTTP_X_FORWARDED_HOST="evil.example"), TARGET)
    assert sent["X-Forwarded-Host"] == "api.example.com:8443"


def test_no_client_host_no_x_forwarded_host() -> None:
    sent = request_headers(environ(HTTP_X_FORWARDED_HOST="evil.example"), TARGET)
    assert "x-forwarded-host" not in lower_names(sent)


@pytest.mark.parametrize("key", ["HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX"])
def test_other_forged_x_forwarded_headers_are_not_passed_on(key: str) -> None:
    sent = request_headers(environ(**{key: "forged"}), TARGET)
    assert "forged" not in sent.values()


@pytest.mark.parametrize(("via", "expected"), [
    (None, VIA),
    ("1.0 edge", f"1.0 edge, {VIA}"),
    ("1.1 cdn, 1.0 edge", f"1.1 cdn, 1.0 edge, {VIA}"),
])
def test_via_is_appended(via: str | None, expected: str) -> None:
    sent = request_headers(environ(**({"HTTP_VIA": via} if via else {})), TARGET)
    assert sent["Via"] == expected
    assert VIA == "1.1 frontdesk"


@pytest.mark.parametrize("expect", ["100-continue", "100-Continue"])
def test_expect_is_dropped(expect: str) -> None:
    assert "expect" not in lower_names(request_headers(environ(HTTP_EXPECT=expect), TARGET))


def test_content_type_and_length_are_mapped() -> None:
    sent = request_headers(environ(CONTENT_TYPE="application/json; charset=utf-8", CONTENT_LENGTH="17"), TARGET)
    assert sent["Content-Type"] == "application/json; charset=utf-8"
    assert sent["Content-Length"] == "17"


def test_empty_content_type_and_length_are_skipped() -> None:
    sent = request_headers(environ(CONTENT_TYPE="", CONTENT_LENGTH=""), TARGET)
    assert not lower_names(sent) & {"content-type", "content-length"}


def test_content_length_zero_is_kept() -> None:
    assert request_headers(environ(CONTENT_LENGTH="0"), TARGET)["Content-Length"] == "0"


def test_non_header_environ_keys_are_not_sent() -> None:
    sent = request_headers(environ(REMOTE_USER="admin", SCRIPT_NAME="/x", **{"wsgi.input": "body"}), TARGET)
    leaked = {"remote-user", "script-name", "remote-addr", "server-name", "wsgi.input", "path-info", "request-method"}
    assert not lower_names(sent) & leaked


def test_missing_accept_encoding_and_user_agent_are_not_invented() -> None:
    sent = request_headers(environ(), TARGET)
    assert sent["Accept-Encoding"] is SKIP_HEADER
    assert sent["User-Agent"] is SKIP_HEADER


def test_clients_accept_encoding_and_user_agent_are_kept() -> None:
    sent = request_headers(environ(HTTP_ACCEPT_ENCODING="gzip, br", HTTP_USER_AGENT="curl/8.0"), TARGET)
    assert (sent["Accept-Encoding"], sent["User-Agent"]) == ("gzip, br", "curl/8.0")


def test_complete_request_header_set() -> None:
    sent = request_headers(environ(HTTP_HOST="api.example.com", HTTP_ACCEPT="*/*", HTTP_CONNECTION="close",
                                   HTTP_USER_AGENT="t", HTTP_ACCEPT_ENCODING="gzip"), TARGET)
    assert sent == {
        "Host": TARGET,
        "Accept": "*/*",
        "User-Agent": "t",
        "Accept-Encoding": "gzip",
        "X-Forwarded-For": PEER,
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "api.example.com",
        "Via": VIA,
    }


# --- response headers -------------------------------------------------------------------------


def test_duplicate_set_cookie_kept_in_order() -> None:
    fields = [("Set-Cookie", "a=1; Path=/"), ("Content-Type", "text/plain"), ("Set-Cookie", "b=2; Secure"),
              ("set-cookie", "c=3")]
    assert response_headers(fields, None) == [*fields, ("Via", VIA)]


@pytest.mark.parametrize("name", ["Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection",
                                  "Trailer", "Transfer-Encoding", "Upgrade", "TE", "transfer-encoding"])
def test_hop_by_hop_response_header_is_removed(name: str) -> None:
    fields = [("Content-Type", "text/plain"), (name, "x"), ("X-Public", "ok")]
    assert response_headers(fields, "keep-alive") == [("Content-Type", "text/plain"), ("X-Public", "ok"),
                                                      ("Via", VIA)]


@pytest.mark.parametrize("connection", ["X-Private", "x-private, X-Internal", "close,X-PRIVATE ,x-internal"])
def test_response_headers_named_in_connection_are_removed(connection: str) -> None:
    fields = [("Connection", connection), ("X-Private", "1"), ("X-Internal", "2"), ("X-Public", "ok")]
    kept = response_headers(fields, connection)
    assert {name.lower() for name, _ in kept} & {"connection", "x-private"} == set()
    assert ("X-Public", "ok") in kept
    assert (("X-Internal", "2") in kept) is ("internal" not in connection.lower())


def test_via_is_appended_to_the_upstreams_own() -> None:
    assert response_headers([("Via", "1.1 upstream")], None) == [("Via", "1.1 upstream"), ("Via", VIA)]


def test_empty_response_headers_get_via() -> None:
    assert response_headers([], "") == [("Via", VIA)]


# --- request ids ------------------------------------------------------------------------------

FRESH_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize("value", [
    "req-42.a_b",
    "0",
    "f47ac10b-58cc-4372-a567-0e02b2c3d479",
    "3fa85f6457174562b3fc2c963f66afa6",
    "dGVzdA==",
    "a+b/c:d~e",
    "A" * 128,
])
def test_well_formed_request_id_is_kept(value: str) -> None:
    assert accept_request_id(value) == value


@pytest.mark.parametrize("value", [
    None,
    "",
    "A" * 129,
    "a b",
    " abc",
    "abc ",
    "abc\r\nX-Injected: 1",
    "abc\n",
    "a\tb",
    "é",
    "req-é",
    "-abc",
    ".abc",
    "<script>",
    "a;b",
    "a,b",
    "a\"b",
])
def test_malformed_request_id_is_replaced_by_a_fresh_one(value: str | None) -> None:
    fresh = accept_request_id(value)
    assert fresh != value
    assert FRESH_ID.fullmatch(fresh)


def test_fresh_request_ids_differ() -> None:
    assert len({accept_request_id(None) for _ in range(50)}) == 50


def test_header_names_are_remembered_within_a_bound_and_forwarded_beyond_it() -> None:
    # Clients choose header names: the per-worker table of spelled-out names stops growing at its
    # bound, and names past it are still forwarded (spelled out per request).
    from app.proxy import headers as module

    names = {f"HTTP_X_MANY_{index}": str(index) for index in range(module._MAX_NAMES + 50)}
    sent = request_headers(environ(**names), TARGET)
    assert len(module._NAMES) <= module._MAX_NAMES
    assert all(sent[f"X-Many-{index}"] == str(index) for index in range(module._MAX_NAMES + 50))
