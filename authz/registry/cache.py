"""Registry phase: which application a client ID belongs to and its subscription to the API.

Lookups go through a local in-process cache (:class:`authz.cache.BoundedCache`: bounded, TTL, negative
entries too) in front of the registry store (:class:`authz.registry.store.RegistryStore`). Every registry
write publishes an event; a background subscriber clears the cache on each one, and also whenever it
(re)subscribes, because events may have been missed while it was away. On a Redis Cluster it subscribes on one
node and moves to the next one after each failure (:meth:`RedisStore.events`).

Revoked token IDs (``jti`` per key manager) are looked up the same way (:meth:`RegistryCache.is_revoked`),
in a second bounded cache cleared by the same events, and every revocation seen (read, or announced by an event)
is remembered until it ends whatever the registry says later (:class:`authz.registry.rollback.RevocationMemory`).

The registry's write sequence number rides along on every store read the hot path makes anyway (a cache miss)
and on every event; the subscriber also reads it, and the store's persistence settings, each time it
(re)subscribes. A smaller number than one already seen is a rollback (:class:`authz.registry.rollback.SequenceWatch`).
A warm check reads nothing. What the process knows about durability is :meth:`RegistryCache.health`.

During a store outage a cached entry keeps deciding until ``cache_ttl + max_stale`` seconds after it was
read; past that, or with nothing cached, :class:`DependencyUnavailable` (503). Never an allow on error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from authz.cache import BoundedCache
from authz.config import RedisSettings
from authz.errors import DependencyUnavailable
from authz.model import Lookup
from authz.registry.durability import AT_RISK, DURABLE, UNKNOWN, Durability
from authz.registry.rollback import RevocationMemory, SequenceWatch
from authz.registry.store import (
    CorruptRecord,
    RegistryEvent,
    RegistryStore,
    RevocationState,
    StoreUnavailable,
)

log = logging.getLogger("authz.registry")

K = TypeVar("K", tuple[str, str, str], tuple[str, str])
T = TypeVar("T")


class RegistryCache:
    """Hot-path registry lookups with a local cache invalidated through Redis pub/sub.

    Args:
        store: the registry store.
        settings: ``redis`` settings (``cache_ttl``, ``negative_cache_ttl``, ``cache_size``,
            ``revocation_cache_size``, ``max_stale``).
        clock: monotonic clock in seconds.
        wall_clock: epoch seconds (revocations end at an epoch second).

    Attributes (plain counters, read by the metrics):
        invalidations: times the cache was cleared (an event, or a new subscription).
        events: registry write events received.
        errors: store calls that failed, by kind: ``unavailable`` (unreachable, slow, command error; the event
            subscription too) and ``corrupt_record``.
        reconnects: times the event subscription was made again after it was lost.
        stale_answers: lookups answered from an entry past its TTL because the store did not answer.
        sequence: the registry sequence numbers seen; ``sequence.rollbacks`` counts the rollbacks noticed.
        revocations: the revocations this process remembers until they end (``revocations.dropped``,
            ``revocations.contradicted``: counters).
        durability: the store's persistence as last checked (``unknown`` before the first check).
    """

    def __init__(
        self,
        store: RegistryStore,
        settings: RedisSettings,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._ttl = settings.cache_ttl
        self._negative_ttl = settings.negative_cache_ttl
        self._clock = clock
        self._lookups: BoundedCache[tuple[str, str, str], Lookup] = BoundedCache(
            "registry", settings.cache_size, stale=settings.max_stale, clock=clock)
        self._revoked: BoundedCache[tuple[str, str], RevocationState] = BoundedCache(
            "revocations", settings.revocation_cache_size, stale=settings.max_stale, clock=clock)
        self._listener: asyncio.Task[None] | None = None
        self._watchers: list[Callable[[], None]] = []
        self.invalidations = 0
        self.sequence = SequenceWatch()
        self.revocations = RevocationMemory(settings.revocation_cache_size, wall_clock)
        self.durability = Durability(UNKNOWN, "not checked yet")
        self.events = 0
        self.errors = {"unavailable": 0, "corrupt_record": 0}
        self.reconnects = 0
        self.stale_answers = 0
        self._failing_since: float | None = None

    def stale_seconds(self) -> float:
        """Seconds since the store last answered, while its calls fail (0 while it answers): how long authz has
        been deciding from its local cache alone (past ``cache_ttl + max_stale`` a lookup gets 503)."""
        since = self._failing_since
        return 0.0 if since is None else self._clock() - since

    def _store_failed(self, kind: str) -> None:
        self.errors[kind] += 1
        if self._failing_since is None:
            self._failing_since = self._clock()

    def _store_answered(self) -> None:
        self._failing_since = None

    async def start(self) -> None:
        """Start the invalidation listener (a background task that reconnects on its own)."""
        self._listener = asyncio.create_task(self._listen(), name="registry-invalidation")

    async def close(self) -> None:
        """Stop the invalidation listener."""
        task, self._listener = self._listener, None
        if task is None:
            return
        # A cancellation that lands just as a read's own timeout fires can be swallowed inside redis-py /
        # asyncio.timeout, leaving the listener looping: cancel until the task is really done.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()

    def clear(self) -> None:
        """Drop every cached entry (remembered revocations stay)."""
        self._lookups.clear()
        self._revoked.clear()
        self.invalidations += 1

    # ---- health ----

    def health(self) -> Durability:
        """Whether acknowledged registry writes are safe, as far as this process can tell.

        Returns:
            ``at_risk`` once a rollback was noticed (for the life of the process) or while the store's
            persistence can lose writes; ``unknown`` while it cannot be checked; else ``durable``. The detail
            names every reason.
        """
        reasons = []
        if self.sequence.rollbacks:
            reasons.append(f"{self.sequence.rollbacks} registry rollback(s) noticed, the last: "
                           f"{self.sequence.last_rollback}")
        if self.revocations.dropped:
            reasons.append(f"{self.revocations.dropped} live revocation(s) forgotten early: "
                           "raise redis.revocation_cache_size")
        if reasons or self.durability.level == AT_RISK:
            return Durability(AT_RISK, "; ".join([*reasons, self.durability.detail]))
        return self.durability

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (no arguments, in the event loop) whenever :meth:`health` may have changed."""
        self._watchers.append(callback)

    def _changed(self) -> None:
        for callback in self._watchers:
            try:
                callback()
            except Exception:  # a watcher's bug must not stop the listener
                log.exception("registry health watcher failed")

    # ---- hot path ----

    async def lookup(self, key_manager: str, client_id: str, api_id: str) -> Lookup:
        """Client binding, application and subscription for a request.

        Args:
            key_manager: the token's key manager name.
            client_id: the token's client ID.
            api_id: the API being called.
        Returns:
            The :class:`Lookup`, from the cache when fresh, else from Redis (one round trip).
        Raises:
            DependencyUnavailable: Redis unreachable, slow or returning a corrupt record, with no usable
                cached entry.
        """
        def ttl(found: Lookup) -> float:
            return self._ttl if found.binding is not None and found.subscription is not None else self._negative_ttl

        return await self._read_through(
            self._lookups, (key_manager, client_id, api_id),
            lambda: self._store.lookup(key_manager, client_id, api_id), ttl,
        )

    def cached_lookup(self, key_manager: str, client_id: str, api_id: str) -> Lookup | None:
        """The fresh cached :class:`Lookup` for (key manager, client ID, API), or None (no store call)."""
        return self._lookups.get((key_manager, client_id, api_id))

    def cached_revoked(self, key_manager: str, token_id: str) -> bool | None:
        """The revocation answer for a ``jti`` from the cache and the remembered revocations, or None when only
        :meth:`is_revoked` can answer (no store call)."""
        key = (key_manager, token_id)
        state = self._revoked.get(key)
        if state is None:
            return None
        if state.expires_at is not None:
            return True
        return None if key in self.revocations else False

    async def _read_through(
        self, cache: BoundedCache[K, T], key: K, fetch: Callable[[], Awaitable[T]], ttl: Callable[[T], float],
    ) -> T:
        """A cached read: fresh entry, else the store, else (store down) an entry within ``max_stale``.

        The sequence number of a store answer is checked against what was seen before the read was sent.

        Raises:
            DependencyUnavailable: the store unreachable, slow or holding a corrupt record, with no usable entry.
        """
        fresh = cache.get(key)
        if fresh is not None:
            return fresh
        generation = self.invalidations
        mark = self.sequence.mark()
        try:
            value = await fetch()
        except StoreUnavailable as exc:
            self._store_failed("unavailable")
            stale = cache.get_stale(key)
            if stale is not None:
                self.stale_answers += 1
                log.warning("registry store unavailable (%s); deciding from a cached entry", exc.detail)
                return stale
            raise DependencyUnavailable("redis", exc.detail) from None
        except CorruptRecord as exc:
            self.errors["corrupt_record"] += 1
            log.error("registry record is corrupt: %s", exc)
            raise DependencyUnavailable("redis", f"corrupt record: {exc.reason}") from None
        self._store_answered()
        if self.sequence.observe(getattr(value, "sequence", None), mark, "store"):
            self._changed()
        if generation == self.invalidations:
            cache.put(key, value, ttl(value))
        # else: an invalidation arrived while the store was answering: the answer may predate that write, so it
        # is used for this request but not cached (else the stale value would outlive the invalidation).
        return value

    async def is_revoked(self, key_manager: str, token_id: str) -> bool:
        """Whether the token ID (``jti``, RFC 7519 section 4.1.7) of this key manager is revoked.

        The registry's answer is cached for ``cache_ttl`` seconds (a revocation or its withdrawal publishes an
        event that clears the cache, so the TTL only bounds staleness when an event is lost). A revocation this
        process has seen stays revoked until it ends, unless the registry holds its withdrawal
        (:class:`authz.registry.rollback.RevocationMemory`).

        Args:
            key_manager: the token's key manager name.
            token_id: the token's ``jti``.
        Returns:
            True when revoked.
        Raises:
            DependencyUnavailable: Redis unreachable, slow or holding a corrupt record, with no usable
                cached answer.
        """
        key = (key_manager, token_id)
        state = await self._read_through(
            self._revoked, key, lambda: self._store.revocation(key_manager, token_id), lambda _: self._ttl)
        if state.expires_at is not None:
            self.revocations.remember(key, state.expires_at, state.sequence)
            return True
        return self.revocations.revoked(key, state.withdrawn, state.sequence)

    # ---- the invalidation listener ----

    def _on_event(self, event: RegistryEvent, previous: int | None) -> None:
        """Clear the caches for one write event; remember or forget the revocation it announces."""
        self.clear()
        revoked = event.revocation()
        if revoked is not None:
            self.revocations.remember((revoked[0], revoked[1]), revoked[2], event.sequence)
        withdrawn = event.withdrawal()
        if withdrawn is not None:
            self.revocations.forget(withdrawn, event.sequence)
        if self.sequence.observe(event.sequence, (previous, self.sequence.rollbacks), "event"):
            self._changed()

    async def _subscribed(self) -> None:
        """Just (re)subscribed: clear the caches, read the sequence number, check the store's persistence."""
        self.clear()
        mark = self.sequence.mark()
        changed = self.sequence.observe(await self._store.sequence(), mark, "resubscribe")
        durability = await self._store.durability()
        if durability != self.durability:
            level = logging.INFO if durability.level == DURABLE else logging.WARNING
            if durability.level == AT_RISK:
                level = logging.ERROR
            log.log(level, "registry durability: %s: %s", durability.level, durability.detail)
            self.durability = durability
            changed = True
        if changed:
            self._changed()

    async def _listen(self) -> None:
        delay = 0.1
        failures = 0  # a Redis Cluster subscriber moves to the next node after each failure
        while True:
            events = None
            try:
                events = await self._store.events(failures)
                # Subscribed: anything cached before may have missed events.
                await self._subscribed()
                self._store_answered()
                if failures:
                    self.reconnects += 1
                delay = 0.1
                previous: int | None = None  # events of one subscription arrive in write order
                while True:
                    event = await events.wait(1.0)
                    if event is not None:
                        self.events += 1
                        self._on_event(event, previous)
                        previous = event.sequence if event.sequence is not None else previous
            except StoreUnavailable as exc:
                self._store_failed("unavailable")
                failures += 1
                log.warning("registry invalidation channel lost (%s); reconnecting", exc.detail)
            except CorruptRecord as exc:
                self._store_failed("corrupt_record")
                failures += 1
                log.error("registry sequence number is corrupt (%s); resubscribing", exc)
            finally:
                if events is not None:
                    await events.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
