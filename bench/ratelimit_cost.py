"""What a Redis-backed rate limit costs a proxied route: throughput and CPU, side by side in one run.

Run: ``.venv/bin/python -m bench.ratelimit_cost [requests]``. One gateway app in this process
serves the same catch-all forward three ways (no limit, a limit in memory, a limit in a real local
redis-server) to a fake backend in this process; rounds are interleaved, best of three. Also
prints the Redis commands sent per request, read from the server's own command statistics.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from flask.testing import FlaskClient  # noqa: E402

from app import create_app  # noqa: E402
from tests.fakes.backend import Backend  # noqa: E402
from tests.fakes.redisd import RedisServer  # noqa: E402

_HUGE = ["1000000000/minute"]  # never breached: the bench measures the check, not refusals


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client(backend: Backend, storage_uri: str) -> FlaskClient:
    # One app (Flask-Limiter keeps its storage on the one limiter): the same forward twice, once limited.
    routes: list[dict[str, Any]] = [
        {"path": "/plain/<path:rest>", "upstream": "echo", "auth": "public"},
        {"path": "/limited/<path:rest>", "upstream": "echo", "auth": "public", "limits": _HUGE},
    ]
    app = create_app("testing", blueprints=(), UPSTREAMS={"echo": {"targets": [backend.url]}}, ROUTES=routes,
                     RATELIMIT={"storage_uri": storage_uri, "key_prefix": "bench"})
    return app.test_client()


def main(count: int) -> None:
    """Print requests/s and CPU µs per request for each way, and Redis commands per request."""
    with Backend() as backend, tempfile.TemporaryDirectory() as directory:
        redis = RedisServer(Path(directory)).start()
        try:
            client = _client(backend, redis.url)
            paths = {"no limit": "/plain/x", "redis limit": "/limited/x"}
            best: dict[str, tuple[float, float]] = {}
            for path in paths.values():
                client.get(path).close()
            for _ in range(3):
                for way, path in paths.items():
                    backend.clear()
                    wall, cpu = time.perf_counter(), _cpu()
                    for _ in range(count):
                        response = client.get(path)
                        response.close()  # ends the streamed body and frees the upstream slot
                        assert response.status_code == 200, response.status_code
                    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
                    previous = best.get(way, (wall, cpu))
                    best[way] = (min(wall, previous[0]), min(cpu, previous[1]))
            before = redis.command_calls().get("evalsha", 0)
            for _ in range(100):
                client.get(paths["redis limit"]).close()
            evalsha = (redis.command_calls().get("evalsha", 0) - before) / 100
        finally:
            redis.stop()
    base_rate = count / best["no limit"][0]
    print(f"{count} requests per round, best of 3 interleaved rounds")
    for way, (wall, cpu) in best.items():
        rate = count / wall
        print(f"{way:>12}: {rate:8.0f} req/s ({rate / base_rate:6.1%} of no limit), "
              f"{cpu / count * 1e6:6.0f} µs CPU per request")
    print(f"redis round trips (EVALSHA) per request: {evalsha:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
