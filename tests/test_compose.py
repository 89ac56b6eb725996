"""The composition API for views: parallel calls, deadlines, partial answers, context in greenlets."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Blueprint, Response, current_app, g, request

from app import upstreams
from app.auth import public
from app.compose import Call, parallel
from tests.conftest import AppFactory
from tests.fakes.backend import Backend


def scripted(body: object, *, delay: float = 0, status: int = 200, content_type: str = "application/json") -> str:
    """A path on the fake backend that answers ``body`` (JSON unless a string) after ``delay`` seconds."""
    text = body if isinstance(body, str) else json.dumps(body)
    return "/_/respond?" + urlencode({"status": status, "delay": delay, "body": text,
                                      "header": f"Content-Type:{content_type}"})


def compose_app(make_app: AppFactory, backend: Backend, view: Any, **upstream: Any) -> Any:
    """A gateway whose one route ``/view`` runs ``view``; upstreams a, b and c all at ``backend``."""
    bp = Blueprint("composed", __name__)
    bp.get("/view")(public(view))
    targets = {"targets": [backend.url], **upstream}
    app = make_app(UPSTREAMS={"a": targets, "b": targets, "c": targets}, blueprints=(bp,))
    return app


def test_three_calls_of_200_ms_take_the_slowest_not_the_sum(make_app: AppFactory, backend: Backend) -> None:
    def view() -> Response:
        results = parallel(*(Call(name, scripted({"part": name}, delay=0.2), name=name) for name in "abc"),
                           deadline=2)
        return results.response()

    client = compose_app(make_app, backend, view).test_client()
    client.get("/view")  # connections opened once: the figure below is the calls, not the handshakes
    started = time.perf_counter()
    response = client.get("/view")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json == {"a": {"part": "a"}, "b": {"part": "b"}, "c": {"part": "c"}}
    assert elapsed < 0.35, f"3 x 200 ms took {elapsed:.3f} s: not in parallel"


def test_the_concurrency_cap_holds_calls_back(make_app: AppFactory, backend: Backend) -> None:
    def view() -> Response:
        calls = (Call(name, scripted({}, delay=0.1), name=name) for name in "abc")
        return parallel(*calls, deadline=2, concurrency=1).response()

    client = compose_app(make_app, backend, view).test_client()
    started = time.perf_counter()
    assert client.get("/view").status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_an_optional_failure_gives_a_partial_answer(make_app: AppFactory, backend: Backend) -> None:
    def view() -> Response:
        results = parallel(Call("a", scripted({"id": 1}), name="user"),
                           Call("b", "/_/status/503", name="orders", required=False),
                           Call("c", "/_/reset", name="offers", required=False), deadline=2)
        return results.response({"user": results["user"], "orders": results.get("orders", [])})

    response = compose_app(make_app, backend, view).test_client().get("/view")
    assert response.status_code == 200
    assert response.headers["X-Frontdesk-Partial"] == "orders, offers"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["user"] == {"id": 1} and body["orders"] == []
    problems = {problem["part"]: problem for problem in body["_problems"]}
    assert problems["orders"]["status"] == 502 and "503" in problems["orders"]["detail"]
    assert problems["offers"]["status"] == 502
    assert problems["offers"]["type"].endswith("/part-unreachable")


@pytest.mark.parametrize(("path", "timeout", "status", "words"), [
    ("/_/status/500", None, 502, "answered 500"),
    ("/_/reset", None, 502, "closed the connection"),
    (scripted("not json", content_type="text/plain"), None, 502, "not JSON"),
    ("/_/slow/2", 0.2, 504, "within 0.2 s"),
])
def test_a_required_failure_fails_the_answer_naming_the_part(
        make_app: AppFactory, backend: Backend, path: str, timeout: float | None, status: int, words: str) -> None:
    def view() -> Response:
        return parallel(Call("a", scripted({}), name="user"),
                        Call("b", path, name="orders", timeout=timeout), deadline=5).response()

    app = compose_app(make_app, backend, view)
    started = time.perf_counter()
    response = app.test_client().get("/view")
    assert time.perf_counter() - started < 1.5
    assert response.status_code == status, response.text
    assert response.mimetype == "application/problem+json"
    assert "'orders'" in response.json["detail"] and words in response.json["detail"]
    assert "Traceback" not in response.text
    with app.app_context():
        assert upstreams.state("b").in_flight == 0


def test_the_deadline_is_honoured_and_no_call_outlives_the_view(make_app: AppFactory, backend: Backend) -> None:
    def view() -> Response:
        return parallel(Call("a", scripted({"fast": True}), name="fast"),
                        Call("b", "/_/slow/3", name="slow", required=False),
                        Call("c", "/_/slow/3", name="slower", required=False), deadline=0.3).response()

    app = compose_app(make_app, backend, view)
    started = time.perf_counter()
    response = app.test_client().get("/view")
    assert time.perf_counter() - started < 0.8
    assert response.status_code == 200
    assert response.json["fast"] == {"fast": True}
    assert [(p["part"], p["status"]) for p in response.json["_problems"]] == [("slow", 504), ("slower", 504)]
    with app.app_context():
        assert [upstreams.state(name).in_flight for name in "abc"] == [0, 0, 0]
        assert all(endpoint.in_flight == 0 for name in "abc" for endpoint in upstreams.state(name).endpoints)


def test_a_required_part_past_the_deadline_is_a_504(make_app: AppFactory, backend: Backend) -> None:
    def view() -> Response:
        return parallel(Call("a", "/_/slow/3", name="user"), deadline=0.2).response()

    started = time.perf_counter()
    response = compose_app(make_app, backend, view).test_client().get("/view")
    assert time.perf_counter() - started < 0.8
    assert response.status_code == 504
    assert "deadline of 0.2 s" in response.json["detail"]


def test_request_id_and_trace_context_reach_every_call(make_app: AppFactory, backend: Backend) -> None:
    def view() -> Response:
        return parallel(*(Call(name, f"/{name}", name=name) for name in "abc"), deadline=2).response()

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = compose_app(make_app, backend, view).test_client().get("/view", headers={
        "X-Request-ID": "req-compose-1", "Traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert response.status_code == 200
    received = backend.wait_for(3)
    assert sorted(r.target for r in received) == ["/a", "/b", "/c"]
    assert {r.header("X-Request-Id") for r in received} == {"req-compose-1"}
    parents = [r.header("Traceparent") or "" for r in received]
    # Same trace; without OpenTelemetry the gateway's own span is every call's parent.
    assert {parent.split("-")[1] for parent in parents} == {trace_id}
    assert len({parent.split("-")[2] for parent in parents}) == 1
    assert "00f067aa0ba902b7" not in parents[0]


def test_flask_context_is_there_inside_the_spawned_greenlets(make_app: AppFactory, backend: Backend) -> None:
    def view() -> Response:
        g.tenant = "acme"
        seen = lambda value: {"q": request.args["q"], "app": current_app.name, "tenant": g.tenant}  # noqa: E731
        return parallel(Call("a", "/a", name="a", transform=seen), Call("b", "/b", name="b", transform=seen),
                        deadline=2).response()

    response = compose_app(make_app, backend, view).test_client().get("/view?q=hello")
    assert response.status_code == 200, response.text
    assert response.json["a"] == response.json["b"] == {"q": "hello", "app": "app", "tenant": "acme"}


def test_a_crash_inside_a_part_is_a_500_that_leaks_nothing(make_app: AppFactory, backend: Backend) -> None:
    def broken(value: Any) -> Any:
        raise RuntimeError("secret internal detail")

    def view() -> Response:
        return parallel(Call("a", "/a", name="a", transform=broken, required=False), deadline=2).response()

    response = compose_app(make_app, backend, view).test_client().get("/view")
    assert response.status_code == 500
    assert "secret" not in response.text


def test_xml_answers_become_json(make_app: AppFactory, backend: Backend) -> None:
    xml = '<stock sku="A1"><level>4</level><store id="1">Lyon</store><store id="2">Nantes</store></stock>'

    def view() -> Response:
        return parallel(Call("a", scripted(xml, content_type="application/xml"), name="stock", format="xml"),
                        deadline=2).response()

    response = compose_app(make_app, backend, view).test_client().get("/view")
    assert response.json == {"stock": {"stock": {"@sku": "A1", "level": "4", "store": [
        {"@id": "1", "#text": "Lyon"}, {"@id": "2", "#text": "Nantes"}]}}}
    assert backend.wait_for(1)[0].header("Accept") == "application/xml, text/xml"


def test_a_busy_upstream_fails_the_part_at_once(make_app: AppFactory, backend: Backend) -> None:
    def view() -> Response:
        return parallel(Call("a", "/_/slow/0.3", name="one", required=False),
                        Call("a", "/_/slow/0.3", name="two", required=False), deadline=2).response()

    response = compose_app(make_app, backend, view, max_in_flight=1).test_client().get("/view")
    assert response.status_code == 200
    assert [(p["part"], p["status"]) for p in response.json["_problems"]] == [("two", 503)]


def test_the_part_that_failed_is_named_not_one_killed_after_it(make_app: AppFactory, backend: Backend) -> None:
    # A required failure stops the wait and kills the parts still running; the answer must name
    # the one that failed, not a slower one cut short (this once raced: a 504 naming 'user').
    def view() -> Response:
        return parallel(Call("a", "/_/slow/1", name="user"),
                        Call("b", "/_/status/500", name="orders"), deadline=5).response()

    app = compose_app(make_app, backend, view)
    started = time.perf_counter()
    response = app.test_client().get("/view")
    assert time.perf_counter() - started < 0.9
    assert response.status_code == 502, response.text
    assert "'orders'" in response.json["detail"] and "answered 500" in response.json["detail"]
