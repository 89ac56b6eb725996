"""Caching through real gunicorn gevent workers and a real backend: what only shows across processes."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fakes.backend import GZIP_BODY, Backend
from tests.gateway import Gateway

pytestmark = pytest.mark.e2e

PURGE_TOKEN = "e2e-purge-token-0123456789abcdef0123"
ALPHA_KEY = "e2e-alpha-key-1d9e3a5b7f9d1c3e5a7b9d"
BETA_KEY = "e2e-beta-key-7c1d9e3a5b7f9d1c3e5a7b9"
MAX_BYTES = 256 * 1024


def config(backend: Backend, workers_share: str = "") -> str:
    """Two cached routes (public, per consumer) to the backend, two API-key consumers."""
    return f"""
[upstreams.echo]
targets = ["{backend.url}"]
timeout = 60

[upstreams.users]
targets = ["{backend.url}"]

[cache]
max_bytes = {MAX_BYTES}
max_item_bytes = 65536
{workers_share}

[auth.api_keys.consumers.alpha]
key_sha256 = "{hashlib.sha256(ALPHA_KEY.encode()).hexdigest()}"
scopes = []

[auth.api_keys.consumers.beta]
key_sha256 = "{hashlib.sha256(BETA_KEY.encode()).hexdigest()}"
scopes = []

[[routes]]
path = "/c/<path:rest>"
upstream = "echo"
upstream_path = "/{{rest}}"
methods = ["GET", "POST"]
auth = "public"
cache = {{ ttl = 60, vary = ["Accept-Language"] }}

[[routes]]
path = "/k/<path:rest>"
upstream = "echo"
upstream_path = "/{{rest}}"
auth = {{ scopes = [] }}
cache = {{ ttl = 60, scope = "consumer" }}
"""


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with Backend("echo") as running:
        yield running


def start(directory: Path, text: str, workers: int) -> Gateway:
    return Gateway(directory, text, workers=workers, env={"GATEWAY_CACHE__PURGE_TOKEN": PURGE_TOKEN}).start()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[Gateway]:
    """Two gevent workers, each with its own local tier."""
    running = start(tmp_path_factory.mktemp("cache"), config(backend), workers=2)
    yield running
    assert running.process is not None
    journal = Path(tempfile.gettempdir(), f"frontdesk-cache-{running.process.pid}.journal")
    running.stop()
    assert journal.exists()  # the default journal: one per gunicorn master
    journal.unlink()


def calls(backend: Backend, target: str) -> int:
    return sum(1 for received in backend.received if received.target == target)


def get(gateway: Gateway, path: str, **headers: str) -> requests.Response:
    return requests.get(gateway.url + path, headers=headers, timeout=30)  # a new connection: either worker


@pytest.mark.parametrize("query", ["header=Cache-Control:private", "header=Cache-Control:no-store",
                                   "header=Set-Cookie:s%3D1"])
def test_private_and_no_store_are_never_stored(gateway: Gateway, backend: Backend, query: str) -> None:
    path = f"/_/respond?{query}&body=secret"
    for _ in range(6):
        answer = get(gateway, "/c" + path)
        assert "stored" not in answer.headers["Cache-Status"] and "hit" not in answer.headers["Cache-Status"]
    assert calls(backend, path) == 6


def test_consumers_never_see_each_other(gateway: Gateway, backend: Backend) -> None:
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda key: (key, get(gateway, "/k/profile", **{"X-API-Key": key})),
                                [ALPHA_KEY, BETA_KEY] * 20))
    for key, answer in answers:
        echoed = dict(json.loads(answer.content)["headers"])
        assert echoed["X-Auth-Consumer"] == ("alpha" if key == ALPHA_KEY else "beta")
    assert any("hit" in answer.headers["Cache-Status"] for _, answer in answers)
    assert calls(backend, "/profile") <= 4  # one per consumer per worker at most
    assert get(gateway, "/k/profile").status_code == 401  # no key: auth refuses before the cache


def test_vary_and_encoding_variants_are_distinct_and_byte_exact(gateway: Gateway, backend: Backend) -> None:
    variants = [{"Accept-Language": "en", "Accept-Encoding": "identity"},
                {"Accept-Language": "de", "Accept-Encoding": "identity"},
                {"Accept-Language": "en", "Accept-Encoding": "gzip"}]
    for _ in range(5):
        for headers in variants:
            echoed = dict(json.loads(get(gateway, "/c/catalog", **headers).content)["headers"])
            assert echoed["Accept-Language"] == headers["Accept-Language"]
            assert echoed["Accept-Encoding"] == headers["Accept-Encoding"]
    assert calls(backend, "/catalog") <= 2 * len(variants)
    # The upstream's compressed body, stored and served as the same bytes; a plain request never gets it.
    for _ in range(4):
        raw = requests.get(gateway.url + "/c/_/gzip", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
        assert raw.headers["Content-Encoding"] == "gzip"
        assert raw.raw.read(decode_content=False) == GZIP_BODY
    assert calls(backend, "/_/gzip") <= 2
    plain = get(gateway, "/c/_/gzip", **{"Accept-Encoding": "identity"})
    assert "hit" not in plain.headers["Cache-Status"]


def worker_sessions(gateway: Gateway) -> dict[int, requests.Session]:
    """One keep-alive session per worker, by worker pid (a connection stays with the worker that accepted it).

    Connections are opened eight at a time, each with a request: one after another, they can all go
    to the worker the kernel wakes first (50 in a row did, now and then), while a worker busy with
    requests leaves the next accept to the other.
    """
    sessions: dict[int, requests.Session] = {}

    def open_one(_: int) -> tuple[int, requests.Session]:
        session = requests.Session()
        answer = session.get(gateway.url + "/_frontdesk/cache/stats", timeout=10,
                             headers={"Authorization": f"Bearer {PURGE_TOKEN}"})
        return answer.json()["pid"], session

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(25):
            for pid, session in pool.map(open_one, range(8)):
                if pid in sessions:
                    session.close()
                else:
                    sessions[pid] = session
            if len(sessions) == len(gateway.worker_pids()):
                return sessions
    raise AssertionError("could not reach every worker")


def test_purge_and_writes_reach_every_worker(gateway: Gateway) -> None:
    sessions = list(worker_sessions(gateway).values())
    assert len(sessions) == 2
    purger, other = sessions
    tagged = "/c/_/respond?header=Surrogate-Key:t1%20t2&body=tagged"
    paths = ["/c/p/1", "/c/p/2", tagged, "/c/w"]

    def status(session: requests.Session, path: str) -> str:
        return session.get(gateway.url + path, timeout=10).headers["Cache-Status"]

    for session in sessions:
        for path in paths:
            session.get(gateway.url + path, timeout=10)
    assert all("hit" in status(session, path) for session in sessions for path in paths)

    def admin(document: dict[str, str]) -> None:
        assert purger.post(gateway.url + "/_frontdesk/cache/purge", json=document, timeout=10,
                           headers={"Authorization": f"Bearer {PURGE_TOKEN}"}).status_code == 200

    admin({"path": "/c/p/1"})
    assert "hit" not in status(other, "/c/p/1")  # the other worker learnt it from the journal
    assert "hit" in status(other, "/c/p/2")
    admin({"prefix": "/c/p/"})
    assert "hit" not in status(other, "/c/p/2")
    admin({"tag": "t2"})
    assert "hit" not in status(other, tagged)
    assert purger.post(gateway.url + "/c/w", timeout=10).status_code == 200  # a successful write
    assert "hit" not in status(other, "/c/w")
    for session in sessions:
        session.close()


def test_memory_stays_under_max_bytes(gateway: Gateway) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: get(gateway, f"/c/_/bytes/{40000 + n}"), range(120)))  # ~4.8 MB offered
    # Each worker's own figures, through a connection it accepted (worker_sessions: 20 requests one after
    # another sometimes all went to one worker while the machine was busy).
    seen = {}
    for pid, session in worker_sessions(gateway).items():
        seen[pid] = session.get(gateway.url + "/_frontdesk/cache/stats", timeout=10,
                                headers={"Authorization": f"Bearer {PURGE_TOKEN}"}).json()
        session.close()
    assert len(seen) == 2  # both workers answered
    for stats in seen.values():
        assert 0 < stats["local_bytes"] <= MAX_BYTES
    assert max(stats["local_bytes"] for stats in seen.values()) > MAX_BYTES // 2  # it did fill up


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[Gateway]:
    """One worker: its single-flight table sees every request."""
    running = start(tmp_path_factory.mktemp("single"), config(backend), workers=1)
    yield running
    running.stop()


def test_a_stampede_makes_one_upstream_call(single: Gateway, backend: Backend) -> None:
    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(lambda _: get(single, "/c/_/slow/0.5"), range(100)))
    assert [answer.status_code for answer in answers] == [200] * 100
    assert len({answer.content for answer in answers}) == 1
    assert calls(backend, "/_/slow/0.5") == 1
    statuses = [answer.headers["Cache-Status"] for answer in answers]
    assert statuses.count("frontdesk; fwd=uri-miss; stored") == 1
