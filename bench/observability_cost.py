"""CPU per proxied request of a real gunicorn gevent worker, with and without metrics and the access log.

Run: ``.venv/bin/python -m bench.observability_cost [seconds] [rounds]`` (needs ``wrk``:
``apt-get install wrk``). One worker, so its CPU is the whole gateway's; the fake backend runs in
this process and wrk in its own, and neither is counted. The configurations run interleaved,
``rounds`` times each, and the median is reported: CPU per request is steadier than
requests per second on a shared 2-core machine, and for a CPU-bound worker it is the same
question (throughput = 1 / CPU per request).
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

from tests.fakes.backend import Backend
from tests.gateway import Gateway

# Each configuration's environment: metrics on or off, access log (INFO) on or off.
CONFIGS: dict[str, dict[str, str]] = {
    "bare": {"GATEWAY_METRICS__ENABLED": "false", "GATEWAY_LOG__LEVEL": "WARNING"},
    "metrics": {"GATEWAY_METRICS__ENABLED": "true", "GATEWAY_LOG__LEVEL": "WARNING"},
    "log": {"GATEWAY_METRICS__ENABLED": "false", "GATEWAY_LOG__LEVEL": "INFO"},
    "both": {"GATEWAY_METRICS__ENABLED": "true", "GATEWAY_LOG__LEVEL": "INFO"},
}
_TICKS = os.sysconf("SC_CLK_TCK")


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


def measure(directory: Path, backend: Backend, env: dict[str, str], seconds: int) -> tuple[float, float]:
    """(CPU µs per request, requests per second) for one configuration."""
    config = f'[upstreams.b]\ntargets = ["{backend.url}"]\n[upstreams.users]\ntargets = ["{backend.url}"]\n' \
             '[[routes]]\npath = "/<path:rest>"\nupstream = "b"\n'
    gateway = Gateway(directory, config, workers=1, env=env)
    gateway.start()
    try:
        run_wrk(gateway.url + "/warm", 2)
        [pid] = gateway.worker_pids()
        before = worker_cpu(pid)
        count = run_wrk(gateway.url + "/items/42?q=1", seconds)
        used = worker_cpu(pid) - before
    finally:
        gateway.stop()
    return used / count * 1e6, count / seconds


def main(seconds: int, rounds: int) -> None:
    """Print each configuration's median CPU per request and its cost over the bare gateway."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CONFIGS}
    directory = Path(tempfile.mkdtemp(prefix="frontdesk-bench-"))
    try:
        with Backend("bench") as backend:
            for _ in range(rounds):
                for name, env in CONFIGS.items():
                    results[name].append(measure(directory, backend, env, seconds))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    bare = statistics.median(cpu for cpu, _ in results["bare"])
    for name, values in results.items():
        cpu = statistics.median(value for value, _ in values)
        rate = statistics.median(value for _, value in values)
        print(f"{name:8} CPU µs/request: {cpu:6.0f} (runs: {', '.join(f'{v:.0f}' for v, _ in values)}), "
              f"{rate:6.0f} req/s, cost over bare: {(cpu / bare - 1) * 100:+5.1f}%")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
