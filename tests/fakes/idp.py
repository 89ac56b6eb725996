"""A local identity provider for auth tests: signing keys, a JWKS server it can rotate or take down."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["AUDIENCE", "ISSUER", "Idp", "SigningKey", "claims"]

ISSUER = "https://idp.test/"
AUDIENCE = "frontdesk"


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for the test issuer and audience, one hour left; ``None`` values are removed."""
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 3600,
                            "scope": "orders:read"}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


class SigningKey:
    """A private key with its kid and algorithm; ``jwk`` is the public half as a JWKS entry."""

    def __init__(self, alg: str, kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        self.private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if alg.startswith(("RS", "PS")):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())

    @property
    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK."""
        public = json.loads(jwt.algorithms.get_default_algorithms()[self.alg].to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, payload: dict[str, Any], **headers: Any) -> str:
        """A token signed with this key (headers may override kid/alg)."""
        return jwt.encode(payload, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers})


class Idp:
    """Serves ``/jwks`` from a thread; ``publish`` replaces the keys, ``down`` makes it answer 503."""

    def __init__(self, *keys: SigningKey) -> None:
        self.document = json.dumps({"keys": [key.jwk for key in keys]}).encode()
        self.down = False
        self.fetches = 0
        self._lock = threading.Lock()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with idp._lock:
                    idp.fetches += 1
                    down, body = idp.down, idp.document
                status = 503 if down or self.path != "/jwks" else 200
                body = body if status == 200 else b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/jwks"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def publish(self, *keys: SigningKey) -> None:
        """Serve these keys from now on (a rotation)."""
        with self._lock:
            self.document = json.dumps({"keys": [key.jwk for key in keys]}).encode()

    def __enter__(self) -> Idp:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
