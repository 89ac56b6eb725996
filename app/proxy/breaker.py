"""A circuit breaker per target: closed → open on a failure ratio → half-open (one probe) → closed.

State lives in one worker and is only touched between two yields of the event loop, so it needs
no lock: ``allow`` checks and takes the half-open probe in one step no other greenlet can split.
"""

from __future__ import annotations

from collections.abc import Callable

from app.proxy.policy import BreakerPolicy

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker"]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

# The rolling window is kept as this many buckets: old calls leave it a bucket at a time.
_BUCKETS = 10


class CircuitBreaker:
    """One target's breaker: ``allow`` before a call, then one ``record`` with its ticket afterwards."""

    __slots__ = ("policy", "clock", "state", "opened_at", "probing", "generation", "_buckets", "_bucket_width")

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock
        self.state = CLOSED
        self.opened_at = 0.0
        self.probing = False
        # Changes with every state change; a call's ticket names the one it was let through in,
        # so a late outcome from before a change cannot pass for the half-open probe's.
        self.generation = 1
        # bucket index (time // width) -> [calls, failures]
        self._buckets: dict[int, list[int]] = {}
        self._bucket_width = policy.window / _BUCKETS

    def available(self) -> bool:
        """Whether a call could be let through now (without taking the half-open probe)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return self.clock() - self.opened_at >= self.policy.open_for
        return not self.probing

    def allow(self) -> int | None:
        """A ticket for one call, or None to refuse it; in half-open only one probe is ever out."""
        if self.state == CLOSED:
            return self.generation
        if self.state == OPEN:
            if self.clock() - self.opened_at < self.policy.open_for:
                return None
            self.state = HALF_OPEN
            self.generation += 1
            self.probing = False
        if self.probing:
            return None
        self.probing = True
        return self.generation

    def record(self, ticket: int, success: bool) -> None:
        """The outcome of a call ``allow`` gave ``ticket`` to."""
        if ticket != self.generation:
            return  # let through before the last change of state: it says nothing about now
        if self.state == HALF_OPEN:
            self.probing = False
            if success:
                self._close()
            else:
                self._open()
            return
        now = self.clock()
        index = int(now // self._bucket_width)
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = [0, 0]
            oldest = index - _BUCKETS + 1
            for stale in [key for key in self._buckets if key < oldest]:
                del self._buckets[stale]
        bucket[0] += 1
        if not success:
            bucket[1] += 1
            calls, failures = self.counts(now)
            if calls >= self.policy.min_requests and failures >= self.policy.failure_ratio * calls:
                self._open()

    def release(self, ticket: int) -> None:
        """A call ``allow`` gave ``ticket`` to ended with no verdict: a half-open probe may go out again."""
        if ticket == self.generation and self.state == HALF_OPEN:
            self.probing = False

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.policy.open_for - (self.clock() - self.opened_at))

    def counts(self, now: float | None = None) -> tuple[int, int]:
        """Calls and failures in the rolling window."""
        index = int((self.clock() if now is None else now) // self._bucket_width)
        oldest = index - _BUCKETS + 1
        calls = failures = 0
        for key, (bucket_calls, bucket_failures) in self._buckets.items():
            if oldest <= key <= index:
                calls += bucket_calls
                failures += bucket_failures
        return calls, failures

    def _open(self) -> None:
        self.generation += 1
        self.state = OPEN
        self.opened_at = self.clock()
        self.probing = False

    def _close(self) -> None:
        self.generation += 1
        self.state = CLOSED
        self._buckets.clear()
