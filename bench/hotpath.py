"""The hot path's figures: the gateway's CPU per request against the forwarding floor, under real gunicorn gevent.

Run: ``.venv/bin/python -m bench.hotpath [--seconds 3] [--rounds 5] [--baseline DIR]`` (needs ``wrk``:
``apt-get install wrk``, and ``redis-server``). Everything runs under the project's gunicorn.conf.py with
2 gevent workers and 64 wrk connections: the gateway in production settings (metrics on, access log at
INFO written to a file, the edge guard's defaults, limits in Redis), the forwarding floor (a Flask view
forwarding through a plain urllib3 pool, nothing else) and bare Flask (bench/bare_app.py). The figure is
CPU µs per request of the master and its workers from /proc (less sensitive to the machine's other load
than requests per second), median over interleaved rounds. ``--baseline DIR`` (repeatable) also runs the gateway
from another checkout (e.g. ``git worktree add /tmp/base HEAD~1``) in the same rounds, for before/after figures.
A stop-gap for tuning; ``make bench`` is the benchmark.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
import requests

from bench.harness.procs import Service
from bench.harness.scenarios import rotated
from bench.harness.services import ROOT, start_gunicorn
from tests.fakes.redisd import RedisServer

_SECRET = "hotpath-bench-secret-0123456789abcdef"  # a bench's throwaway HS256 key, not a secret
_BODY_SIZE = 28  # the fast upstream's JSON body (bench/observability_cost.py)

_CONFIG = """
[ratelimit]
storage_uri = "{redis}"
[auth.jwt]
issuer = "https://idp.bench/"
audience = "frontdesk"
algorithms = ["HS256"]
secret = "{secret}"
[upstreams.b]
targets = ["{backend}"]
[upstreams.users]
targets = ["{backend}"]
[upstreams.orders]
targets = ["{backend}"]
[[routes]]
path = "/pass/<path:rest>"
upstream = "b"
auth = "public"
[[routes]]
path = "/jwt/<path:rest>"
upstream = "b"
auth = {{ scopes = ["bench"] }}
limits = ["100000000/minute"]
[[routes]]
path = "/cached/<path:rest>"
upstream = "b"
auth = "public"
cache = {{ ttl = 3600, scope = "public" }}
"""


def floor_app() -> Any:
    """The forwarding floor: a Flask view forwarding through a plain urllib3 pool (gunicorn: ``floor_app()``)."""
    import urllib3
    from flask import Flask, Response, request

    pool = urllib3.HTTPConnectionPool("127.0.0.1", int(os.environ["HOTPATH_UPSTREAM_PORT"]), maxsize=100)
    app = Flask(__name__)

    @app.route("/<path:rest>")
    def forward(rest: str) -> Response:
        answer = pool.urlopen("GET", request.full_path, retries=False, redirect=False, preload_content=False,
                              decode_content=False)
        headers = [(name, value) for name, value in answer.headers.items() if name.lower() != "connection"]
        return Response(answer.stream(65536, decode_content=False), status=answer.status, headers=headers)

    return app


def wrk(url: str, seconds: int, headers: tuple[str, ...] = ()) -> int:
    """Requests completed in one wrk run at 64 connections; fails on any error or non-2xx."""
    extra = [arg for header in headers for arg in ("-H", header)]
    command = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--timeout", "10s", *extra, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+) requests in", output)
    if match is None or "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk reported errors for {url}:\n{output}")
    return int(match.group(1))


def _wait(url: str, headers: dict[str, str], server: Service) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {server.process.returncode}")
        try:
            if requests.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200")


def main() -> None:
    """Start everything, run interleaved rounds, print medians and the issue's ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="another checkout whose gateway runs in the same rounds (repeatable: base1, base2, ...)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    directory = Path(tempfile.mkdtemp(prefix="frontdesk-hotpath-"))
    backend = subprocess.Popen([sys.executable, "-m", "bench.observability_cost", "--backend"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    redis = RedisServer(directory)
    servers: list[Service] = []
    try:
        assert backend.stdout is not None
        port = int(backend.stdout.readline())
        redis.start()
        config = directory / "gateway.toml"
        config.write_text(_CONFIG.format(redis=redis.url, secret=_SECRET, backend=f"http://127.0.0.1:{port}"))
        token = jwt.encode({"iss": "https://idp.bench/", "aud": "frontdesk", "sub": "bench", "azp": "bench",
                            "scope": "bench", "exp": int(time.time()) + 86400}, _SECRET, algorithm="HS256")
        bearer = f"Authorization: Bearer {token}"
        gateway_env = {"GATEWAY_ENV": "production", "GATEWAY_CONFIG": str(config)}
        plain_env = {"GATEWAY_SKIP_PREFLIGHT": "1", "HOTPATH_UPSTREAM_PORT": str(port),
                     "BENCH_BODY_SIZE": str(_BODY_SIZE)}
        roots = {"": ROOT, **{f"base{n} ": path.resolve() for n, path in enumerate(args.baseline, 1)}}
        # name -> (server, path, headers)
        cases: dict[str, tuple[Service, str, tuple[str, ...]]] = {}
        floor = start_gunicorn("floor", directory, "bench.hotpath:floor_app()", plain_env, 2)
        bare = start_gunicorn("bare", directory, "bench.bare_app:app", plain_env, 2)
        servers += [floor, bare]
        cases["floor"] = (floor, "/items/42?q=1", ())
        for prefix, root in roots.items():
            gateway = start_gunicorn(f"gateway{prefix.strip()}", directory, None, gateway_env, 2, root)
            servers.append(gateway)
            cases[prefix + "pass"] = (gateway, "/pass/items/42?q=1", ())
            cases[prefix + "jwt+limit"] = (gateway, "/jwt/items/42?q=1", (bearer,))
            cases[prefix + "cache hit"] = (gateway, "/cached/items/42", ())
        cases["bare flask"] = (bare, "/bare", ())
        for server, path, headers in cases.values():
            _wait(server.url + path, dict(header.split(": ", 1) for header in headers), server)
            wrk(server.url + path, 1, headers)  # warm: pools filled, caches primed
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        rate: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for round_ in range(args.rounds):
            for name in rotated(names, round_):
                server, path, headers = cases[name]
                before, started = server.cpu_seconds(), time.monotonic()
                count = wrk(server.url + path, args.seconds, headers)
                elapsed = time.monotonic() - started
                cpu[name].append((server.cpu_seconds() - before) / count * 1e6)
                rate[name].append(count / elapsed)
    finally:
        for server in servers:
            server.stop()
        redis.stop()
        backend.terminate()
        backend.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
    _report(cpu, rate, args)


def _report(cpu: dict[str, list[float]], rate: dict[str, list[float]], args: argparse.Namespace) -> None:
    cpu_m = {name: statistics.median(values) for name, values in cpu.items()}
    rate_m = {name: statistics.median(values) for name, values in rate.items()}
    print(f"{args.rounds} interleaved rounds of {args.seconds:g} s, wrk -t2 -c64, 2 gevent workers; medians")
    print(f"{'case':16} {'CPU µs/req':>10} {'(least)':>8} {'req/s':>8}   CPU runs")
    for name in cpu:
        runs = ", ".join(f"{value:.0f}" for value in cpu[name])
        print(f"{name:16} {cpu_m[name]:10.0f} {min(cpu[name]):8.0f} {rate_m[name]:8.0f}   {runs}")
    for prefix in ("", *(f"base{n} " for n in range(1, len(args.baseline) + 1))):
        print(f"{prefix or 'this '}gateway: pass CPU / floor CPU {cpu_m[prefix + 'pass'] / cpu_m['floor']:.2f} "
              f"(target <= 1.15); jwt+limit / pass: throughput "
              f"{rate_m[prefix + 'jwt+limit'] / rate_m[prefix + 'pass']:.2f}, by CPU "
              f"{cpu_m[prefix + 'pass'] / cpu_m[prefix + 'jwt+limit']:.2f} (target >= 0.75); cache hit / bare: "
              f"throughput {rate_m[prefix + 'cache hit'] / rate_m['bare flask']:.2f}, by CPU "
              f"{cpu_m['bare flask'] / cpu_m[prefix + 'cache hit']:.2f} (target >= 0.75)")


if __name__ == "__main__":
    main()
