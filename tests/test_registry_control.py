"""Control-plane operations against a real redis-server: revocations, updates, YAML export/import, schema."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis
import yaml

from authz.config import Settings
from authz.decide.revocation import check_not_revoked
from authz.dev.procs import RedisServer
from authz.errors import Denial, DependencyUnavailable, Reason
from authz.model import ApplicationStatus, Identity, KeyType, SubscriptionStatus
from authz.registry.admin import RegistryAdmin, Revocation
from authz.registry.cache import RegistryCache
from authz.registry.redis_conn import connect
from authz.registry.redis_store import RedisStore
from authz.registry.store import SCHEMA_VERSION, RegistryError
from authz.registry.yaml_io import export_document, export_yaml, import_yaml
from tests.support.registry import registry_admin

KM = "test-km"


@pytest.fixture
async def cache(store: RedisStore, settings: Settings) -> AsyncIterator[RegistryCache]:
    c = RegistryCache(store, settings.redis.model_copy(update={"cache_ttl": 300}))
    await c.start()
    deadline = time.monotonic() + 5
    while c.invalidations == 0:
        assert time.monotonic() < deadline, "invalidation listener did not subscribe"
        await asyncio.sleep(0.01)
    yield c
    await c.close()


def identity(jti: str | None) -> Identity:
    return Identity(key_manager=KM, issuer="http://idp", subject="u", client_id="demo-client", scopes=frozenset(),
                    expires_at=time.time() + 300, token_id=jti, claims={})


# ---- revocations -----------------------------------------------------------------------------------


async def test_revoke_stores_the_jti_until_exp_plus_leeway_and_redis_expires_it(
    admin: RegistryAdmin, raw: redis.Redis, key_prefix: str
) -> None:
    exp = int(time.time()) + 120
    rev = await admin.revoke("jti-1", exp)
    assert rev == Revocation(KM, "jti-1", exp + 60)  # test-km leeway is 60 s
    key = f"{key_prefix}revoked:{KM}:jti-1"
    assert raw.get(key) == str(exp + 60)
    assert raw.expiretime(key) == exp + 60  # SET ... EXAT: Redis deletes it at that second
    assert await admin.revocation("jti-1") == rev
    assert await admin.list_revocations() == [rev]
    await admin.unrevoke("jti-1")
    assert raw.exists(key) == 0
    with pytest.raises(RegistryError, match="token ID jti-1 of key manager test-km is not revoked") as info:
        await admin.unrevoke("jti-1")
    assert info.value.kind == "not_found"


async def test_revoked_key_disappears_when_its_expiry_passes(admin: RegistryAdmin, raw: redis.Redis,
                                                           key_prefix: str) -> None:
    now = time.time()
    await admin.revoke("short", now + 1, add_leeway=False, now=now)
    key = f"{key_prefix}revoked:{KM}:short"
    assert raw.exists(key) == 1
    deadline = time.monotonic() + 3
    while raw.exists(key) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert raw.exists(key) == 0
    assert await admin.list_revocations() == []


@pytest.mark.parametrize(
    ("expires_at", "message"),
    [
        (lambda now: now - 1, "expires_at is in the past: an expired token is refused anyway"),
        (lambda now: now + 400 * 86400, "expires_at is more than a year ahead"),
        (lambda now: float("nan"), "expires_at must be a number of seconds since the epoch"),
    ],
)
async def test_revoke_refuses_a_bad_expiry_naming_the_field(
    admin: RegistryAdmin, expires_at: Callable[[float], float], message: str
) -> None:
    now = time.time()
    with pytest.raises(RegistryError) as info:
        await admin.revoke("jti-x", expires_at(now), now=now)
    assert (info.value.kind, info.value.field, str(info.value)) == ("invalid", "expires_at", message)


async def test_revoke_refuses_an_empty_jti_and_an_unknown_key_manager(admin: RegistryAdmin) -> None:
    with pytest.raises(RegistryError) as info:
        await admin.revoke("", time.time() + 60)
    assert (info.value.field, str(info.value)) == ("jti", "jti must not be empty")
    with pytest.raises(RegistryError) as info:
        await admin.revoke("j", time.time() + 60, key_manager="nope")
    assert (info.value.field, str(info.value)) == ("key_manager", "unknown key manager 'nope'; configured: test-km")


async def test_revoked_jti_is_denied_401_900901_and_the_revocation_reaches_a_warm_cache_at_once(
    admin: RegistryAdmin, cache: RegistryCache
) -> None:
    await check_not_revoked(identity("jti-2"), cache)  # caches "not revoked"
    await check_not_revoked(identity(None), cache)  # no jti: nothing to look up
    await admin.revoke("jti-2", time.time() + 300)
    deadline = time.monotonic() + 2
    while not await cache.is_revoked(KM, "jti-2"):
        assert time.monotonic() < deadline, "revocation event did not clear the cache"
        await asyncio.sleep(0.005)
    with pytest.raises(Denial) as info:
        await check_not_revoked(identity("jti-2"), cache)
    d = info.value
    assert (d.reason, d.reason.info.code, d.reason.info.http_status) == (Reason.INVALID_CREDENTIALS, 900901, 401)
    assert d.description == "The access token has been revoked"
    await admin.unrevoke("jti-2")
    deadline = time.monotonic() + 2
    while await cache.is_revoked(KM, "jti-2"):
        assert time.monotonic() < deadline, "withdrawal event did not clear the cache"
        await asyncio.sleep(0.005)


async def test_revocation_answers_are_cached_so_steady_checks_make_no_redis_call(
    admin: RegistryAdmin, cache: RegistryCache, raw: redis.Redis
) -> None:
    seen = cache.invalidations
    await admin.revoke("jti-3", time.time() + 300)
    deadline = time.monotonic() + 2
    while cache.invalidations == seen:  # let the revocation's own event pass first
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    assert await cache.is_revoked(KM, "jti-3") is True
    assert await cache.is_revoked(KM, "jti-4") is False
    before = raw.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    for _ in range(20):
        assert await cache.is_revoked(KM, "jti-3") is True
        assert await cache.is_revoked(KM, "jti-4") is False
    assert raw.info("commandstats").get("cmdstat_get", {}).get("calls", 0) == before


async def test_revocation_lookup_during_an_outage_is_503_unless_cached(settings: Settings) -> None:
    server = RedisServer().start()
    client = connect(server.url, 0.3)
    try:
        cache = RegistryCache(RedisStore(client, "o:"), settings.redis.model_copy(update={"url": server.url}))
        assert await cache.is_revoked(KM, "cached") is False
        server.kill()
        assert await cache.is_revoked(KM, "cached") is False  # fresh cache entry decides
        with pytest.raises(DependencyUnavailable):
            await cache.is_revoked(KM, "uncached")
        with pytest.raises(DependencyUnavailable):
            await check_not_revoked(identity("uncached"), cache)  # never an allow on error
    finally:
        await client.aclose()
        server.cleanup()


# ---- updates ---------------------------------------------------------------------------------------


async def test_update_application_changes_only_the_given_fields_and_keeps_names_unique(
    admin: RegistryAdmin, raw: redis.Redis, key_prefix: str
) -> None:
    await admin.create_application("One", owner="a", tier="Gold", app_id="one")
    await admin.create_application("Two", app_id="two")
    app = await admin.update_application("one", name="Uno", tier="Silver", status="inactive")
    assert (app.name, app.owner, app.tier, app.status) == ("Uno", "a", "Silver", ApplicationStatus.INACTIVE)
    assert raw.get(f"{key_prefix}app-name:Uno") == "one"
    assert raw.exists(f"{key_prefix}app-name:One") == 0
    assert (await admin.update_application("Uno", owner="")).owner == ""
    with pytest.raises(RegistryError, match="application name 'Two' is already used by two") as info:
        await admin.update_application("one", name="Two")
    assert info.value.kind == "already_exists"
    with pytest.raises(RegistryError) as info:
        await admin.update_application("one", status="GONE")
    assert (info.value.kind, info.value.field) == ("invalid", "status")


async def test_update_subscription_and_client_key_type(admin: RegistryAdmin) -> None:
    await admin.create_application("App", app_id="app")
    await admin.add_client("app", "c1")
    sub = await admin.subscribe("app", "orders-v1", tier="Gold", status="ON_HOLD")
    assert (sub.status, sub.tier) == (SubscriptionStatus.ON_HOLD, "Gold")
    sub = await admin.update_subscription("app", "orders-v1", tier="Bronze")
    assert (sub.status, sub.tier) == (SubscriptionStatus.ON_HOLD, "Bronze")
    sub = await admin.update_subscription("app", "orders-v1", status="active")
    assert (sub.status, sub.tier) == (SubscriptionStatus.ACTIVE, "Bronze")
    view = await admin.set_client_key_type("app", "c1", "sandbox")
    assert (view.application.id, view.client_id, view.key_type) == ("app", "c1", KeyType.SANDBOX)
    assert (await admin.client("c1")).key_type is KeyType.SANDBOX
    with pytest.raises(RegistryError, match="client ID c2 is not attached to application App"):
        await admin.set_client_key_type("app", "c2", "SANDBOX")
    with pytest.raises(RegistryError, match="client ID nobody of key manager test-km is not attached to any application"):
        await admin.client("nobody")


# ---- schema ----------------------------------------------------------------------------------------


async def test_schema_version_key_is_set_on_the_first_write_and_never_overwritten(
    admin: RegistryAdmin, store: RedisStore, raw: redis.Redis, key_prefix: str
) -> None:
    assert await store.schema_version() is None
    await admin.create_application("App", app_id="app")
    assert await store.schema_version() == SCHEMA_VERSION == "1"
    raw.set(f"{key_prefix}schema", "2")  # a newer release migrated the data: an old writer must not reset it
    await admin.create_application("Other", app_id="other")
    assert raw.get(f"{key_prefix}schema") == "2"


# ---- YAML export / import --------------------------------------------------------------------------


async def seed(admin: RegistryAdmin) -> None:
    await admin.create_application("Demo App", owner="dev", tier="Gold", app_id="demo")
    await admin.add_client("demo", "demo-client")
    await admin.add_client("demo", "demo-sbx", key_type="SANDBOX")
    await admin.subscribe("demo", "orders-v1", tier="Bronze")
    await admin.subscribe("demo", "payments-v1", status="BLOCKED")
    await admin.create_application("Idle App", app_id="idle")
    await admin.set_application_status("idle", "INACTIVE")
    await admin.revoke("jti-9", EXP - 60)


EXP = int(time.time()) + 3600  # stored expiry of the seeded revocation (exp + 60 s leeway)
EXPECTED = {
    "schema": 1,
    "applications": [
        {"id": "demo", "name": "Demo App", "owner": "dev", "tier": "Gold", "status": "ACTIVE",
         "clients": [{"key_manager": KM, "client_id": "demo-client", "key_type": "PRODUCTION"},
                     {"key_manager": KM, "client_id": "demo-sbx", "key_type": "SANDBOX"}],
         "subscriptions": [{"api_id": "orders-v1", "status": "ACTIVE", "tier": "Bronze"},
                           {"api_id": "payments-v1", "status": "BLOCKED", "tier": "Unlimited"}]},
        {"id": "idle", "name": "Idle App", "owner": "", "tier": "Unlimited", "status": "INACTIVE",
         "clients": [], "subscriptions": []},
    ],
    "revocations": [{"key_manager": KM, "jti": "jti-9", "expires_at": EXP}],
}


async def test_export_lists_applications_clients_subscriptions_and_revocations(admin: RegistryAdmin) -> None:
    await seed(admin)
    assert await export_document(admin) == EXPECTED
    assert yaml.safe_load(await export_yaml(admin)) == EXPECTED


async def test_import_into_an_empty_registry_round_trips_and_a_second_import_changes_nothing(
    admin: RegistryAdmin, make_redis_settings: Callable[..., Settings], redis_server: RedisServer
) -> None:
    await seed(admin)
    text = await export_yaml(admin)
    target_settings = make_redis_settings(redis={"url": redis_server.url, "key_prefix": f"copy{time.time_ns()}:"})
    async with registry_admin(target_settings) as target:
        planned = await import_yaml(target, text, dry_run=True)
        assert planned == [
            "create application Demo App (id demo)",
            f"attach client {KM}:demo-client (PRODUCTION) to Demo App",
            f"attach client {KM}:demo-sbx (SANDBOX) to Demo App",
            "subscribe Demo App to orders-v1 (ACTIVE, tier Bronze)",
            "subscribe Demo App to payments-v1 (BLOCKED, tier Unlimited)",
            "create application Idle App (id idle)",
            "set application Idle App status INACTIVE",
            f"revoke token ID jti-9 of {KM} until {EXP}",
        ]
        assert await export_document(target) == {"schema": 1, "applications": [], "revocations": []}  # dry run
        assert await import_yaml(target, text) == planned
        assert await export_document(target) == EXPECTED
        assert await import_yaml(target, text) == []  # idempotent


async def test_import_updates_what_differs_and_dry_run_prints_it(admin: RegistryAdmin) -> None:
    await seed(admin)
    doc = yaml.safe_load(await export_yaml(admin))
    doc["applications"][0]["tier"] = "Platinum"
    doc["applications"][0]["clients"][1]["key_type"] = "PRODUCTION"
    doc["applications"][0]["subscriptions"][1]["status"] = "ACTIVE"
    text = yaml.safe_dump(doc)
    expected = [
        "update application demo: tier='Platinum'",
        f"set key type of client {KM}:demo-sbx to PRODUCTION",
        "update subscription of Demo App to payments-v1: ACTIVE, tier Unlimited",
    ]
    assert await import_yaml(admin, text, dry_run=True) == expected
    assert (await admin.application("demo")).tier == "Gold"
    assert await import_yaml(admin, text) == expected
    assert await export_document(admin) == doc
    assert await import_yaml(admin, text) == []


async def test_import_refuses_a_client_id_of_another_application_before_writing_anything(
    admin: RegistryAdmin,
) -> None:
    await admin.create_application("Owner", app_id="owner")
    await admin.add_client("owner", "taken")
    text = yaml.safe_dump({"applications": [
        {"id": "new", "name": "New", "clients": [{"key_manager": KM, "client_id": "taken"}]},
    ]})
    with pytest.raises(RegistryError) as info:
        await import_yaml(admin, text)
    assert info.value.kind == "already_exists"
    assert str(info.value) == "applications[0].clients[0]: client ID taken of key manager test-km is already used by application Owner"
    with pytest.raises(RegistryError, match="no application with ID or name 'new'"):
        await admin.application("new")  # nothing written


@pytest.mark.parametrize(
    ("applications", "revocations", "message"),
    [
        ([{"id": "b", "name": "B", "clients": [{"key_manager": KM, "client_id": "ok-client"},
                                                {"key_manager": KM, "client_id": "bad\u0001id"}],
           "subscriptions": [{"api_id": "orders-v1"}]}], [],
         "applications[0].clients[1]: client ID must not contain control characters"),
        ([{"id": "x", "name": "y"}, {"id": "y", "name": "x"}], [],
         "applications[0].name: 'y' is the ID of another application"),
        ([{"id": "t", "name": "T", "tier": "G" * 65}], [], "applications[0]: tier is longer than 64 characters"),
        ([{"id": "s", "name": "S", "subscriptions": [{"api_id": "orders-v1", "tier": "G" * 65}]}], [],
         "applications[0].subscriptions[0]: tier is longer than 64 characters"),
        ([], [{"key_manager": KM, "jti": "j" * 513, "expires_at": 4_000_000_000}],
         "revocations[0]: jti is longer than 512 characters"),
    ],
)
async def test_import_checks_every_write_rule_before_the_first_write(
    admin: RegistryAdmin, applications: list, revocations: list, message: str
) -> None:
    text = yaml.safe_dump({"applications": applications, "revocations": revocations})
    for dry_run in (True, False):
        with pytest.raises(RegistryError) as info:
            await import_yaml(admin, text, dry_run=dry_run)
        assert str(info.value) == message
    assert await admin.list_applications() == []  # nothing half-applied


async def test_import_reports_every_invalid_field_with_its_path(admin: RegistryAdmin) -> None:
    text = yaml.safe_dump({"schema": 2, "applications": [{"id": "a", "name": "A", "status": "GONE", "color": "x"}]})
    with pytest.raises(RegistryError) as info:
        await import_yaml(admin, text, source="reg.yaml")
    message = str(info.value)
    assert message.startswith("reg.yaml: ")
    assert "schema: Input should be 1" in message
    assert "applications[0].status: Input should be 'ACTIVE' or 'INACTIVE'" in message
    assert "applications[0].color: Extra inputs are not permitted" in message


async def test_tools_refuse_a_registry_in_another_data_format(
    admin: RegistryAdmin, raw: redis.Redis, key_prefix: str
) -> None:
    await admin.ensure_schema()  # empty registry: fine
    await admin.create_application("App", app_id="app")
    await admin.ensure_schema()
    raw.set(f"{key_prefix}schema", "2")
    with pytest.raises(RegistryError) as info:
        await admin.ensure_schema()
    assert info.value.kind == "failed_precondition"
    assert str(info.value) == (
        "the registry holds data format '2'; this authz understands '1': upgrade authz (or run the migration "
        "of docs/registry.md) before changing it"
    )
