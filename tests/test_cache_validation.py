"""Validation, stale serving and client directives through the Flask app, on a clock the test moves."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pytest
from flask import Blueprint, Flask, request

from app import ConfigError
from app.auth import public
from app.caching import cache, cache_response
from app.errors import UpstreamUnreachable
from tests.conftest import AppFactory

Script = Callable[[int, dict[str, str]], Any]


class Origin:
    """A code route acting as the upstream: ``script(call, request headers)`` gives each answer."""

    def __init__(self, script: Script, delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay
        self.seen: list[dict[str, str]] = []

    def view(self) -> Any:
        self.seen.append(dict(request.headers))
        if self.delay:
            gevent.sleep(self.delay)
        return self.script(len(self.seen), dict(request.headers))


def build(make_app: AppFactory, tmp_path: Path, origin: Origin, **policy: Any) -> tuple[Flask, list[float]]:
    """An app with /r cached under ``policy`` (ttl 300 unless given); its cache clock is ``offset[0]`` ahead."""
    bp = Blueprint("origin", __name__)
    policy.setdefault("ttl", 300)
    bp.add_url_rule("/r", "r", public(cache_response(**policy)(origin.view)))
    app = make_app(blueprints=(bp,), CACHE={"journal": str(tmp_path / "j")})
    offset = [0.0]
    cache.runtime(app).clock = lambda: time.time() + offset[0]  # the runtime's clock is injected for tests
    return app, offset


def status_of(response: Any) -> str:
    return str(response.headers["Cache-Status"])


def test_a_stale_entry_is_revalidated_with_its_etag_and_a_304_keeps_the_body(
        make_app: AppFactory, tmp_path: Path) -> None:
    def script(call: int, headers: dict[str, str]) -> Any:
        if call == 1:
            return "v1", 200, {"ETag": '"a"', "Cache-Control": "max-age=10", "X-Test": "1"}
        assert headers.get("If-None-Match") == '"a"'
        return "", 304, {"ETag": '"a"', "Cache-Control": "max-age=100", "X-Test": "2"}

    origin = Origin(script)
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    assert client.get("/r").data == b"v1"
    offset[0] = 11
    second = client.get("/r")
    assert (second.status_code, second.data, second.headers["X-Test"]) == (200, b"v1", "2")
    assert status_of(second) == "frontdesk; fwd=stale; fwd-status=304; stored"
    offset[0] = 100  # fresh again for 100 s from the revalidation
    third = client.get("/r")
    assert status_of(third).startswith("frontdesk; hit") and third.data == b"v1" and len(origin.seen) == 2


def test_a_200_replaces_the_entry_and_last_modified_is_sent(make_app: AppFactory, tmp_path: Path) -> None:
    stamp = "Mon, 01 Jan 2024 00:00:00 GMT"
    origin = Origin(lambda call, _: (f"v{call}", 200, {"Last-Modified": stamp, "Cache-Control": "max-age=10"}))
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    offset[0] = 11
    second = client.get("/r")
    assert second.data == b"v2" and status_of(second) == "frontdesk; fwd=stale; stored"
    assert origin.seen[1]["If-Modified-Since"] == stamp and "If-None-Match" not in origin.seen[1]
    assert client.get("/r").data == b"v2" and len(origin.seen) == 2


def test_client_conditions_are_answered_from_a_fresh_entry(make_app: AppFactory, tmp_path: Path) -> None:
    stamp = "Mon, 01 Jan 2024 00:00:00 GMT"
    origin = Origin(lambda call, _: ("body", 200, {"ETag": 'W/"w"', "Last-Modified": stamp}))
    app, _ = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    assert client.get("/r", headers={"If-None-Match": '"w"'}).status_code == 304  # weak comparison
    assert client.get("/r", headers={"If-None-Match": '"x", W/"w"'}).status_code == 304
    assert client.get("/r", headers={"If-None-Match": '"x"'}).status_code == 200
    assert client.get("/r", headers={"If-Modified-Since": stamp}).status_code == 304
    assert client.get("/r", headers={"If-Modified-Since": "Sun, 31 Dec 2023 00:00:00 GMT"}).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    assert client.get("/r", headers={"If-None-Match": '"x"', "If-Modified-Since": stamp}).status_code == 200
    assert len(origin.seen) == 1


def _failing_after_first(headers: dict[str, str], failure: Any) -> Script:
    def script(call: int, _: dict[str, str]) -> Any:
        if call == 1:
            return "good", 200, headers
        if isinstance(failure, int):
            return "broken", failure, {}
        raise failure

    return script


@pytest.mark.parametrize("failure", [UpstreamUnreachable("down", "connect"), 500, 502, 503, 504])
def test_stale_if_error_serves_the_entry_within_the_window(make_app: AppFactory, tmp_path: Path,
                                                           failure: Any) -> None:
    origin = Origin(_failing_after_first({"Cache-Control": "max-age=10, stale-if-error=60", "ETag": '"e"'},
                                         failure))
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    offset[0] = 30
    stale = client.get("/r")
    code = failure if isinstance(failure, int) else 502
    assert (stale.status_code, stale.data) == (200, b"good")
    assert status_of(stale) == f"frontdesk; hit; fwd=stale; ttl=-20; fwd-status={code}; detail=stale-if-error"
    offset[0] = 71  # past the window: the failure shows
    assert client.get("/r").status_code == code


def test_the_route_window_is_shortened_by_the_upstream(make_app: AppFactory, tmp_path: Path) -> None:
    origin = Origin(_failing_after_first({"Cache-Control": "max-age=10, stale-if-error=5"}, 503))
    app, offset = build(make_app, tmp_path, origin, stale_if_error=600)
    client = app.test_client()
    client.get("/r")
    offset[0] = 14
    assert client.get("/r").status_code == 200
    offset[0] = 16
    assert client.get("/r").status_code == 503


def test_a_route_window_applies_when_the_upstream_names_none(make_app: AppFactory, tmp_path: Path) -> None:
    origin = Origin(_failing_after_first({"Cache-Control": "max-age=10"}, UpstreamUnreachable("down")))
    app, offset = build(make_app, tmp_path, origin, stale_if_error=60)
    client = app.test_client()
    client.get("/r")
    offset[0] = 40
    assert client.get("/r").data == b"good"


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "s-maxage=10", "no-cache"])
def test_must_revalidate_is_never_served_stale(make_app: AppFactory, tmp_path: Path, directive: str) -> None:
    headers = {"Cache-Control": f"max-age=10, {directive}, stale-if-error=600, stale-while-revalidate=600",
               "ETag": '"m"'}
    origin = Origin(_failing_after_first(headers, UpstreamUnreachable("down")))
    app, offset = build(make_app, tmp_path, origin, stale_if_error=600, stale_while_revalidate=600)
    client = app.test_client()
    client.get("/r")
    offset[0] = 30
    refused = client.get("/r")
    assert refused.status_code == 504 and refused.mimetype == "application/problem+json"
    assert refused.get_json()["type"].endswith("/revalidation-failed")


def test_a_no_cache_response_is_stored_and_revalidated_on_every_use(make_app: AppFactory, tmp_path: Path) -> None:
    def script(call: int, headers: dict[str, str]) -> Any:
        if call == 1:
            return "kept", 200, {"Cache-Control": "no-cache", "ETag": '"n"'}
        return "", 304, {"ETag": '"n"'}

    origin = Origin(script)
    app, _ = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    for _ in range(2):
        again = client.get("/r")
        assert again.data == b"kept" and "fwd-status=304" in status_of(again)
    assert len(origin.seen) == 3 and origin.seen[2]["If-None-Match"] == '"n"'


def test_stale_while_revalidate_answers_at_once_with_one_refresh(make_app: AppFactory, tmp_path: Path) -> None:
    origin = Origin(lambda call, _: (f"v{call}", 200, {"Cache-Control": "max-age=10, stale-while-revalidate=60"}))
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    origin.delay = 0.5
    offset[0] = 20
    started = time.monotonic()
    answers = [client.get("/r") for _ in range(5)]
    assert time.monotonic() - started < 0.25
    assert {answer.data for answer in answers} == {b"v1"}
    assert all("fwd=stale" in status_of(answer) and "stale-while-revalidate" in status_of(answer)
               for answer in answers)
    runtime = cache.runtime(app)
    runtime.refreshes.group.join(timeout=5)
    assert len(origin.seen) == 2 and not runtime.flights
    fresh = client.get("/r")
    assert fresh.data == b"v2" and status_of(fresh).startswith("frontdesk; hit")


def test_a_refresh_that_raises_releases_its_slot(make_app: AppFactory, tmp_path: Path) -> None:
    def script(call: int, _: dict[str, str]) -> Any:
        if call == 2:
            raise UpstreamUnreachable("down")
        return f"v{call}", 200, {"Cache-Control": "max-age=10, stale-while-revalidate=60"}

    origin = Origin(script)
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    offset[0] = 20
    assert client.get("/r").data == b"v1"
    runtime = cache.runtime(app)
    runtime.refreshes.group.join(timeout=5)
    assert not runtime.flights
    client.get("/r")  # the next stale use starts a new refresh, which works
    runtime.refreshes.group.join(timeout=5)
    assert client.get("/r").data == b"v3" and len(origin.seen) == 3


def test_stopping_the_app_ends_its_refreshes_and_their_slots(make_app: AppFactory, tmp_path: Path) -> None:
    origin = Origin(lambda call, _: (f"v{call}", 200, {"Cache-Control": "max-age=10, stale-while-revalidate=60"}))
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    origin.delay = 30
    offset[0] = 20
    client.get("/r")
    gevent.sleep(0.05)
    runtime = cache.runtime(app)
    assert len(runtime.refreshes) == 1 and runtime.flights
    cache.stop(app)
    assert len(runtime.refreshes) == 0 and not runtime.flights


def test_a_leader_whose_view_raises_releases_the_flight(make_app: AppFactory, tmp_path: Path) -> None:
    def script(call: int, _: dict[str, str]) -> Any:
        if call == 2:
            raise RuntimeError("a bug in the view")
        return "x", 200, {"Cache-Control": "max-age=10", "ETag": '"r"'}

    origin = Origin(script)
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    offset[0] = 20
    assert client.get("/r").status_code == 500  # the last-resort handler
    assert not cache.runtime(app).flights
    assert client.get("/r").status_code == 200  # the next caller leads a new revalidation


@pytest.mark.parametrize(("request_directive", "calls"), [
    ("max-age=5", 2),  # the entry (20 s old) is too old for this client
    ("min-fresh=200", 2),  # less than 200 s of freshness left
    ("no-cache", 2),
    ("max-stale", 1),  # fresh anyway
    ("max-age=100", 1),
])
def test_client_directives(make_app: AppFactory, tmp_path: Path, request_directive: str, calls: int) -> None:
    origin = Origin(lambda call, _: (f"v{call}", 200, {"Cache-Control": "max-age=60"}))
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    offset[0] = 20
    client.get("/r", headers={"Cache-Control": request_directive})
    assert len(origin.seen) == calls


def test_max_stale_and_only_if_cached(make_app: AppFactory, tmp_path: Path) -> None:
    origin = Origin(lambda call, _: (f"v{call}", 200, {"Cache-Control": "max-age=10"}))
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    missing = client.get("/r", headers={"Cache-Control": "only-if-cached"})
    assert missing.status_code == 504 and missing.get_json()["type"].endswith("/only-if-cached")
    client.get("/r")
    offset[0] = 15
    assert client.get("/r", headers={"Cache-Control": "max-stale=10"}).data == b"v1"
    assert client.get("/r", headers={"Cache-Control": "only-if-cached"}).status_code == 504
    assert len(origin.seen) == 1


def test_a_route_can_ignore_client_no_cache(make_app: AppFactory, tmp_path: Path) -> None:
    origin = Origin(lambda call, _: (f"v{call}", 200, {}))
    app, _ = build(make_app, tmp_path, origin, ignore_client_no_cache=True)
    client = app.test_client()
    client.get("/r")
    assert client.get("/r", headers={"Cache-Control": "no-cache"}).data == b"v1"
    assert client.get("/r", headers={"Pragma": "no-cache"}).data == b"v1"
    assert len(origin.seen) == 1


@pytest.mark.parametrize(("headers", "stored"), [
    ({}, False),  # nothing explicit and no Last-Modified: the RFC stores nothing
    ({"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}, True),  # heuristic freshness
    ({"Cache-Control": "max-age=30"}, True),
    ({"Expires": "0"}, False),  # invalid: already expired
])
def test_upstream_freshness(make_app: AppFactory, tmp_path: Path, headers: dict[str, str], stored: bool) -> None:
    origin = Origin(lambda call, _: ("x", 200, headers))
    app, _ = build(make_app, tmp_path, origin, freshness="upstream")
    client = app.test_client()
    client.get("/r")
    assert status_of(client.get("/r")).startswith("frontdesk; hit") is stored


def test_an_invalid_expires_is_expired_whatever_the_route_ttl(make_app: AppFactory, tmp_path: Path) -> None:
    origin = Origin(lambda call, _: ("x", 200, {"Expires": "Thu, 01 Jan 1970 00:00:00 GMT, bad"}))
    app, _ = build(make_app, tmp_path, origin)
    client = app.test_client()
    assert "detail=stale" in status_of(client.get("/r"))


@pytest.mark.parametrize(("policy", "key"), [
    ({"stale_if_error": -1}, "cache_response.stale_if_error"),
    ({"stale_while_revalidate": "soon"}, "cache_response.stale_while_revalidate"),
    ({"freshness": "always"}, "cache_response.freshness"),
    ({"ignore_client_no_cache": 3}, "cache_response.ignore_client_no_cache"),
])
def test_bad_stale_options_stop_the_start(policy: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cache_response(ttl=5, **policy)
    assert caught.value.key == key


def test_a_bad_stale_keep_stops_the_start(make_app: AppFactory) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(CACHE={"stale_keep": 0})
    assert caught.value.key == "cache.stale_keep"


def test_any_unsafe_method_invalidates(make_app: AppFactory, tmp_path: Path) -> None:
    origin = Origin(lambda call, _: (f"v{call}", 200, {}))
    app, _ = build(make_app, tmp_path, origin)
    app.add_url_rule("/r", "search", public(lambda: "searched"), methods=["M-SEARCH"])
    client = app.test_client()
    client.get("/r")
    assert client.open("/r", method="M-SEARCH").status_code == 200
    assert client.get("/r").data == b"v2"


def test_the_upstream_framing_is_not_stored(make_app: AppFactory, tmp_path: Path) -> None:
    def chunked(call: int, _: dict[str, str]) -> Any:
        return f"v{call}", 200, {"Transfer-Encoding": "chunked"}

    app, _ = build(make_app, tmp_path, Origin(chunked))
    client = app.test_client()
    client.get("/r")
    hit = client.get("/r")
    assert "Transfer-Encoding" not in hit.headers and hit.headers["Content-Length"] == "2"


def test_a_revalidation_answered_with_an_unstorable_answer_drops_the_entry(
        make_app: AppFactory, tmp_path: Path) -> None:
    def script(call: int, _: dict[str, str]) -> Any:
        if call == 1:
            return "shared", 200, {"Cache-Control": "max-age=10, stale-while-revalidate=60"}
        return "mine", 200, {"Cache-Control": "private"}

    origin = Origin(script)
    app, offset = build(make_app, tmp_path, origin)
    client = app.test_client()
    client.get("/r")
    offset[0] = 20
    assert client.get("/r").data == b"shared"  # stale while the refresh runs
    cache.runtime(app).refreshes.group.join(timeout=5)
    after = client.get("/r")
    assert after.data == b"mine" and "detail=private" in status_of(after)  # not the old shared entry


def test_a_client_forced_revalidation_is_fwd_request(make_app: AppFactory, tmp_path: Path) -> None:
    def script(call: int, headers: dict[str, str]) -> Any:
        if call == 1:
            return "body", 200, {"ETag": '"q"', "Cache-Control": "max-age=300"}
        assert headers.get("If-None-Match") == '"q"'
        return "", 304, {"ETag": '"q"'}

    app, _ = build(make_app, tmp_path, Origin(script))
    client = app.test_client()
    client.get("/r")
    forced = client.get("/r", headers={"Cache-Control": "no-cache"})
    assert forced.data == b"body" and status_of(forced) == "frontdesk; fwd=request; fwd-status=304; stored"
