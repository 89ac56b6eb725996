"""Cache hits against a bare Flask endpoint and an uncached proxied call, side by side, same gunicorn settings.

Run: ``.venv/bin/python -m bench.cache_hit [requests]``. Three single-worker gunicorn processes (the
gateway serves both the cached and the uncached route); the figure is the worker's own CPU time per
request (from /proc), so the load generator's CPU on this small machine does not distort it. Wall-clock
throughput is printed too, for the record. The gateway's /livez is the floor of its own stack (edge,
request id, access log, hooks) with a trivial view, so ``cache hit - /livez`` is what the cache adds.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.fakes import stop_by_pid
from tests.fakes.backend import Backend
from tests.gateway import ROOT

BODY = 512
CONNECTIONS = 4


def _start(app: str | None, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--no-control-socket",
               "--bind", f"fd://{listener.fileno()}", *([app] if app else [])]
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}, "GATEWAY_WORKERS": "1",
                   "GATEWAY_ENV": "testing", "BENCH_BODY_SIZE": str(BODY), **env}
    process = subprocess.Popen(command, cwd=ROOT, env=environment, pass_fds=[listener.fileno()],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.close()
    return process, port


def _worker_cpu(process: subprocess.Popen[bytes]) -> float:
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    fields = Path(f"/proc/{children[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(port: int, path: str, count: int) -> float:
    """Send ``count`` GETs over CONNECTIONS keep-alive connections; the wall time."""
    per_connection = count // CONNECTIONS

    def run() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(per_connection):
            connection.request("GET", path, headers={"Accept-Encoding": "identity"})
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"{path}: {answer.status}")
        connection.close()

    threads = [threading.Thread(target=run) for _ in range(CONNECTIONS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/livez")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def main(count: int) -> None:
    """Print CPU µs per request and requests per second for each case, three interleaved rounds."""
    with Backend("origin") as backend, tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "gateway.toml"
        config.write_text(f"""
[upstreams.origin]
targets = ["{backend.url}"]
[upstreams.users]
targets = ["{backend.url}"]
[log]
level = "WARNING"
[[routes]]
path = "/cached/<path:rest>"
upstream = "origin"
upstream_path = "/_/bytes/{{rest}}"
auth = "public"
cache = {{ ttl = 600 }}
[[routes]]
path = "/proxied/<path:rest>"
upstream = "origin"
upstream_path = "/_/bytes/{{rest}}"
auth = "public"
""")
        gateway, gateway_port = _start(None, {"GATEWAY_CONFIG": str(config),
                                              "GATEWAY_CACHE__JOURNAL": str(Path(directory) / "journal")})
        bare, bare_port = _start("bench.bare_app:app", {})
        try:
            _wait(gateway_port)
            time.sleep(1)
            cases = {"bare flask": (bare, bare_port, "/bare"),
                     "gateway /livez": (gateway, gateway_port, "/livez"),
                     "cache hit": (gateway, gateway_port, f"/cached/{BODY}"),
                     "proxied": (gateway, gateway_port, f"/proxied/{BODY}")}
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
            for name, (_, port, path) in cases.items():
                _load(port, path, 400)  # warm up: pools, caches, the stored entry
            for _ in range(3):
                for name, (process, port, path) in cases.items():
                    before = _worker_cpu(process)
                    wall = _load(port, path, count)
                    figures[name].append(((_worker_cpu(process) - before) / count * 1e6, count / wall))
        finally:
            for process in (gateway, bare):
                stop_by_pid(process)
    best = {name: (min(cpu for cpu, _ in values), max(rps for _, rps in values)) for name, values in figures.items()}
    for name, (cpu, rps) in best.items():
        print(f"{name:15} worker CPU µs/request: {cpu:6.0f}   requests/s: {rps:6.0f}")
    print(f"cache hit / bare flask: {best['bare flask'][0] / best['cache hit'][0]:.2f} of the throughput "
          f"(CPU-bound); the cache's own share: {best['cache hit'][0] - best['gateway /livez'][0]:.0f} µs over the "
          f"gateway's stack; proxied / cache hit CPU: {best['proxied'][0] / best['cache hit'][0]:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
