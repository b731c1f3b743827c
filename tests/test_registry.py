"""Registry against a real redis-server: RedisStore, RegistryAdmin and the RegistryCache (C26)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis

from authz.config import Settings
from authz.dev.procs import RedisServer
from authz.errors import DependencyUnavailable
from authz.model import ApplicationStatus, ClientBinding, KeyType, Lookup, SubscriptionStatus
from authz.registry.admin import RegistryAdmin
from authz.registry.cache import RegistryCache
from authz.registry.redis_conn import connect
from authz.registry.redis_store import RedisStore
from authz.registry.store import CorruptRecord, RegistryError

KM = "test-km"


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which it may stop and restart."""
    server = RedisServer().start()
    yield server
    server.cleanup()


def evals(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


async def demo(admin: RegistryAdmin, *, subscribe: bool = True) -> str:
    app = await admin.create_application("Demo App", owner="dev", tier="Gold", app_id="app-demo")
    await admin.add_client("Demo App", "demo-client")
    if subscribe:
        await admin.subscribe("Demo App", "orders-v1", tier="Bronze")
    return app.id


# ---- RedisStore + RegistryAdmin ---------------------------------------------------------------------


async def test_create_application_writes_its_records(admin: RegistryAdmin, raw: redis.Redis, key_prefix: str) -> None:
    app = await admin.create_application("Demo App", owner="dev", tier="Gold")
    assert (app.name, app.owner, app.tier, app.status) == ("Demo App", "dev", "Gold", ApplicationStatus.ACTIVE)
    record = raw.hgetall(f"{key_prefix}app:{app.id}")
    assert {k: record[k] for k in ("name", "owner", "tier", "status")} == {
        "name": "Demo App", "owner": "dev", "tier": "Gold", "status": "ACTIVE",
    }
    assert raw.get(f"{key_prefix}app-name:Demo App") == app.id
    assert raw.smembers(f"{key_prefix}apps") == {app.id}
    assert raw.get(f"{key_prefix}schema") == "1"
    assert (await admin.application("Demo App")).id == app.id
    assert (await admin.application(app.id)).name == "Demo App"


async def test_application_name_is_unique(admin: RegistryAdmin) -> None:
    first = await admin.create_application("Demo App")
    with pytest.raises(RegistryError) as info:
        await admin.create_application("Demo App")
    assert info.value.kind == "already_exists"
    assert str(info.value) == f"application name 'Demo App' is already used by {first.id}"
    with pytest.raises(RegistryError) as info:
        await admin.create_application("Other", app_id=first.id)
    assert str(info.value) == f"application ID {first.id} already exists"


async def test_add_client_maps_the_client_id_to_the_application(
    admin: RegistryAdmin, raw: redis.Redis, key_prefix: str
) -> None:
    app_id = await demo(admin, subscribe=False)
    assert raw.hgetall(f"{key_prefix}client:{KM}:demo-client") == {"app_id": app_id, "key_type": "PRODUCTION"}
    assert raw.smembers(f"{key_prefix}app:{app_id}:clients") == {f"{KM}:demo-client"}
    app, km, added = await admin.add_client("Demo App", "demo-client")  # again: idempotent
    assert (app.id, km, added) == (app_id, KM, False)
    _, _, added = await admin.add_client(app_id, "sandbox-client", key_type="sandbox")
    assert added is True
    assert await admin.store.clients_of(app_id) == [
        (KM, "demo-client", KeyType.PRODUCTION), (KM, "sandbox-client", KeyType.SANDBOX),
    ]


async def test_client_id_used_by_another_application_is_refused(admin: RegistryAdmin) -> None:
    await demo(admin, subscribe=False)
    await admin.create_application("Other App")
    with pytest.raises(RegistryError) as info:
        await admin.add_client("Other App", "demo-client")
    assert info.value.kind == "already_exists"
    assert str(info.value) == "client ID demo-client of key manager test-km is already used by application Demo App"


async def test_client_id_belongs_to_one_application_under_concurrent_writers(
    settings: Settings, admin: RegistryAdmin, raw: redis.Redis, key_prefix: str
) -> None:
    apps = [await admin.create_application(f"Racer {i:02d}") for i in range(20)]
    clients = [connect(settings.redis.url, 5.0) for _ in apps]  # one connection pool per writer
    try:
        admins = [RegistryAdmin(RedisStore(c, key_prefix), settings) for c in clients]
        results = await asyncio.gather(
            *(a.add_client(app.id, "demo-client") for a, app in zip(admins, apps, strict=True)),
            return_exceptions=True,
        )
    finally:
        for c in clients:
            await c.aclose()
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    winner, _, added = winners[0]
    assert added is True
    assert len(losers) == 19
    assert all(isinstance(e, RegistryError) and e.kind == "already_exists" for e in losers)
    assert {str(e) for e in losers} == {f"client ID demo-client of key manager test-km is already used by application {winner.name}"}
    assert raw.hget(f"{key_prefix}client:{KM}:demo-client", "app_id") == winner.id
    holders = [a.id for a in apps if raw.sismember(f"{key_prefix}app:{a.id}:clients", f"{KM}:demo-client")]
    assert holders == [winner.id]


async def test_unknown_api_id_is_refused(admin: RegistryAdmin) -> None:
    await demo(admin, subscribe=False)
    for call in (admin.subscribe("Demo App", "nope-v9"), admin.unsubscribe("Demo App", "nope-v9"),
                 admin.set_subscription_status("Demo App", "nope-v9", "BLOCKED")):
        with pytest.raises(RegistryError) as info:
            await call
        assert info.value.kind == "invalid"
        assert "unknown API id 'nope-v9'" in str(info.value)
        assert "orders-v1, payments-v1" in str(info.value)


async def test_unknown_key_manager_and_application_are_refused(admin: RegistryAdmin) -> None:
    await demo(admin, subscribe=False)
    with pytest.raises(RegistryError, match="unknown key manager 'other'; configured: test-km"):
        await admin.add_client("Demo App", "c2", key_manager="other")
    with pytest.raises(RegistryError, match="no application with ID or name 'Ghost'"):
        await admin.add_client("Ghost", "c3")


async def test_subscribe_unsubscribe_and_set_status(admin: RegistryAdmin, raw: redis.Redis, key_prefix: str) -> None:
    app_id = await demo(admin)
    doc = json.loads(raw.hget(f"{key_prefix}app:{app_id}:subs", "orders-v1"))
    assert (doc["status"], doc["tier"]) == ("ACTIVE", "Bronze")
    with pytest.raises(RegistryError, match="application Demo App is already subscribed to orders-v1"):
        await admin.subscribe("Demo App", "orders-v1")

    await admin.set_subscription_status("Demo App", "orders-v1", "prod_only_blocked")
    [sub] = await admin.store.subscriptions_of(app_id)
    assert (sub.api_id, sub.status, sub.tier) == ("orders-v1", SubscriptionStatus.PROD_ONLY_BLOCKED, "Bronze")
    with pytest.raises(RegistryError, match="unknown subscription status 'PAUSED'"):
        await admin.set_subscription_status("Demo App", "orders-v1", "PAUSED")

    await admin.unsubscribe("Demo App", "orders-v1")
    assert raw.hgetall(f"{key_prefix}app:{app_id}:subs") == {}
    with pytest.raises(RegistryError, match="application Demo App is not subscribed to orders-v1"):
        await admin.unsubscribe("Demo App", "orders-v1")
    with pytest.raises(RegistryError, match="application Demo App is not subscribed to payments-v1"):
        await admin.set_subscription_status("Demo App", "payments-v1", "ACTIVE")


async def test_set_application_status(admin: RegistryAdmin) -> None:
    app_id = await demo(admin)
    await admin.set_application_status("Demo App", "inactive")
    found = await admin.store.lookup(KM, "demo-client", "orders-v1")
    assert found.application is not None and found.application.status is ApplicationStatus.INACTIVE
    with pytest.raises(RegistryError, match="unknown application status 'GONE'"):
        await admin.set_application_status(app_id, "GONE")


async def test_delete_application_cascades_to_client_ids_and_subscriptions(
    admin: RegistryAdmin, raw: redis.Redis, key_prefix: str
) -> None:
    app_id = await demo(admin)
    deleted = await admin.delete_application("Demo App")
    assert deleted.id == app_id
    assert sorted(raw.keys(f"{key_prefix}*")) == [f"{key_prefix}schema", f"{key_prefix}seq"]
    assert await admin.store.lookup(KM, "demo-client", "orders-v1") == Lookup(None, None, None)
    other = await admin.create_application("Demo App")  # name and client ID are free again
    _, _, added = await admin.add_client(other.id, "demo-client")
    assert added is True


async def test_lookup_returns_binding_application_and_subscription_in_one_call(
    admin: RegistryAdmin, raw: redis.Redis
) -> None:
    app_id = await demo(admin)
    await admin.add_client("Demo App", "sbx", key_type="SANDBOX")
    before = evals(raw)
    found = await admin.store.lookup(KM, "sbx", "orders-v1")
    assert evals(raw) - before == 1
    assert found.binding == ClientBinding(app_id, KeyType.SANDBOX)
    assert found.application is not None
    assert (found.application.id, found.application.name, found.application.owner, found.application.tier) == (
        app_id, "Demo App", "dev", "Gold",
    )
    assert found.subscription is not None
    assert (found.subscription.api_id, found.subscription.status, found.subscription.tier) == (
        "orders-v1", SubscriptionStatus.ACTIVE, "Bronze",
    )
    not_subscribed = await admin.store.lookup(KM, "demo-client", "payments-v1")
    assert not_subscribed.binding == ClientBinding(app_id, KeyType.PRODUCTION)
    assert not_subscribed.subscription is None
    assert await admin.store.lookup(KM, "unknown", "orders-v1") == Lookup(None, None, None)
    assert await admin.store.lookup("other-km", "demo-client", "orders-v1") == Lookup(None, None, None)


@pytest.mark.parametrize(
    ("damage", "key_suffix", "reason"),
    [
        (lambda r, p, a: r.hdel(f"{p}app:{a}", "name"), "app:app-demo", "field 'name' is missing"),
        (lambda r, p, a: r.hdel(f"{p}app:{a}", "status"), "app:app-demo", "field 'status' is missing"),
        (lambda r, p, a: r.delete(f"{p}app:{a}"), f"client:{KM}:demo-client",
         "field 'app_id' points at a missing application"),
        (lambda r, p, a: r.hset(f"{p}app:{a}", "status", ""), "app:app-demo", "field 'status' is missing"),
        (lambda r, p, a: r.hset(f"{p}app:{a}:subs", "orders-v1", '{"status":"ACTIVE","x":' + "[" * 100000 + "]" * 100000 + "}"),
         "app:app-demo:subs", "subscription to 'orders-v1' is not valid JSON"),
        (lambda r, p, a: r.hset(f"{p}app:{a}", "status", "WEIRD"), "app:app-demo",
         "field 'status' has the unknown value 'WEIRD'"),
        (lambda r, p, a: r.hset(f"{p}app:{a}", "created_at", "yesterday"), "app:app-demo",
         "field 'created_at' is not a number"),
        (lambda r, p, a: r.hset(f"{p}app:{a}:subs", "orders-v1", "{not json"), "app:app-demo:subs",
         "subscription to 'orders-v1' is not valid JSON"),
        (lambda r, p, a: r.hset(f"{p}app:{a}:subs", "orders-v1", '["ACTIVE"]'), "app:app-demo:subs",
         "subscription to 'orders-v1' has no 'status'"),
        (lambda r, p, a: r.hset(f"{p}app:{a}:subs", "orders-v1", '{"status": "PAUSED"}'), "app:app-demo:subs",
         "field 'orders-v1.status' has the unknown value 'PAUSED'"),
        (lambda r, p, a: r.hset(f"{p}client:{KM}:demo-client", "key_type", "TEST"), f"client:{KM}:demo-client",
         "field 'key_type' has the unknown value 'TEST'"),
        (lambda r, p, a: r.hdel(f"{p}client:{KM}:demo-client", "app_id"), f"client:{KM}:demo-client",
         "field 'app_id' is missing"),
    ],
)
async def test_corrupt_records_raise_corrupt_record_naming_the_field(
    admin: RegistryAdmin, raw: redis.Redis, key_prefix: str,
    damage: Callable[[redis.Redis, str, str], object], key_suffix: str, reason: str,
) -> None:
    app_id = await demo(admin)
    damage(raw, key_prefix, app_id)
    with pytest.raises(CorruptRecord) as info:
        await admin.store.lookup(KM, "demo-client", "orders-v1")
    assert info.value.key == key_prefix + key_suffix
    assert info.value.reason == reason


async def test_corrupt_subscription_json_is_reported_by_set_status(
    admin: RegistryAdmin, raw: redis.Redis, key_prefix: str
) -> None:
    app_id = await demo(admin)
    raw.hset(f"{key_prefix}app:{app_id}:subs", "orders-v1", "{not json")
    with pytest.raises(CorruptRecord) as info:
        await admin.set_subscription_status("Demo App", "orders-v1", "BLOCKED")
    assert info.value.key == f"{key_prefix}app:{app_id}:subs"
    assert info.value.reason.startswith("cannot update orders-v1: ")


# ---- RegistryCache ------------------------------------------------------------------------------------


@pytest.fixture
async def cache_for() -> AsyncIterator[Callable[..., RegistryCache]]:
    made: list[RegistryCache] = []

    def make(store: RedisStore, settings: Settings, clock: Callable[[], float] = time.monotonic,
             **redis_overrides: object) -> RegistryCache:
        cache = RegistryCache(store, settings.redis.model_copy(update=redis_overrides), clock)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


async def wait_listening(cache: RegistryCache, timeout: float = 5.0) -> None:
    """Wait until the invalidation listener has subscribed (it clears the cache once on subscribing)."""
    deadline = time.monotonic() + timeout
    while cache.invalidations == 0:
        assert time.monotonic() < deadline, "invalidation listener did not subscribe"
        await asyncio.sleep(0.01)


async def test_cache_hit_makes_no_redis_call(
    admin: RegistryAdmin, store: RedisStore, settings: Settings, raw: redis.Redis,
    cache_for: Callable[..., RegistryCache],
) -> None:
    await demo(admin)
    cache = cache_for(store, settings, cache_ttl=300)
    first = await cache.lookup(KM, "demo-client", "orders-v1")
    before = evals(raw)
    for _ in range(50):
        assert await cache.lookup(KM, "demo-client", "orders-v1") == first
    assert evals(raw) == before
    missing = await cache.lookup(KM, "nobody", "orders-v1")  # negative entries are cached too
    assert missing == Lookup(None, None, None)
    before = evals(raw)
    assert await cache.lookup(KM, "nobody", "orders-v1") == missing
    assert evals(raw) == before


async def test_pubsub_invalidation_reaches_the_cache_quickly_after_a_write(
    admin: RegistryAdmin, store: RedisStore, settings: Settings, cache_for: Callable[..., RegistryCache],
) -> None:
    await demo(admin)
    cache = cache_for(store, settings, cache_ttl=300, negative_cache_ttl=300)
    await cache.start()
    await wait_listening(cache)
    found = await cache.lookup(KM, "demo-client", "orders-v1")
    assert found.subscription is not None and found.subscription.status is SubscriptionStatus.ACTIVE

    async def poll(check: Callable[[Lookup], bool]) -> float:
        start = time.monotonic()
        while time.monotonic() - start < 1.0:
            if check(await cache.lookup(KM, "demo-client", "orders-v1")):
                return time.monotonic() - start
            await asyncio.sleep(0.01)
        raise AssertionError("the cache still holds the old entry after 1 s")

    await admin.set_subscription_status("Demo App", "orders-v1", "BLOCKED")
    await poll(lambda f: f.subscription is not None and f.subscription.status is SubscriptionStatus.BLOCKED)
    await admin.unsubscribe("Demo App", "orders-v1")
    await poll(lambda f: f.subscription is None)
    await admin.delete_application("Demo App")
    await poll(lambda f: f.binding is None)


async def test_lookup_racing_an_invalidation_is_not_cached(
    admin: RegistryAdmin, store: RedisStore, settings: Settings, raw: redis.Redis,
    cache_for: Callable[..., RegistryCache],
) -> None:
    await demo(admin)
    cache = cache_for(store, settings, cache_ttl=300)
    raw.execute_command("CLIENT", "PAUSE", 300, "ALL")  # hold the lookup's script call in Redis
    pending = asyncio.create_task(cache.lookup(KM, "demo-client", "orders-v1"))
    await asyncio.sleep(0.1)
    cache.clear()  # an invalidation arrives while Redis is answering: the answer may predate that write
    assert (await pending).subscription is not None
    before = evals(raw)
    await cache.lookup(KM, "demo-client", "orders-v1")
    assert evals(raw) - before == 1  # read again from Redis: the racing answer was not cached


async def test_redis_outage_fresh_cache_decides_uncached_is_unavailable_then_recovers(
    private_redis: RedisServer, make_redis_settings: Callable[..., Settings], key_prefix: str,
    cache_for: Callable[..., RegistryCache],
) -> None:
    settings = make_redis_settings(redis={"url": private_redis.url, "key_prefix": key_prefix, "socket_timeout": 0.25})
    client = connect(private_redis.url, 0.25)
    try:
        store = RedisStore(client, key_prefix)
        admin = RegistryAdmin(store, settings)
        await demo(admin)
        cache = cache_for(store, settings, cache_ttl=60)
        await cache.start()
        await wait_listening(cache)
        cached = await cache.lookup(KM, "demo-client", "orders-v1")
        assert cached.subscription is not None

        private_redis.kill()  # C26 (d): Redis gone, entry fresh
        start = time.monotonic()
        assert await cache.lookup(KM, "demo-client", "orders-v1") == cached
        with pytest.raises(DependencyUnavailable) as info:  # C26 (a): nothing cached -> 503, not 403
            await cache.lookup(KM, "demo-client", "payments-v1")
        assert info.value.dependency == "redis"
        assert time.monotonic() - start < 3.0

        private_redis.restart()  # data is not kept: write it again, as a restored replica would have it
        await demo(admin)
        found = await cache.lookup(KM, "demo-client", "payments-v1")
        assert found.binding is not None and found.subscription is None
        # the listener is back too: a write reaches the cache again
        await admin.set_subscription_status("Demo App", "orders-v1", "REJECTED")
        deadline = time.monotonic() + 10
        while True:
            f = await cache.lookup(KM, "demo-client", "orders-v1")
            if f.subscription is not None and f.subscription.status is SubscriptionStatus.REJECTED:
                break
            assert time.monotonic() < deadline, "invalidations did not resume after Redis came back"
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def test_stale_entry_decides_during_outage_only_until_max_stale(
    private_redis: RedisServer, make_redis_settings: Callable[..., Settings], key_prefix: str,
    cache_for: Callable[..., RegistryCache],
) -> None:
    settings = make_redis_settings(redis={"url": private_redis.url, "key_prefix": key_prefix, "socket_timeout": 0.25})
    client = connect(private_redis.url, 0.25)
    now = [1000.0]
    try:
        store = RedisStore(client, key_prefix)
        await demo(RegistryAdmin(store, settings))
        cache = cache_for(store, settings, clock=lambda: now[0], cache_ttl=10, max_stale=20)
        cached = await cache.lookup(KM, "demo-client", "orders-v1")
        private_redis.stop()
        now[0] += 25  # past the TTL, within TTL + max_stale
        assert await cache.lookup(KM, "demo-client", "orders-v1") == cached
        now[0] += 6  # past TTL + max_stale
        with pytest.raises(DependencyUnavailable):
            await cache.lookup(KM, "demo-client", "orders-v1")
    finally:
        await client.aclose()


async def test_corrupt_record_is_unavailable_never_not_subscribed(
    admin: RegistryAdmin, store: RedisStore, settings: Settings, raw: redis.Redis, key_prefix: str,
    cache_for: Callable[..., RegistryCache],
) -> None:
    app_id = await demo(admin)
    raw.hset(f"{key_prefix}app:{app_id}:subs", "orders-v1", "{not json")
    cache = cache_for(store, settings)
    with pytest.raises(DependencyUnavailable) as info:
        await cache.lookup(KM, "demo-client", "orders-v1")
    assert info.value.dependency == "redis"
    assert info.value.detail == "corrupt record: subscription to 'orders-v1' is not valid JSON"
    # a record of the wrong Redis type is an outage as well
    raw.delete(f"{key_prefix}client:{KM}:demo-client")
    raw.set(f"{key_prefix}client:{KM}:demo-client", app_id)
    with pytest.raises(DependencyUnavailable):
        await cache.lookup(KM, "demo-client", "payments-v1")


async def test_cache_is_bounded_and_evicts_least_recently_used(
    admin: RegistryAdmin, store: RedisStore, settings: Settings, raw: redis.Redis,
    cache_for: Callable[..., RegistryCache],
) -> None:
    await demo(admin)
    cache = cache_for(store, settings, cache_ttl=300, negative_cache_ttl=300, cache_size=2)
    await cache.lookup(KM, "a", "orders-v1")
    await cache.lookup(KM, "b", "orders-v1")
    await cache.lookup(KM, "a", "orders-v1")  # a is now the most recently used
    await cache.lookup(KM, "c", "orders-v1")  # evicts b
    before = evals(raw)
    await cache.lookup(KM, "a", "orders-v1")
    await cache.lookup(KM, "c", "orders-v1")
    assert evals(raw) == before
    await cache.lookup(KM, "b", "orders-v1")
    assert evals(raw) - before == 1


@pytest.mark.parametrize(
    ("name", "app_id", "message"),
    [
        ("Evil\nApp", None, "application name must not contain control characters"),
        ("Red\x1b[31m", None, "application name must not contain control characters"),
        ("Fine", "evil\nid", "application ID must not contain control characters"),
        ("Fine", "has space", "application ID must not contain spaces"),
        ("x" * 257, None, "application name is longer than 256 characters"),
        ("   ", None, "application name must not be empty"),
    ],
)
async def test_application_names_and_ids_must_be_printable(
    admin: RegistryAdmin, name: str, app_id: str | None, message: str
) -> None:
    with pytest.raises(RegistryError) as info:
        await admin.create_application(name, app_id=app_id)
    assert str(info.value) == message


async def test_names_and_ids_never_collide_so_lookups_are_unambiguous(admin: RegistryAdmin) -> None:
    await admin.create_application("Demo App", app_id="demo-app")
    with pytest.raises(RegistryError) as info:
        await admin.create_application("demo-app", app_id="confuse")
    assert str(info.value) == "'demo-app' is already the ID of another application"
    await admin.create_application("billing", app_id="app-1")
    with pytest.raises(RegistryError) as info:
        await admin.create_application("Another", app_id="billing")
    assert str(info.value) == "'billing' is already the name of another application"
    assert (await admin.application("demo-app")).name == "Demo App"
    assert (await admin.application("billing")).id == "app-1"


async def test_client_ids_with_control_characters_are_refused(admin: RegistryAdmin) -> None:
    await admin.create_application("Demo App", app_id="demo-app")
    for bad in ("demo\x7fclient", "a\nb", "x" * 513):
        with pytest.raises(RegistryError) as info:
            await admin.add_client("demo-app", bad)
        assert info.value.kind == "invalid"
