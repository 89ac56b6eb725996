"""Instructions per request, counted by valgrind: a measure of the hot path that machine noise cannot move.

Run: ``.venv/bin/python -m bench.instructions [--requests 500] [case ...]`` (needs ``valgrind``:
``apt-get install valgrind``). Each case drives one app's WSGI callable in one process, request after
request, with no server and no load generator around it, under ``valgrind --tool=callgrind``. The process
runs twice, with N and 3N requests; the difference of the two totals over 2N is the instructions one
request takes, start-up and imports cancelled out. The same code and inputs give the same count to within
a fraction of a percent, whatever else the machine is doing, so a change of 1 % is visible in one run
where ``bench.hotpath`` needs many rounds to see 5 %.

What it does not see: time in the kernel (system calls), waiting, and the processor's caches (a request
that touches more memory is slower per instruction under load). Confirm a gain with ``bench.hotpath`` or
``make bench``. Cases that call an upstream (``pass``, ``floor``) wait on a socket, and gevent's loop
runs a varying number of times around those waits: their counts move by about 1 %.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness.gateway import HS_SECRET, gateway_toml, mint_hs256
from bench.harness.services import ROOT, start_python_upstream

#: case -> (app, path): the gateway as `make bench` deploys it, and the two Flask references.
CASES = {
    "bare": ("bare", "/json"),
    "livez": ("gateway", "/livez"),
    "hit": ("gateway", "/cached/json"),
    "pass": ("gateway", "/pass/json"),
    "jwt": ("gateway", "/jwt/json"),  # a bearer token checked, a limit counted (memory://), then forwarded
    "floor": ("floor", "/json"),
}
_TOTAL = re.compile(r"Collected : (\d+)")


def main() -> None:
    """Count each case's instructions per request and print them, bare Flask's as the reference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="N: the runs serve N and 3N requests")
    parser.add_argument("cases", nargs="*", metavar="case", help=f"any of {', '.join(CASES)} (default: all)")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "REQUESTS", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, requests, upstream = args.child
        serve(case, int(requests), upstream)
        return
    unknown = [case for case in args.cases if case not in CASES]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}: choose from {', '.join(CASES)}")
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install -y valgrind)")
    work = Path(tempfile.mkdtemp(prefix="frontdesk-instructions-"))
    upstream = start_python_upstream("upstream", work, 0.0, 1024)
    try:
        counts = {case: per_request(case, args.requests, upstream.url, work) for case in args.cases or CASES}
    finally:
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"instructions per request (callgrind; runs of {args.requests} and {3 * args.requests} requests)")
    for case, count in counts.items():
        ratio = f"  {count / counts['bare']:.2f}x bare" if "bare" in counts else ""
        print(f"{case:6} {CASES[case][1]:14} {count:>10,}{ratio}")


def per_request(case: str, requests: int, upstream: str, work: Path) -> int:
    """The difference of two runs' totals (N and 3N requests) over 2N, the two run side by side."""
    with ThreadPoolExecutor(2) as pool:
        short, long = pool.map(lambda n: _count(case, n, upstream, work), (requests, 3 * requests))
    return round((long - short) / (2 * requests))


def _count(case: str, requests: int, upstream: str, work: Path) -> int:
    out = work / f"callgrind.{case}.{requests}"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
               "bench.instructions", "--child", case, str(requests), upstream]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    found = _TOTAL.search(run.stderr)
    if run.returncode != 0 or found is None:
        sys.exit(f"{case}: valgrind failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return int(found.group(1))


def serve(case: str, requests: int, upstream: str) -> None:
    """In the child: build the case's app, warm it, then serve ``requests`` requests through its WSGI callable."""
    from gevent import monkey

    monkey.patch_all()  # as in a gunicorn gevent worker
    name, path = CASES[case]
    app = _app(name, upstream)
    for _ in range(20):  # pools filled, the cache entry stored, first-use work done
        _call(app, path)
    for _ in range(requests):
        _call(app, path)


def _app(name: str, upstream: str) -> Any:
    if name == "gateway":
        directory = Path(tempfile.mkdtemp(prefix="frontdesk-instructions-app-"))
        config = directory / "gateway.toml"
        config.write_text(gateway_toml(upstream, upstream, upstream, "memory://", "HS256", None))
        os.environ.update({"GATEWAY_ENV": "production", "GATEWAY_CONFIG": str(config),
                           "GATEWAY_AUTH__JWT__SECRET": HS_SECRET, "GATEWAY_WORKERS": "1"})
        # The access log goes to a file, as in make bench, not to the terminal.
        sys.stderr = open(directory / "access.log", "a", encoding="utf-8")  # open as long as the process
        from app import create_app

        return create_app()
    os.environ["BENCH_UPSTREAM"] = upstream
    if name == "floor":
        from bench.floor_proxy import app as floor

        return floor
    from bench.bare_app import app as bare

    return bare


def _call(app: Any, path: str) -> None:
    answer: Iterable[bytes] = app(_environ(path), _start_response)
    try:
        for _ in answer:
            pass
    finally:
        close = getattr(answer, "close", None)
        if close is not None:
            close()


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
    if not status.startswith("200"):
        raise SystemExit(f"expected 200, got {status}")
    return lambda data: None


_BEARER = "Bearer " + mint_hs256()


def _environ(path: str) -> dict[str, Any]:
    """What gunicorn hands a worker's app for ``GET path`` from wrk (with a bearer token on the JWT route)."""
    credentials = {"HTTP_AUTHORIZATION": _BEARER} if path.startswith("/jwt/") else {}
    return {
        **credentials,
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "", "RAW_URI": path,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "gunicorn", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "wrk", "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }


if __name__ == "__main__":
    main()
