"""[auth] settings: every bad value stops the start with a message naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from app.auth import read_auth, read_route_policy, require_auth
from app.auth.policy import PUBLIC, AuthPolicy
from app.config import ConfigError, load_config

HS = {"issuer": "https://idp/", "audience": "gw", "algorithms": ["HS256"], "secret": "x" * 32}
RS = {"issuer": "https://idp/", "audience": "gw", "algorithms": ["RS256"], "jwks_url": "https://idp/jwks"}
SHA = "a" * 64


def refusal(auth: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        read_auth({"AUTH": auth})
    return str(caught.value)


def test_defaults_configure_no_scheme() -> None:
    settings = read_auth({"AUTH": {}})
    assert (settings.jwt, settings.api_keys, settings.header_prefix, settings.realm) == (
        None, None, "X-Auth-", "frontdesk")


def test_jwt_defaults() -> None:
    settings = read_auth({"AUTH": {"jwt": RS}}).jwt
    assert settings is not None
    assert settings.audience == ("gw",) and settings.leeway == 30.0
    assert settings.required_claims == ("exp", "iss", "aud", "sub")
    assert (settings.jwks_timeout, settings.jwks_lifespan, settings.jwks_cooldown) == (2.0, 300.0, 10.0)
    assert settings.verified_cache_size == 4096


def test_secret_comes_from_the_environment() -> None:
    _, config = load_config("testing", environ={"GATEWAY_AUTH__JWT__SECRET": "s" * 40,
                                                "GATEWAY_AUTH__JWT__ALGORITHMS": "HS256",
                                                "GATEWAY_AUTH__JWT__ISSUER": "https://idp/",
                                                "GATEWAY_AUTH__JWT__AUDIENCE": "gw"})
    settings = read_auth(config).jwt
    assert settings is not None and settings.secret == "s" * 40


@pytest.mark.parametrize(("auth", "message"), [
    ({"jwt": {**RS, "algorithms": ["RS256", "HS256"], "secret": "x" * 32}},
     "auth.jwt.algorithms = ['RS256', 'HS256']: expected HS* algorithms alone or RS*/PS*/ES*/EdDSA alone, never both"),
    ({"jwt": {**RS, "algorithms": ["none"]}}, "auth.jwt.algorithms = 'none': expected one of "),
    ({"jwt": {**RS, "algorithms": []}}, "auth.jwt.algorithms = []: expected a list of strings, not empty"),
    ({"jwt": {**HS, "secret": "short"}}, "auth.jwt.secret = '<hidden>': expected at least 32 bytes"),
    ({"jwt": {**RS, "secret": "x" * 32}}, "auth.jwt.algorithms = ['RS256']: expected exactly one key source for "
                                          "them: jwks_url or public_key_file (found: jwks_url, secret)"),
    ({"jwt": {**HS, "secret": None}}, "auth.jwt.algorithms = ['HS256']: expected exactly one key source for them: "
                                      "secret (from GATEWAY_AUTH__JWT__SECRET) (found: none)"),
    ({"jwt": {**RS, "jwks_url": "ftp://idp/jwks"}}, "auth.jwt.jwks_url = 'ftp://idp/jwks': expected an http://"),
    ({"jwt": {**RS, "required_claims": ["iss", "aud"]}},
     "auth.jwt.required_claims = ['iss', 'aud']: expected a list that includes 'exp'"),
    ({"jwt": {**RS, "issuer": ""}}, "auth.jwt.issuer = '': expected a string"),
    ({"jwt": {**RS, "audience": []}}, "auth.jwt.audience = []: expected a list of strings, not empty"),
    ({"jwt": {**RS, "leeway": -1}}, "auth.jwt.leeway = -1: expected a whole number >= 0"),
    ({"jwt": {**RS, "jwks_cooldown": 0}}, "auth.jwt.jwks_cooldown = 0: expected a number of seconds"),
    ({"jwt": {**RS, "forward_claims": ["a b"]}}, "auth.jwt.forward_claims = 'a b': expected claim names"),
    ({"jwt": {**RS, "verified_cache_size": -1}}, "auth.jwt.verified_cache_size = -1: expected a whole number >= 0"),
    ({"jwt": {**RS, "verified_cache_size": "lots"}},
     "auth.jwt.verified_cache_size = 'lots': expected a whole number >= 0"),
    ({"jwt": {**RS, "verified_cache_size": 4096.5}},
     "auth.jwt.verified_cache_size = 4096.5: expected a whole number >= 0"),
    ({"jwt": {**RS, "algoritms": ["RS256"]}}, "auth.jwt.algoritms = ['RS256']: expected no such key"),
    ({"header_prefix": "X-Auth"}, "auth.header_prefix = 'X-Auth': expected a header name prefix ending in -"),
    ({"api_keys": {"header": "Authorization"}}, "auth.api_keys.header = 'Authorization': expected a header of its"),
    ({"api_keys": {"consumers": {"a": {"key_sha256": "plain-key"}}}},
     "auth.api_keys.consumers.a.key_sha256 = 'plain-key': expected the lower-case hex SHA-256"),
    ({"api_keys": {"consumers": {"a": {"key_sha256": SHA}, "b": {"key_sha256": SHA}}}},
     f"auth.api_keys.consumers.b.key_sha256 = '{SHA}': expected a key not already given to a"),
    ({"api_keys": {"consumers": {"a": {"key_sha256": SHA, "scopes": ['bad"scope']}}}},
     "auth.api_keys.consumers.a.scopes = 'bad\"scope': expected scope tokens"),
    ({"api_keys": {"consumers": {"a b": {"key_sha256": SHA}}}}, "auth.api_keys.consumers.a b = 'a b': expected a"),
    ({"api_keys": {"consumers": {"a": {"key_sha256": SHA, "key": "k"}}}},
     "auth.api_keys.consumers.a.key = 'k': expected no such key"),
])
def test_bad_settings_are_refused_naming_the_key(auth: dict[str, Any], message: str) -> None:
    assert refusal(auth).startswith(message)


@pytest.mark.parametrize(("value", "policy"), [
    ("public", PUBLIC),
    ({}, AuthPolicy(public=False, schemes=None, scopes=())),
    ({"scopes": ["a:b"], "schemes": ["api_key"]}, AuthPolicy(public=False, schemes=("api_key",), scopes=("a:b",))),
])
def test_route_policies(value: object, policy: AuthPolicy) -> None:
    assert read_route_policy("routes[0].auth", value) == policy


@pytest.mark.parametrize(("value", "message"), [
    ("Public", 'routes[0].auth = \'Public\': expected "public" or a table'),
    (True, "routes[0].auth = True: expected"),
    ({"scope": ["a"]}, "routes[0].auth = {'scope': ['a']}: expected"),
    ({"scopes": "a"}, "routes[0].auth = {'scopes': 'a'}: expected"),
    ({"schemes": ["basic"]}, "routes[0].auth.schemes = ['basic']: expected a non-empty list of jwt, api_key"),
    ({"schemes": []}, "routes[0].auth.schemes = []: expected a non-empty list"),
    ({"scopes": ["a b"]}, "routes[0].auth.scopes = 'a b': expected scope tokens"),
])
def test_bad_route_policies(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_route_policy("routes[0].auth", value)
    assert str(caught.value).startswith(message)


def test_decorator_options_are_checked_when_decorating() -> None:
    with pytest.raises(ConfigError, match="expected a list, not a single string"):
        require_auth(scopes="orders:read")
    with pytest.raises(ConfigError, match="require_auth.schemes"):
        require_auth(schemes=("saml",))
