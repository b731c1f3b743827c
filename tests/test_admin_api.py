"""The gRPC admin API (authz.admin.v1.RegistryAdmin): generated code, auth, CRUD and error codes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from authz.admin import _build
from authz.admin.service import start_admin_server
from authz.admin.v1 import admin_pb2 as pb
from authz.admin.v1 import admin_pb2_grpc
from authz.config import ConfigError, Settings, parse_config, serving_errors
from authz.dev.procs import RedisServer, free_port
from authz.registry.redis_conn import connect
from authz.registry.redis_store import RedisStore
from tests.support.processes import AuthzProcess

TOKEN = "admin-token-0123456789"
KM = "test-km"


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    generated = _build.generate(tmp_path)
    for path in generated:
        committed = Path("authz/admin/v1") / path.name
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"{committed} is stale: run `make protos` (python -m authz.admin._build)"
        )
    assert sorted(p.name for p in generated) == ["admin_pb2.py", "admin_pb2.pyi", "admin_pb2_grpc.py"]


def test_admin_listen_needs_a_token_to_serve_which_the_environment_can_supply(
    make_redis_settings: Callable[..., Settings],
) -> None:
    doc = make_redis_settings().model_dump(mode="json", exclude_none=True)
    doc["admin"] = {"listen": "127.0.0.1:9999"}
    # Readable without the secret (the registry CLI needs only Redis, key managers and APIs) ...
    without = parse_config(doc)
    # ... but not servable.
    assert serving_errors(without) == [
        "admin.token: is required when admin.listen is set (or set AUTHZ_ADMIN_TOKEN)"
    ]
    settings = parse_config(doc, env={"AUTHZ_ADMIN_TOKEN": TOKEN})
    assert serving_errors(settings) == []
    assert settings.admin.token is not None and settings.admin.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings.admin)  # a SecretStr: never printed
    doc["admin"]["token"] = "short"
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.errors[0].startswith("admin.token: must be at least 16 printable ASCII")


@pytest.fixture
async def stub(make_redis_settings: Callable[..., Settings]) -> AsyncIterator[admin_pb2_grpc.RegistryAdminStub]:
    settings = make_redis_settings(admin={"listen": f"127.0.0.1:{free_port()}", "token": TOKEN})
    store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, 2.0)
    server = await start_admin_server(settings, store)
    assert server is not None and settings.admin.listen is not None
    channel = grpc.aio.insecure_channel(settings.admin.listen)
    yield admin_pb2_grpc.RegistryAdminStub(channel)
    await channel.close()
    await server.stop(0)
    await store.aclose()


AUTH = (("authorization", f"Bearer {TOKEN}"),)


async def expect(call: object, code: grpc.StatusCode, details: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert (info.value.code(), info.value.details()) == (code, details)


async def test_application_crud(stub: admin_pb2_grpc.RegistryAdminStub) -> None:
    app = await stub.CreateApplication(pb.CreateApplicationRequest(name="Demo App", owner="dev", id="demo"),
                                       metadata=AUTH)
    assert (app.id, app.name, app.owner, app.tier, app.status) == ("demo", "Demo App", "dev", "Unlimited", "ACTIVE")
    assert app.created_at == pytest.approx(time.time(), abs=30)
    assert (await stub.GetApplication(pb.GetApplicationRequest(application="Demo App"), metadata=AUTH)).id == "demo"
    updated = await stub.UpdateApplication(pb.UpdateApplicationRequest(application="demo", tier="Gold",
                                                                       status="INACTIVE"), metadata=AUTH)
    assert (updated.name, updated.owner, updated.tier, updated.status) == ("Demo App", "dev", "Gold", "INACTIVE")
    listed = await stub.ListApplications(pb.ListApplicationsRequest(), metadata=AUTH)
    assert [a.id for a in listed.applications] == ["demo"]
    deleted = await stub.DeleteApplication(pb.DeleteApplicationRequest(application="demo"), metadata=AUTH)
    assert deleted.deleted.id == "demo"
    await expect(stub.GetApplication(pb.GetApplicationRequest(application="demo"), metadata=AUTH),
                 grpc.StatusCode.NOT_FOUND, "no application with ID or name 'demo'; there are no applications")


async def test_client_subscription_and_revocation_crud(stub: admin_pb2_grpc.RegistryAdminStub) -> None:
    await stub.CreateApplication(pb.CreateApplicationRequest(name="App", id="app"), metadata=AUTH)
    client = await stub.CreateClient(pb.CreateClientRequest(application="app", client_id="c1", key_type="SANDBOX"),
                                     metadata=AUTH)
    assert (client.application_id, client.key_manager, client.client_id, client.key_type) == (
        "app", KM, "c1", "SANDBOX")
    got = await stub.GetClient(pb.GetClientRequest(client_id="c1"), metadata=AUTH)
    assert got == client
    changed = await stub.UpdateClient(pb.UpdateClientRequest(application="app", client_id="c1",
                                                             key_type="PRODUCTION"), metadata=AUTH)
    assert changed.key_type == "PRODUCTION"
    listed = await stub.ListClients(pb.ListClientsRequest(application="app"), metadata=AUTH)
    assert [(c.client_id, c.key_type) for c in listed.clients] == [("c1", "PRODUCTION")]
    await stub.DeleteClient(pb.DeleteClientRequest(application="app", client_id="c1"), metadata=AUTH)
    await expect(stub.GetClient(pb.GetClientRequest(client_id="c1"), metadata=AUTH), grpc.StatusCode.NOT_FOUND,
                 f"client ID c1 of key manager {KM} is not attached to any application")

    sub = await stub.CreateSubscription(pb.CreateSubscriptionRequest(application="app", api_id="orders-v1",
                                                                     status="ON_HOLD"), metadata=AUTH)
    assert (sub.application_id, sub.api_id, sub.status, sub.tier) == ("app", "orders-v1", "ON_HOLD", "Unlimited")
    sub = await stub.UpdateSubscription(pb.UpdateSubscriptionRequest(application="app", api_id="orders-v1",
                                                                     status="ACTIVE", tier="Gold"), metadata=AUTH)
    assert (sub.status, sub.tier) == ("ACTIVE", "Gold")
    assert await stub.GetSubscription(pb.GetSubscriptionRequest(application="app", api_id="orders-v1"),
                                      metadata=AUTH) == sub
    subs = await stub.ListSubscriptions(pb.ListSubscriptionsRequest(application="app"), metadata=AUTH)
    assert [s.api_id for s in subs.subscriptions] == ["orders-v1"]
    await stub.DeleteSubscription(pb.DeleteSubscriptionRequest(application="app", api_id="orders-v1"), metadata=AUTH)
    await expect(stub.GetSubscription(pb.GetSubscriptionRequest(application="app", api_id="orders-v1"), metadata=AUTH),
                 grpc.StatusCode.NOT_FOUND, "application App is not subscribed to orders-v1")

    exp = int(time.time()) + 300
    rev = await stub.CreateRevocation(pb.CreateRevocationRequest(jti="j1", expires_at=exp), metadata=AUTH)
    assert (rev.key_manager, rev.jti, rev.expires_at) == (KM, "j1", exp + 60)
    assert await stub.GetRevocation(pb.GetRevocationRequest(jti="j1"), metadata=AUTH) == rev
    assert list((await stub.ListRevocations(pb.ListRevocationsRequest(), metadata=AUTH)).revocations) == [rev]
    await stub.DeleteRevocation(pb.DeleteRevocationRequest(jti="j1"), metadata=AUTH)
    await expect(stub.GetRevocation(pb.GetRevocationRequest(jti="j1"), metadata=AUTH), grpc.StatusCode.NOT_FOUND,
                 f"token ID j1 of key manager {KM} is not revoked")


async def test_errors_are_status_codes_with_clear_messages(stub: admin_pb2_grpc.RegistryAdminStub) -> None:
    await stub.CreateApplication(pb.CreateApplicationRequest(name="One", id="one"), metadata=AUTH)
    await stub.CreateApplication(pb.CreateApplicationRequest(name="Two", id="two"), metadata=AUTH)
    await stub.CreateClient(pb.CreateClientRequest(application="one", client_id="shared"), metadata=AUTH)
    await expect(stub.CreateClient(pb.CreateClientRequest(application="two", client_id="shared"), metadata=AUTH),
                 grpc.StatusCode.ALREADY_EXISTS, "client ID shared of key manager test-km is already used by application One")
    await expect(stub.CreateApplication(pb.CreateApplicationRequest(name="One"), metadata=AUTH),
                 grpc.StatusCode.ALREADY_EXISTS, "application name 'One' is already used by one")
    await expect(stub.CreateApplication(pb.CreateApplicationRequest(name=""), metadata=AUTH),
                 grpc.StatusCode.INVALID_ARGUMENT, "name: application name must not be empty")
    await expect(stub.CreateClient(pb.CreateClientRequest(application="one", client_id="x", key_type="TEST"),
                                   metadata=AUTH),
                 grpc.StatusCode.INVALID_ARGUMENT, "key_type: unknown key type 'TEST'; one of: PRODUCTION, SANDBOX")
    await expect(stub.CreateSubscription(pb.CreateSubscriptionRequest(application="one", api_id="nope"),
                                         metadata=AUTH),
                 grpc.StatusCode.INVALID_ARGUMENT,
                 "api_id: unknown API id 'nope'; configured: orders-v1, payments-v1")
    await expect(stub.GetApplication(pb.GetApplicationRequest(), metadata=AUTH),
                 grpc.StatusCode.INVALID_ARGUMENT, "application: is required")
    await expect(stub.CreateRevocation(pb.CreateRevocationRequest(jti="j", expires_at=1), metadata=AUTH),
                 grpc.StatusCode.INVALID_ARGUMENT,
                 "expires_at: expires_at is in the past: an expired token is refused anyway")
    await expect(stub.DeleteClient(pb.DeleteClientRequest(application="ghost", client_id="x"), metadata=AUTH),
                 grpc.StatusCode.NOT_FOUND, "no application with ID or name 'ghost'; applications: One, Two")


async def test_redis_outage_is_unavailable(make_redis_settings: Callable[..., Settings]) -> None:
    server = RedisServer().start()
    settings = make_redis_settings(admin={"listen": f"127.0.0.1:{free_port()}", "token": TOKEN})
    client = connect(server.url, 0.3)
    admin_server = await start_admin_server(settings, RedisStore(client, "x:"))
    assert admin_server is not None and settings.admin.listen is not None
    try:
        server.kill()
        async with grpc.aio.insecure_channel(settings.admin.listen) as channel:
            stub = admin_pb2_grpc.RegistryAdminStub(channel)
            await expect(stub.ListApplications(pb.ListApplicationsRequest(), metadata=AUTH),
                         grpc.StatusCode.UNAVAILABLE, "Redis is unreachable; retry later")
    finally:
        await admin_server.stop(0)
        await client.aclose()
        server.cleanup()


def test_authz_serve_serves_the_admin_api_only_with_the_bearer_token(
    start_authz: Callable[..., AuthzProcess], redis_server: RedisServer,
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    start_authz(admin={"listen": listen, "token": TOKEN})
    with grpc.insecure_channel(listen) as channel:
        stub = admin_pb2_grpc.RegistryAdminStub(channel)
        denied = "admin API: send the metadata 'authorization: Bearer <admin token>'"
        for metadata in ((), (("authorization", "Bearer wrong-token-0123456789"),),
                         (("authorization", f"Basic {TOKEN}"),), (("authorization", TOKEN),)):
            with pytest.raises(grpc.RpcError) as info:
                stub.ListApplications(pb.ListApplicationsRequest(), metadata=metadata, timeout=5)
            assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, denied)
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateApplication(pb.CreateApplicationRequest(name="Sneaky"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.ListApplications(pb.ListApplicationsRequest(), metadata=AUTH, timeout=5)
        assert list(reply.applications) == []  # nothing was created by the refused call
        app = stub.CreateApplication(pb.CreateApplicationRequest(name="Real", id="real"),
                                     metadata=(("authorization", f"bearer {TOKEN}"),), timeout=5)
        assert app.id == "real"


async def test_a_registry_in_another_data_format_is_failed_precondition(
    stub: admin_pb2_grpc.RegistryAdminStub, redis_server: RedisServer, key_prefix: str,
) -> None:
    raw = redis_server.client()
    raw.set(f"{key_prefix}schema", "2")
    raw.close()
    await expect(stub.CreateApplication(pb.CreateApplicationRequest(name="App"), metadata=AUTH),
                 grpc.StatusCode.FAILED_PRECONDITION,
                 "the registry holds data format '2'; this authz understands '1': upgrade authz (or run the "
                 "migration of docs/registry.md) before changing it")
