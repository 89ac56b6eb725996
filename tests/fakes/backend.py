"""The scripted fake upstream now lives in the testing kit (app/testing/backend.py); kept for imports."""

from __future__ import annotations

from app.testing.backend import Backend
from app.testing.payloads import GZIP_BODY, GZIP_PLAIN, pattern_bytes, pattern_sha256
from app.testing.records import Received

__all__ = ["GZIP_BODY", "GZIP_PLAIN", "Backend", "Received", "pattern_bytes", "pattern_sha256"]
