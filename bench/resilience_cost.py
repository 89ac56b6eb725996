"""CPU per forwarded call with and without the resilience policies (balancing, breaker, ejection, retries).

Run: ``.venv/bin/python -m bench.resilience_cost [calls]``. Each configuration forwards GETs
through the Flask app (test client, no HTTP server in front) to the same two local fake
backends in this process; their cost is in every figure, so the differences are the policies'.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import resource  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from app import create_app, upstreams  # noqa: E402
from tests.fakes.backend import Backend  # noqa: E402

_POLICIES: dict[str, dict[str, Any]] = {
    "plain round robin": {},
    "hash by header": {"balance": "hash", "hash_on": "header:X-Consumer"},
    "least in flight": {"balance": "least_in_flight"},
    "breaker+eject+retries": {
        "eject": {"failures": 5, "seconds": 30},
        "retries": {"on": ["connect", "503"]},
        "breaker": {"failure_ratio": 0.5, "min_requests": 20, "window": 10, "open_for": 15},
    },
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(calls: int) -> None:
    """Print the CPU µs per call of each configuration, three interleaved rounds each."""
    with Backend("a") as a, Backend("b") as b:
        clients = {}
        apps = []
        for name, policy in _POLICIES.items():
            app = create_app("testing", blueprints=(), UPSTREAMS={"svc": {"targets": [a.url, b.url], **policy}},
                             ROUTES=[{"path": "/<path:rest>", "upstream": "svc"}])
            apps.append(app)
            clients[name] = app.test_client()
        figures: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(3):
            for name, client in clients.items():
                a.clear()
                b.clear()
                started = _cpu()
                for n in range(calls):
                    response = client.get("/x", headers={"X-Consumer": f"c{n % 50}"})
                    response.close()
                figures[name].append((_cpu() - started) / calls * 1e6)
        for app in apps:
            upstreams.stop(app)
    for name, values in figures.items():
        print(f"{name:24} CPU µs per call: " + ", ".join(f"{value:.0f}" for value in sorted(values)))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
