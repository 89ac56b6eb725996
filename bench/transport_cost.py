"""CPU per upstream call: requests' Session.request against the Session's own urllib3 pool.

Run: ``.venv/bin/python -m bench.transport_cost [calls]``. Both loops hit the same local fake
backend in this process, so its cost is in both figures and the difference is the model layer.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import resource  # noqa: E402
import sys  # noqa: E402

from app.proxy.client import build_session, build_states  # noqa: E402
from app.proxy.settings import read_upstreams  # noqa: E402
from settings.base import Base  # noqa: E402
from tests.fakes.backend import Backend  # noqa: E402


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(calls: int) -> None:
    """Print the CPU µs per call of both ways, three interleaved rounds each."""
    with Backend() as backend:
        config = {"UPSTREAM_DEFAULTS": Base.UPSTREAM_DEFAULTS, "UPSTREAMS": {"b": {"targets": [backend.url]}}}
        upstreams = read_upstreams(config)
        session = build_session(upstreams)
        state = build_states(session, upstreams)["b"]
        endpoint = state.pick()
        assert endpoint is not None
        target, pool = endpoint.target, endpoint.pool
        figures: dict[str, list[float]] = {"session": [], "pool": []}
        for _ in range(3):
            for way in figures:
                backend.clear()
                started = _cpu()
                for _ in range(calls):
                    if way == "session":
                        answer = session.get(backend.url + "/x", allow_redirects=False, stream=True,
                                             timeout=(0.5, 5))
                        for _ in answer.raw.stream(65536, decode_content=False):
                            pass
                        answer.close()
                    else:
                        raw = pool.urlopen("GET", "/x", headers={"Host": target.netloc}, retries=False,
                                           redirect=False, preload_content=False, decode_content=False,
                                           timeout=state.timeout, release_conn=False)
                        for _ in raw.stream(65536, decode_content=False):
                            pass
                        raw.release_conn()
                figures[way].append((_cpu() - started) / calls * 1e6)
    for way, values in figures.items():
        print(f"{way:8} CPU µs per call: " + ", ".join(f"{value:.0f}" for value in sorted(values)))
    print(f"pool / session: {min(figures['pool']) / min(figures['session']):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
