"""Fixtures: a fresh gateway per test, real scripted backends, real gunicorn when a test needs it.

Blueprint tests use the testing kit's fixtures (app/testing/plugin.py, loaded below); the ones here
serve the gateway's own tests (declared routes, settings, end-to-end runs).
"""

from gevent import monkey

# The gateway runs patched under gunicorn's gevent worker; tests run the same way, so the
# deadlines (gevent.Timeout) and the fake backends' threads behave as in production.
if not monkey.is_module_patched("socket"):
    monkey.patch_all()

from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from app import create_app, upstreams  # noqa: E402
from app.testing import Backend  # noqa: E402
from tests.fakes.redisd import RedisServer  # noqa: E402
from tests.gateway import Gateway  # noqa: E402

AppFactory = Callable[..., Flask]

# The testing kit's fixtures (gateway, upstream, token, api_key), as a team enables them in its own conftest.
pytest_plugins = ["app.testing.plugin"]


@pytest.fixture
def backend() -> Iterator[Backend]:
    """A running scripted backend that records what it receives."""
    with Backend("echo") as running:
        yield running


def echo_config(backend: Backend, **upstream: Any) -> dict[str, Any]:
    """Overrides for one upstream ``echo`` at ``backend`` and a catch-all route to it."""
    return {
        "UPSTREAMS": {"echo": {"targets": [backend.url], **upstream}},
        "ROUTES": [{"path": "/<path:rest>", "upstream": "echo", "auth": "public",
                    "methods": ["GET", "POST", "PUT", "PATCH", "DELETE"]}],
    }


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """Build a fresh testing app; keyword arguments are create_app overrides."""
    built: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        overrides.setdefault("blueprints", ())
        app = create_app("testing", **overrides)
        built.append(app)
        return app

    yield make
    for app in built:
        upstreams.stop(app)  # no health-check or DNS greenlet outlives its test


@pytest.fixture
def client(make_app: AppFactory, backend: Backend) -> FlaskClient:
    """A test client of a gateway forwarding everything to ``backend``."""
    return make_app(**echo_config(backend)).test_client()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (tests use their own key prefixes); stopped at the end."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def start_gateway(tmp_path: Any) -> Iterator[Callable[..., Gateway]]:
    """Start real gunicorn gevent gateways (``wait=False``: don't wait for /livez); all stopped at the end."""
    started: list[Gateway] = []

    def start(config: str, workers: int = 2, env: dict[str, str] | None = None, wait: bool = True) -> Gateway:
        gateway = Gateway(tmp_path, config, workers=workers, env=env)
        started.append(gateway)
        return gateway.start(wait=wait)

    yield start
    for gateway in started:
        gateway.stop()
