"""The forwarding floor: a Flask view forwarding through one plain urllib3 pool, with nothing else.

A reference of ``make bench`` (bench/run.py), served under the same gunicorn gevent settings as the
gateway; the upstream comes from ``BENCH_UPSTREAM`` (``http://host:port``). No policies, no logging, no
request id: only what any Flask gateway must do (headers copied, raw path, body streamed both ways), so
its CPU per request is the least a Flask gateway can cost.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import urllib3
from flask import Flask, Response, request

app = Flask(__name__)
_target = urlsplit(os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9"))
_pool = urllib3.HTTPConnectionPool(_target.hostname or "127.0.0.1", _target.port, maxsize=100, block=False,
                                   retries=False)
_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate"}


@app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def forward(path: str) -> Response:
    """Forward the request as sent and stream the upstream's answer back."""
    target = request.environ.get("RAW_URI") or request.full_path
    body = request.stream if request.content_length else None
    upstream = _pool.urlopen(request.method, target, body=body, redirect=False, preload_content=False,
                             decode_content=False, headers={k: v for k, v in request.headers
                                                            if k.lower() not in _HOP})

    def stream() -> Iterator[bytes]:
        try:
            yield from upstream.stream(65536, decode_content=False)
        finally:
            upstream.release_conn()

    headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP]
    return Response(stream(), upstream.status, headers, direct_passthrough=True)
