"""Route families chosen by configuration: ``[gateway] blueprints``; production serves only what its file names."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app import create_app
from app.config import ConfigError
from app.testing.credentials import TESTING_API_KEY
from tests.fakes.backend import Backend

# One upstream and one public declared route: a whole production deployment, no code edited.
MINIMAL = """
[upstreams.catalog]
targets = ["{url}"]

[[routes]]
path = "/api/catalog/<path:rest>"
upstream = "catalog"
upstream_path = "/catalog/{{rest}}"
auth = "public"
"""


def minimal(tmp_path: Path, url: str, extra: str = "") -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL.format(url=url) + extra)
    return str(path)


def test_production_starts_from_a_minimal_file_and_serves_no_sample(tmp_path: Path, backend: Backend,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    app = create_app("production", config_file=minimal(tmp_path, backend.url))
    assert not {"users", "web", "mobile"} & set(app.blueprints)
    client = app.test_client()
    answer = client.get("/api/catalog/products?tag=office")
    assert answer.status_code == 200
    assert answer.json is not None and answer.json["target"] == "/catalog/products?tag=office"
    for path in ("/api/users", "/api/users/u-1", "/web/users/u-1/overview", "/mobile/users/u-1/overview"):
        missing = client.get(path)
        assert (missing.status_code, missing.content_type) == (404, "application/problem+json"), path
    assert len(backend.received) == 1


def test_one_config_line_serves_a_code_family(tmp_path: Path, backend: Backend) -> None:
    extra = f'\n[upstreams.users]\ntargets = ["{backend.url}"]\n\n[gateway]\nblueprints = ["blueprints.users:bp"]\n'
    digest = hashlib.sha256(TESTING_API_KEY.encode()).hexdigest()
    extra += f'\n[auth.api_keys.consumers.ci]\nkey_sha256 = "{digest}"\nscopes = ["users:read"]\n'
    client = create_app("production", config_file=minimal(tmp_path, backend.url, extra)).test_client()
    answer = client.get("/api/users/u-1", headers={"X-API-Key": TESTING_API_KEY})
    assert answer.status_code == 200
    assert backend.received[-1].path == "/users/u-1"
    assert client.get("/web/users/u-1/overview").status_code == 404  # only what the file names


def test_the_development_settings_serve_the_samples() -> None:
    assert {"users", "web", "mobile"} <= set(create_app("development").blueprints)


@pytest.mark.parametrize(("references", "key", "expected"), [
    (["blueprints.users"], "gateway.blueprints[0]", 'a "module:attribute" reference'),
    (["blueprints.users:bp", "blueprints.users:bp"], "gateway.blueprints[1]", "each blueprint once"),
    (["blueprints.nope:bp"], "gateway.blueprints[0]", "an importable module (No module named 'blueprints.nope')"),
    (["blueprints.users:users"], "gateway.blueprints[0]", "a flask.Blueprint named users in blueprints.users, "
                                                          "not Upstream"),
    ("blueprints.users:bp;x", "gateway.blueprints[0]", 'a "module:attribute" reference'),
])
def test_a_bad_blueprint_reference_stops_the_start_naming_the_key(references: object, key: str,
                                                                  expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        create_app("testing", GATEWAY={"blueprints": references})
    assert refused.value.key == key
    assert f"expected {expected}" in str(refused.value)
