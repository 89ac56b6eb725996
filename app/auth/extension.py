"""The ``auth`` extension: per-app (per-worker) verifiers, the request hook and the authenticate step."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
import requests
import urllib3
from flask import Flask, current_app

from app.auth.apikeys import consumer_principal
from app.auth.errors import InsufficientScope, InvalidCredentials, Rejected, challenge
from app.auth.keys import JwksError, JwksKeys, KeySource
from app.auth.policy import EXTENSION, SCHEMES, AuthPolicy, check_policies
from app.auth.principal import Principal, identity_headers
from app.auth.settings import AuthSettings, JwtSettings, read_auth
from app.auth.tokens import JwtVerifier, bearer_token, scopes_of, static_keys
from app.current import current_gateway, current_request
from app.environ import API_KEY_ENVIRON
from app.proxy import upstreams

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["Auth", "AuthRuntime", "auth"]

#: Where the request hook puts the client's API key once it is off the headers.
_MAX_JWKS_BYTES = 512 * 1024

log = logging.getLogger("frontdesk.auth")


class AuthRuntime:
    """One app's auth state: settings, the JWT verifier (and its key cache), the environ names it owns."""

    def __init__(self, settings: AuthSettings, verifier: JwtVerifier | None) -> None:
        self.settings = settings
        self.verifier = verifier
        self.schemes = tuple(name for name, part in zip(SCHEMES, (settings.jwt, settings.api_keys)) if part)
        self.identity_environ = "HTTP_" + settings.header_prefix.upper().replace("-", "_")
        keys = settings.api_keys
        self.api_key_environ = "HTTP_" + keys.header.upper().replace("-", "_") if keys else None

    def take_credentials(self, environ: WSGIEnvironment) -> None:
        """Drop client-sent identity headers, and move the API key off the headers that go upstream."""
        prefix = self.identity_environ
        # One search of all the names joined, and the name by name scan only when it finds one:
        # str.startswith on each of ~25 names was 25,000 instructions a request (callgrind). WSGI
        # names are str without NUL; a false find only costs the scan, which decides.
        names = "\0".join(environ)
        if names.startswith(prefix) or "\0" + prefix in names:
            for name in [name for name in environ if name.startswith(prefix)]:
                del environ[name]
        if self.api_key_environ is not None and self.api_key_environ in environ:
            environ[API_KEY_ENVIRON] = environ.pop(self.api_key_environ)

    def authenticate(self, policy: AuthPolicy, environ: WSGIEnvironment) -> Principal:
        """The verified caller, its identity headers set for the upstream; 401/403/503 otherwise."""
        accepted = [scheme for scheme in policy.schemes or SCHEMES if scheme in self.schemes]
        authorization = environ.get("HTTP_AUTHORIZATION")
        api_key = environ.get(API_KEY_ENVIRON)
        try:
            if "jwt" in accepted and authorization is not None and _is_bearer(authorization):
                principal = self._by_token(authorization)
            elif "api_key" in accepted and api_key is not None:
                assert self.settings.api_keys is not None
                principal = consumer_principal(self.settings.api_keys, api_key)
            else:
                raise InvalidCredentials("This route needs " + " or ".join(
                    "a bearer token" if scheme == "jwt" else "an API key" for scheme in accepted) + ".",
                    self._challenges(accepted))
        except Rejected as error:
            raise InvalidCredentials(str(error), self._challenges(accepted, error="invalid_token"),
                                     presented=True) from None
        missing = [scope for scope in policy.scopes if scope not in principal.scopes]
        if missing:
            scope = " ".join(policy.scopes)
            bearer = [challenge("Bearer", self.settings.realm, error="insufficient_scope", scope=scope)]
            raise InsufficientScope(f"This route needs the scope {' and '.join(missing)}.",
                                    bearer if principal.scheme == "jwt" else [])
        forward = self.settings.jwt.forward_claims if self.settings.jwt else ()
        for name, value in identity_headers(principal, self.settings.header_prefix, forward).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        return principal

    def _by_token(self, authorization: str) -> Principal:
        assert self.verifier is not None and self.settings.jwt is not None
        jwt_settings = self.settings.jwt
        claims = self.verifier.verify(bearer_token(authorization))
        subject, consumer = claims.get("sub"), claims.get(jwt_settings.consumer_claim)
        return Principal(scheme="jwt", subject=subject if isinstance(subject, str) else None,
                         consumer=consumer if isinstance(consumer, str) else None,
                         scopes=scopes_of(claims, jwt_settings.scope_claim), claims=claims)

    def _challenges(self, accepted: list[str], **params: str) -> list[str]:
        challenges = []
        if "jwt" in accepted:
            challenges.append(challenge("Bearer", self.settings.realm, **params))
        if "api_key" in accepted and self.settings.api_keys is not None:
            challenges.append(challenge("ApiKey", self.settings.realm, header=self.settings.api_keys.header))
        return challenges


def _is_bearer(authorization: str) -> bool:
    """Whether the client meant a bearer token (then a malformed one is an invalid_token, not no token)."""
    scheme, _, _ = authorization.strip().partition(" ")
    return scheme.lower() == "bearer"


class Auth:
    """The app-less extension: ``init_app`` builds the verifiers, ``check`` refuses unguarded routes."""

    def init_app(self, app: Flask) -> None:
        """Read [auth] and build this app's (this worker's) verifier and key cache."""
        settings = read_auth(app.config)
        verifier = None
        if settings.jwt is not None:
            verifier = JwtVerifier(settings.jwt, _key_source(settings.jwt, upstreams.session(app)))
        app.extensions[EXTENSION] = AuthRuntime(settings, verifier)

    def check(self, app: Flask) -> None:
        """Refuse to start when a registered route has no auth policy (call after every blueprint)."""
        check_policies(app, app.extensions[EXTENSION].schemes)

    def runtime(self, app: Flask | None = None) -> AuthRuntime:
        """The app's auth state (tests and benchmarks reach the verifier through it)."""
        runtime: AuthRuntime = (app or current_app).extensions[EXTENSION]
        return runtime


#: The one instance ``create_app`` initialises.
auth = Auth()


def take_credentials() -> None:
    """Before every request: no client-sent identity header survives, and the API key leaves the headers."""
    current_gateway().extensions[EXTENSION].take_credentials(current_request().environ)


def _key_source(settings: JwtSettings, session: requests.Session) -> KeySource:
    if settings.jwks_url is None:
        return static_keys(settings)
    return JwksKeys(_jwks_fetcher(session, settings.jwks_url, settings.jwks_timeout), settings.algorithms,
                    lifespan=settings.jwks_lifespan, cooldown=settings.jwks_cooldown,
                    wait_timeout=settings.jwks_timeout + 0.5)


def _jwks_fetcher(session: requests.Session, url: str, timeout: float) -> Callable[[], bytes]:
    """A fetch through the gateway's Session, whole within ``timeout`` seconds, size-capped."""
    def fetch() -> bytes:
        try:
            with gevent.Timeout(timeout, JwksError(f"no answer within {timeout:g} s")):
                with session.get(url, timeout=timeout, stream=True, allow_redirects=False,
                                 headers={"Accept": "application/json"}) as response:
                    if response.status_code != 200:
                        raise JwksError(f"the key set answered {response.status_code}")
                    body: bytes = response.raw.read(_MAX_JWKS_BYTES + 1, decode_content=True)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
            raise JwksError(f"the key set is unreachable ({type(error).__name__})") from None
        if len(body) > _MAX_JWKS_BYTES:
            raise JwksError(f"the key set is larger than {_MAX_JWKS_BYTES} bytes")
        return body

    return fetch
