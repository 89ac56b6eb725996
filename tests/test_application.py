"""The gateway's Flask class: ``ensure_sync`` asked once per function, Flask's answer unchanged."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from flask import Flask, g, request

from app.application import Gateway
from app.current import current_gateway, current_globals, current_request
from tests.conftest import AppFactory


def plain() -> str:
    """A synchronous view."""
    return "plain"


async def coroutine() -> str:
    """An ``async def`` view."""
    return "coroutine"


def test_a_plain_function_comes_back_as_itself_and_is_asked_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Gateway(__name__)
    asked: list[Any] = []

    def counting(func: Any) -> bool:
        asked.append(func)
        return inspect.iscoroutinefunction(func)

    monkeypatch.setattr("flask.app.iscoroutinefunction", counting)
    assert app.ensure_sync(plain) is plain
    assert app.ensure_sync(plain) is plain
    assert asked == [plain]


def test_async_functions_get_flasks_own_answer() -> None:
    # Without asgiref Flask refuses an async view when it is asked; the memo must not hide that.
    for app in (Flask(__name__), Gateway(__name__)):
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(coroutine)


def test_the_memo_stops_growing_at_its_bound() -> None:
    app = Gateway(__name__)
    made = [lambda: None for _ in range(1500)]  # a caller that hands over a new function every time
    for func in made:
        assert app.ensure_sync(func) is func
    assert len(app._sync) == 1024
    assert app.ensure_sync(made[-1]) is made[-1]  # past the bound: still Flask's answer, just not kept


def test_an_unhashable_callable_still_gets_an_answer() -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> str:
            return "called"

    func = Unhashable()
    assert Gateway(__name__).ensure_sync(func) is func


def test_the_gateway_app_is_built_on_it(make_app: AppFactory) -> None:
    app = make_app()
    assert isinstance(app, Gateway)
    assert app.test_client().get("/livez").status_code == 200


def test_the_current_objects_are_the_ones_behind_flasks_proxies(make_app: AppFactory) -> None:
    app = make_app()
    with app.test_request_context("/livez"):
        assert current_request() is request._get_current_object()  # type: ignore[attr-defined]
        assert current_gateway() is app
        assert current_globals() is g._get_current_object()
        current_globals().marker = "set"
        assert g.marker == "set"
    with pytest.raises(RuntimeError, match="outside of"):
        current_request()
