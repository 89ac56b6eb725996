"""The testing kit itself (app/testing): fixtures, fake upstreams, credentials, assertions."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Blueprint

from app import ConfigError, Upstream
from app.auth import require_auth, require_jwt
from app.proxy import ProxyResponse
from app.testing import (
    TESTING_API_KEY,
    ApiKeys,
    Backend,
    FakeUpstreams,
    GatewayUnderTest,
    Received,
    Reply,
    Tokens,
    assert_problem,
)
from blueprints import users as users_family
from settings.testing import Testing


def reports_blueprint() -> Blueprint:
    """A team's new route family, as small as they come."""
    bp = Blueprint("reports", __name__, url_prefix="/api/reports")
    reports = Upstream("reports", bp)

    @bp.get("/<report_id>")
    @require_auth(scopes=("reports:read",))
    def report(report_id: str) -> ProxyResponse:
        return reports.forward(f"/v1/reports/{report_id}")

    @bp.post("/claims")
    @require_jwt()
    def claims() -> ProxyResponse:
        return reports.forward("/v1/claims")

    return bp


@pytest.fixture
def reports(gateway: GatewayUnderTest) -> GatewayUnderTest:
    return gateway.configure(blueprints=[reports_blueprint()])


# --- a team's test, in a few lines ---------------------------------------------------------------


def test_a_new_blueprint_is_tested_in_a_few_lines(reports: GatewayUnderTest, upstream: FakeUpstreams,
                                                  token: Tokens) -> None:
    fake = upstream("reports", json={"id": "r-1", "rows": 3})
    response = reports.get("/api/reports/r-1?format=csv", headers=token("reports:read"))
    assert response.status_code == 200
    assert response.json == {"id": "r-1", "rows": 3}
    assert fake.last_request.path == "/v1/reports/r-1"
    assert fake.last_request.query == "format=csv"


def test_a_missing_scope_is_a_403_problem_and_nothing_is_forwarded(
        reports: GatewayUnderTest, upstream: FakeUpstreams, token: Tokens) -> None:
    fake = upstream("reports")
    response = reports.get("/api/reports/r-1", headers=token("reports:write"))
    body = assert_problem(response, 403, "insufficient-scope", detail="reports:read")
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="frontdesk", error="insufficient_scope", scope="reports:read"')
    assert fake.requests == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}, {"X-API-Key": "wrong"}])
def test_the_fake_sees_nothing_on_a_401(reports: GatewayUnderTest, upstream: FakeUpstreams,
                                        headers: dict[str, str]) -> None:
    fake = upstream("reports")
    assert_problem(reports.get("/api/reports/r-1", headers=headers), 401, "unauthorized")
    assert fake.requests == []
    with pytest.raises(AssertionError, match="'reports' received no request"):
        fake.last_request


TEAM_BLUEPRINT = '''
    from flask import Blueprint

    from app import ConfigError, Upstream
    from app.auth import require_auth
    from app.proxy import ProxyResponse

    bp = Blueprint("inventory", __name__, url_prefix="/api/inventory")
    inventory = Upstream("inventory", bp)


    @bp.put("/stock/<sku>")
    @require_auth(scopes=("inventory:write",))
    def stock_item(sku: str) -> ProxyResponse:
        return inventory.forward(f"/stock/{sku}")
'''

TEAM_CONFTEST = '''
    import pytest

    import inventory

    pytest_plugins = ["app.testing.plugin"]


    @pytest.fixture
    def gateway_blueprints():
        return [inventory.bp]


    @pytest.fixture
    def gateway_overrides():
        return {"UPSTREAMS": {"inventory": {"timeout": 2.0}}}
'''

TEAM_TEST = '''
    import socket
    import threading

    from app.testing import assert_problem


    def test_stock_item(gateway, upstream, token):
        stock = upstream("inventory", json={"sku": "BK-1", "qty": 7})
        response = gateway.put("/api/inventory/stock/BK-1", json={"qty": 7}, headers=token("inventory:write"))
        assert response.status_code == 200
        stock.assert_forwarded("PUT", "/stock/BK-1", json={"qty": 7})


    def test_reading_is_not_writing(gateway, upstream, token):
        stock = upstream("inventory")
        assert_problem(gateway.put("/api/inventory/stock/BK-1", headers=token("inventory:read")), 403)
        assert stock.requests == []


    def test_unpatched(gateway):
        # This session runs on plain threads: nothing monkey-patched the standard library.
        assert socket.socket.__module__ == "socket"
        assert threading.Thread.__module__ == "threading"
        assert gateway.settings()["UPSTREAMS"]["inventory"]["timeout"] == 2.0
'''


def test_a_team_enables_the_plugin_in_its_own_conftest_without_gevent(tmp_path: Path) -> None:
    for name, text in (("inventory.py", TEAM_BLUEPRINT), ("conftest.py", TEAM_CONFTEST),
                       ("test_inventory.py", TEAM_TEST)):
        (tmp_path / name).write_text(textwrap.dedent(text))
    # Without other installed plugins (hypothesis alone costs a second of start-up): only the kit is tried.
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "."],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


# --- the gateway fixture --------------------------------------------------------------------------


def test_settings_merge_over_the_mounted_fake(reports: GatewayUnderTest, upstream: FakeUpstreams,
                                              token: Tokens) -> None:
    upstream("reports", json={}, delay=1.0)
    reports.configure(UPSTREAMS={"reports": {"timeout": 0.2}})  # keeps the fake's target
    assert_problem(reports.get("/api/reports/r-1", headers=token("reports:read")), 504, "upstream-timeout")
    assert reports.settings()["UPSTREAMS"]["reports"]["targets"] == [upstream["reports"].url]


def test_a_start_up_error_is_raised_at_the_build(gateway: GatewayUnderTest) -> None:
    gateway.configure(blueprints=[reports_blueprint()])  # no upstream mounted: no [upstreams.reports] table
    with pytest.raises(ConfigError, match=r"upstreams\.reports"):
        gateway.build()


def test_settings_are_frozen_at_the_first_request(reports: GatewayUnderTest, upstream: FakeUpstreams,
                                                  token: Tokens) -> None:
    upstream("reports")
    assert not reports.built
    assert reports.get("/api/reports/r-1", headers=token("reports:read")).status_code == 200
    assert reports.built
    with pytest.raises(RuntimeError, match="after its first request"):
        reports.configure(LOG={"level": "DEBUG"})
    with pytest.raises(RuntimeError, match="mount upstream 'billing' before"):
        upstream("billing")
    assert upstream("reports") is upstream["reports"]  # the mounted one is still at hand


def test_the_default_blueprints_are_the_configured_ones_none_in_testing(gateway: GatewayUnderTest) -> None:
    assert not {"users", "web", "mobile"} & set(gateway.app.blueprints)
    assert gateway.get("/api/users", headers=api_key_header()).status_code == 404


def api_key_header() -> dict[str, str]:
    """The testing consumer's key."""
    return {"X-API-Key": TESTING_API_KEY}


def test_a_configured_blueprint_is_served(gateway: GatewayUnderTest, upstream: FakeUpstreams) -> None:
    users_service = upstream("users", json=[])
    gateway.configure(GATEWAY={"blueprints": ["blueprints.users:bp"]})
    assert gateway.get("/api/users", headers=api_key_header()).status_code == 200
    users_service.assert_forwarded("GET", "/users")


def test_each_test_gets_its_own_app() -> None:
    first, second = GatewayUnderTest(blueprints=()), GatewayUnderTest(blueprints=())
    try:
        assert first.app is not second.app
        assert first.app is first.app
    finally:
        first.close()
        second.close()


def test_no_cookie_jar_between_requests(gateway: GatewayUnderTest, upstream: FakeUpstreams,
                                        api_key: ApiKeys) -> None:
    gateway.configure(blueprints=[users_family.bp])
    users = upstream("users", headers=[("Set-Cookie", "session=abc; Path=/")], json=[])
    assert gateway.get("/api/users", headers=api_key()).headers["Set-Cookie"] == "session=abc; Path=/"
    gateway.get("/api/users", headers=api_key())
    users.assert_forwarded(headers={"Cookie": None})


# --- credentials ----------------------------------------------------------------------------------


def test_tokens_carry_the_claims_a_test_chooses(reports: GatewayUnderTest, upstream: FakeUpstreams,
                                                token: Tokens) -> None:
    fake = upstream("reports")
    reports.configure(AUTH={"jwt": {"forward_claims": ["tenant"]}})
    response = reports.post("/api/reports/claims", headers=token("a:b", "c:d", sub="ada", azp="web", tenant="t-9"))
    assert response.status_code == 200
    fake.assert_forwarded("POST", "/v1/claims", headers={
        "X-Auth-Subject": "ada", "X-Auth-Consumer": "web", "X-Auth-Scopes": "a:b c:d", "X-Auth-Claim-Tenant": "t-9"})


@pytest.mark.parametrize("claims", [{"exp": 1_000_000_000}, {"sub": None}, {"iss": "https://elsewhere.test/"},
                                    {"aud": "someone-else"}])
def test_tokens_can_be_made_invalid_on_purpose(reports: GatewayUnderTest, upstream: FakeUpstreams, token: Tokens,
                                               claims: dict[str, object]) -> None:
    fake = upstream("reports")
    response = reports.get("/api/reports/r-1", headers=token("reports:read", **claims))
    assert_problem(response, 401, "unauthorized")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert fake.requests == []


@pytest.mark.parametrize(("scope_claim", "where"), [
    ("scp", lambda c: c["scp"]),
    ("realm_access.roles", lambda c: c["realm_access"]["roles"]),
])
def test_tokens_put_scopes_where_the_settings_read_them(reports: GatewayUnderTest, upstream: FakeUpstreams,
                                                        token: Tokens, scope_claim: str,
                                                        where: Callable[[dict[str, Any]], object]) -> None:
    upstream("reports")
    reports.configure(AUTH={"jwt": {"scope_claim": scope_claim}})
    assert where(token.claims("reports:read")) == ["reports:read"]
    assert reports.get("/api/reports/r-1", headers=token("reports:read")).status_code == 200


def test_a_team_with_its_own_key_source_signs_its_own_tokens(
        reports: GatewayUnderTest, upstream: FakeUpstreams, token: Tokens, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "idp.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    upstream("reports")
    reports.configure(AUTH={"jwt": {"issuer": "https://idp.example.test/", "audience": "frontdesk",
                                    "algorithms": ["ES256"], "public_key_file": str(pem)}})
    with pytest.raises(RuntimeError, match="verifies ES256 with a key the kit does not have"):
        token("reports:read")
    # The payload still follows the settings (issuer, audience, scope claim); only the signature is the team's.
    own = jwt.encode(token.claims("reports:read", sub="ada"), key, algorithm="ES256")
    assert reports.get("/api/reports/r-1", headers={"Authorization": f"Bearer {own}"}).status_code == 200


def test_the_default_api_key_is_the_testing_consumers(gateway: GatewayUnderTest, upstream: FakeUpstreams,
                                                      api_key: ApiKeys) -> None:
    gateway.configure(blueprints=[users_family.bp])
    consumers = Testing.AUTH["api_keys"]["consumers"]
    assert consumers["tests"]["key_sha256"] == hashlib.sha256(TESTING_API_KEY.encode()).hexdigest()
    users = upstream("users")
    assert api_key() == {"X-API-Key": TESTING_API_KEY}
    assert gateway.get("/api/users", headers=api_key()).status_code == 200
    users.assert_forwarded(headers={"X-Auth-Consumer": "tests", "X-Auth-Scheme": "api_key"})


def test_an_api_key_with_chosen_scopes_is_a_new_consumer(reports: GatewayUnderTest, upstream: FakeUpstreams,
                                                         api_key: ApiKeys) -> None:
    fake = upstream("reports")
    reader, other = api_key("reports:read"), api_key("other:read")
    assert reader != other
    assert reports.get("/api/reports/r-1", headers=reader).status_code == 200
    assert fake.last_request.header("X-Auth-Scopes") == "reports:read"
    assert_problem(reports.get("/api/reports/r-1", headers=other), 403)
    with pytest.raises(RuntimeError, match="after its first request"):
        api_key("late:scope")


# --- the fake upstream ----------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[Backend]:
    with Backend("fake") as running:
        yield running


def test_the_fake_records_what_it_received(fake: Backend) -> None:
    requests.post(fake.url + "/a%2Fb/c?x=1&x=2&y=", data=b'{"k": [1]}',
                  headers={"Content-Type": "application/json", "X-Twice": "1"}, timeout=5)
    seen = fake.last_request
    assert (seen.method, seen.path, seen.query) == ("POST", "/a%2Fb/c", "x=1&x=2&y=")
    assert seen.args == {"x": ["1", "2"], "y": [""]}
    assert seen.json() == {"k": [1]}
    assert seen.header("content-type") == "application/json"
    assert seen.framing == "content-length"
    assert fake.requests == [seen]


def test_the_fake_echoes_unless_scripted(fake: Backend) -> None:
    assert requests.get(fake.url + "/anything", timeout=5).json()["target"] == "/anything"
    fake.respond(418, body="teapot", headers={"X-Kind": "tea"})
    answer = requests.get(fake.url + "/anything", timeout=5)
    assert (answer.status_code, answer.text, answer.headers["X-Kind"]) == (418, "teapot", "tea")
    assert answer.headers["Content-Length"] == "6"
    assert "Server" not in answer.headers  # a scripted answer is exactly what was scripted


def test_the_newest_matching_rule_answers(fake: Backend) -> None:
    fake.respond(json="everything")
    fake.respond(json="one path", path="/one")
    fake.respond(json="one path, posted", path="/one", method="post")
    assert requests.get(fake.url + "/two", timeout=5).json() == "everything"
    assert requests.get(fake.url + "/one?q=1", timeout=5).json() == "one path"
    assert requests.post(fake.url + "/one", timeout=5).json() == "one path, posted"
    fake.respond(json="everything, again")
    assert requests.get(fake.url + "/one", timeout=5).json() == "everything, again"


def test_a_responder_scripts_a_sequence(fake: Backend) -> None:
    def flaky(received: Received) -> Reply:
        return Reply.of(503) if len(fake.requests) == 1 else Reply.of(json={"n": len(fake.requests)})

    fake.respond_with(flaky)
    assert [requests.get(fake.url, timeout=5).status_code for _ in range(3)] == [503, 200, 200]


def test_a_failing_responder_answers_500_naming_the_error(fake: Backend) -> None:
    fake.respond_with(lambda received: Reply.of(json=received.json()))
    answer = requests.post(fake.url, data=b"not json", timeout=5)
    assert answer.status_code == 500
    assert "responder raised JSONDecodeError" in answer.json()["error"]


def test_assert_forwarded_names_every_difference(fake: Backend) -> None:
    requests.get(fake.url + "/users?page=1", headers={"X-A": "1"}, timeout=5)
    fake.assert_forwarded("GET", "/users", query="page=1", headers={"X-A": "1", "X-B": None})
    with pytest.raises(AssertionError) as failure:
        fake.assert_forwarded("POST", "/users", query="page=2", headers={"X-A": None}, json={})
    message = str(failure.value)
    for difference in ("method: expected 'POST', got 'GET'", "query: expected 'page=2', got 'page=1'",
                       "header X-A: expected None, got '1'", "json body: expected {}, got non-JSON b''"):
        assert difference in message


@pytest.mark.parametrize(("arguments", "error"), [
    ({"status": 99}, "status must be"),
    ({"status": 600}, "status must be"),
    ({"delay": -1.0}, "delay must be"),
    ({"json": {}, "body": b"x"}, "json or body"),
])
def test_bad_scripts_are_refused(arguments: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Reply.of(**arguments)  # type: ignore[arg-type]


# --- problem assertions ---------------------------------------------------------------------------


def test_assert_problem_refuses_what_is_not_the_gateways_problem(gateway: GatewayUnderTest,
                                                                 upstream: FakeUpstreams, api_key: ApiKeys) -> None:
    gateway.configure(blueprints=[users_family.bp])
    upstream("users", 404, json={"error": "no such user"})
    response = gateway.get("/api/users/u-0", headers=api_key())
    with pytest.raises(AssertionError, match="Content-Type 'application/json'"):
        assert_problem(response, 404)
    with pytest.raises(AssertionError, match="status 404, expected 502"):
        assert_problem(response, 502)
    missing = gateway.get("/nowhere")
    assert_problem(missing, 404, "about:blank")
    with pytest.raises(AssertionError, match="type 'about:blank'"):
        assert_problem(missing, 404, "not-found")
