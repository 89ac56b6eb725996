"""The cache's plain functions: the RFC 9111 storage table, keys and Vary, the byte-bounded tier, purge marks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.auth import Principal
from app.caching.entry import CachedResponse, VarySpec, decode, encode
from app.caching.keys import normalise_query, url_key, variant_key, vary_spec
from app.caching.local import Journal, LocalStore
from app.caching.policy import decide
from app.caching.serve import consumer_key

NOW = 1_000_000.0


def _decide(status: int = 200, *headers: tuple[str, str], ttl: float = 60, credentials: bool = False,
            consumer_scoped: bool = False) -> tuple[float, str | None]:
    decision = decide(status, list(headers), ttl, credentials=credentials, consumer_scoped=consumer_scoped, now=NOW)
    return decision.ttl, decision.reason


@pytest.mark.parametrize(("status", "headers", "expected"), [
    (200, [], (60, None)),
    (203, [], (60, None)),
    (204, [], (60, None)),
    (301, [], (60, None)),
    (404, [], (60, None)),
    (410, [], (60, None)),
    (501, [], (60, None)),
    (206, [], (0, "status")),  # partial content is never stored
    (302, [], (0, "status")),
    (304, [], (0, "status")),
    (401, [], (0, "status")),
    (500, [], (0, "status")),
    (503, [], (0, "status")),
    (200, [("Cache-Control", "no-store")], (0, "no-store")),
    (200, [("Cache-Control", "public, max-age=30"), ("Cache-Control", "no-store")], (0, "no-store")),
    (200, [("Cache-Control", "private")], (0, "private")),
    (200, [("Cache-Control", 'private="Set-Cookie"')], (0, "private")),
    (200, [("cache-control", "No-Cache")], (0, "no-cache")),
    (200, [("Vary", "Accept-Language, *")], (0, "vary-star")),
    (200, [("Set-Cookie", "a=1")], (0, "set-cookie")),
    (200, [("Cache-Control", "max-age=10")], (10, None)),  # shortens the route TTL
    (200, [("Cache-Control", "max-age=600")], (60, None)),  # never lengthens it
    (200, [("Cache-Control", "max-age=600, s-maxage=5")], (5, None)),  # s-maxage wins in a shared cache
    (200, [("Cache-Control", "max-age=0")], (0, "stale")),
    (200, [("Cache-Control", "max-age=10"), ("Age", "4")], (6, None)),
    (200, [("Cache-Control", "max-age=10"), ("Age", "10")], (0, "stale")),
    (200, [("Cache-Control", "max-age=ten")], (0, "stale")),  # a malformed max-age means stale
    (200, [("Date", "Mon, 12 Jan 1970 13:46:40 GMT"), ("Expires", "Mon, 12 Jan 1970 13:47:00 GMT")], (20, None)),
    (200, [("Expires", "0")], (0, "stale")),  # an invalid Expires means already expired
])
def test_storage_table(status: int, headers: list[tuple[str, str]], expected: tuple[float, str | None]) -> None:
    assert _decide(status, *headers) == expected


@pytest.mark.parametrize(("headers", "consumer_scoped", "expected"), [
    ([], False, (0, "credentials")),  # an authenticated answer is not shared by default
    ([("Cache-Control", "max-age=30")], False, (0, "credentials")),
    ([("Cache-Control", "public")], False, (60, None)),  # unless the upstream says so
    ([], True, (60, None)),  # or the key holds the consumer
    ([("Cache-Control", "private")], True, (0, "private")),  # private is never stored, even per consumer
])
def test_credentials(headers: list[tuple[str, str]], consumer_scoped: bool, expected: tuple[float, str | None]) -> None:
    assert _decide(200, *headers, credentials=True, consumer_scoped=consumer_scoped) == expected


def test_query_is_normalised_by_sorting_parameters_only() -> None:
    assert normalise_query("b=2&a=1&&a=0") == "a=0&a=1&b=2"
    assert url_key("r", "http://h", "/p", "b=2&a=1", None) == url_key("r", "http://h", "/p", "a=1&b=2", None)
    assert url_key("r", "http://h", "/p", "a=%41", None) != url_key("r", "http://h", "/p", "a=A", None)


@pytest.mark.parametrize("other", [
    ("other-route", "http://h", "/p", "", None),
    ("r", "http://other", "/p", "", None),
    ("r", "https://h", "/p", "", None),
    ("r", "http://h", "/P", "", None),
    ("r", "http://h", "/p", "x=1", None),
    ("r", "http://h", "/p", "", "api_key:tests"),
])
def test_url_key_parts(other: tuple[str, str, str, str, str | None]) -> None:
    assert url_key("r", "http://h", "/p", "", None) != url_key(*other)
    assert url_key("r", "http://h", "/p", "", None) == url_key("r", "http://H", "/p", "", None)


def test_vary_spec_always_has_accept_encoding() -> None:
    assert vary_spec((), ()) == ("accept-encoding",)
    assert vary_spec(("accept-language",), ("Origin", " X-Tenant ")) == (
        "accept-encoding", "accept-language", "origin", "x-tenant")


def test_variant_keys() -> None:
    spec = vary_spec(("accept-language",), ())
    base = {"HTTP_ACCEPT_LANGUAGE": "en"}
    key = variant_key("u", spec, base)
    assert key == variant_key("u", spec, {"HTTP_ACCEPT_LANGUAGE": " en "})  # whitespace is not significant
    assert key != variant_key("u", spec, {"HTTP_ACCEPT_LANGUAGE": "de"})
    assert key != variant_key("u", spec, {**base, "HTTP_ACCEPT_ENCODING": "gzip"})  # compressed vs plain
    assert variant_key("u", spec, {**base, "HTTP_ACCEPT_ENCODING": ""}) != variant_key("u", spec, base)
    assert key == variant_key("u", spec, {**base, "HTTP_X_OTHER": "1"})  # headers outside the spec don't matter


def _entry(body: bytes = b"x", path: str = "/a", requested_at: float = NOW, expires: float = NOW + 60,
           tags: tuple[str, ...] = ()) -> CachedResponse:
    return CachedResponse(200, (("Content-Type", "text/plain"),), body, requested_at, expires, 0, path, tags, None)


def test_entries_round_trip_through_bytes() -> None:
    entry = _entry(b"\x00\xffbody\n", tags=("t1",))
    assert decode(encode(entry)) == entry
    spec = VarySpec(("accept-encoding",), NOW)
    assert decode(encode(spec)) == spec
    assert decode(b"not json\n") is None


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_local_tier_is_bounded_by_bytes_and_expires_each_item() -> None:
    clock = Clock()
    store = LocalStore(100_000, clock)
    for index in range(50):
        store.set(f"k{index}", _entry(b"x" * 10_000))
    assert store.size <= 100_000
    assert store.get("k49") is not None and store.get("k0") is None  # least recently used went first
    store.set("huge", _entry(b"x" * 200_000))  # larger than the whole tier: refused, nothing evicted for it
    assert store.get("huge") is None and store.get("k49") is not None
    store.set("short", _entry(expires=NOW + 5))
    clock.now += 6
    assert store.get("short") is None and store.get("k49") is not None


def test_marks_cover_entries_requested_before_them() -> None:
    store = LocalStore(100_000, Clock())
    store.set("a", _entry(path="/a/b", tags=("t",)))
    store.set("c", _entry(path="/c", requested_at=NOW + 2))
    store.marks.add("path", "/c", NOW + 1)  # the entry's call went out after this purge
    assert store.get("c") is not None
    store.marks.add("prefix", "/a/", NOW)
    assert store.get("a") is None
    store.set("a", _entry(path="/a/b", tags=("t",), requested_at=NOW + 3))
    store.marks.add("tag", "t", NOW + 3)
    assert store.get("a") is None


def test_journal_carries_marks_between_workers(tmp_path: Path) -> None:
    path = str(tmp_path / "journal")
    one, two = LocalStore(100_000, Clock()), LocalStore(100_000, Clock())
    journal_one, journal_two = Journal(path, one), Journal(path, two)
    two.set("a", _entry(path="/a"))
    journal_one.publish("path", "/a", NOW)
    assert two.get("a") is not None  # not read yet
    journal_two.poll()
    assert two.get("a") is None
    two.set("b", _entry(path="/b"))
    os.replace(path, path + ".old")  # a rotated journal (new inode): the worker cannot know what it missed
    Path(path).write_bytes(b"")
    journal_two.poll()
    assert two.get("b") is None


def test_consumer_keys_tell_users_of_one_client_apart() -> None:
    def token(subject: str | None, consumer: str | None) -> Principal:
        return Principal(scheme="jwt", subject=subject, consumer=consumer, scopes=frozenset())

    keys = {consumer_key(token("alice", "web")), consumer_key(token("bob", "web")),
            consumer_key(token("alice", None)), consumer_key(token(None, "alice")),
            consumer_key(Principal(scheme="api_key", subject=None, consumer="alice", scopes=frozenset()))}
    assert len(keys) == 5 and None not in keys
    assert consumer_key(token(None, None)) is None and consumer_key(None) is None
