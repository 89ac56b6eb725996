"""Balancers, without Flask: weighted round robin, least in flight, consistent hashing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from app.proxy.balance import HashRing, LeastInFlight, SmoothWeightedRoundRobin


@dataclass
class Member:
    key: str
    weight: int = 1
    in_flight: int = 0


def test_smooth_weighted_round_robin_interleaves_by_weight() -> None:
    a, b, c = Member("a", 5), Member("b"), Member("c")
    balancer = SmoothWeightedRoundRobin()
    balancer.update([a, b, c])
    picks = "".join(balancer.choose([a, b, c], "").key for _ in range(14))
    assert picks == "aabacaa" * 2  # nginx's documented sequence for 5:1:1, never a burst of b and c


def test_weights_hold_exactly_over_many_calls() -> None:
    members = [Member("a", 3), Member("b", 1), Member("c", 2)]
    balancer = SmoothWeightedRoundRobin()
    counts = Counter(balancer.choose(members, "").key for _ in range(6000))
    assert counts == {"a": 3000, "b": 1000, "c": 2000}


def test_round_robin_skips_a_target_that_drops_out_and_takes_it_back() -> None:
    a, b = Member("a"), Member("b")
    balancer = SmoothWeightedRoundRobin()
    assert {balancer.choose([a], "").key for _ in range(5)} == {"a"}
    assert Counter(balancer.choose([a, b], "").key for _ in range(10)) == {"a": 5, "b": 5}


def test_least_in_flight_picks_the_least_loaded_per_weight() -> None:
    a, b, c = Member("a", in_flight=3), Member("b", in_flight=1), Member("c", weight=4, in_flight=3)
    balancer = LeastInFlight()
    assert balancer.choose([a, b, c], "").key == "c"  # 3/4 < 1/1 < 3/1


def test_least_in_flight_spreads_ties() -> None:
    members = [Member("a"), Member("b"), Member("c")]
    balancer = LeastInFlight()
    assert Counter(balancer.choose(members, "").key for _ in range(300)) == {"a": 100, "b": 100, "c": 100}


def test_hash_sends_one_key_to_one_target() -> None:
    members = [Member(f"t{i}") for i in range(4)]
    ring = HashRing()
    ring.update(members)
    owners = {f"consumer-{n}": ring.choose(members, f"consumer-{n}").key for n in range(400)}
    for _ in range(3):
        assert all(ring.choose(members, key).key == owner for key, owner in owners.items())
    spread = Counter(owners.values())
    assert len(spread) == 4 and min(spread.values()) > 50  # 100 each on average


def test_hash_moves_only_the_keys_of_a_target_that_drops_out_and_brings_them_back() -> None:
    members = [Member(f"t{i}") for i in range(4)]
    ring = HashRing()
    ring.update(members)
    keys = [f"consumer-{n}" for n in range(400)]
    before = {key: ring.choose(members, key).key for key in keys}
    without_t1 = [member for member in members if member.key != "t1"]
    during = {key: ring.choose(without_t1, key).key for key in keys}
    assert all(during[key] == before[key] for key in keys if before[key] != "t1")
    assert all(during[key] != "t1" for key in keys)
    assert {key: ring.choose(members, key).key for key in keys} == before


def test_hash_ring_honours_weights() -> None:
    members = [Member("heavy", weight=3), Member("light", weight=1)]
    ring = HashRing()
    ring.update(members)
    counts = Counter(ring.choose(members, f"k{n}").key for n in range(4000))
    assert 0.68 < counts["heavy"] / 4000 < 0.82
