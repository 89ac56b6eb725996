"""The status page through the Flask test client: its gate, and what it shows after real traffic."""

from __future__ import annotations

import base64
import html
import json
import re
import uuid
from typing import Any

import pytest
from flask import Blueprint, Flask
from werkzeug.security import generate_password_hash
from werkzeug.test import TestResponse

from app import Upstream
from app.auth import require_auth
from app.caching import cache_response
from app.config import ConfigError
from app.ratelimit import by_consumer, limiter
from tests.conftest import AppFactory, echo_config
from tests.fakes.backend import Backend

PASSWORD = "correct horse battery staple"
# pbkdf2 with few iterations: the format the page accepts, at a cost the suite does not notice.
PASSWORD_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
API_KEY = {"X-API-Key": "frontdesk-test-key-" + "0" * 16}


def get(app: Flask, path: str = "/status", **kwargs: Any) -> TestResponse:
    """One request whose body is read and closed, as a server does (the edge records it then)."""
    return app.test_client().get(path, buffered=True, **kwargs)


def basic(username: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def row(page: str, attribute: str, value: str) -> str:
    """The HTML of the table row carrying ``attribute="value"`` (the value as the page escapes it)."""
    match = re.search(rf'<tr[^>]* {attribute}="{re.escape(html.escape(value))}"[^>]*>(.*?)</tr>', page, re.S)
    assert match is not None, f"no row with {attribute}={value!r}"
    return match.group(1)


def cell(row_html: str, css_class: str) -> str:
    """The text of the cell with ``css_class`` in a row."""
    match = re.search(rf'<td class="[^"]*\b{css_class}\b[^"]*">(.*?)</td>', row_html, re.S)
    assert match is not None, f"no {css_class} cell in {row_html!r}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def unique_route(backend: Backend, **route: Any) -> tuple[dict[str, Any], str]:
    """Overrides with a route of its own (metrics are process-wide: no other test counts on it), and its rule."""
    prefix = "/t" + uuid.uuid4().hex[:10]
    rule = prefix + "/<path:rest>"
    return {"UPSTREAMS": {"echo": {"targets": [backend.url], **route.pop("upstream", {})}},
            "ROUTES": [{"path": rule, "upstream": "echo", "upstream_path": "/{rest}", "auth": "public", **route}]}, rule


# --- The gate -----------------------------------------------------------------------------------


def test_an_address_outside_allow_from_gets_403_problem(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**echo_config(backend), STATUS={"allow_from": ["10.0.0.0/8"]})
    response = get(app)
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.json is not None and response.json["type"].endswith("/status-forbidden")
    assert backend.received == []  # the page's path is the gateway's own, never forwarded
    assert get(app, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


@pytest.mark.parametrize("headers", [
    {},
    basic("operator", "wrong password"),
    basic("intruder", PASSWORD),
    {"Authorization": "Bearer " + PASSWORD},
    {"Authorization": "Basic not-base64!"},
], ids=["none", "wrong-password", "wrong-user", "other-scheme", "garbled"])
def test_missing_or_wrong_credentials_get_401_with_a_basic_challenge(make_app: AppFactory,
                                                                     headers: dict[str, str]) -> None:
    app = make_app(STATUS={"username": "operator", "password_hash": PASSWORD_HASH})
    response = get(app, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Basic realm="frontdesk status", charset="UTF-8"'
    assert PASSWORD not in response.get_data(as_text=True)


def test_right_credentials_from_an_allowed_address_see_the_page(make_app: AppFactory) -> None:
    app = make_app(STATUS={"username": "operator", "password_hash": PASSWORD_HASH})
    assert get(app, headers=basic("operator", PASSWORD)).status_code == 200
    # Both gates: the right password from outside allow_from is still refused.
    outside = get(app, headers=basic("operator", PASSWORD), environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert outside.status_code == 403


def test_credentials_alone_may_open_the_page_to_every_address(make_app: AppFactory) -> None:
    app = make_app(STATUS={"allow_from": [], "username": "operator", "password_hash": PASSWORD_HASH})
    far = {"REMOTE_ADDR": "198.51.100.7"}
    assert get(app, environ_base=far).status_code == 401
    assert get(app, headers=basic("operator", PASSWORD), environ_base=far).status_code == 200


def test_password_checks_have_a_budget_per_worker() -> None:
    from app.operators.status.access import Gate, StatusBusy, StatusUnauthorized
    from app.operators.status.settings import read_status_settings

    now = [100.0]
    settings = read_status_settings({"STATUS": {"enabled": True, "path": "/status", "allow_from": [],
                                                "username": "operator", "password_hash": PASSWORD_HASH,
                                                "refresh": 0, "recent_errors": 0}})
    gate = Gate(settings, clock=lambda: now[0])
    wrong = basic("operator", "guess")["Authorization"]
    for _ in range(4):  # the burst
        with pytest.raises(StatusUnauthorized):
            gate.check("127.0.0.1", wrong)
    with pytest.raises(StatusBusy):
        gate.check("127.0.0.1", wrong)
    now[0] += 0.5  # one check's worth of budget back
    right = basic("operator", PASSWORD)["Authorization"]
    gate.check("127.0.0.1", right)
    # Credentials that passed are remembered: no hash (and no budget) spent on the next view.
    gate.check("127.0.0.1", right)
    with pytest.raises(StatusBusy):
        gate.check("127.0.0.1", wrong)


@pytest.mark.parametrize(("status", "key"), [
    ({"password_hash": "plain-text-password", "username": "operator"}, "status.password_hash"),
    ({"password_hash": PASSWORD_HASH}, "status.username"),
    ({"username": "operator"}, "status.password_hash"),
    ({"username": "ops:team", "password_hash": PASSWORD_HASH}, "status.username"),
    ({"allow_from": []}, "status.allow_from"),
    ({"allow_from": ["10.0.0.300/8"]}, "status.allow_from"),
    ({"path": "/status/<name>"}, "status.path"),
    ({"refresh": -1}, "status.refresh"),
    ({"recent_errors": 100000}, "status.recent_errors"),
    ({"colour": "blue"}, "status.colour"),
])
def test_bad_status_settings_stop_the_start(make_app: AppFactory, status: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_app(STATUS=status)
    assert raised.value.key == key
    assert "plain-text-password" not in str(raised.value)  # a secret-looking value is never echoed


def test_disabled_page_is_not_served(make_app: AppFactory) -> None:
    app = make_app(STATUS={"enabled": False, "allow_from": []})
    assert get(app).status_code == 404


# --- The answer itself ----------------------------------------------------------------------------


def test_never_cached_never_limited_headers_as_the_edge_sets_them(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**echo_config(backend), RATELIMIT={"default": ["2/minute"]})
    responses = [get(app) for _ in range(4)]
    assert [response.status_code for response in responses] == [200] * 4  # the app-wide limit does not apply
    response = responses[-1]
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # written by the edge, as on every answer
    assert response.headers["Referrer-Policy"] == "no-referrer"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None and f'<style nonce="{nonce.group(1)}">' in response.get_data(as_text=True)
    assert "<script" not in response.get_data(as_text=True)  # works without JavaScript: there is none
    assert 'http-equiv="refresh" content="10"' in response.get_data(as_text=True)
    assert 'http-equiv="refresh"' not in get(app, "/status?refresh=off").get_data(as_text=True)
    assert backend.received == []


def test_a_test_blueprint_is_listed_with_its_policies(make_app: AppFactory) -> None:
    bp = Blueprint("team", __name__, url_prefix="/team")
    Upstream("orders", bp)

    @bp.get("/things/<thing_id>")
    @require_auth(scopes=("orders:read",))
    @limiter.limit("5/minute", key_func=by_consumer)
    @cache_response(ttl=30, vary=("Accept",), scope="consumer")
    def thing(thing_id: str) -> str:
        """Read one thing."""
        return thing_id

    page = get(make_app(blueprints=[bp])).get_data(as_text=True)
    listed = row(page, "data-endpoint", "team.thing")
    assert "/team/things/&lt;thing_id&gt;" in listed and "Read one thing." in listed
    assert cell(listed, "auth") == "any scheme: orders:read"
    assert cell(listed, "limits") == "5 per 1 minute per consumer (route)"
    assert cell(listed, "cache") == "ttl 30 s, consumer, vary accept"
    assert ">orders<" in listed
    # And the page lists itself, as a gateway endpoint.
    assert ">gateway<" in row(page, "data-endpoint", "status.page")


def test_traffic_figures_after_requests(make_app: AppFactory, backend: Backend) -> None:
    overrides, rule = unique_route(backend, limits=["4/minute"], cache={"ttl": 60})
    app = make_app(**overrides)
    prefix = rule.split("/<")[0]
    statuses = [get(app, prefix + "/same").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert get(app, prefix + "/_/status/503").status_code == 429  # still limited: same client, same route
    page = get(app).get_data(as_text=True)
    figures = row(page, "data-route", rule)
    assert cell(figures, "requests") == "6"
    assert cell(figures, "limited") == "2"
    assert "Cache hits: 75.0 %" in figures  # 1 miss, then 3 hits (hits count against the limit)
    assert len(backend.received) == 1
    # Every request left its latency in one of the histogram's bars.
    bars = re.findall(r"<title>(≤ [^<]+|&gt; [^<]+): (\d+)</title>", figures)
    assert sum(int(count) for _, count in bars) == 6


def test_errors_show_in_figures_and_in_the_recent_list(make_app: AppFactory, backend: Backend) -> None:
    overrides, rule = unique_route(backend)
    app = make_app(**overrides)
    prefix = rule.split("/<")[0]
    assert get(app, prefix + "/ok").status_code == 200
    assert get(app, prefix + "/_/status/503", headers={"X-Request-ID": "req-upstream-503"}).status_code == 503
    assert get(app, "/nowhere/%3Cscript%3Ealert(1)%3C/script%3E").status_code == 404
    page = get(app).get_data(as_text=True)
    figures = row(page, "data-route", rule)
    assert (cell(figures, "requests"), cell(figures, "server-errors")) == ("2", "1")
    assert "5xx answers: 50.0 %" in figures
    errors = page[page.index('id="errors-table"'):]
    upstream_error = re.search(r"<tr>(?:(?!</tr>).)*req-upstream-503(?:(?!</tr>).)*</tr>", errors, re.S)
    assert upstream_error is not None
    assert '<td class="num status">503</td>' in upstream_error.group(0)
    assert f"upstream echo ({backend.url})" in upstream_error.group(0)
    # A client-chosen path is shown escaped, never as markup.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in errors and "<script>" not in page


def test_gateway_errors_name_their_problem_type(make_app: AppFactory, backend: Backend) -> None:
    overrides, rule = unique_route(backend, upstream={"timeout": 0.2})
    app = make_app(**overrides)
    assert get(app, rule.split("/<")[0] + "/_/slow/2").status_code == 504
    page = get(app).get_data(as_text=True)
    assert "gateway: upstream-timeout" in page[page.index('id="errors-table"'):]


def test_an_ejected_target_shows_as_ejected(make_app: AppFactory, backend: Backend) -> None:
    overrides, rule = unique_route(backend, upstream={"eject": {"failures": 2, "seconds": 30}})
    app = make_app(**overrides)
    page = get(app).get_data(as_text=True)
    assert row(page, "data-state", "up")
    for _ in range(2):
        assert get(app, rule.split("/<")[0] + "/_/status/503").status_code == 503
    page = get(app).get_data(as_text=True)
    target = row(page, "data-state", "ejected")
    assert backend.url in target and "back in 30 s" in target
    assert ">unavailable<" in target  # and the metrics of every worker agree


def test_an_open_breaker_shows_as_open(make_app: AppFactory, backend: Backend) -> None:
    overrides, rule = unique_route(backend, upstream={
        "breaker": {"failure_ratio": 0.5, "min_requests": 2, "window": 10, "open_for": 60}})
    app = make_app(**overrides)
    for _ in range(2):
        assert get(app, rule.split("/<")[0] + "/_/status/503").status_code == 503
    page = get(app).get_data(as_text=True)
    target = row(page, "data-state", "open")
    assert backend.url in target and "probe in 60 s" in target
    # The all-workers breaker column reads the circuit gauge: open.
    assert re.search(r'<span class="badge bad">open</span>.*<span class="badge bad">open</span>', target, re.S)


def test_no_metrics_no_figures_but_the_rest_of_the_page(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**echo_config(backend), METRICS={"enabled": False})
    page = get(app).get_data(as_text=True)
    assert "Metrics are off" in page
    assert row(page, "data-endpoint", "routes.r0_rest")


def test_the_json_problem_carries_the_request_id(make_app: AppFactory) -> None:
    app = make_app(STATUS={"allow_from": ["10.0.0.0/8"]})
    response = get(app, headers={"X-Request-ID": "status-denied-1"})
    assert json.loads(response.get_data())["request_id"] == "status-denied-1"


def test_the_hash_helper_prints_a_hash_the_settings_accept(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], make_app: AppFactory) -> None:
    from app.operators.status.__main__ import main

    monkeypatch.setattr("getpass.getpass", lambda prompt="": PASSWORD)  # the terminal, not our code
    assert main(["hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert PASSWORD not in printed and printed.startswith("scrypt:")
    app = make_app(STATUS={"username": "operator", "password_hash": printed})
    assert get(app, headers=basic("operator", PASSWORD)).status_code == 200
