"""The table of library internals: each check holds on the pinned versions, and a version change falls back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request

from app import internals
from app.current import current_request
from app.internals import TABLE, Internal, check_internals, installed_versions, switch
from app.proxy.wire import UpstreamResponse


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    """Every switch as the installed versions set it, after each test."""
    yield
    check_internals("app")
    check_internals("server")


@pytest.mark.parametrize("entry", TABLE, ids=lambda entry: entry.name)
def test_each_internal_is_still_what_it_was_written_for(entry: Internal) -> None:
    entry.check()  # fails when the private name, its signature or its state changes


@pytest.mark.parametrize("entry", TABLE, ids=lambda entry: entry.name)
def test_each_entry_names_its_versions_purpose_and_gain(entry: Internal) -> None:
    assert entry.versions and all(entry.versions)
    assert entry.what and entry.gain and entry.where


@pytest.mark.parametrize("side", ["app", "server"])
def test_the_pinned_versions_are_the_ones_written_for(side: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "frontdesk.internals"):
        assert check_internals(side) == ()  # type: ignore[arg-type]  # a pin moved: re-check the entries
    assert caplog.records == []
    assert all(entry.switch.on for entry in TABLE if entry.side == side)


def _versions(**changed: str) -> dict[str, str]:
    versions = installed_versions({entry.library for entry in TABLE})
    versions.update({name.replace("_", "-"): value for name, value in changed.items()})
    return versions


def test_a_version_mismatch_falls_back_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "frontdesk.internals"):
        changed = check_internals("app", _versions(werkzeug="3.2.0", flask_limiter="4.2.0"))
    assert {entry.name for entry in changed} == {
        "werkzeug-proxy-objects", "werkzeug-rule-converters", "limiter-options", "limiter-before-request"}
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "werkzeug 3.2.0, written for 3.1.9" in message and "now the proxies themselves" in message
    assert "limiter-options (flask-limiter 4.2.0, written for 4.1.1): kept: no public equivalent" in message
    assert not switch("werkzeug-proxy-objects").on and not switch("limiter-before-request").on
    assert switch("limiter-options").on  # nothing public to fall back to
    assert switch("prometheus-histogram").on  # its library did not change
    with Flask(__name__).test_request_context("/"):
        assert current_request() is request  # the public proxy, not the object behind it


def test_the_fallback_ends_when_the_versions_match_again() -> None:
    check_internals("app", _versions(werkzeug="3.2.0"))
    check_internals("app")
    with Flask(__name__).test_request_context("/"):
        assert current_request() is not request
        assert current_request() is request._get_current_object()  # type: ignore[attr-defined]


def test_the_server_side_falls_back_to_gunicorns_own_pieces(caplog: pytest.LogCaptureFixture) -> None:
    import worker

    with caplog.at_level(logging.WARNING, "frontdesk.internals"):
        check_internals("server", _versions(gunicorn="27.1.0"))
    assert len(caplog.records) == 1
    assert not any(entry.switch.on for entry in TABLE if entry.side == "server")

    class Arbiter:
        def stop(self, graceful: bool = True) -> None:
            """gunicorn's."""

    server: Any = Arbiter()
    stop = server.stop
    worker.install_master_hooks(server)
    assert server.stop == stop  # gunicorn's own stop, not wrapped


def test_a_missing_library_is_a_mismatch() -> None:
    changed = check_internals("app", {})
    assert {entry.library for entry in changed} == {"werkzeug", "flask-limiter", "prometheus-client", "python"}


def test_upstream_response_sets_the_state_http_client_reads() -> None:
    import socket

    left, right = socket.socketpair()
    try:
        ours = set(vars(UpstreamResponse(left)))
    finally:
        left.close()
        right.close()
    # No fp and no chunk_left: urllib3 then reads the body through read(), which h11 has unframed.
    expected = internals.HTTP_RESPONSE_STATE - {"fp", "chunk_left", "_finalizing", "__IOBase_closed"}
    assert expected <= ours


def test_a_check_fails_when_a_name_or_its_signature_changes() -> None:
    class Library:
        def hook(self, data: bytes) -> None:
            """The internal as it was."""

    internals._has(Library, "hook", ["self", "data"])
    with pytest.raises(AssertionError, match="expected"):
        internals._has(Library, "hook", ["self", "data", "more"])
    with pytest.raises(AttributeError):
        internals._has(Library, "renamed")
