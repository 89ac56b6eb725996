"""The one admin-credential check: bearer tokens and HTTP Basic logins, compared in constant time."""

from __future__ import annotations

import base64
import pathlib

import pytest
from werkzeug.security import generate_password_hash

from app.admin import BasicLogin, BearerToken, admin_authorized, basic_credentials

TOKEN = BearerToken("s3cret-token-0123456789")
LOGIN = BasicLogin("ops", generate_password_hash("correct horse", method="pbkdf2:sha256:1000"))


def basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


@pytest.mark.parametrize(("authorization", "allowed"), [
    ("Bearer s3cret-token-0123456789", True),
    ("bearer   s3cret-token-0123456789  ", True),  # the scheme is case-insensitive; spaces around are not the token
    ("Bearer s3cret-token-012345678", False),  # one character short
    ("Bearer s3cret-token-0123456789x", False),
    ("Basic s3cret-token-0123456789", False),
    ("s3cret-token-0123456789", False),
    ("Bearer ", False),
    ("", False),
    (None, False),
])
def test_bearer_tokens(authorization: str | None, allowed: bool) -> None:
    assert admin_authorized(authorization, TOKEN) is allowed


@pytest.mark.parametrize(("authorization", "allowed"), [
    (basic("ops:correct horse"), True),
    (basic("ops:wrong horse"), False),
    (basic("admin:correct horse"), False),
    (basic("ops"), False),  # no colon
    ("Basic !!!", False),  # not base64
    ("Bearer " + base64.b64encode(b"ops:correct horse").decode(), False),
    (None, False),
])
def test_basic_logins(authorization: str | None, allowed: bool) -> None:
    assert admin_authorized(authorization, LOGIN) is allowed


def test_basic_credentials_are_read_only_from_basic() -> None:
    assert basic_credentials(basic("ops:a:b")) == ("ops", "a:b")  # the password may hold colons
    assert basic_credentials("Bearer x") is None


def test_no_other_module_compares_an_admin_secret() -> None:
    # The metrics token, the purge token and the status login all go through app/admin.py.
    root = pathlib.Path(__file__).resolve().parent.parent / "app"
    others = [str(path.relative_to(root)) for path in root.rglob("*.py")
              if path.name != "admin.py" and any(name in path.read_text()
                                                 for name in ("compare_digest", "check_password_hash"))]
    assert others == []
