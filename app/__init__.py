"""Frontdesk: an API gateway built as a Flask application.

The names teams import: ``create_app`` (app/factory.py), ``Upstream``, ``upstreams``, ``ConfigError``,
``Problems``. Each is imported on first use (PEP 562 ``__getattr__``), so importing any module of
the package (``app.environ``, ``app.observability.metrics``, a blueprint) never builds the app or
imports the rest of it (docs/decisions.md, 77).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for the type checker only: at run time each name is imported on first use
    from app.config import ConfigError, Problems
    from app.factory import create_app, create_app_or_exit
    from app.proxy import Upstream, upstreams

__all__ = ["ConfigError", "Problems", "Upstream", "create_app", "create_app_or_exit", "upstreams"]

#: Where each public name lives.
_HOMES = {
    "ConfigError": "app.config",
    "Problems": "app.config",
    "Upstream": "app.proxy",
    "upstreams": "app.proxy",
    "create_app": "app.factory",
    "create_app_or_exit": "app.factory",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # later reads skip this function
    return value
