"""The registry store interface (authz/registry/store.py): the in-memory store keeps the Redis store's rules.

Every test runs against both implementations: :class:`RedisStore` on the real redis-server, and
:class:`MemoryStore`, which the pipeline and policy tests use instead of Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from authz.model import ApplicationStatus, ClientBinding, KeyType, Lookup, SubscriptionStatus
from authz.registry.memory import MemoryStore
from authz.registry.redis_store import RedisStore
from authz.registry.store import (
    SCHEMA_VERSION,
    RegistryError,
    RegistryEvent,
    RegistryStore,
    RevocationState,
    parse_event,
)

KM = "km"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[RegistryStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    redis_server = request.getfixturevalue("redis_server")
    store = RedisStore.open(redis_server.url, key_prefix, 2.0)
    yield store
    await store.aclose()


async def test_lookup_returns_binding_application_and_subscription(store: RegistryStore) -> None:
    assert await store.lookup(KM, "c1", "orders") == Lookup(None, None, None)
    app = await store.create_application("Demo", owner="dev", tier="Gold", app_id="demo")
    assert await store.add_client(app, KM, "c1", KeyType.SANDBOX) is True
    assert await store.add_client(app, KM, "c1", KeyType.SANDBOX) is False  # already this application's
    found = await store.lookup(KM, "c1", "orders")
    assert found.binding == ClientBinding("demo", KeyType.SANDBOX)
    assert found.application is not None and (found.application.name, found.application.tier) == ("Demo", "Gold")
    assert found.subscription is None
    await store.subscribe(app, "orders", tier="Bronze")
    sub = (await store.lookup(KM, "c1", "orders")).subscription
    assert sub is not None and (sub.status, sub.tier) == (SubscriptionStatus.ACTIVE, "Bronze")
    assert await store.schema_version() == SCHEMA_VERSION


async def test_a_client_id_belongs_to_one_application_per_key_manager(store: RegistryStore) -> None:
    one = await store.create_application("One", app_id="one")
    two = await store.create_application("Two", app_id="two")
    await store.add_client(one, KM, "shared")
    with pytest.raises(RegistryError, match="client ID shared of key manager km is already used by application One"):
        await store.add_client(two, KM, "shared")
    assert await store.add_client(two, "other-km", "shared") is True  # another key manager: another client
    assert await store.client_owner(KM, "shared") == "one"


async def test_names_and_ids_are_unique_and_checked(store: RegistryStore) -> None:
    await store.create_application("Demo", app_id="demo")
    with pytest.raises(RegistryError, match="application ID demo already exists"):
        await store.create_application("Other", app_id="demo")
    with pytest.raises(RegistryError, match="application name 'Demo' is already used by demo"):
        await store.create_application("Demo", app_id="demo2")
    with pytest.raises(RegistryError, match="application ID must be non-empty and contain no ':'"):
        await store.create_application("X", app_id="a:b")
    with pytest.raises(RegistryError, match="client ID must be non-empty and printable"):
        await store.add_client(await store.create_application("Y", app_id="y"), KM, "bad\nid")


async def test_updates_status_and_deletion(store: RegistryStore) -> None:
    app = await store.create_application("Demo", app_id="demo")
    await store.add_client(app, KM, "c1")
    await store.subscribe(app, "orders")
    await store.set_subscription_status(app, "orders", SubscriptionStatus.BLOCKED, tier="Gold")
    assert [(s.status, s.tier) for s in await store.subscriptions_of("demo")] == [(SubscriptionStatus.BLOCKED, "Gold")]
    await store.update_application("demo", name="Renamed", owner="", tier="Silver")
    await store.set_application_status("demo", ApplicationStatus.INACTIVE)
    renamed = await store.get_application("demo")
    assert renamed is not None and (renamed.name, renamed.tier, renamed.status) == (
        "Renamed", "Silver", ApplicationStatus.INACTIVE)
    assert await store.application_id_by_name("Renamed") == "demo"
    assert await store.clients_of("demo") == [(KM, "c1", KeyType.PRODUCTION)]
    with pytest.raises(RegistryError, match="not subscribed to payments"):
        await store.unsubscribe(app, "payments")
    assert await store.delete_application("demo") is True
    assert await store.lookup(KM, "c1", "orders") == Lookup(None, None, None)
    assert await store.delete_application("demo") is False


async def test_revocations_are_kept_until_their_expiry(store: RegistryStore) -> None:
    soon = int(time.time()) + 1
    later = int(time.time()) + 600
    await store.revoke(KM, "j-soon", soon)
    await store.revoke(KM, "j-later", later)
    assert (await store.revocation(KM, "j-later")).expires_at == later
    assert [(km, jti) for km, jti, _ in await store.list_revocations()] == [(KM, "j-later"), (KM, "j-soon")]
    await asyncio.sleep(soon - time.time() + 0.3)
    assert await store.revocation(KM, "j-soon") == RevocationState(None, False, 2)
    assert await store.unrevoke(KM, "j-later") is True and await store.unrevoke(KM, "j-later") is False


async def test_a_withdrawn_revocation_is_stored_until_the_revocation_would_have_ended(store: RegistryStore) -> None:
    soon = int(time.time()) + 1
    await store.revoke(KM, "j", soon)
    assert await store.revocation(KM, "j") == RevocationState(float(soon), False, 1)
    assert await store.unrevoke(KM, "j") is True
    assert await store.revocation(KM, "j") == RevocationState(None, True, 2)
    assert await store.list_revocations() == []  # a withdrawal is not a revocation
    await store.revoke(KM, "j", soon + 600)  # revoked again: the withdrawal goes
    assert await store.revocation(KM, "j") == RevocationState(float(soon + 600), False, 3)
    await store.unrevoke(KM, "j")
    await store.revoke(KM, "k", soon)
    await store.unrevoke(KM, "k")
    await asyncio.sleep(soon - time.time() + 0.3)
    assert await store.revocation(KM, "k") == RevocationState(None, False, 6)  # forgotten with the revocation


async def test_every_write_increments_the_sequence_number_and_reads_return_it(store: RegistryStore) -> None:
    assert await store.sequence() == 0
    assert (await store.lookup(KM, "c1", "orders")).sequence == 0
    app = await store.create_application("Demo", app_id="demo")
    await store.add_client(app, KM, "c1")
    await store.subscribe(app, "orders")
    assert await store.sequence() == 3
    assert (await store.lookup(KM, "c1", "orders")).sequence == 3
    # Refused or empty writes change nothing and count nothing.
    with pytest.raises(RegistryError):
        await store.create_application("Demo", app_id="demo")
    assert await store.remove_client(app, KM, "nobody") is False
    assert await store.unrevoke(KM, "never") is False
    assert await store.sequence() == 3
    await store.set_subscription_status(app, "orders", SubscriptionStatus.BLOCKED)
    await store.update_application("demo", tier="Gold")
    await store.set_application_status("demo", ApplicationStatus.INACTIVE)
    await store.set_client_key_type(app, KM, "c1", KeyType.SANDBOX)
    await store.unsubscribe(app, "orders")
    await store.revoke(KM, "j", int(time.time()) + 60)
    await store.unrevoke(KM, "j")
    await store.remove_client(app, KM, "c1")
    await store.delete_application("demo")
    assert await store.sequence() == 12
    assert (await store.revocation(KM, "j")).sequence == 12


async def test_every_write_reaches_event_subscribers_with_its_sequence_number(store: RegistryStore) -> None:
    events = await store.events()
    try:
        assert await events.wait(0.05) is None
        app = await store.create_application("Demo", app_id="demo")
        await store.add_client(app, KM, "c1")
        expiry = int(time.time()) + 60
        await store.revoke(KM, "j:with:colons", expiry)
        await store.unrevoke(KM, "j:with:colons")
        received = []
        while (event := await events.wait(0.5)) is not None:
            received.append(event)
        assert received == [RegistryEvent(1, "app:demo"), RegistryEvent(2, f"client:{KM}:c1"),
                            RegistryEvent(3, f"revoked:{expiry}:{KM}:j:with:colons"),
                            RegistryEvent(4, f"unrevoked:{KM}:j:with:colons")]
        assert received[2].revocation() == (KM, "j:with:colons", float(expiry))
        assert received[3].withdrawal() == (KM, "j:with:colons")
        assert received[0].revocation() is None and received[0].withdrawal() is None
    finally:
        await events.aclose()


def test_event_messages_parse_whatever_their_shape() -> None:
    assert parse_event("7 sub:demo:orders") == RegistryEvent(7, "sub:demo:orders")
    assert parse_event("app:demo") == RegistryEvent(None, "app:demo")  # an older writer: no sequence number
    assert parse_event("") == RegistryEvent(None, "")
    assert parse_event("x revoked:1:km:j").revocation() is None
    assert RegistryEvent(1, "revoked:soon:km:j").revocation() is None  # a malformed expiry is no revocation
    assert RegistryEvent(1, "revoked:5:km").revocation() is None
    assert RegistryEvent(1, "unrevoked:km").withdrawal() is None
