"""The circuit breaker's state machine, on a clock the test controls."""

from __future__ import annotations

import pytest

from app.proxy.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from app.proxy.policy import BreakerPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, **policy: float) -> CircuitBreaker:
    options = {"failure_ratio": 0.5, "min_requests": 4, "window": 10.0, "open_for": 5.0, **policy}
    return CircuitBreaker(BreakerPolicy(**options), clock)  # type: ignore[arg-type]


def calls(subject: CircuitBreaker, *outcomes: bool) -> None:
    for success in outcomes:
        ticket = subject.allow()
        assert ticket is not None
        subject.record(ticket, success)


def test_opens_on_the_failure_ratio_once_min_requests_is_reached(clock: Clock) -> None:
    subject = breaker(clock)
    calls(subject, False, False, False)  # 100 % failures, but only 3 calls
    assert subject.state == CLOSED
    calls(subject, True)  # 3/4 but a success never opens it
    assert subject.state == CLOSED
    calls(subject, False)  # 4/5 >= 0.5
    assert subject.state == OPEN
    assert subject.allow() is None and not subject.available()


def test_stays_closed_below_the_ratio(clock: Clock) -> None:
    subject = breaker(clock)
    calls(subject, *([True, True, True, False] * 10))
    assert subject.state == CLOSED


def test_old_calls_leave_the_window(clock: Clock) -> None:
    subject = breaker(clock)
    calls(subject, False, False, False)
    clock.now += 11  # those three are out of the 10 s window now
    calls(subject, True, True, True, False)
    assert subject.state == CLOSED
    assert subject.counts() == (4, 1)


def test_half_open_lets_exactly_one_probe_through(clock: Clock) -> None:
    subject = breaker(clock)
    calls(subject, False, False, False, False)
    assert subject.state == OPEN
    clock.now += 4.9
    assert not subject.allow()
    assert subject.retry_after() == pytest.approx(0.1)
    clock.now += 0.1
    assert subject.available()
    probe = subject.allow()
    assert probe is not None
    assert subject.state == HALF_OPEN
    assert [subject.allow() for _ in range(50)] == [None] * 50  # everyone else while it is out
    assert not subject.available()
    subject.record(probe, True)
    assert subject.state == CLOSED
    assert all(subject.allow() is not None for _ in range(10))


def test_a_failed_probe_opens_it_again_for_the_whole_period(clock: Clock) -> None:
    subject = breaker(clock)
    calls(subject, False, False, False, False)
    clock.now += 5
    probe = subject.allow()
    assert probe is not None
    subject.record(probe, False)
    assert subject.state == OPEN
    clock.now += 4
    assert subject.allow() is None
    clock.now += 1
    assert subject.allow() is not None


def test_late_outcomes_of_calls_let_through_before_it_opened_change_nothing(clock: Clock) -> None:
    subject = breaker(clock)
    tickets = [subject.allow() for _ in range(6)]  # six calls out at once
    assert None not in tickets
    for ticket in tickets[:4]:
        subject.record(ticket or 0, False)
    assert subject.state == OPEN
    clock.now += 5
    probe = subject.allow()
    assert probe is not None and subject.state == HALF_OPEN
    subject.record(tickets[4] or 0, True)  # an old call's success is not the probe's
    assert subject.state == HALF_OPEN and subject.allow() is None
    subject.record(probe, False)
    assert subject.state == OPEN
