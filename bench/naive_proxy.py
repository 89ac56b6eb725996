"""The naive proxy: a Flask view forwarding with ``requests``, as people write one by hand.

A reference of ``make bench`` (bench/run.py), served under the same gunicorn gevent settings as the
gateway; the upstream comes from ``BENCH_UPSTREAM`` (``http://host:port``). It is the usual shape, with one
module-level Session so that at least connections are reused: copy the headers, call, return
``.content``. It buffers each whole answer and forgets hop-by-hop headers; that is part of what it measures.
"""

from __future__ import annotations

import os

import requests
from flask import Flask, Response, request

app = Flask(__name__)
_UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9")
_session = requests.Session()
_SKIP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def forward(path: str) -> Response:
    """Forward the request and return the upstream's answer."""
    query = f"?{request.query_string.decode()}" if request.query_string else ""
    upstream = _session.request(request.method, f"{_UPSTREAM}/{path}{query}",
                                headers={k: v for k, v in request.headers if k.lower() != "host"},
                                data=request.get_data(), allow_redirects=False, timeout=30)
    headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in _SKIP]
    return Response(upstream.content, upstream.status_code, headers)
