"""The one bounded cache type (authz/cache.py): capacity, LRU order, deadlines, the stale window, counters."""

from __future__ import annotations

import pytest

from authz.cache import BoundedCache, identity_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_least_recently_used_entry_goes_first_when_full() -> None:
    cache: BoundedCache[str, int] = BoundedCache("t", 2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert len(cache) == 2


def test_capacity_zero_stores_nothing() -> None:
    cache: BoundedCache[str, int] = BoundedCache("t", 0)
    cache.put("a", 1)
    assert cache.get("a") is None and len(cache) == 0
    with pytest.raises(ValueError):
        BoundedCache("t", -1)


def test_an_entry_misses_at_its_deadline_and_is_stale_within_the_window() -> None:
    clock = Clock()
    cache: BoundedCache[str, str] = BoundedCache("t", 10, stale=5.0, clock=clock)
    cache.put("k", "v", ttl=2.0)
    assert cache.get("k") == "v"
    clock.now += 2.0  # the deadline itself is past
    assert cache.get("k") is None
    assert cache.get_stale("k") == "v"
    clock.now += 4.9
    assert cache.get_stale("k") == "v"
    clock.now += 0.1  # deadline + stale
    assert cache.get_stale("k") is None
    assert cache.get("k") is None and "k" not in cache  # dropped once past the stale window


def test_without_a_stale_window_an_expired_entry_is_dropped_on_read() -> None:
    clock = Clock()
    cache: BoundedCache[str, str] = BoundedCache("t", 10, clock=clock)
    cache.put("k", "v", ttl=1.0)
    clock.now += 1.0
    assert cache.get("k") is None and "k" not in cache and cache.get_stale("k") is None


def test_an_entry_without_ttl_never_expires_and_discard_and_clear_drop_entries() -> None:
    clock = Clock()
    cache: BoundedCache[str, str] = BoundedCache("t", 10, clock=clock)
    cache.put("forever", "v")
    cache.put("other", "w")
    clock.now += 1e9
    assert cache.get("forever") == "v"
    cache.discard("forever")
    assert cache.get("forever") is None
    cache.clear()
    assert len(cache) == 0


def test_hits_and_misses_are_counted_by_get_only() -> None:
    cache: BoundedCache[str, int] = BoundedCache("t", 10)
    cache.put("a", 1)
    cache.get("a")
    cache.get("a")
    cache.get("b")
    cache.get_stale("b")
    assert (cache.hits, cache.misses) == (2, 1)


def test_identity_key_tells_equal_objects_apart() -> None:
    a, b = [1], [1]
    assert a == b and identity_key(a, 2) != identity_key(b, 2)
    assert identity_key(a, "x") == identity_key(a, "x")
