"""What a WebSocket tunnel costs: worker memory per idle tunnel, CPU per relayed message beside a direct connection.

Run: ``.venv/bin/python -m bench.websocket_cost [idle_tunnels] [messages]``. A real gateway (gunicorn, one gevent
worker) in front of the ``websockets`` echo upstream of the tests (its own process). Memory: the worker's resident
set before and after opening the idle tunnels. CPU: echo round trips of a 64-byte message, direct to the upstream
and through the gateway, in interleaved rounds; each process's CPU is read from /proc, so the gateway worker's
figure is its own and the upstream's is the same work both ways.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import http.client  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from gevent.pool import Pool  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

from tests.fakes.wsecho import WsUpstream  # noqa: E402
from tests.gateway import Gateway  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """Seconds of CPU (user and system) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _open(url: str) -> ClientConnection:
    return connect(url, open_timeout=30, ping_interval=None, compression=None).__enter__()


def _round_trips(url: str, messages: int, pids: dict[str, int]) -> dict[str, float]:
    """CPU µs per echoed message of each process in ``pids`` (and of this client)."""
    ws = _open(url)
    try:
        payload = "x" * 64
        for _ in range(50):  # warm up
            ws.send(payload)
            ws.recv()
        before = {name: _cpu(pid) for name, pid in pids.items()}
        for _ in range(messages):
            ws.send(payload)
            ws.recv()
        return {name: (_cpu(pid) - before[name]) / messages * 1e6 for name, pid in pids.items()}
    finally:
        ws.close()


def _keep_alive(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/livez")
    connection.getresponse().read()
    return connection


def main(idle_tunnels: int, messages: int) -> None:
    """Print memory per idle tunnel and CPU per message, direct and through the gateway."""
    config = """
[upstreams.ws]
targets = ["{url}"]
timeout = 5

[[routes]]
path = "/ws/<path:rest>"
upstream = "ws"
upstream_path = "/{{rest}}"
auth = "public"
websocket = {{ max_tunnels = 100000, idle_timeout = 3600 }}
"""
    with WsUpstream() as upstream, tempfile.TemporaryDirectory() as directory:
        gateway = Gateway(Path(directory), config.format(url=upstream.url), workers=1,
                          env={"GATEWAY_LOG__LEVEL": "WARNING"}).start()
        try:
            [worker] = gateway.worker_pids()
            through = gateway.url.replace("http://", "ws://") + "/ws/echo"
            direct = upstream.url.replace("http://", "ws://") + "/echo"
            pids = {"gateway": worker, "upstream": upstream.process.pid, "client": os.getpid()}
            figures: dict[str, list[dict[str, float]]] = {"direct": [], "through": []}
            for _ in range(3):
                figures["direct"].append(_round_trips(direct, messages, pids))
                figures["through"].append(_round_trips(through, messages, pids))
            median = {way: {name: statistics.median(run[name] for run in runs) for name in pids}
                      for way, runs in figures.items()}
            print(f"CPU per echoed 64-byte message (µs, median of 3 interleaved rounds of {messages}):")
            for way, values in median.items():
                print(f"  {way:8} " + "  ".join(f"{name} {value:7.1f}" for name, value in values.items()))
            total_direct = median["direct"]["upstream"] + median["direct"]["client"]
            total_through = sum(median["through"].values())
            print(f"  gateway worker per message / upstream per message (direct): "
                  f"{median['through']['gateway'] / median['direct']['upstream']:.2f}")
            print(f"  all processes, through / direct: {total_through / total_direct:.2f}")

            # Fresh growth both times: the keep-alive connections stay open while the tunnels open.
            time.sleep(1)
            before = _rss(worker)
            idle = list(Pool(100).imap_unordered(lambda _: _keep_alive(gateway.url), range(idle_tunnels)))
            time.sleep(2)
            middle = _rss(worker)
            tunnels = list(Pool(100).imap_unordered(lambda _: _open(through), range(idle_tunnels)))
            time.sleep(2)
            after = _rss(worker)
            print(f"worker RSS {before / 2**20:.1f} MiB; +{idle_tunnels} idle keep-alive HTTP connections "
                  f"{middle / 2**20:.1f} MiB ({(middle - before) / idle_tunnels / 1024:.1f} KiB each); "
                  f"+{idle_tunnels} idle tunnels {after / 2**20:.1f} MiB "
                  f"({(after - middle) / idle_tunnels / 1024:.1f} KiB each)")
            for connection in idle:
                connection.close()
            for ws in tunnels:
                ws.close()
        finally:
            gateway.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
