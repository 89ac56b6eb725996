"""The [status] section: where the page answers and who may see it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.config import ConfigError, Section
from app.operators.metrics_endpoint import Network, read_networks

__all__ = ["StatusSettings", "read_status_settings"]

# werkzeug.security's formats: scrypt:N:r:p$salt$hex and pbkdf2:hash:iterations$salt$hex. Plain text
# (werkzeug's old "plain" method) or a bare digest is refused: the setting must never hold a password.
_HASH = re.compile(r"(scrypt(:\d+:\d+:\d+)?|pbkdf2:sha(256|512)(:\d+)?)\$[^$]+\$[0-9a-f]{32,}")
# Each worker keeps this many error records at most: the page is for a glance, the logs keep the rest.
_MAX_RECENT = 1000
_HASH_EXPECTED = "a werkzeug scrypt or pbkdf2 hash (python -m app.operators.status hash-password)"


@dataclass(frozen=True)
class StatusSettings:
    """The [status] section, read once at start."""

    enabled: bool
    path: str
    allow_from: tuple[Network, ...]
    username: str | None
    password_hash: str | None
    refresh: int  # seconds; 0: the page does not reload itself
    recent_errors: int


def read_status_settings(config: Mapping[str, Any]) -> StatusSettings:
    """Read and check the [status] section."""
    section = Section("status", config["STATUS"])
    enabled = section.boolean("enabled")
    path = section.string("path", pattern=r"/[A-Za-z0-9._~/-]*", expected="a path starting with / (no variables)")
    allow_from = read_networks(section, "allow_from")
    username = section.optional_string("username")
    password_hash = section.optional_string("password_hash")
    if password_hash is not None and not _HASH.fullmatch(password_hash):
        raise ConfigError(section.key("password_hash"), "<hidden>", _HASH_EXPECTED)
    if (username is None) != (password_hash is None):
        missing = "password_hash" if password_hash is None else "username"
        raise ConfigError(section.key(missing), None, "set together with " +
                          ("username" if missing == "password_hash" else "password_hash"))
    if ":" in (username or ""):
        raise ConfigError(section.key("username"), username, "a name without ':' (HTTP Basic splits on it)")
    if enabled and not allow_from and password_hash is None:
        raise ConfigError(section.key("allow_from"), [], "client networks, or username and password_hash set: "
                          "the page is never shown to every address without credentials")
    refresh = section.integer("refresh")
    recent_errors = section.integer("recent_errors")
    if recent_errors > _MAX_RECENT:
        raise ConfigError(section.key("recent_errors"), recent_errors, f"a whole number from 0 to {_MAX_RECENT}")
    section.done()
    return StatusSettings(enabled=enabled, path=path, allow_from=allow_from, username=username,
                          password_hash=password_hash, refresh=refresh, recent_errors=recent_errors)
