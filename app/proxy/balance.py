"""Balancing: which of the available targets gets the next call.

Each balancer picks from the candidates it is given (the targets that are healthy, not ejected
and whose breaker lets calls through), so a sick target drops out without the balancer knowing.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = ["Balancer", "Choice", "HashRing", "LeastInFlight", "SmoothWeightedRoundRobin", "build_balancer"]

# Points per unit of weight on the hash ring: enough for an even spread over a few targets.
_POINTS_PER_WEIGHT = 64


class Choice(Protocol):
    """What a balancer needs to know about a target."""

    @property
    def key(self) -> str:
        """A stable identity (the same address keeps its key across DNS refreshes)."""

    @property
    def weight(self) -> int:
        """Relative share of the traffic."""

    @property
    def in_flight(self) -> int:
        """Calls to it not yet finished."""


_C = TypeVar("_C", bound=Choice)


class Balancer(Protocol):
    """Picks one of ``candidates`` (never empty) for a call, given the request's hash key."""

    def update(self, members: Sequence[Choice]) -> None:
        """Every target of the upstream, at start and after each change (DNS)."""

    def choose(self, candidates: Sequence[_C], key: str) -> _C:
        """The target for the next call."""


class SmoothWeightedRoundRobin:
    """Nginx's smooth weighted round robin: deterministic, and weight 3:1 gives a a b a, not a a a b."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def update(self, members: Sequence[Choice]) -> None:
        """Forget the running weights of targets that are gone."""
        live = {member.key for member in members}
        self._current = {name: value for name, value in self._current.items() if name in live}

    def choose(self, candidates: Sequence[_C], key: str) -> _C:
        """Raise every candidate by its weight, take the highest, lower it by the total."""
        current = self._current
        total = 0
        best: _C | None = None
        best_value = 0
        for candidate in candidates:
            value = current.get(candidate.key, 0) + candidate.weight
            current[candidate.key] = value
            total += candidate.weight
            if best is None or value > best_value:
                best, best_value = candidate, value
        assert best is not None
        current[best.key] = best_value - total
        return best


class LeastInFlight:
    """The candidate with the fewest calls in flight per unit of weight; ties go round in turn."""

    def __init__(self) -> None:
        self._turn = 0

    def update(self, members: Sequence[Choice]) -> None:
        """Nothing to keep per target: the counts live on the targets."""

    def choose(self, candidates: Sequence[_C], key: str) -> _C:
        """The least loaded candidate."""
        self._turn += 1
        count = len(candidates)
        best = candidates[self._turn % count]
        best_load = best.in_flight / best.weight
        for offset in range(1, count):
            candidate = candidates[(self._turn + offset) % count]
            load = candidate.in_flight / candidate.weight
            if load < best_load:
                best, best_load = candidate, load
        return best


class HashRing:
    """Consistent hashing: one key stays on one target while that target is available.

    The ring holds every target (available or not); a key whose target dropped out goes to the
    next target clockwise, and comes back when it recovers. Only that target's keys move.
    """

    def __init__(self) -> None:
        self._points: list[int] = []
        self._owners: list[str] = []

    def update(self, members: Sequence[Choice]) -> None:
        """Rebuild the ring for this set of targets (at start and when DNS changes it)."""
        ring = sorted(
            (_hash(f"{member.key}#{index}"), member.key)
            for member in members
            for index in range(member.weight * _POINTS_PER_WEIGHT)
        )
        self._points = [point for point, _ in ring]
        self._owners = [owner for _, owner in ring]

    def choose(self, candidates: Sequence[_C], key: str) -> _C:
        """The first available target clockwise from the key's point."""
        by_key = {candidate.key: candidate for candidate in candidates}
        size = len(self._points)
        start = bisect.bisect(self._points, _hash(key))
        for step in range(size):
            chosen = by_key.get(self._owners[(start + step) % size])
            if chosen is not None:
                return chosen
        return candidates[0]  # only when the ring is stale: every known target owns points


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def build_balancer(mode: str) -> Balancer:
    """The balancer a ``balance`` setting names."""
    if mode == "least_in_flight":
        return LeastInFlight()
    if mode == "hash":
        return HashRing()
    return SmoothWeightedRoundRobin()
