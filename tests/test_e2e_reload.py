"""Reload (SIGHUP) and drain (SIGTERM) under load, through real gunicorn gevent workers and real backends."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.fakes import wait_until
from tests.fakes.backend import Backend
from tests.gateway import Gateway, echo_toml

pytestmark = pytest.mark.e2e

GRACEFUL = 5  # seconds: GATEWAY_GRACEFUL_TIMEOUT for these tests
ENV = {"GATEWAY_GRACEFUL_TIMEOUT": str(GRACEFUL), "GATEWAY_SERVER_LOG_LEVEL": "info"}
# A route the reloaded config adds: the catch-all would forward /added as /added; this one renames it.
ADDED_ROUTE = '[[routes]]\npath = "/added"\nupstream = "echo"\nupstream_path = "/renamed"\nauth = "public"\n'


@dataclass
class Load:
    """Clients looping requests through the gateway until stopped; every outcome is kept."""

    url: str
    # (path, start, end, "200" or the error's class name)
    outcomes: list[tuple[str, float, float, str]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # each error in full, to report what clients saw
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, path: str) -> None:
        """One keep-alive client (a requests Session), as a load balancer's connection pool would be."""
        with requests.Session() as session:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    outcome = str(session.get(self.url + path, timeout=30).status_code)
                except requests.RequestException as error:
                    outcome = type(error).__name__
                    self.errors[repr(error)[-100:]] += 1
                self.outcomes.append((path, started, time.monotonic(), outcome))

    def failures(self) -> list[tuple[str, float, float, str]]:
        """Outcomes other than 200."""
        return [entry for entry in self.outcomes if entry[3] != "200"]


@contextmanager
def load(gateway: Gateway, fast: int = 6, slow: int = 3) -> Iterator[Load]:
    """``fast`` clients looping quick requests and ``slow`` clients looping 1 s ones, all through the gateway."""
    running = Load(gateway.url)
    threads = [threading.Thread(target=running.client, args=("/fast",)) for _ in range(fast)]
    threads += [threading.Thread(target=running.client, args=("/_/slow/1",)) for _ in range(slow)]
    for thread in threads:
        thread.start()
    try:
        yield running
    finally:
        running.stop.set()
        for thread in threads:
            thread.join(35)


def slowest(running: Load) -> float:
    """The longest a quick request took."""
    return max(end - start for path, start, end, _ in running.outcomes if path == "/fast")


def test_sighup_under_load_applies_the_new_config_without_a_failed_request(
        start_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    with Backend("old") as old, Backend("new") as new:
        private = tmp_path / "tmp"  # the master's temporary directories, and nobody else's
        private.mkdir()
        gateway = start_gateway(echo_toml(old.url), env={**ENV, "TMPDIR": str(private)})
        before = set(gateway.worker_pids())
        with load(gateway) as running:
            old.wait_for(20, timeout=30)  # the load runs, slow requests included
            gateway.config_path.write_text(echo_toml(new.url, extra=ADDED_ROUTE))
            sent = time.monotonic()
            assert gateway.process is not None
            gateway.process.send_signal(signal.SIGHUP)
            wait_until(lambda: "configuration checked, reloading" in gateway.log(), timeout=60.0,
                       what="the reload check")
            reloading = time.monotonic()
            # The old workers go once a new one has loaded the app and their in-flight requests are done.
            wait_until(lambda: not before & set(gateway.worker_pids()), timeout=60.0,
                       what="the old workers to exit")
            switched = time.monotonic()
            # More load after the switch (the new workers already served during the hand-over).
            new.wait_for(len(new.received) + 20, timeout=30)
        assert running.failures() == [], gateway.log()[-3000:]
        after_reload = [entry for entry in running.outcomes if entry[1] > switched]
        assert len(after_reload) >= 10 and {entry[3] for entry in after_reload} == {"200"}
        # Slow requests were in flight when gunicorn began to replace the workers, and completed.
        assert any(path == "/_/slow/1" and start < reloading < end for path, start, end, _ in running.outcomes)
        print(f"\nSIGHUP: {len(running.outcomes)} requests, reload checked after {reloading - sent:.1f} s, "
              f"old workers gone after {switched - sent:.1f} s, slowest {slowest(running):.2f} s")

        old.clear()
        new.clear()
        assert requests.get(gateway.url + "/fast", timeout=10).status_code == 200
        added = requests.get(gateway.url + "/added", timeout=10)
        assert added.status_code == 200 and added.json()["target"] == "/renamed"
        assert [received.target for received in new.received] == ["/fast", "/renamed"]
        assert old.received == []

        # What the master made (metrics directory, checked config copies) goes with it, reloads or not.
        made = sorted(path.name.rsplit("-", 1)[0] for path in private.iterdir())
        assert made == ["frontdesk-config", "frontdesk-metrics"]
        # The workers read a checked copy; the old workers' copy is gone.
        copies = list(next(private.glob("frontdesk-config-*")).iterdir())
        assert [copy.read_text() for copy in copies] == [gateway.config_path.read_text()]
        gateway.stop()
        assert gateway.process.returncode == 0
        assert list(private.iterdir()) == []
        assert "Traceback" not in gateway.log()


def test_sighup_with_a_broken_config_is_refused_and_the_old_workers_keep_serving(
        start_gateway: Callable[..., Gateway]) -> None:
    with Backend("old") as old:
        gateway = start_gateway(echo_toml(old.url), env=ENV)
        before = sorted(gateway.worker_pids())
        with load(gateway) as running:
            old.wait_for(20, timeout=30)
            gateway.config_path.write_text(echo_toml(old.url, upstream="conect_timeout = 1"))
            assert gateway.process is not None
            gateway.process.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload refused" in gateway.log(), timeout=60.0, what="the refusal")
            served = len(old.received)
            old.wait_for(served + 20, timeout=30)  # still serving after the refusal
        assert running.failures() == []
        refused = [line for line in gateway.log().splitlines() if "reload refused" in line]
        assert len(refused) == 1
        assert "upstreams.echo.conect_timeout" in refused[0]
        assert sorted(gateway.worker_pids()) == before  # the same processes, never replaced
        assert gateway.process.poll() is None
        assert "Traceback" not in gateway.log()


def test_sigterm_under_load_drains_in_flight_requests_and_readiness_says_503(
        start_gateway: Callable[..., Gateway], backend: Backend) -> None:
    graceful = 10  # a margin on a busy machine; the drain itself takes a few seconds (printed)
    gateway = start_gateway(echo_toml(backend.url), env={**ENV, "GATEWAY_GRACEFUL_TIMEOUT": str(graceful)})
    host, port = urlsplit(gateway.url).netloc.split(":")
    probe = http.client.HTTPConnection(host, int(port), timeout=10)  # a load balancer's kept-alive probe
    probe.request("GET", "/readyz")
    first = probe.getresponse()
    assert (first.status, json.loads(first.read())) == (200, {"status": "ready"})
    with load(gateway) as running:
        wait_until(lambda: sum(r.target == "/_/slow/1" for r in backend.received) >= 3, timeout=60.0,
                   what="slow requests")
        assert gateway.process is not None
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        # Readiness on the kept-alive probe connection: 200 until the master has begun to stop, then 503.
        while True:
            probe.request("GET", "/readyz")
            answer = probe.getresponse()
            body = json.loads(answer.read())
            if answer.status != 200:
                break
        assert answer.status == 503 and body == {"status": "not ready", "draining": True}
        assert answer.getheader("Connection") == "close"
        code = gateway.wait(graceful + 5)
        stopped = time.monotonic() - signalled
    probe.close()
    assert code == 0, gateway.log()[-3000:]
    assert stopped < graceful, gateway.log()[-4000:]  # drained, not cut off at the graceful timeout
    assert "graceful timeout" not in gateway.log() and "SIGKILL" not in gateway.log()
    # Every request that started before the signal completed with 200, slow ones included.
    before = [entry for entry in running.outcomes if entry[1] < signalled]
    assert {entry[3] for entry in before} == {"200"}
    assert sum(path == "/_/slow/1" and end > signalled for path, _, end, _ in before) >= 3  # in flight, then 200
    # After the signal a client sees answers (each closing its connection) until the listener is
    # closed, then its new connections are refused; nothing else.
    seen = Counter(outcome for _, start, _, outcome in running.outcomes if start >= signalled)
    assert set(seen) <= {"200", "ConnectionError"}, (seen, running.errors)  # refused, or reset while queued
    print(f"\nSIGTERM: master gone after {stopped:.2f} s; after the signal: {dict(seen)}; "
          f"errors: {dict(running.errors)}")
    assert "Traceback" not in gateway.log()
