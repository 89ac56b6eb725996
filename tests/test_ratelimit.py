"""Rate limits in one process: headers, keys, exemptions, plans, settings, storage outages, round trips."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask, request
from flask.testing import FlaskClient
from limits import parse
from werkzeug.test import TestResponse

from app.auth import public
from app.operators.check import check_config, run_check
from app.config import ConfigError
from app.operators.inventory import LimitInfo, inventory
from app.ratelimit import by_header, limiter, route_limits_of
from tests.conftest import AppFactory, echo_config
from tests.fakes.backend import Backend
from tests.fakes import free_port
from tests.fakes.redisd import RedisServer, SilentServer

API_KEY = "frontdesk-test-key-0000000000000000"  # the testing settings' "tests" consumer, plan "free"


def config(backend: Backend, *, limits: list[str] | None = None, auth: Any = "public",
           **ratelimit: Any) -> dict[str, Any]:
    """Overrides: an echo upstream, a catch-all route with ``limits`` and ``auth``, [ratelimit] keys."""
    route: dict[str, Any] = {"path": "/<path:rest>", "upstream": "echo", "auth": auth,
                             "methods": ["GET", "POST", "OPTIONS"]}
    if limits is not None:
        route["limits"] = limits
    return {
        "UPSTREAMS": {"echo": {"targets": [backend.url]}},
        "ROUTES": [route],
        "RATELIMIT": {"key_prefix": "t" + uuid.uuid4().hex, **ratelimit},
    }


def statuses(client: FlaskClient, count: int, path: str = "/a", **kwargs: Any) -> list[int]:
    return [client.get(path, **kwargs).status_code for _ in range(count)]


def test_a_route_limit_lets_exactly_its_quota_through_then_answers_problem_json(
        make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**config(backend, limits=["3/minute"])).test_client()
    assert statuses(client, 3) == [200, 200, 200]
    refused = client.get("/a")
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    body = refused.get_json()
    assert body["status"] == 429 and body["type"] == "https://frontdesk.dev/problems/rate-limited"
    assert body["detail"] == "Rate limit exceeded: 3 per 1 minute."
    assert "addr:" not in refused.get_data(as_text=True)  # the key stays inside
    assert len(backend.received) == 3  # the refused request never reached the upstream


def test_ietf_headers_on_every_limited_response_and_retry_after_only_on_429(
        make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**config(backend, limits=["2/minute"], strategy="fixed-window")).test_client()
    first, second, third = (client.get("/a") for _ in range(3))
    assert first.headers["RateLimit-Policy"] == '"route";q=2;w=60'
    assert first.headers["RateLimit"].startswith('"route";r=1;t=')
    assert second.headers["RateLimit"].startswith('"route";r=0;t=')
    for response in (first, second):
        assert "Retry-After" not in response.headers
        assert "X-RateLimit-Limit" not in response.headers
    reset = int(third.headers["RateLimit"].rpartition("t=")[2])
    assert third.status_code == 429 and 55 <= reset <= 60
    assert int(third.headers["Retry-After"]) >= reset  # never earlier than the reset


@pytest.mark.parametrize(("mode", "ietf", "legacy"), [
    ("ietf", True, False), ("legacy", False, True), ("both", True, True), ("none", False, False),
])
def test_header_modes(make_app: AppFactory, backend: Backend, mode: str, ietf: bool, legacy: bool) -> None:
    # A minute, not a second: a window that turns between the hit and the header read counts the hit
    # at a fraction of 1 (sliding window counter), and remaining would read 5.
    client = make_app(**config(backend, limits=["5/minute"], headers=mode)).test_client()
    response = client.get("/a")
    assert ("RateLimit-Policy" in response.headers) is ietf
    assert ("RateLimit" in response.headers) is ietf
    assert ("X-RateLimit-Limit" in response.headers) is legacy
    if legacy:
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert response.headers["X-RateLimit-Remaining"] == "4"
        assert int(response.headers["X-RateLimit-Reset"]) >= time.time()


def test_an_unlimited_route_carries_no_rate_limit_headers(make_app: AppFactory, backend: Backend) -> None:
    response = make_app(**config(backend)).test_client().get("/a")
    assert response.status_code == 200
    assert not [name for name in response.headers.keys() if "ratelimit" in name.lower()]


def test_the_app_wide_default_counts_every_route_per_client_address(make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**config(backend, default=["3/minute"])).test_client()
    assert [client.get(path).status_code for path in ("/a", "/b", "/c", "/d")] == [200, 200, 200, 429]
    other = client.get("/a", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200
    assert other.headers["RateLimit-Policy"] == '"default";q=3;w=60'


def test_health_and_cors_preflight_are_never_counted(make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**config(backend, default=["2/minute"], limits=["2/minute"])).test_client()
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    for _ in range(5):
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.options("/a", headers=preflight).status_code != 429
    assert statuses(client, 3) == [200, 200, 429]


def test_a_forged_x_forwarded_for_cannot_dodge_a_limit(make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**config(backend, limits=["2/minute"])).test_client()  # trusted_proxies = 0
    codes = [client.get("/a", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(4)]
    assert codes == [200, 200, 429, 429]


def test_clients_behind_a_trusted_proxy_each_have_their_own_limit(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**config(backend, limits=["2/minute"]), EDGE={"trusted_proxies": 1})
    client = app.test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.1"}

    def send(client_address: str) -> int:
        return client.get("/a", environ_base=proxy, headers={"X-Forwarded-For": client_address}).status_code

    assert [send("203.0.113.1") for _ in range(3)] == [200, 200, 429]
    assert [send("203.0.113.2") for _ in range(2)] == [200, 200]  # the noisy one did not use them up
    # Only the last hop is believed: a client prepending addresses is still itself.
    assert send("192.0.2.99, 203.0.113.1") == 429


def test_authenticated_callers_are_limited_per_consumer(make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**config(backend, limits=["2/minute"], auth={"scopes": ["users:read"]})).test_client()
    key = {"X-API-Key": API_KEY}
    assert statuses(client, 3, headers=key) == [200, 200, 429]
    # The same consumer from elsewhere shares its counter; the address is not the key.
    assert client.get("/a", headers=key, environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code == 429


def test_plan_quota_holds_across_routes_per_consumer(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**config(backend, auth={"scopes": ["users:read"]}, plans={"free": ["3/minute"]}))
    client = app.test_client()
    key = {"X-API-Key": API_KEY}
    assert [client.get(path, headers=key).status_code for path in ("/a", "/b", "/c", "/d")] == [200, 200, 200, 429]
    refused = client.get("/e", headers=key)
    assert refused.headers["RateLimit-Policy"] == '"plan";q=3;w=60'
    assert client.get("/a").status_code == 401  # auth runs before the limit


def test_without_plans_an_authenticated_route_without_limits_asks_the_storage_nothing(
        make_app: AppFactory, backend: Backend, redis_server: RedisServer) -> None:
    app = make_app(**config(backend, auth={"scopes": ["users:read"]}, storage_uri=redis_server.url))
    client = app.test_client()
    before = redis_server.command_calls()
    answers = [client.get(path, headers={"X-API-Key": API_KEY}) for path in ("/a", "/b", "/c")]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert not any("RateLimit" in answer.headers for answer in answers)
    assert redis_server.command_calls() == before  # no plan quota to count: the storage is never asked
    assert len(backend.received) == 3


def test_plan_from_a_jwt_claim_and_the_default_plan(make_app: AppFactory, backend: Backend) -> None:
    from app.auth import Principal
    from app.ratelimit import plan_of
    by_key = Principal(scheme="api_key", subject=None, consumer="c", scopes=frozenset(), plan="pro")
    by_token = Principal(scheme="jwt", subject="s", consumer=None, scopes=frozenset(), claims={"tier": "pro"})
    assert plan_of(by_key, "tier") == "pro"
    assert plan_of(by_token, "tier") == "pro"
    assert plan_of(by_token, "plan") is None
    assert plan_of(None, "plan") is None


def test_two_limits_of_one_plan_are_named_apart(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**config(backend, auth={"scopes": ["users:read"]}, plans={"free": ["5/minute", "100/day"]}))
    response = app.test_client().get("/a", headers={"X-API-Key": API_KEY})
    assert response.headers["RateLimit-Policy"] == '"plan-60s";q=5;w=60, "plan-86400s";q=100;w=86400'


@pytest.mark.parametrize(("ratelimit", "key"), [
    ({"strategy": "leaky-bucket"}, "ratelimit.strategy"),
    ({"default": "300/minute"}, "ratelimit.default"),
    ({"default": ["300 per fortnight"]}, "ratelimit.default"),
    ({"on_storage_error": "maybe"}, "ratelimit.on_storage_error"),
    ({"storage_timeout": 0}, "ratelimit.storage_timeout"),
    ({"headers": "draft"}, "ratelimit.headers"),
    ({"storage_uri": "memcached://127.0.0.1:11211"}, "ratelimit.storage_uri"),
    ({"storage_uri": "127.0.0.1:6379"}, "ratelimit.storage_uri"),
    ({"plans": {"free": "60/minute"}}, "ratelimit.plans.free"),
    ({"default_plan": "gold", "plans": {"free": ["1/second"]}}, "ratelimit.default_plan"),
    ({"plans": {"pro": ["1/second"]}}, "auth.api_keys.consumers.tests.plan"),
    ({"speed": "fast"}, "ratelimit.speed"),
])
def test_bad_settings_stop_the_start_naming_the_key(
        make_app: AppFactory, ratelimit: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(RATELIMIT=ratelimit)
    assert caught.value.key == key


def test_a_bad_route_limit_is_refused(make_app: AppFactory, backend: Backend) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(**config(backend, limits=["twenty a second"]))
    assert caught.value.key == "routes[0].limits"


@pytest.mark.parametrize("limited", [False, True], ids=["no limit anywhere", "a route limit"])
def test_memory_storage_with_several_workers_warns_once_in_the_check_or_refuses(
        make_app: AppFactory, backend: Backend, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path, limited: bool) -> None:
    settings = config(backend, limits=["3/minute"] if limited else [])
    monkeypatch.setenv("GATEWAY_WORKERS", "2")
    app = make_app(**settings)
    assert "RATE LIMITS ARE PER WORKER" not in capsys.readouterr().err  # building an app never warns
    warning = limiter.per_worker_warning(app)
    assert (warning is not None) is limited
    report = check_config("testing", **settings)
    assert report.ok and report.warnings == ((warning,) if limited else ())
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setenv("GATEWAY_ENV", "testing")
    file = tmp_path / "gateway.toml"
    file.write_text(f'[upstreams.echo]\ntargets = ["{backend.url}"]\n[[routes]]\npath = "/<path:rest>"\n'
                    f'upstream = "echo"\nauth = "public"\n' + ('limits = ["3/minute"]\n' if limited else ""))
    monkeypatch.setenv("GATEWAY_CONFIG", str(file))
    assert run_check(out=out, err=err) == 0
    assert err.getvalue().count("RATE LIMITS ARE PER WORKER") == (1 if limited else 0)
    if limited:
        with pytest.raises(ConfigError) as caught:
            make_app(**config(backend, limits=["3/minute"], exact=True))
        assert caught.value.key == "ratelimit.storage_uri" and "2 workers" in str(caught.value)
    else:
        make_app(**config(backend, exact=True))  # nothing to count: nothing to refuse
    monkeypatch.setenv("GATEWAY_WORKERS", "1")
    assert limiter.per_worker_warning(make_app(**config(backend, limits=["3/minute"]))) is None
    make_app(**config(backend, limits=["3/minute"], exact=True))  # one worker counts exactly, even in memory


# --- Redis --------------------------------------------------------------------------------------


def redis_app(make_app: AppFactory, backend: Backend, url: str, **ratelimit: Any) -> Flask:
    return make_app(**config(backend, limits=ratelimit.pop("limits", ["3/minute"]), storage_uri=url, **ratelimit))


# What each strategy's script runs inside Redis: anything else was a second round trip.
SCRIPT_COMMANDS = {
    "fixed-window": {"incrby", "expire", "pttl"},
    "sliding-window-counter": {"pttl", "rename", "set", "get", "incrby", "exists"},
    "moving-window": {"lindex", "lpush", "ltrim", "expire", "lrange"},
}


@pytest.mark.parametrize("strategy", sorted(SCRIPT_COMMANDS))
def test_redis_one_round_trip_per_limit_with_the_numbers_limits_reports(
        make_app: AppFactory, backend: Backend, redis_server: RedisServer, strategy: str) -> None:
    app = redis_app(make_app, backend, redis_server.url, strategy=strategy, limits=["3/minute"])
    client = app.test_client()
    client.get("/a")  # the first call loads the script (EVALSHA, then SCRIPT LOAD, EVALSHA)
    before = redis_server.command_calls()
    second = client.get("/a")
    after = redis_server.command_calls()
    changed = {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}
    assert changed.pop("evalsha") == 1
    assert set(changed) <= SCRIPT_COMMANDS[strategy]
    third, fourth = client.get("/a"), client.get("/a")
    assert second.headers["RateLimit"].startswith('"route";r=1;')
    assert third.headers["RateLimit"].startswith('"route";r=0;')
    assert fourth.status_code == 429 and int(fourth.headers["Retry-After"]) >= 1
    # The window the script returned is the one limits' own strategy reads back.
    runtime = limiter.runtime(app)
    with app.test_request_context():
        item = parse("3/minute")
        prefix = app.config["RATELIMIT"]["key_prefix"]
        stats = runtime.strategy.inner.get_window_stats(item, prefix, "addr:127.0.0.1", "routes.r0_rest")
    assert stats.remaining == 0


def stopped_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def ratelimit_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The frontdesk.ratelimit log records (the app's logging setup stops propagation)."""
    logger = logging.getLogger("frontdesk.ratelimit")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, "frontdesk.ratelimit")
    yield caplog
    logger.removeHandler(caplog.handler)


def outage_lines(log: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in log.records if r.name == "frontdesk.ratelimit"]


@pytest.mark.parametrize("server", ["stopped", "silent"])
def test_storage_outage_fails_open_within_the_timeout_and_is_logged_once(
        make_app: AppFactory, backend: Backend, ratelimit_log: pytest.LogCaptureFixture, server: str) -> None:
    with SilentServer() as silent:
        url = stopped_redis_url() if server == "stopped" else silent.url
        client = redis_app(make_app, backend, url, storage_timeout=0.2, on_storage_error="open",
                           retry_interval=0.3, default=["1/minute"]).test_client()
        for _ in range(6):
            started = time.monotonic()
            response = client.get("/a")
            assert time.monotonic() - started < 0.2 + 0.15  # two limits, one wait at most
            assert response.status_code == 200
            assert "RateLimit" not in response.headers  # nothing known, nothing claimed
            time.sleep(0.1)
    assert outage_lines(ratelimit_log).count(
        "rate limit storage unreachable; limits are not enforced by it until it answers") == 1


def test_storage_outage_fails_closed_with_503_problem_json(make_app: AppFactory, backend: Backend) -> None:
    client = redis_app(make_app, backend, stopped_redis_url(), on_storage_error="closed").test_client()
    for _ in range(3):
        started = time.monotonic()
        response = client.get("/a")
        assert time.monotonic() - started < 0.35
        assert response.status_code == 503 and response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"] == "1"
        assert response.get_json()["type"] == "https://frontdesk.dev/problems/rate-limit-storage-unavailable"
    assert client.get("/livez").status_code == 200  # health never depends on the storage


def test_the_gateway_recovers_by_itself_when_the_storage_returns(
        make_app: AppFactory, backend: Backend, tmp_path: Path, ratelimit_log: pytest.LogCaptureFixture) -> None:
    server = RedisServer(tmp_path)
    client = redis_app(make_app, backend, server.url, on_storage_error="closed", retry_interval=0.2,
                       limits=["2/minute"]).test_client()
    assert client.get("/a").status_code == 503
    server.start()
    try:
        time.sleep(0.25)
        assert statuses(client, 3) == [200, 200, 429]
    finally:
        server.stop()
    lines = outage_lines(ratelimit_log)
    assert lines.count("rate limit storage reachable again") == 1


def test_problem_bodies_are_json(make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**config(backend, limits=["1/minute"])).test_client()
    client.get("/a")
    refused: TestResponse = client.get("/a")
    assert json.loads(refused.get_data())["title"] == "Too Many Requests"


# --- Code routes ----------------------------------------------------------------------------------

family = Blueprint("family", __name__, url_prefix="/family")
per_tenant = limiter.shared_limit("2/minute", scope="family", key_func=by_header("X-Tenant"))


@family.get("/one")
@public
@per_tenant
def one() -> str:
    """A code route of the family."""
    return "one"


@family.get("/two")
@public
@per_tenant
def two() -> str:
    """Another code route of the family, sharing its counter."""
    return "two"


def test_a_shared_limit_counts_a_route_family_by_header(make_app: AppFactory) -> None:
    client = make_app(blueprints=(family,), RATELIMIT={"key_prefix": "t" + uuid.uuid4().hex}).test_client()
    tenant_a, tenant_b = {"X-Tenant": "a"}, {"X-Tenant": "b"}
    codes = [client.get(path, headers=tenant_a).status_code for path in ("/family/one", "/family/two", "/family/one")]
    assert codes == [200, 200, 429]
    assert client.get("/family/two", headers=tenant_b).status_code == 200
    response = client.get("/family/two", headers=tenant_b)
    assert response.headers["RateLimit-Policy"] == '"family";q=2;w=60'
    # No header: the client address is the key, never an empty one that would skip the limit.
    assert [client.get("/family/one").status_code for _ in range(3)] == [200, 200, 429]


def test_an_app_wide_429_is_logged_with_its_route(make_app: AppFactory, backend: Backend,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(**echo_config(backend), RATELIMIT={"default": ["1/minute"]},
                   LOG={"level": "INFO", "format": "json"})
    client = app.test_client()
    assert [client.get("/x", buffered=True).status_code for _ in range(2)] == [200, 429]
    lines = [json.loads(text) for text in capsys.readouterr().err.splitlines() if text.startswith("{")]
    access = [line for line in lines if line["logger"] == "frontdesk.access"]
    assert [(line["status"], line["route"]) for line in access] == [(200, "/<path:rest>"), (429, "/<path:rest>")]


def test_a_blueprint_wide_limit_still_counts_in_the_before_request_pass(make_app: AppFactory) -> None:
    # Flask-Limiter counts blueprint limits in its before_request hook, which the gateway skips
    # only while no such limit exists anywhere.
    metered = Blueprint(f"metered_{uuid.uuid4().hex}", __name__, url_prefix="/metered")

    @metered.get("/")
    @public
    def index() -> str:
        """A route limited only by its blueprint."""
        return "ok"

    limiter.limit("2/minute")(metered)
    client = make_app(blueprints=(metered,), RATELIMIT={"key_prefix": "t" + uuid.uuid4().hex}).test_client()
    assert statuses(client, 3, "/metered/") == [200, 200, 429]


def test_deduct_when_counts_only_the_answers_it_names(make_app: AppFactory) -> None:
    # Flask-Limiter carries the limit from its check to its after-request hook in its per-request
    # state (GatewayLimiter.context): only failed answers are counted here.
    flaky = Blueprint(f"flaky_{uuid.uuid4().hex}", __name__, url_prefix="/flaky")

    @flaky.get("/")
    @public
    @limiter.limit("2/minute", deduct_when=lambda response: response.status_code >= 500)
    def index() -> tuple[str, int]:
        """Fails when asked to."""
        return ("failed", 503) if request.args.get("fail") else ("ok", 200)

    client = make_app(blueprints=(flaky,), RATELIMIT={"key_prefix": "t" + uuid.uuid4().hex}).test_client()
    assert statuses(client, 3, "/flaky/") == [200, 200, 200]  # successes take nothing
    assert statuses(client, 3, "/flaky/?fail=1") == [503, 503, 429]
    assert client.get("/flaky/").status_code == 429


def test_fixed_limits_are_counted_where_flask_limiter_keeps_them(make_app: AppFactory) -> None:
    # limiter.limit with limits that never change is resolved once and counted by the gateway (decision 52).
    tenants = Blueprint(f"tenants_{uuid.uuid4().hex}", __name__, url_prefix="/tenants")

    @tenants.get("/")
    @public
    @limiter.limit("5/hour;2/minute", key_func=by_header("X-Tenant"))
    def index() -> str:
        """A route with two fixed limits per tenant."""
        return "ok"

    prefix = "t" + uuid.uuid4().hex
    app = make_app(blueprints=(tenants,), RATELIMIT={"key_prefix": prefix})
    client = app.test_client()
    first = client.get("/tenants/", headers={"X-Tenant": "a"})
    assert first.headers["RateLimit-Policy"] == '"route-60s";q=2;w=60, "route-3600s";q=5;w=3600'
    assert statuses(client, 2, "/tenants/", headers={"X-Tenant": "a"}) == [200, 429]  # the minute's 2 are spent
    assert client.get("/tenants/", headers={"X-Tenant": "b"}).status_code == 200  # another tenant, its own
    assert client.options("/tenants/", headers={"X-Tenant": "b"}).status_code == 200  # never counted
    # The counters sit where Flask-Limiter's decorator keeps them: prefix, key, endpoint. The refused
    # request took nothing from the hour (the first breach stops the count).
    runtime = limiter.runtime(app)
    endpoint = next(name for name in app.view_functions if name.startswith("tenants_"))
    with app.test_request_context():
        for rate, remaining in (("2/minute", 0), ("5/hour", 3)):
            stats = runtime.strategy.inner.get_window_stats(parse(rate), prefix, "header:x-tenant:a", endpoint)
            assert stats.remaining == remaining
    listed = {route.endpoint: route for route in inventory(app)}[endpoint]
    assert listed.limits == (LimitInfo("2 per 1 minute", "header x-tenant", "route"),
                             LimitInfo("5 per 1 hour", "header x-tenant", "route"))
    assert len(route_limits_of(app.view_functions[endpoint])) == 2  # the gateway's count, not Flask-Limiter's
