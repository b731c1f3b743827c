"""A registry that went back in time: noticing it, and never forgetting a revocation because of it.

Every registry write increments the registry's sequence number ``P seq`` in the same atomic step
(:mod:`authz.registry.redis_scripts`). Redis restarted from an older copy of its data (a crash with writes not
yet on disk, a failover to a replica that missed the last writes, a restored backup, a flushed database) answers
with a smaller number than one this process has already seen. :class:`SequenceWatch` notices that;
:class:`RevocationMemory` keeps every revocation this process has seen until it ends, whatever the registry
says afterwards. docs/operations.md ("Durability") explains when the sequence is read and the window left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from authz.cache import BoundedCache

log = logging.getLogger("authz.registry")


class SequenceWatch:
    """The highest registry sequence number this process has seen, and the rollbacks it noticed.

    A read may only be compared with what was seen *before it was sent* (Redis answered it later, so a correct
    registry answers at least that much): callers take a :meth:`mark` before the read and hand it to
    :meth:`observe` with the answer. Events are compared with the previous event of the same subscription
    (a subscription delivers them in write order), never with reads, which may overtake them.

    Attributes:
        highest: the highest sequence number seen (since the last rollback), or None before the first.
        rollbacks: rollbacks noticed since the process started (the metrics counter).
        last_rollback: what the last rollback looked like, for logs and health, or None.
    """

    def __init__(self) -> None:
        self.highest: int | None = None
        self.rollbacks = 0
        self.last_rollback: str | None = None

    def mark(self) -> tuple[int | None, int]:
        """What a read sent now must not answer less than: ``(highest, rollbacks)``."""
        return self.highest, self.rollbacks

    def observe(self, sequence: int | None, mark: tuple[int | None, int], source: str) -> bool:
        """Take a sequence number read from the registry.

        Args:
            sequence: the number read, or None when the answer carried none.
            mark: :meth:`mark` taken before the read was sent (for an event: the previous event's number of the
                same subscription, and the rollback count then).
            source: where it was read (``lookup``, ``event``, ``subscribe``...), for the log.
        Returns:
            True when it shows a rollback (logged at ERROR and counted; ``highest`` restarts from it).
        """
        if sequence is None:
            return False
        floor, epoch = mark
        if floor is not None and sequence < floor and epoch == self.rollbacks:
            self.rollbacks += 1
            self.last_rollback = (f"registry sequence went back from {floor} to {sequence} (seen by a {source} read "
                                  f"at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})")
            self.highest = sequence
            log.error("registry rollback: %s. Redis is serving an older copy of the registry: writes acknowledged "
                      "after it are lost. Revocations this process has seen stay enforced until they end; "
                      "check Redis's persistence (docs/operations.md, Durability).", self.last_rollback)
            return True
        if self.highest is None or sequence > self.highest:
            self.highest = sequence
        return False


class RevocationMemory:
    """Every revocation this process has seen (read as revoked, or announced by a revocation event), kept until
    the revocation ends, whatever the registry says later.

    Only a withdrawal that the registry holds (``authz registry unrevoke`` stores one next to the revocation's end)
    and that is at least as recent as the revocation makes the process forget one before its end. Memory is
    bounded: at most ``capacity`` revocations (``redis.revocation_cache_size``); when more are live at once the
    least recently used one is forgotten early, logged at ERROR and counted in :attr:`dropped`.

    Args:
        capacity: most revocations remembered.
        clock: wall clock in epoch seconds (revocations end at an epoch second).

    Attributes:
        dropped: live revocations forgotten before their end because the memory was full.
        contradicted: checks denied from memory although the registry, at a later sequence number, neither held
            the revocation nor its withdrawal (a lost write).
    """

    def __init__(self, capacity: int, clock: Callable[[], float] = time.time) -> None:
        # (key manager, jti) -> (end epoch seconds, sequence number at which it was learned)
        self._entries: BoundedCache[tuple[str, str], tuple[float, int | None]] = BoundedCache(
            "remembered-revocations", capacity, clock=clock)
        self._clock = clock
        self.dropped = 0
        self.contradicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether an entry (possibly just ended) exists for ``(key_manager, jti)``: one dict lookup."""
        return key in self._entries

    def remember(self, key: tuple[str, str], until: float, sequence: int | None) -> None:
        """Keep ``key`` revoked until ``until`` (epoch seconds); learned at registry ``sequence``."""
        ttl = until - self._clock()
        if ttl <= 0:
            return
        entries = self._entries
        known = entries.get(key)
        if known is not None:
            until = max(until, known[0])
            sequence = known[1] if sequence is None else max(sequence, known[1] or 0)
        elif len(entries) >= entries.capacity and entries.prune() == 0:
            self.dropped += 1
            log.error("more than %d revocations live at once: the least recently used one is forgotten before its "
                      "end; raise redis.revocation_cache_size", entries.capacity)
        entries.put(key, (until, sequence), until - self._clock())

    def revoked(self, key: tuple[str, str], withdrawn: bool, sequence: int | None) -> bool:
        """Whether a ``jti`` the registry calls not revoked must still be denied.

        Args:
            key: ``(key_manager, jti)``.
            withdrawn: the registry holds a withdrawal of its revocation.
            sequence: the registry's sequence number with that answer (None: unknown).
        Returns:
            False when it is not remembered, or its withdrawal is at least as recent as the revocation (then it is
            forgotten); else True (the answer predates the revocation, or the registry lost it).
        """
        entry = self._entries.get(key)
        if entry is None:
            return False
        learned = entry[1]
        current = sequence is not None and (learned is None or sequence >= learned)
        if withdrawn and current:
            self._entries.discard(key)
            return False
        if current:
            self.contradicted += 1
            if self.contradicted == 1 or self.contradicted % 1000 == 0:
                log.error("the registry no longer holds the revocation of jti %r of key manager %s that this process "
                          "has seen, nor its withdrawal: a lost write; denying it until it ends (%d such checks so "
                          "far)", key[1][:128], key[0], self.contradicted)
        return True

    def forget(self, key: tuple[str, str], sequence: int | None) -> None:
        """Drop ``key``: its withdrawal was announced by the registry's event stream at ``sequence`` (kept when
        the revocation was learned at a later sequence number: the event is older than what was read)."""
        entry = self._entries.get(key)
        if entry is not None and (sequence is None or entry[1] is None or sequence >= entry[1]):
            self._entries.discard(key)
