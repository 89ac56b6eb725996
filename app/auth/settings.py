"""The [auth], [auth.jwt] and [auth.api_keys] tables, read once into frozen settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.config import ConfigError, Section

__all__ = ["ApiKeySettings", "AuthSettings", "Consumer", "JwtSettings", "check_scope", "read_auth"]

# Algorithms by family: one allow-list never mixes a shared secret with public keys (RFC 8725 3.1).
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K", "EdDSA",
})
# HS256 needs a key at least as long as its hash output (RFC 7518 3.2).
_MIN_SECRET_BYTES = 32
_HEADER_PREFIX = r"[A-Za-z][A-Za-z0-9-]*-"
_HEADER_NAME = r"[A-Za-z][A-Za-z0-9-]*"
_CLAIM_NAME = r"[A-Za-z0-9_.:-]+"
_SHA256_HEX = r"[0-9a-f]{64}"
_CONSUMER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


@dataclass(frozen=True)
class JwtSettings:
    """How bearer tokens are verified, and where their keys come from (exactly one source)."""

    issuer: str
    audience: tuple[str, ...]
    algorithms: tuple[str, ...]
    jwks_url: str | None
    public_key_file: str | None
    secret: str | None
    leeway: float
    required_claims: tuple[str, ...]
    scope_claim: str  # dotted path: "scope", "scp", "realm_access.roles"
    consumer_claim: str
    forward_claims: tuple[str, ...]
    jwks_timeout: float
    jwks_lifespan: float
    jwks_cooldown: float
    verified_cache_size: int  # tokens whose verification result a worker keeps (0: no cache)


@dataclass(frozen=True)
class Consumer:
    """A machine client known by the SHA-256 of its API key."""

    name: str
    key_sha256: str
    scopes: frozenset[str]
    plan: str | None


@dataclass(frozen=True)
class ApiKeySettings:
    """The header API keys arrive in, and the consumers by the hex SHA-256 of their key."""

    header: str
    consumers: Mapping[str, Consumer]


@dataclass(frozen=True)
class AuthSettings:
    """Everything the auth extension needs; a scheme left out of the config is None."""

    realm: str
    header_prefix: str
    jwt: JwtSettings | None
    api_keys: ApiKeySettings | None


def read_auth(config: Mapping[str, Any]) -> AuthSettings:
    """Read and check the [auth] section."""
    section = Section("auth", config["AUTH"])
    realm = section.string("realm", "frontdesk", pattern=r"[A-Za-z0-9 ._:/-]+",
                           expected="letters, digits, spaces and ._:/-")
    prefix = section.string("header_prefix", "X-Auth-", pattern=_HEADER_PREFIX,
                            expected="a header name prefix ending in - (like X-Auth-)")
    jwt = _read_jwt(section.table("jwt")) if section.has("jwt") else None
    api_keys = _read_api_keys(section.table("api_keys")) if section.has("api_keys") else None
    section.done()
    return AuthSettings(realm=realm, header_prefix=prefix, jwt=jwt, api_keys=api_keys)


def _read_jwt(section: Section) -> JwtSettings:
    issuer = section.string("issuer")
    audience = _audience(section)
    algorithms = section.strings("algorithms", allow_empty=False)
    _check_algorithms(section.key("algorithms"), algorithms)
    jwks_url = section.optional_string("jwks_url")
    public_key_file = section.optional_string("public_key_file")
    secret = section.optional_string("secret")
    _check_key_source(section, algorithms, jwks_url, public_key_file, secret)
    claims = section.strings("required_claims", ("exp", "iss", "aud", "sub"))
    for claim in ("exp", "iss", "aud"):
        if claim not in claims:
            # A token without exp would never expire; without iss/aud it could be meant for someone else.
            raise ConfigError(section.key("required_claims"), list(claims), f"a list that includes {claim!r}")
    settings = JwtSettings(
        issuer=issuer, audience=audience, algorithms=algorithms, jwks_url=jwks_url,
        public_key_file=public_key_file, secret=secret,
        leeway=float(section.integer("leeway", 30)),
        required_claims=claims,
        scope_claim=section.string("scope_claim", "scope", pattern=_CLAIM_NAME, expected="a claim name or path"),
        consumer_claim=section.string("consumer_claim", "azp", pattern=_CLAIM_NAME, expected="a claim name"),
        forward_claims=_claim_names(section, "forward_claims"),
        jwks_timeout=section.seconds("jwks_timeout", 2.0),
        jwks_lifespan=section.seconds("jwks_lifespan", 300.0),
        jwks_cooldown=section.seconds("jwks_cooldown", 10.0),
        verified_cache_size=section.integer("verified_cache_size", 4096),
    )
    section.done()
    return settings


def _audience(section: Section) -> tuple[str, ...]:
    value = section.raw("audience")
    if isinstance(value, str) and value:
        return (value,)
    return section.strings("audience", allow_empty=False)


def _check_algorithms(key: str, algorithms: tuple[str, ...]) -> None:
    known = HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS
    for algorithm in algorithms:
        if algorithm not in known:
            raise ConfigError(key, algorithm, "one of " + ", ".join(sorted(known)) + " ('none' never)")
    hmac = set(algorithms) & HMAC_ALGORITHMS
    if hmac and len(hmac) != len(set(algorithms)):
        raise ConfigError(key, list(algorithms), "HS* algorithms alone or RS*/PS*/ES*/EdDSA alone, never both")


def _check_key_source(section: Section, algorithms: tuple[str, ...], jwks_url: str | None,
                      public_key_file: str | None, secret: str | None) -> None:
    given = {"jwks_url": jwks_url, "public_key_file": public_key_file, "secret": secret}
    sources = [name for name, value in given.items() if value is not None]
    hmac = algorithms[0] in HMAC_ALGORITHMS
    wanted = "secret (from GATEWAY_AUTH__JWT__SECRET)" if hmac else "jwks_url or public_key_file"
    if len(sources) != 1 or (sources[0] == "secret") != hmac:
        raise ConfigError(section.key("algorithms"), list(algorithms),
                          f"exactly one key source for them: {wanted} (found: {', '.join(sources) or 'none'})")
    if jwks_url is not None and not re.fullmatch(r"https?://[^\s/?#]+[^\s#]*", jwks_url):
        raise ConfigError(section.key("jwks_url"), jwks_url, "an http:// or https:// URL")
    if secret is not None and len(secret.encode()) < _MIN_SECRET_BYTES:
        # The value itself is never shown: it is a secret.
        raise ConfigError(section.key("secret"), "<hidden>", f"at least {_MIN_SECRET_BYTES} bytes")


def _claim_names(section: Section, name: str) -> tuple[str, ...]:
    claims = section.strings(name)
    for claim in claims:
        if not re.fullmatch(_HEADER_NAME, claim):
            raise ConfigError(section.key(name), claim, "claim names usable in a header (letters, digits, -)")
    return claims


def _read_api_keys(section: Section) -> ApiKeySettings:
    header = section.string("header", "X-API-Key", pattern=_HEADER_NAME, expected="a header name")
    if header.lower() in ("authorization", "cookie", "host"):
        raise ConfigError(section.key("header"), header, "a header of its own, not a standard one")
    consumers: dict[str, Consumer] = {}
    for table in section.table("consumers").tables():
        name = table.path.rsplit(".", 1)[1]
        if not re.fullmatch(_CONSUMER_NAME, name):
            raise ConfigError(table.path, name, "a consumer name of letters, digits and ._- (64 at most)")
        digest = table.string("key_sha256", pattern=_SHA256_HEX,
                              expected="the lower-case hex SHA-256 of the key (64 characters), never the key")
        if digest in consumers:
            raise ConfigError(table.key("key_sha256"), digest, f"a key not already given to {consumers[digest].name}")
        scopes = frozenset(table.strings("scopes"))
        for scope in scopes:
            check_scope(table.key("scopes"), scope)
        consumers[digest] = Consumer(name=name, key_sha256=digest, scopes=scopes,
                                     plan=table.optional_string("plan"))
        table.done()
    section.done()
    return ApiKeySettings(header=header, consumers=consumers)


def check_scope(key: str, scope: object) -> str:
    """A scope token as RFC 6749 3.3 allows (it is quoted into WWW-Authenticate)."""
    if not isinstance(scope, str) or not re.fullmatch(r"[\x21\x23-\x5B\x5D-\x7E]+", scope):
        raise ConfigError(key, scope, "scope tokens of visible ASCII without spaces, quotes or backslashes")
    return scope
