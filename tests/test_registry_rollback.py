"""A registry that went back in time (authz/registry/rollback.py, RegistryCache): the sequence number is read
without a round trip of its own, a rollback is noticed, logged, counted and shown in health, and a revocation
once seen is never forgotten before it ends, whatever Redis says afterwards. Against the session's real
redis-server (a rollback is written by hand: the keys an older copy of the registry would hold)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from authz.cache import BoundedCache
from authz.config import Settings
from authz.ops.metrics import Metrics, MetricSources, MetricsUpdater
from authz.registry.admin import RegistryAdmin
from authz.registry.cache import RegistryCache
from authz.registry.durability import AT_RISK, Durability
from authz.registry.memory import MemoryStore
from authz.registry.redis_store import RedisStore
from authz.registry.rollback import RevocationMemory, SequenceWatch
from tests.support.metrics import Samples, sample

KM = "test-km"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- SequenceWatch --------------------------------------------------------------------------------------


def test_a_read_answering_less_than_was_seen_before_it_was_sent_is_a_rollback(caplog: pytest.LogCaptureFixture) -> None:
    watch = SequenceWatch()
    assert watch.observe(5, watch.mark(), "store") is False and watch.highest == 5
    before = watch.mark()
    assert watch.observe(9, watch.mark(), "event") is False
    # A read sent before 9 was seen may answer 5..8: that is no rollback (the read was simply older).
    assert watch.observe(7, before, "store") is False
    assert (watch.highest, watch.rollbacks) == (9, 0)
    with caplog.at_level(logging.ERROR, logger="authz.registry"):
        assert watch.observe(4, watch.mark(), "store") is True
    assert (watch.highest, watch.rollbacks) == (4, 1)
    assert watch.last_rollback is not None and watch.last_rollback.startswith(
        "registry sequence went back from 9 to 4 (seen by a store read at ")
    assert "registry rollback: registry sequence went back from 9 to 4" in caplog.text
    assert watch.observe(None, watch.mark(), "store") is False  # an answer without a number says nothing


def test_reads_sent_before_a_rollback_was_noticed_do_not_count_it_twice() -> None:
    watch = SequenceWatch()
    watch.observe(100, watch.mark(), "event")
    in_flight = watch.mark()
    assert watch.observe(98, watch.mark(), "event") is True
    assert watch.observe(98, in_flight, "store") is False  # the same rollback, seen by a read sent earlier
    assert watch.rollbacks == 1


# ---- RevocationMemory ----------------------------------------------------------------------------------


def test_a_remembered_revocation_outlives_the_registry_until_it_ends() -> None:
    clock = Clock()
    memory = RevocationMemory(10, clock)
    key = ("km", "jti-1")
    memory.remember(key, clock.now + 60, sequence=7)
    assert memory.revoked(key, withdrawn=False, sequence=6) is True  # an answer older than the revocation
    assert memory.contradicted == 0
    assert memory.revoked(key, withdrawn=False, sequence=7) is True  # the registry lost it: still revoked
    assert memory.contradicted == 1
    assert memory.revoked(key, withdrawn=True, sequence=6) is True  # a withdrawal older than the revocation
    assert memory.revoked(key, withdrawn=True, sequence=8) is False  # a withdrawal after it: forgotten
    assert key not in memory
    memory.remember(key, clock.now + 60, sequence=9)
    clock.now += 60
    assert memory.revoked(key, withdrawn=False, sequence=10) is False  # ended: forgotten
    memory.remember(key, clock.now - 1, sequence=11)  # already over: not kept
    assert len(memory) == 0


def test_a_withdrawal_event_older_than_what_was_read_is_ignored() -> None:
    clock = Clock()
    memory = RevocationMemory(10, clock)
    memory.remember(("km", "j"), clock.now + 60, sequence=10)  # read: revoked again at 10
    memory.forget(("km", "j"), sequence=9)  # the (delayed) event of a withdrawal at 9
    assert ("km", "j") in memory
    memory.forget(("km", "j"), sequence=11)
    assert ("km", "j") not in memory


def test_memory_is_bounded_ended_revocations_go_first_then_the_overflow_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    memory = RevocationMemory(2, clock)
    memory.remember(("km", "a"), clock.now + 10, 1)
    memory.remember(("km", "b"), clock.now + 100, 2)
    clock.now += 20  # "a" has ended
    memory.remember(("km", "c"), clock.now + 100, 3)
    assert (("km", "a") in memory, ("km", "b") in memory, ("km", "c") in memory) == (False, True, True)
    assert memory.dropped == 0
    with caplog.at_level(logging.ERROR, logger="authz.registry"):
        memory.remember(("km", "d"), clock.now + 100, 4)
    assert memory.dropped == 1 and len(memory) == 2
    assert "more than 2 revocations live at once" in caplog.text


def test_bounded_cache_prune_drops_only_ended_entries() -> None:
    clock = Clock()
    cache: BoundedCache[str, int] = BoundedCache("t", 10, stale=5, clock=clock)
    cache.put("short", 1, ttl=1)
    cache.put("long", 2, ttl=100)
    cache.put("forever", 3)
    clock.now += 3
    assert cache.prune() == 0  # past its deadline but within the stale window
    clock.now += 3
    assert cache.prune() == 1
    assert ("short" in cache, "long" in cache, "forever" in cache) == (False, True, True)


# ---- RegistryCache over the real Redis ----------------------------------------------------------------------


@pytest.fixture
async def cache(store: RedisStore, settings: Settings) -> AsyncIterator[RegistryCache]:
    cache = RegistryCache(store, settings.redis.model_copy(update={"cache_ttl": 300, "negative_cache_ttl": 300}))
    await cache.start()
    await _until(lambda: cache.durability.detail != "not checked yet", "the listener did not subscribe")
    yield cache
    await cache.close()


async def _until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.005)


def _roll_back(raw: redis.Redis, prefix: str, to: int, *lost_keys: str) -> None:
    """What Redis restarted from an older copy of its data holds: a smaller sequence, the later writes gone."""
    raw.set(prefix + "seq", to)
    for key in lost_keys:
        raw.delete(prefix + key)


async def test_a_revocation_seen_stays_enforced_after_redis_lost_it(
    admin: RegistryAdmin, cache: RegistryCache, raw: redis.Redis, key_prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    expiry = int(time.time()) + 600
    await admin.create_application("Demo App", app_id="demo")
    await admin.revoke("jti-1", expiry, add_leeway=False)
    await _until(lambda: ("test-km", "jti-1") in cache.revocations, "the revocation event did not arrive")
    assert cache.sequence.highest == 2
    assert await cache.is_revoked(KM, "jti-1") is True
    assert cache.sequence.rollbacks == 0

    _roll_back(raw, key_prefix, 1, f"revoked:{KM}:jti-1")  # Redis came back from before the revocation
    cache.clear()  # (what the resubscription after a Redis restart does)
    with caplog.at_level(logging.ERROR, logger="authz.registry"):
        assert await cache.is_revoked(KM, "jti-1") is True  # Redis says "not revoked": still denied
    assert cache.sequence.rollbacks == 1
    assert "registry rollback: registry sequence went back from 2 to 1" in caplog.text
    health = cache.health()
    assert health.level == AT_RISK and health.detail.startswith("1 registry rollback(s) noticed, the last: ")
    assert cache.cached_revoked(KM, "jti-1") is None  # the warm path never answers "not revoked" for it

    # Later writes push the sequence past where it was: Redis's "not revoked" is now a lost write.
    await admin.create_application("Other App", app_id="other")
    await admin.create_application("Third App", app_id="third")
    cache.clear()
    assert await cache.is_revoked(KM, "jti-1") is True
    assert cache.revocations.contradicted == 1
    assert "the registry no longer holds the revocation of jti 'jti-1' of key manager test-km" in caplog.text
    assert cache.sequence.rollbacks == 1  # noticed once


async def test_a_withdrawn_revocation_is_forgotten_even_when_its_event_was_missed(
    admin: RegistryAdmin, store: RedisStore, settings: Settings,
) -> None:
    cache = RegistryCache(store, settings.redis)  # no listener: every event is missed
    await admin.revoke("jti-2", int(time.time()) + 600)
    assert await cache.is_revoked(KM, "jti-2") is True
    await admin.unrevoke("jti-2")
    cache.clear()
    assert await cache.is_revoked(KM, "jti-2") is False  # the registry holds the withdrawal
    assert ("test-km", "jti-2") not in cache.revocations
    assert cache.revocations.contradicted == 0


async def test_a_withdrawal_event_forgets_at_once(admin: RegistryAdmin, cache: RegistryCache) -> None:
    await admin.revoke("jti-3", int(time.time()) + 600)
    await _until(lambda: (KM, "jti-3") in cache.revocations, "no revocation event")
    await admin.unrevoke("jti-3")
    await _until(lambda: (KM, "jti-3") not in cache.revocations, "no withdrawal event")
    assert await cache.is_revoked(KM, "jti-3") is False
    assert cache.cached_revoked(KM, "jti-3") is False


async def test_a_rollback_is_noticed_by_an_event_and_a_lookup(
    admin: RegistryAdmin, cache: RegistryCache, raw: redis.Redis, key_prefix: str,
) -> None:
    changes: list[Durability] = []
    cache.watch(lambda: changes.append(cache.health()))
    for i in range(5):
        await admin.create_application(f"App {i}", app_id=f"app-{i}")
    await _until(lambda: cache.sequence.highest == 5, "events not seen")
    _roll_back(raw, key_prefix, 2)
    await admin.create_application("After", app_id="after")  # its event carries 3, after 5
    await _until(lambda: cache.sequence.rollbacks == 1, "the event's rollback was not noticed")
    assert [c.level for c in changes] == [AT_RISK]
    assert changes[0].detail.startswith("1 registry rollback(s) noticed, the last: registry sequence went back "
                                        "from 5 to 3 (seen by a event read")
    _roll_back(raw, key_prefix, 1)
    cache.clear()
    await cache.lookup(KM, "nobody", "orders-v1")
    assert cache.sequence.rollbacks == 2


async def test_concurrent_writes_and_reads_never_look_like_a_rollback(
    admin: RegistryAdmin, cache: RegistryCache,
) -> None:
    await admin.create_application("Demo App", app_id="demo")
    await admin.add_client("demo", "demo-client")
    stop = asyncio.Event()

    async def write() -> None:
        for i in range(150):
            await admin.set_application_status("demo", "INACTIVE" if i % 2 else "ACTIVE")
        stop.set()

    async def read(n: int) -> int:
        reads = 0
        while not stop.is_set():
            cache.clear()
            await cache.lookup(KM, "demo-client", "orders-v1")
            await cache.is_revoked(KM, f"jti-{n}")
            reads += 1
        return reads

    results = await asyncio.gather(write(), *(read(n) for n in range(4)))
    await _until(lambda: cache.sequence.highest == 152, "events not seen")
    assert sum(results[1:]) > 50
    assert cache.sequence.rollbacks == 0


async def test_the_warm_path_reads_no_sequence_number(admin: RegistryAdmin, store: RedisStore, settings: Settings) -> None:
    memory = MemoryStore()
    cache = RegistryCache(memory, settings.redis.model_copy(update={"cache_ttl": 300}))
    app = await memory.create_application("Demo App", app_id="demo")
    await memory.add_client(app, KM, "c")
    await cache.lookup(KM, "c", "orders-v1")
    await cache.is_revoked(KM, "j")
    reads = memory.reads
    for _ in range(100):
        assert cache.cached_lookup(KM, "c", "orders-v1") is not None
        assert cache.cached_revoked(KM, "j") is False
        await cache.lookup(KM, "c", "orders-v1")
        await cache.is_revoked(KM, "j")
    assert memory.reads == reads
    assert cache.sequence.highest == 2  # read along with the two misses


async def test_rollbacks_kept_revocations_and_durability_reach_the_metrics(
    admin: RegistryAdmin, cache: RegistryCache, raw: redis.Redis, key_prefix: str,
) -> None:
    registry = CollectorRegistry()
    updater = MetricsUpdater(Metrics(registry), MetricSources([], {}, cache))
    await admin.revoke("jti-m", int(time.time()) + 600)  # sequence 1
    await admin.create_application("Before 1", app_id="before-1")
    await admin.create_application("Before 2", app_id="before-2")  # 3
    await _until(lambda: cache.sequence.highest == 3, "events not seen")
    updater.update()
    before = _samples(registry)
    assert sample(before, "authz_registry_rollbacks_total") == 0
    assert sample(before, "authz_registry_durable") == 0  # the session's test Redis has no AOF
    _roll_back(raw, key_prefix, 0, f"revoked:{KM}:jti-m")  # back to before the revocation
    await admin.create_application("After 1", app_id="after-1")  # its event carries 1, after 3: a rollback
    await admin.create_application("After 2", app_id="after-2")  # 2: past the revocation's 1
    await _until(lambda: cache.sequence.highest == 2, "events not seen")
    cache.clear()
    assert await cache.is_revoked(KM, "jti-m") is True
    assert await cache.is_revoked(KM, "jti-m") is True
    updater.update()
    after = _samples(registry)
    assert sample(after, "authz_registry_rollbacks_total") == 1
    assert sample(after, "authz_revocations_kept_total") == 2
    assert sample(after, "authz_revocations_forgotten_early_total") == 0
    assert sample(after, "authz_cache_entries", cache="remembered-revocations") == 1


def _samples(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
