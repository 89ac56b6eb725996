"""The package's shape: importing a module imports what it needs and never the app (no cycle through app/__init__)."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Leaves and layers a team or a tool imports on its own, from the bottom of the stack to the top.
MODULES = [
    "app.environ", "app.config", "app.observability.metrics", "app.proxy.wire", "app.proxy", "app.auth",
    "app.caching", "app.ratelimit", "app.compose.shaping", "app.edge.guard", "app.routes", "app.operators.inventory",
]


def _loaded_after(statement: str) -> set[str]:
    """The app's modules loaded by ``statement`` in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in sys.modules if m == 'app' or m.startswith('app.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_importing_the_package_imports_nothing_else() -> None:
    assert _loaded_after("import app") == {"app"}


@pytest.mark.parametrize("module", MODULES)
def test_a_module_never_imports_the_factory(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert module in loaded
    assert "app.factory" not in loaded  # so nothing under it can reach the app through app/__init__


def test_the_environ_keys_are_a_leaf() -> None:
    assert _loaded_after("import app.environ") == {"app", "app.environ"}


def test_the_public_names_arrive_on_first_use() -> None:
    loaded = _loaded_after("from app import create_app, upstreams, ConfigError")
    assert {"app.factory", "app.proxy", "app.config"} <= loaded


def test_an_unknown_name_is_an_attribute_error() -> None:
    import app

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        app.nothing  # noqa: B018  # the module's __getattr__ answers for it
