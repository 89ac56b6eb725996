"""DNS discovery through the app, with a resolver the test controls and real backends behind it.

A DNS name carries one port, so the two backends listen on the same port at two loopback
addresses (127.0.0.1 and 127.0.0.2; Linux routes all of 127.0.0.0/8 to the loopback interface).
"""

from __future__ import annotations

import time
from collections import Counter

from app import upstreams
from app.proxy.discovery import is_address, resolve_host
from tests.conftest import AppFactory
from tests.fakes import wait_until
from tests.fakes.backend import Backend
from tests.test_resilience import answered_by, assert_problem, gateway


class Resolver:
    """Answers what the test last set: a list of addresses, or an error to raise."""

    def __init__(self, answer: list[str] | OSError) -> None:
        self.answer = answer
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if isinstance(self.answer, OSError):
            raise self.answer
        return list(self.answer)


def test_every_address_becomes_a_target_and_changes_are_followed(make_app: AppFactory) -> None:
    with Backend("a") as a, Backend("b", host="127.0.0.2", port=a.port) as b:
        resolver = Resolver(["127.0.0.1"])
        app = gateway(make_app, [f"http://svc.test:{a.port}"], resolve_interval=0.05)
        upstreams.use_resolver(app, resolver)
        client = app.test_client()
        assert {answered_by(client.get("/x")) for _ in range(4)} == {"a"}
        assert resolver.asked[0] == ("svc.test", a.port)
        state = upstreams.state("svc", app)

        resolver.answer = ["127.0.0.2", "127.0.0.1"]  # scaled out
        wait_until(lambda: len(state.endpoints) == 2, timeout=3.0)
        assert Counter(answered_by(client.get("/x")) for _ in range(10)) == {"a": 5, "b": 5}
        # Pools are per address; the Host header stays the configured name.
        assert {seen.header("Host") for seen in a.received + b.received} == {f"svc.test:{a.port}"}

        resolver.answer = OSError("SERVFAIL")  # an outage keeps the last good answer
        asked = len(resolver.asked)
        wait_until(lambda: len(resolver.asked) > asked + 1, timeout=3.0)
        assert len(state.endpoints) == 2

        resolver.answer = ["127.0.0.2"]  # scaled in
        wait_until(lambda: len(state.endpoints) == 1, timeout=3.0)
        assert {answered_by(client.get("/x")) for _ in range(4)} == {"b"}


def test_a_name_that_never_resolved_is_503_at_once(make_app: AppFactory) -> None:
    app = gateway(make_app, ["http://nowhere.test:8080"])
    upstreams.use_resolver(app, Resolver(OSError("NXDOMAIN")))
    started = time.perf_counter()
    response = app.test_client().get("/x")
    assert time.perf_counter() - started < 0.05
    assert_problem(response, 503, "upstream-down")
    assert response.headers.getlist("Retry-After") == ["1"]


def test_ip_literals_are_never_resolved(make_app: AppFactory) -> None:
    with Backend("a") as a:
        app = gateway(make_app, [a.url])
        resolver = Resolver(OSError("must not be asked"))
        upstreams.use_resolver(app, resolver)
        assert answered_by(app.test_client().get("/x")) == "a"
        assert resolver.asked == []
        assert not upstreams.monitor(app).needed()  # no background greenlet at all


def test_the_system_resolver() -> None:
    assert resolve_host("127.0.0.1", 80) == ["127.0.0.1"]
    assert is_address("::1") and is_address("10.0.0.1") and not is_address("svc.test")
