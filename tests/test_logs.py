"""Log lines in both formats: the access line written directly, other lines through logging."""

from __future__ import annotations

import json
import logging

from typing import Any

import pytest

from tests.conftest import AppFactory, echo_config
from tests.fakes.backend import Backend


def test_human_access_line_has_the_request_id_and_the_fields(make_app: AppFactory, backend: Backend,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    client = make_app(**echo_config(backend), LOG={"level": "INFO", "format": "human"}).test_client()
    client.get("/x?secret=1", headers={"X-Request-ID": "req-42"}, buffered=True)
    [line] = [text for text in capsys.readouterr().err.splitlines() if "frontdesk.access" in text]
    assert " INFO    frontdesk.access [req-42] request method=GET path=/x route=/<path:rest>" in line
    assert "status=200" in line and "trace_id=" in line and "secret" not in line


def json_lines(output: str) -> list[dict[str, Any]]:
    """The JSON log lines in ``output`` (other components, the limiter among them, may log too)."""
    return [json.loads(text) for text in output.splitlines() if text.startswith("{")]


def test_access_line_respects_the_level(make_app: AppFactory, backend: Backend,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    client = make_app(**echo_config(backend), LOG={"level": "WARNING", "format": "json"}).test_client()
    client.get("/x", buffered=True)
    assert "frontdesk.access" not in capsys.readouterr().err


def test_json_error_lines_carry_the_traceback_as_a_field(make_app: AppFactory,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    make_app(LOG={"level": "INFO", "format": "json"})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("frontdesk.errors").exception("unhandled error", extra={"fields": {"cause": "x"}})
    [line] = [line for line in json_lines(capsys.readouterr().err) if line["logger"] == "frontdesk.errors"]
    assert line["message"] == "unhandled error" and line["cause"] == "x"
    assert "RuntimeError: boom" in line["error"]


def test_a_path_orjson_refuses_is_still_logged(make_app: AppFactory, capsys: pytest.CaptureFixture[str]) -> None:
    make_app(LOG={"level": "INFO", "format": "json"})
    logging.getLogger("frontdesk.access").info("request", extra={"fields": {"path": "/a\udcff", "n": 1.5}})
    [line] = [line for line in json_lines(capsys.readouterr().err) if line["logger"] == "frontdesk.access"]
    assert line["path"] == "/a\udcff" and line["n"] == 1.5
