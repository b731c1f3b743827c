"""The one bounded cache type of authz: every in-process cache is a :class:`BoundedCache`.

A cache holds at most ``capacity`` entries and drops the least recently used one first. An entry may carry a
freshness deadline (``ttl``): past it :meth:`BoundedCache.get` misses, and for as long as the cache's ``stale``
window allows, :meth:`BoundedCache.get_stale` still returns it (the registry decides from such entries during a
Redis outage). Hits and misses are counted in plain integers; every cache registers itself (weakly) so that the
metrics (:mod:`authz.ops.metrics`) read every cache's counters and size at scrape time, and the hot path pays for
nothing but the two increments.

Caches keyed on *which* objects a value was derived from (the decision memo, the rendered answers) use
:func:`identity_key`: the hot path's caches hand out the same object for as long as their entry is valid and a
new object once it is not, so a value keyed on those objects is exactly as fresh as they are. Such a cache keeps
the objects in its value and the caller compares them with ``is`` (ids can be reused once an object is gone).
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def identity_key(*objects: object) -> tuple[int, ...]:
    """The key of a value derived from these very objects: their ``id()`` in order.

    Args:
        objects: the objects the value was computed from.
    Returns:
        A tuple of ints, hashable in constant time whatever the objects are.
    """
    return tuple(map(id, objects))


class BoundedCache(Generic[K, V]):
    """A bounded LRU map whose entries may expire, with an optional stale window.

    Args:
        name: what the cache holds, for metrics and logs (``tokens``, ``registry``, ``routes``...).
        capacity: most entries kept; 0 disables the cache (``put`` stores nothing, ``get`` always misses).
        stale: seconds past an entry's deadline during which :meth:`get_stale` still returns it; the entry is
            dropped after that.
        clock: the clock deadlines are measured on, in seconds (``time.monotonic`` by default; the token cache
            uses wall-clock time, as ``exp`` is).

    Attributes:
        hits: :meth:`get` calls answered from the cache.
        misses: :meth:`get` calls that were not.
    """

    __slots__ = ("name", "capacity", "stale", "_clock", "_data", "hits", "misses", "__weakref__")

    _live: weakref.WeakSet[BoundedCache[Any, Any]] = weakref.WeakSet()

    def __init__(
        self, name: str, capacity: int, *, stale: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.name = name
        self.capacity = capacity
        self.stale = stale
        self._clock = clock
        # key -> (value, deadline): deadline in clock seconds, None for an entry that never expires.
        self._data: OrderedDict[K, tuple[V, float | None]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        BoundedCache._live.add(self)

    @staticmethod
    def live() -> list[BoundedCache[Any, Any]]:
        """Every cache of this process that is still referenced (for metrics; order unspecified)."""
        return list(BoundedCache._live)

    def get(self, key: K) -> V | None:
        """The value of a fresh entry (marked recently used), or None.

        An entry past its deadline is kept for :meth:`get_stale` while within the stale window, else dropped.
        """
        entry = self._data.get(key)
        if entry is not None:
            deadline = entry[1]
            if deadline is None or self._clock() < deadline:
                self._data.move_to_end(key)
                self.hits += 1
                return entry[0]
            if self._clock() >= deadline + self.stale:
                del self._data[key]
        self.misses += 1
        return None

    def get_stale(self, key: K) -> V | None:
        """The value of an entry that is fresh or past its deadline by less than ``stale`` seconds, or None.

        Not counted as a hit or a miss: it is the fallback when the source of truth cannot answer.
        """
        entry = self._data.get(key)
        if entry is None:
            return None
        deadline = entry[1]
        if deadline is None or self._clock() < deadline + self.stale:
            return entry[0]
        return None

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (None: until evicted or discarded).

        When the cache is full, the least recently used entry is dropped.
        """
        if self.capacity <= 0:
            return
        data = self._data
        data[key] = (value, None if ttl is None else self._clock() + ttl)
        data.move_to_end(key)
        if len(data) > self.capacity:
            data.popitem(last=False)

    def prune(self) -> int:
        """Drop every entry past its deadline and stale window (a full scan: for a full cache only).

        Returns:
            How many entries were dropped.
        """
        now = self._clock()
        stale = self.stale
        ended = [key for key, (_, deadline) in self._data.items() if deadline is not None and now >= deadline + stale]
        for key in ended:
            del self._data[key]
        return len(ended)

    def discard(self, key: K) -> None:
        """Drop the entry of ``key``, if any."""
        self._data.pop(key, None)

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data
