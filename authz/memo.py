"""A bounded memo keyed on the identity of objects, for values derived from cached, immutable objects.

The caches of the hot path (verified tokens, registry lookups, routes) hand out the same object for as long
as their entry is valid and a new object once it is not. A value derived from such objects is therefore
exactly as fresh as they are when it is keyed on *which* objects it was computed from: the memo keeps the
objects themselves alongside the value, so their ids cannot be reused by other objects while the entry lives.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ObjectMemo(Generic[V]):
    """Values keyed by ``(the identities of some objects, an extra hashable)``; oldest entries go first.

    Args:
        size: most entries kept; 0 disables the memo (``get`` always misses).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: dict[tuple[tuple[int, ...], Hashable], tuple[tuple[object, ...], V]] = {}

    def get(self, objects: tuple[object, ...], extra: Hashable = None) -> V | None:
        """The value stored for these very objects (``is``, not ``==``) and ``extra``, or None."""
        hit = self._data.get((tuple(map(id, objects)), extra))
        if hit is None or any(a is not b for a, b in zip(hit[0], objects, strict=True)):
            return None
        return hit[1]

    def put(self, objects: tuple[object, ...], extra: Hashable, value: V) -> None:
        """Store ``value`` for these objects and ``extra``, dropping the oldest entry when full."""
        if self.size <= 0:
            return
        if len(self._data) >= self.size:
            self._data.pop(next(iter(self._data)))
        self._data[(tuple(map(id, objects)), extra)] = (objects, value)

    def __len__(self) -> int:
        return len(self._data)
