"""Frontdesk's testing kit: build the gateway with a blueprint under test, fake its upstreams, mint
credentials, and assert on what the upstream received and what the client got.

The pytest fixtures live in ``app.testing.plugin`` (the only module that imports pytest); this
package's names also work without pytest. See docs/testing.md.
"""

from __future__ import annotations

from app.testing.backend import Backend, Responder
from app.testing.credentials import (
    TEST_AUDIENCE,
    TEST_ISSUER,
    TEST_JWT_SECRET,
    TESTING_API_KEY,
    ApiKeys,
    Tokens,
    kit_auth_settings,
)
from app.testing.gateway import FakeUpstreams, GatewayUnderTest
from app.testing.payloads import GZIP_BODY, GZIP_PLAIN, pattern_bytes, pattern_sha256
from app.testing.problems import PROBLEM_BASE, assert_problem
from app.testing.records import Received, Reply

__all__ = [
    "GZIP_BODY", "GZIP_PLAIN", "PROBLEM_BASE", "TESTING_API_KEY", "TEST_AUDIENCE", "TEST_ISSUER", "TEST_JWT_SECRET",
    "ApiKeys", "Backend", "FakeUpstreams", "GatewayUnderTest", "Received", "Reply", "Responder", "Tokens",
    "assert_problem", "kit_auth_settings", "pattern_bytes", "pattern_sha256",
]
