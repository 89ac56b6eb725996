"""Endpoints, upstream state and the monitor, without Flask: a clock and a resolver the test controls."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import load_config
from app.proxy import read_upstreams
from app.proxy.client import UpstreamState, build_session, build_states
from app.proxy.monitor import Monitor


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def states(clock: Clock, **upstream: Any) -> dict[str, UpstreamState]:
    upstream.setdefault("targets", ["http://10.9.0.1:8000", "http://10.9.0.2:8000"])
    _, config = load_config("testing", overrides={"UPSTREAMS": {"svc": upstream}})
    settings = read_upstreams(config)
    return build_states(build_session(settings), settings, clock)


def test_consecutive_failures_eject_for_a_while(clock: Clock) -> None:
    state = states(clock, eject={"failures": 3, "seconds": 10})["svc"]
    first, second = state.endpoints
    for outcome in (False, False, True, False, False):  # a success resets the count
        first.record_call(0, outcome)
    assert first.available(clock.now)
    first.record_call(0, False)
    assert not first.available(clock.now)
    assert [state.pick() for _ in range(3)] == [second] * 3
    assert state.retry_after() == 1  # the soonest endpoint (second) is available now
    second.record_call(0, False)
    second.record_call(0, False)
    second.record_call(0, False)
    clock.now += 4
    assert state.pick() is None and state.retry_after() == 6
    clock.now += 6
    assert first.available(clock.now) and second.available(clock.now)


def test_active_checks_need_the_configured_streaks(clock: Clock) -> None:
    [endpoint, _] = states(clock, health={"healthy_after": 2, "unhealthy_after": 3})["svc"].endpoints
    for passed in (False, False, True, False, False):
        endpoint.record_check(passed)
    assert endpoint.healthy
    endpoint.record_check(False)
    assert not endpoint.healthy
    endpoint.record_check(True)
    assert not endpoint.healthy
    endpoint.record_check(True)
    assert endpoint.healthy


def test_a_refreshed_address_list_keeps_the_state_of_addresses_that_stay(clock: Clock) -> None:
    state = states(clock, targets=["http://svc.test:8000"], eject={"failures": 1, "seconds": 10})["svc"]
    assert not state.endpoints and state.pick() is None
    [target] = state.hostnames()
    assert state.set_addresses(target, ["10.9.0.2", "10.9.0.1"])
    old = {endpoint.address: endpoint for endpoint in state.endpoints}
    old["10.9.0.1"].record_call(0, False)  # ejected
    assert not state.set_addresses(target, ["10.9.0.1", "10.9.0.2"])  # same answer, other order
    assert state.set_addresses(target, ["10.9.0.1", "10.9.0.3"])
    now = {endpoint.address: endpoint for endpoint in state.endpoints}
    assert now["10.9.0.1"] is old["10.9.0.1"] and not now["10.9.0.1"].available(clock.now)
    assert now["10.9.0.3"].available(clock.now)
    assert {endpoint.target.netloc for endpoint in state.endpoints} == {"svc.test:8000"}
    assert now["10.9.0.3"].pool.host == "10.9.0.3" and now["10.9.0.3"].pool.port == 8000


def test_the_monitor_resolves_on_its_interval(clock: Clock) -> None:
    all_states = states(clock, targets=["http://svc.test:8000"], resolve_interval=30)
    answers = [["10.9.0.1"], ["10.9.0.1", "10.9.0.2"]]
    asked: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answers[min(len(asked) - 1, len(answers) - 1)]

    monitor = Monitor(all_states, resolver, clock)
    monitor.resolve_all()
    assert [endpoint.address for endpoint in all_states["svc"].endpoints] == ["10.9.0.1"]
    clock.now += 29
    assert monitor.run_due() == pytest.approx(1)
    assert len(asked) == 1
    clock.now += 1
    assert monitor.run_due() == pytest.approx(30)
    assert [endpoint.address for endpoint in all_states["svc"].endpoints] == ["10.9.0.1", "10.9.0.2"]


def test_a_monitor_with_nothing_to_do_starts_nothing(clock: Clock) -> None:
    monitor = Monitor(states(clock), clock=clock)
    assert not monitor.needed()
    monitor.ensure_started()
    assert monitor._greenlet is None


def test_https_at_a_resolved_address_still_checks_the_name(clock: Clock) -> None:
    state = states(clock, targets=["https://svc.test"])["svc"]
    [target] = state.hostnames()
    state.set_addresses(target, ["10.9.0.7"])
    [endpoint] = state.endpoints
    pool: Any = endpoint.pool
    assert (pool.host, pool.port, pool.scheme) == ("10.9.0.7", 443, "https")
    assert pool.assert_hostname == "svc.test"  # the certificate must name the target, not the address
    assert pool.conn_kw["server_hostname"] == "svc.test"  # and SNI asks for it
    assert endpoint.target.netloc == "svc.test"  # the Host header
