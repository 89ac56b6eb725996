"""The gateway under test: built from the testing settings at its first request, so a test can still
point upstreams at its fakes and add settings until then."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Blueprint, Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app, upstreams
from app.config import load_config
from app.testing.backend import Backend
from app.testing.credentials import kit_auth_settings
from app.testing.records import UNSET, HeaderInput

__all__ = ["FakeUpstreams", "GatewayUnderTest"]

# The [auth.jwt] keys that name where verification keys come from; exactly one may be set.
_KEY_SOURCES = ("jwks_url", "public_key_file", "secret")


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key, anything else is replaced: the rule the configuration layers follow."""
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        merged[key] = _merged(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return merged


class GatewayUnderTest:
    """A fresh gateway app and its test client, built by ``create_app`` on first use."""

    def __init__(self, *, blueprints: Iterable[Blueprint] | None = None, env: str = "testing",
                 **overrides: Any) -> None:
        """``blueprints``: the route families under test (None: the project's list); ``overrides``: settings."""
        self._env = env
        self._blueprints = None if blueprints is None else tuple(blueprints)
        self._overrides: dict[str, Any] = {}
        self._app: Flask | None = None
        self._client: FlaskClient | None = None
        self.configure(**overrides)

    # --- before the first request ----------------------------------------------------------------

    def configure(self, *, blueprints: Iterable[Blueprint] | None = None, **overrides: Any) -> GatewayUnderTest:
        """Merge settings (``create_app`` overrides, sections in upper case) and/or set the blueprints."""
        self._refuse_if_built("configure")
        if blueprints is not None:
            self._blueprints = tuple(blueprints)
        self._overrides = _merged(self._overrides, overrides)
        return self

    def point(self, upstream: str, url: str) -> GatewayUnderTest:
        """Send upstream ``upstream`` to ``url`` (its only target); its other settings are kept."""
        return self.configure(UPSTREAMS={upstream: {"targets": [url]}})

    def settings(self) -> dict[str, Any]:
        """The raw settings the app is (or will be) built from: the testing class, the environment, overrides."""
        return load_config(self._env, None, self._effective_overrides())[1]

    def _effective_overrides(self) -> dict[str, Any]:
        """The test's overrides over the kit's JWT test key, unless the test brings its own key source."""
        jwt = self._overrides.get("AUTH", {}).get("jwt", {})
        if any(source in jwt for source in _KEY_SOURCES):
            return self._overrides  # merging the kit's secret in would give two key sources
        return _merged({"AUTH": kit_auth_settings()}, self._overrides)

    # --- the app -------------------------------------------------------------------------------

    @property
    def built(self) -> bool:
        """Whether the app exists yet (it reads its settings once, when built)."""
        return self._app is not None

    def build(self) -> Flask:
        """The app, built now if it is not yet (a bad setting raises ``ConfigError`` here)."""
        if self._app is None:
            self._app = create_app(self._env, blueprints=self._blueprints, **self._effective_overrides())
        return self._app

    @property
    def app(self) -> Flask:
        """The Flask app (built on first access)."""
        return self.build()

    @property
    def client(self) -> FlaskClient:
        """A test client that sends each request exactly as written: no cookie jar between requests."""
        if self._client is None:
            self._client = self.build().test_client(use_cookies=False)
        return self._client

    def close(self) -> None:
        """Stop the app's background work (health checks, DNS refresh) so nothing outlives the test."""
        if self._app is not None:
            upstreams.stop(self._app)

    def _refuse_if_built(self, action: str) -> None:
        if self._app is not None:
            raise RuntimeError(f"cannot {action} the gateway after its first request: "
                               "the app reads its settings once, when it is built")

    # --- requests (the test client's methods) ----------------------------------------------------

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        """Any request, as ``FlaskClient.open``."""
        return self.client.open(*args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> TestResponse:
        """A GET request, as ``FlaskClient.get``."""
        return self.client.get(*args, **kwargs)

    def post(self, *args: Any, **kwargs: Any) -> TestResponse:
        """A POST request, as ``FlaskClient.post``."""
        return self.client.post(*args, **kwargs)

    def put(self, *args: Any, **kwargs: Any) -> TestResponse:
        """A PUT request, as ``FlaskClient.put``."""
        return self.client.put(*args, **kwargs)

    def patch(self, *args: Any, **kwargs: Any) -> TestResponse:
        """A PATCH request, as ``FlaskClient.patch``."""
        return self.client.patch(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> TestResponse:
        """A DELETE request, as ``FlaskClient.delete``."""
        return self.client.delete(*args, **kwargs)

    def head(self, *args: Any, **kwargs: Any) -> TestResponse:
        """A HEAD request, as ``FlaskClient.head``."""
        return self.client.head(*args, **kwargs)

    def options(self, *args: Any, **kwargs: Any) -> TestResponse:
        """An OPTIONS request, as ``FlaskClient.options``."""
        return self.client.options(*args, **kwargs)


class FakeUpstreams:
    """Starts fake upstreams by name and points the gateway's upstream of that name at each."""

    def __init__(self, gateway: GatewayUnderTest) -> None:
        """Fakes for ``gateway``; none runs until asked for."""
        self._gateway = gateway
        self._running: dict[str, Backend] = {}

    def __call__(self, name: str, status: int | None = None, *, json: Any = UNSET, body: bytes | str | None = None,
                 headers: HeaderInput | None = None, delay: float = 0.0) -> Backend:
        """The running fake for upstream ``name`` (started and mounted on first call); any answer given is scripted."""
        fake = self._running.get(name)
        if fake is None:
            if self._gateway.built:
                raise RuntimeError(f"mount upstream {name!r} before the gateway's first request: "
                                   "the app reads its upstreams once, when it is built")
            fake = Backend(name).start()
            self._running[name] = fake
            self._gateway.point(name, fake.url)
        if status is not None or json is not UNSET or body is not None or headers is not None or delay:
            fake.respond(200 if status is None else status, json=json, body=body, headers=headers, delay=delay)
        return fake

    def __getitem__(self, name: str) -> Backend:
        """The fake already mounted for ``name``."""
        return self._running[name]

    def stop(self) -> None:
        """Stop every fake started here."""
        for fake in self._running.values():
            fake.stop()
        self._running.clear()
