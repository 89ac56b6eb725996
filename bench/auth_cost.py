"""CPU per request of auth: verifying HS256, RS256 and ES256 tokens, and the whole authenticate step.

Run: ``.venv/bin/python -m bench.auth_cost [iterations]``. Everything runs in this process without
I/O: the figures are the gateway's own CPU for auth. "uncached" parses the key from its PEM on every
call, which is what verifying without a per-key cache would cost.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives import serialization

from app.auth.extension import AuthRuntime
from app.auth.keys import StaticKeys, VerifyingKey
from app.auth.policy import AuthPolicy
from app.auth.settings import read_auth
from app.auth.tokens import JwtVerifier
from tests.fakes.idp import AUDIENCE, ISSUER, SigningKey, claims

SECRET = "bench-secret-of-forty-bytes-0123456789ab"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(work: Callable[[], object], iterations: int) -> float:
    """CPU µs per call, the best of three rounds (the least disturbed by the rest of the machine)."""
    rounds = []
    for _ in range(3):
        started = _cpu()
        for _ in range(iterations):
            work()
        rounds.append((_cpu() - started) / iterations * 1e6)
    return min(rounds)


def _runtime(algorithm: str, key: object) -> AuthRuntime:
    """A runtime whose verifier holds ``key`` for ``algorithm`` (settings read as an HS gateway, then changed)."""
    hs = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["HS256"], "secret": SECRET}
    settings = read_auth({"AUTH": {"jwt": hs}})
    assert settings.jwt is not None
    # The cache of verified tokens off: these figures are a full verification (a hit: docs/decisions.md, 48).
    jwt_settings = dataclasses.replace(settings.jwt, algorithms=(algorithm,), verified_cache_size=0)
    verifier = JwtVerifier(jwt_settings, StaticKeys(VerifyingKey(None, key, frozenset({algorithm}))))
    return AuthRuntime(dataclasses.replace(settings, jwt=jwt_settings), verifier)


def main(iterations: int) -> None:
    """Print CPU µs per verification and per authenticate step, for each algorithm."""
    policy = AuthPolicy(public=False, schemes=("jwt",), scopes=("orders:read",))
    print(f"{'algorithm':<10}{'verify':>10}{'uncached':>11}{'authenticate':>14}   (CPU µs per call, best of 3)")
    for algorithm in ("HS256", "RS256", "ES256"):
        key: object
        if algorithm == "HS256":
            token, key, uncached_key = jwt.encode(claims(), SECRET, algorithm="HS256"), SECRET.encode(), SECRET
        else:
            signing = SigningKey(algorithm)
            public = signing.private.public_key()
            token, key = signing.sign(claims()), public
            uncached_key = public.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        runtime = _runtime(algorithm, key)
        assert runtime.verifier is not None
        verifier = runtime.verifier
        environ = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        verify = _measure(lambda: verifier.verify(token), iterations)
        uncached = _measure(lambda: jwt.decode(token, uncached_key, algorithms=[algorithm], audience=AUDIENCE,
                                               issuer=ISSUER), iterations)
        authenticate = _measure(lambda: runtime.authenticate(policy, dict(environ)), iterations)
        print(f"{algorithm:<10}{verify:>10.1f}{uncached:>11.1f}{authenticate:>14.1f}")


if __name__ == "__main__":
    started = time.monotonic()
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
    print(f"({time.monotonic() - started:.1f} s)")
