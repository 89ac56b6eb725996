"""The [openapi] section: whether and where the gateway serves its OpenAPI document."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from app.config import ConfigError, Section

__all__ = ["OpenApiSettings", "read_openapi_settings"]

_PATH = r"/[A-Za-z0-9._~/-]*"


@dataclass(frozen=True)
class OpenApiSettings:
    """The [openapi] section, read once."""

    enabled: bool  # serve the document at ``path``; the CLI exports it either way
    path: str
    title: str
    version: str
    description: str


def read_openapi_settings(config: Mapping[str, Any]) -> OpenApiSettings:
    """Read and check the [openapi] section."""
    section = Section("openapi", config["OPENAPI"])
    settings = OpenApiSettings(
        enabled=section.boolean("enabled", True),
        path=section.string("path", "/openapi.json", pattern=_PATH, expected="a path starting with / (no variables)"),
        title=section.string("title", "Frontdesk"),
        version=section.optional_string("version") or _package_version(),
        description=_description(section),
    )
    section.done()
    return settings


def _description(section: Section) -> str:
    value = section.raw("description", "")
    if not isinstance(value, str):
        raise ConfigError(section.key("description"), value, "a string (Markdown)")
    return value


def _package_version() -> str:
    try:
        return version("frontdesk")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"
