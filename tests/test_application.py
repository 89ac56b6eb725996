"""The gateway's Flask class: ``ensure_sync`` (a public method Flask says to override) asked once per function."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from app.application import Gateway
from tests.conftest import AppFactory


def plain() -> str:
    """A synchronous view."""
    return "plain"


async def coroutine() -> str:
    """An ``async def`` view."""
    return "coroutine"


def test_a_plain_function_comes_back_as_itself_and_flask_is_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Gateway(__name__)
    asked: list[Any] = []
    flasks = Flask.ensure_sync

    def counting(self: Flask, func: Any) -> Any:
        asked.append(func)
        return flasks(self, func)

    monkeypatch.setattr(Flask, "ensure_sync", counting)
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
