"""ObjectMemo: values keyed on the identity of objects, never on equality, and bounded."""

from __future__ import annotations

from authz.memo import ObjectMemo


class Thing:
    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:  # equal by value on purpose: the memo must not care
        return isinstance(other, Thing) and other.n == self.n

    def __hash__(self) -> int:
        return hash(self.n)


def test_hits_only_for_the_very_same_objects_and_extra() -> None:
    memo: ObjectMemo[str] = ObjectMemo(10)
    a, b = Thing(1), Thing(2)
    memo.put((a, b), "prod", "value")
    assert memo.get((a, b), "prod") == "value"
    assert memo.get((Thing(1), b), "prod") is None  # equal, not the same object
    assert memo.get((a, b), "sandbox") is None
    assert memo.get((b, a), "prod") is None


def test_oldest_entries_go_first_and_size_zero_disables() -> None:
    memo: ObjectMemo[int] = ObjectMemo(3)
    things = [Thing(i) for i in range(5)]
    for i, t in enumerate(things):
        memo.put((t,), None, i)
    assert len(memo) == 3
    assert memo.get((things[0],)) is None and memo.get((things[4],)) == 4
    off: ObjectMemo[int] = ObjectMemo(0)
    off.put((things[0],), None, 1)
    assert off.get((things[0],)) is None and len(off) == 0
