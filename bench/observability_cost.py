"""CPU per proxied request of a real gunicorn gevent worker, with and without metrics and the access log.

Run: ``.venv/bin/python -m bench.observability_cost [seconds=3] [rounds=10]`` (needs ``wrk``:
``apt-get install wrk``). One worker, so its CPU is the whole gateway's; the fake backend runs in
this process and wrk in its own, and neither is counted. The configurations run interleaved,
``rounds`` times each, and the least CPU per request of each is reported (see main): CPU per request is steadier than
requests per second on a shared 2-core machine, and for a CPU-bound worker it is the same
question (throughput = 1 / CPU per request). The worker is pinned to core 1; wrk and a minimal
gevent upstream (``--backend``, fast enough that the gateway is the bottleneck) share core 0.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.gateway import Gateway

# Each configuration's environment: metrics on or off, access log (INFO) on or off.
CONFIGS: dict[str, dict[str, str]] = {
    "bare": {"GATEWAY_METRICS__ENABLED": "false", "GATEWAY_LOG__LEVEL": "WARNING"},
    "metrics": {"GATEWAY_METRICS__ENABLED": "true", "GATEWAY_LOG__LEVEL": "WARNING"},
    "log": {"GATEWAY_METRICS__ENABLED": "false", "GATEWAY_LOG__LEVEL": "INFO"},
    "both": {"GATEWAY_METRICS__ENABLED": "true", "GATEWAY_LOG__LEVEL": "INFO"},
}
_TICKS = os.sysconf("SC_CLK_TCK")
_BODY = b'{"id": 42, "name": "widget"}'
_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)


def serve_backend() -> None:
    """A minimal keep-alive HTTP upstream on gevent: fast enough that the gateway is the bottleneck."""
    # StreamServer and the sockets it hands out are gevent's own: nothing needs patching.
    from gevent.server import StreamServer

    def handle(connection: object, address: object) -> None:
        reader = connection.makefile("rb")  # type: ignore[attr-defined]
        while True:
            line = reader.readline()
            if not line:
                return
            while reader.readline() not in (b"\r\n", b"\n", b""):
                pass
            connection.sendall(_ANSWER)  # type: ignore[attr-defined]

    server = StreamServer(("127.0.0.1", 0), handle, backlog=1024)
    server.start()
    print(server.server_port, flush=True)
    server.serve_forever()


def worker_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def run_wrk(url: str, seconds: int) -> int:
    """Requests completed by wrk (16 keep-alive connections, one thread)."""
    output = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", url], capture_output=True, text=True,
                            check=True).stdout
    match = re.search(r"(\d+) requests in", output)
    if match is None or "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError("wrk reported errors:\n" + output)
    return int(match.group(1))


def start_gateway(directory: Path, backend: str, env: dict[str, str]) -> tuple[Gateway, int]:
    """A one-worker gateway for one configuration, warmed up; its worker pinned to core 1."""
    config = f'[upstreams.b]\ntargets = ["{backend}"]\n[upstreams.users]\ntargets = ["{backend}"]\n' \
             '[[routes]]\npath = "/<path:rest>"\nupstream = "b"\n'
    gateway = Gateway(directory, config, workers=1, env=env)
    gateway.start()
    [pid] = gateway.worker_pids()
    # The worker gets a core of its own; wrk and the upstream share the other. Without this the
    # three contend for both cores and the figures swing by 10%.
    os.sched_setaffinity(pid, {1})
    run_wrk(gateway.url + "/warm", 2)
    return gateway, pid


def measure(gateway: Gateway, pid: int, seconds: int) -> tuple[float, float]:
    """(CPU µs per request, requests per second) of one wrk run."""
    before = worker_cpu(pid)
    count = run_wrk(gateway.url + "/items/42?q=1", seconds)
    return (worker_cpu(pid) - before) / count * 1e6, count / seconds


def main(seconds: int, rounds: int) -> None:
    """Print each configuration's least CPU per request and its cost over the bare gateway."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two cores: one for the gateway worker, one for wrk and the upstream")
    os.sched_setaffinity(0, {0})  # wrk, the upstream and the gateways' masters inherit it
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CONFIGS}
    directory = Path(tempfile.mkdtemp(prefix="frontdesk-bench-"))
    backend = subprocess.Popen([sys.executable, "-m", "bench.observability_cost", "--backend"],
                               stdout=subprocess.PIPE, text=True)
    gateways: dict[str, tuple[Gateway, int]] = {}
    try:
        assert backend.stdout is not None
        url = f"http://127.0.0.1:{int(backend.stdout.readline())}"
        # All four run at once (idle ones cost nothing), so rounds interleave cheaply and each
        # configuration sees the machine's other load as often as the others.
        for name, env in CONFIGS.items():
            gateways[name] = start_gateway(directory, url, env)
        for _ in range(rounds):
            for name, (gateway, pid) in gateways.items():
                results[name].append(measure(gateway, pid, seconds))
    finally:
        for gateway, _ in gateways.values():
            gateway.stop()
        backend.terminate()
        backend.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
    # The least CPU of each configuration's runs: other processes on the machine only ever add
    # to a run's figure (cache misses, steal), never take from it.
    bare = min(cpu for cpu, _ in results["bare"])
    for name, values in results.items():
        cpu = min(value for value, _ in values)
        rate = statistics.median(value for _, value in values)
        print(f"{name:8} CPU µs/request: {cpu:6.0f} (runs: {', '.join(f'{v:.0f}' for v, _ in values)}), "
              f"{rate:6.0f} req/s, cost over bare: {(cpu / bare - 1) * 100:+5.1f}%")


if __name__ == "__main__" and sys.argv[1:] == ["--backend"]:
    serve_backend()
elif __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 10)
