"""A demo identity provider: signing keys made at start, a JWKS, and a token endpoint for chosen scopes.

Keys live in memory only, so every start rotates them; the gateway picks the new ones up through
its unknown-kid refresh. Never a production IdP: it hands a token to whoever asks.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask, Response, request

from examples.demo.common import install_common, json_response, problem

__all__ = ["AUDIENCE", "ISSUER", "create_idp_app"]

#: What development settings expect in ``iss`` and ``aud``.
ISSUER = "https://idp.demo.frontdesk/"
AUDIENCE = "frontdesk"
_MAX_LIFETIME = 24 * 3600


def create_idp_app() -> Flask:
    """The IdP app with a fresh RS256 and ES256 key pair."""
    app = Flask("demo-idp")
    started = uuid.uuid4().hex[:8]
    private: dict[str, tuple[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]] = {
        "RS256": (f"rsa-{started}", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ES256": (f"ec-{started}", ec.generate_private_key(ec.SECP256R1())),
    }
    jwks = {"keys": [_public_jwk(alg, kid, key) for alg, (kid, key) in private.items()]}

    @app.get("/.well-known/jwks.json")
    def keys() -> Response:
        """The public keys, as the gateway fetches them."""
        return json_response(jwks, headers={"Cache-Control": "max-age=300"})

    @app.post("/token")
    def token() -> Response:
        """A signed token for the scopes asked (form or JSON: scope, sub, alg, expires_in)."""
        asked: dict[str, Any] = request.get_json(silent=True) or request.form.to_dict()
        alg = str(asked.get("alg", "RS256"))
        if alg not in private:
            return problem(422, "unknown alg", f"choose one of {', '.join(private)}")
        try:
            lifetime = min(int(asked.get("expires_in", 3600)), _MAX_LIFETIME)
        except (TypeError, ValueError):
            return problem(422, "bad expires_in", "a whole number of seconds")
        now = int(time.time())
        subject = str(asked.get("sub", "demo-user"))
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + lifetime,
                  "scope": str(asked.get("scope", "")), "azp": "demo-cli", "email": f"{subject}@demo.frontdesk"}
        kid, key = private[alg]
        signed = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
        return json_response({"access_token": signed, "token_type": "Bearer", "expires_in": lifetime,
                              "scope": claims["scope"]})

    install_common(app)
    return app


def _public_jwk(alg: str, kid: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    algorithm = jwt.algorithms.get_default_algorithms()[alg]
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}
