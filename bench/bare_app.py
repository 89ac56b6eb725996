"""A bare Flask endpoint under the same gunicorn settings as the gateway: the framework's own floor.

``/json`` answers the small JSON body of the benchmark's upstreams (bench/payload.py), the reference
a cache hit is measured against in ``make bench``; ``/bare`` answers ``BENCH_BODY_SIZE`` bytes
(bench/cache_hit.py).
"""

from __future__ import annotations

import os

from flask import Flask, Response

from bench.payload import SMALL_JSON

app = Flask(__name__)
_BODY = b"x" * int(os.environ.get("BENCH_BODY_SIZE", "512"))


@app.get("/bare")
def bare() -> Response:
    """The same number of bytes a cached answer carries."""
    return Response(_BODY, mimetype="application/octet-stream")


@app.get("/json")
def small_json() -> Response:
    """The small JSON answer of the benchmark's upstreams."""
    return Response(SMALL_JSON, mimetype="application/json")
