"""The admin API's developer reads through the real gRPC server: ``DescribeApplication`` (connection data from
the key manager's discovery, cached; token requests; the call through the gateway), ``ListApis`` and ``GetApi``,
and their errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from authz.admin.service import start_admin_server
from authz.admin.v1 import admin_pb2 as pb
from authz.admin.v1 import admin_pb2_grpc
from authz.config import Settings
from authz.dev.keymanager import KeyManager
from authz.dev.procs import free_port
from authz.registry.redis_conn import connect
from authz.registry.redis_store import RedisStore

TOKEN = "admin-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
OIDC = "/.well-known/openid-configuration"

Stub = admin_pb2_grpc.RegistryAdminStub


@pytest.fixture
def serve(make_redis_settings: Callable[..., Settings]) -> Callable[..., Any]:
    """``async with serve(**overrides) as stub``: the admin server of settings with ``overrides``."""

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Stub]:
        settings = make_redis_settings(admin={"listen": f"127.0.0.1:{free_port()}", "token": TOKEN}, **overrides)
        client = connect(settings.redis.url, 2.0)
        server = await start_admin_server(settings, RedisStore(client, settings.redis.key_prefix))
        assert server is not None and settings.admin.listen is not None
        try:
            async with grpc.aio.insecure_channel(settings.admin.listen) as channel:
                yield admin_pb2_grpc.RegistryAdminStub(channel)
        finally:
            await server.stop(0)
            await client.aclose()

    return run


async def _seed(stub: Stub) -> None:
    await stub.CreateApplication(pb.CreateApplicationRequest(name="Demo App", owner="dev", id="demo-app"), metadata=AUTH)
    await stub.CreateClient(pb.CreateClientRequest(application="demo-app", client_id="demo-client"), metadata=AUTH)
    await stub.CreateSubscription(pb.CreateSubscriptionRequest(application="demo-app", api_id="orders-v1"),
                                  metadata=AUTH)


async def expect(call: Any, code: grpc.StatusCode, details: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert (info.value.code(), info.value.details()) == (code, details)


async def test_describe_application_gives_discovered_connection_data_token_requests_and_a_gateway_call(
    serve: Callable[..., Any], idp: KeyManager
) -> None:
    km = {"jwks_uri": None, "discovery": "oidc", "jwks": {"timeout": 1}}
    async with serve(km=km, gateway_url="https://api.example.test") as stub:
        await _seed(stub)
        d = await stub.DescribeApplication(pb.DescribeApplicationRequest(application="Demo App"), metadata=AUTH)
        again = await stub.DescribeApplication(
            pb.DescribeApplicationRequest(application="demo-app", client_id="demo-client"), metadata=AUTH)
    assert idp.requests[OIDC] == 1  # the metadata is cached between calls
    assert again == d
    assert (d.application.id, d.application.name, d.application.owner) == ("demo-app", "Demo App", "dev")
    (client,) = d.clients
    assert client.client == pb.Client(application_id="demo-app", key_manager="test-km", client_id="demo-client",
                                      key_type="PRODUCTION")
    assert client.connection == pb.KeyManagerConnection(
        key_manager="test-km", issuer=idp.issuer, token_endpoint=f"{idp.url}/oauth2/token",
        jwks_uri=f"{idp.url}/oauth2/jwks", grant_types_supported=["password", "client_credentials"],
        token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
        metadata_url=f"{idp.url}{OIDC}", source="discovery",
    )
    assert list(client.scopes) == ["orders:read", "orders:write"]
    password, credentials = client.token_requests
    assert [(p.name, p.value) for p in password.parameters] == [
        ("grant_type", "password"), ("username", "<USER_NAME>"), ("password", "<USER_PASSWORD>"),
        ("client_id", "demo-client"), ("client_secret", "<CLIENT_SECRET>"), ("scope", "orders:read orders:write")]
    assert (password.token_endpoint, password.client_authentication) == (f"{idp.url}/oauth2/token",
                                                                         "client_secret_post")
    assert password.curl.startswith(f"curl -sS {idp.url}/oauth2/token \\\n  --data-urlencode grant_type=password")
    assert credentials.grant_type == "client_credentials"
    assert [a.id for a in d.subscriptions] == ["orders-v1"]
    assert d.subscriptions[0].subscription.status == "ACTIVE"
    assert d.gateway_call == pb.GatewayCall(
        api_id="orders-v1", method="GET", url="https://api.example.test/orders/v1/items",
        headers=[pb.Parameter(name="Authorization", value="Bearer <ACCESS_TOKEN>")],
        curl="curl -sS -i https://api.example.test/orders/v1/items \\\n  -H 'Authorization: Bearer <ACCESS_TOKEN>'",
    )


async def test_a_key_manager_without_token_endpoint_is_said_so(serve: Callable[..., Any]) -> None:
    async with serve() as stub:
        await _seed(stub)
        d = await stub.DescribeApplication(pb.DescribeApplicationRequest(application="demo-app"), metadata=AUTH)
    connection = d.clients[0].connection
    assert (connection.token_endpoint, connection.source) == ("", "config")
    assert list(connection.problems) == [
        "no token endpoint: key manager test-km has neither discovery nor token_endpoint in the config; ask its "
        "administrator for the token endpoint (or set key_managers[].token_endpoint)"]
    assert [(r.token_endpoint, r.curl) for r in d.clients[0].token_requests] == [("", ""), ("", "")]


async def test_list_apis_and_get_api_with_and_without_an_application(serve: Callable[..., Any]) -> None:
    async with serve() as stub:
        await _seed(stub)
        listed = await stub.ListApis(pb.ListApisRequest(), metadata=AUTH)
        mine = await stub.ListApis(pb.ListApisRequest(application="Demo App"), metadata=AUTH)
        payments = await stub.GetApi(pb.GetApiRequest(api_id="payments-v1", application="demo-app"), metadata=AUTH)
        orders = await stub.GetApi(pb.GetApiRequest(api_id="Orders"), metadata=AUTH)
    assert [(a.id, a.name, a.context, list(a.scopes), a.HasField("subscription")) for a in listed.apis] == [
        ("orders-v1", "Orders", "/orders/v1", ["orders:read", "orders:write"], False),
        ("payments-v1", "Payments", "/payments/v1", ["payments:read", "payments:write"], False)]
    assert [a.HasField("subscription") and a.subscription.status for a in mine.apis] == ["ACTIVE", False]
    assert not payments.HasField("subscription")
    assert [(r.path, list(r.methods), list(r.scopes), r.scope_match, r.public) for r in payments.resources] == [
        ("/payments/v1/charges", ["GET"], ["payments:read"], "any", False),
        ("/payments/v1/charges", ["POST"], ["payments:write"], "any", False)]
    assert (payments.public, list(payments.key_managers), list(payments.hosts)) == (False, ["test-km"], [])
    assert orders.id == "orders-v1"


async def test_developer_reads_refuse_unknown_names_with_what_exists(serve: Callable[..., Any]) -> None:
    async with serve() as stub:
        await _seed(stub)
        await expect(stub.GetApi(pb.GetApiRequest(api_id="order-v1"), metadata=AUTH), grpc.StatusCode.INVALID_ARGUMENT,
                     "api_id: unknown API id 'order-v1'; did you mean 'orders-v1'? configured: orders-v1, payments-v1")
        await expect(stub.GetApi(pb.GetApiRequest(), metadata=AUTH), grpc.StatusCode.INVALID_ARGUMENT,
                     "api_id: is required")
        await expect(stub.DescribeApplication(pb.DescribeApplicationRequest(application="Demo Ap"), metadata=AUTH),
                     grpc.StatusCode.NOT_FOUND,
                     "no application with ID or name 'Demo Ap'; did you mean 'Demo App'? applications: Demo App")
        await expect(stub.ListApis(pb.ListApisRequest(application="ghost"), metadata=AUTH), grpc.StatusCode.NOT_FOUND,
                     "no application with ID or name 'ghost'; applications: Demo App")
        await expect(stub.DescribeApplication(pb.DescribeApplicationRequest(application="demo-app", client_id="x"),
                                              metadata=AUTH),
                     grpc.StatusCode.NOT_FOUND, "client ID x is not attached to application Demo App")
        await expect(stub.DescribeApplication(pb.DescribeApplicationRequest(application="demo-app", client_id="x",
                                                                            key_manager="nope"), metadata=AUTH),
                     grpc.StatusCode.INVALID_ARGUMENT, "key_manager: unknown key manager 'nope'; configured: test-km")
