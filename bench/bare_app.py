"""A bare Flask endpoint, the reference a cache hit is measured against (same gunicorn settings)."""

from __future__ import annotations

import os

from flask import Flask, Response

app = Flask(__name__)
_BODY = b"x" * int(os.environ.get("BENCH_BODY_SIZE", "512"))


@app.get("/bare")
def bare() -> Response:
    """The same number of bytes a cached answer carries."""
    return Response(_BODY, mimetype="application/octet-stream")
