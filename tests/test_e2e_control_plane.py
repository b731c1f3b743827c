"""End to end: the developer flow over the admin gRPC API, each state change enforced through real Envoy.

create application -> add client ID -> subscribe -> block -> unblock -> revoke a token -> sandbox key on the
sandbox host only -> delete. Real Envoy, real `authz serve` (admin API on its own port), real Redis, real tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import jwt
import pytest

from authz.admin.v1 import admin_pb2 as pb
from authz.admin.v1 import admin_pb2_grpc
from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey
from authz.dev.procs import ManagedProcess, RedisServer, free_port
from authz.dev.upstream import EchoUpstream
from tests.support.config import AUDIENCE, settings_dict
from tests.support.e2e import start_gateway
from tests.support.processes import AuthzProcess

pytestmark = pytest.mark.e2e

TOKEN = "portal-admin-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
SANDBOX_HOST = "sandbox.api.test"
CLIENTS = {**DEMO_CLIENTS, "portal-client": "portal-secret", "portal-sbx": "sbx-secret"}


@dataclass
class Flow:
    km: KeyManager
    upstream: EchoUpstream
    authz: AuthzProcess
    envoy: ManagedProcess
    gateway: str
    admin: admin_pb2_grpc.RegistryAdminStub
    channel: grpc.Channel

    def token(self, client_id: str = "portal-client") -> str:
        return self.km.issue_token(client_id, "demo", "orders:read")

    def call(self, token: str, host: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"}
        if host:
            headers["host"] = host
        return httpx.get(self.gateway + "/orders/v1/items", headers=headers, timeout=5)

    def expect(self, token: str, status: int, code: int | None = None, host: str | None = None,
               timeout: float = 2.0) -> httpx.Response:
        """The first answer with this status and code, waiting at most ``timeout`` s for the change to land."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.call(token, host)
            got = (r.status_code, r.json().get("code") if code is not None else None)
            if got == (status, code) or time.monotonic() > deadline:
                assert got == (status, code), r.text
                return r
            time.sleep(0.02)


@pytest.fixture(scope="module")
def flow(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    tmp = tmp_path_factory.mktemp("e2e-admin")
    km = KeyManager(AUDIENCE, CLIENTS, DEMO_USERS, keys=[SigningKey.generate_rsa(kid="cp")])
    km.start()
    upstream = EchoUpstream()
    upstream.start()
    admin_listen = f"127.0.0.1:{free_port()}"
    doc = settings_dict(km, redis_server.url, f"cp{free_port()}:", admin={"listen": admin_listen, "token": TOKEN})
    doc["redis"]["cache_ttl"] = 30  # steady state from the cache: only invalidation events make changes visible
    for api in doc["apis"]:  # each API's sandbox environment is served on SANDBOX_HOST (apis[].sandbox)
        api["sandbox"] = {"hosts": [SANDBOX_HOST]}
    authz = AuthzProcess(doc, tmp).start()
    envoy, gateway = start_gateway(tmp, "envoy", doc, upstream.port)
    channel = grpc.insecure_channel(admin_listen)
    yield Flow(km, upstream, authz, envoy, gateway, admin_pb2_grpc.RegistryAdminStub(channel), channel)
    channel.close()
    envoy.stop()
    authz.stop()
    upstream.stop()
    km.stop()


def test_developer_flow_over_the_admin_api_is_enforced_through_envoy(flow: Flow) -> None:
    a = flow.admin
    token = flow.token()
    flow.expect(token, 403, 900911)  # client ID not registered

    a.CreateApplication(pb.CreateApplicationRequest(name="Portal App", owner="dev", id="portal"), metadata=AUTH)
    a.CreateClient(pb.CreateClientRequest(application="portal", client_id="portal-client"), metadata=AUTH)
    flow.expect(token, 403, 900908)  # registered, not subscribed

    a.CreateSubscription(pb.CreateSubscriptionRequest(application="portal", api_id="orders-v1"), metadata=AUTH)
    r = flow.expect(token, 200)
    assert r.json()["headers"]["x-application-id"] == "portal"

    a.UpdateSubscription(pb.UpdateSubscriptionRequest(application="portal", api_id="orders-v1", status="BLOCKED"),
                         metadata=AUTH)
    flow.expect(token, 403, 900907)

    a.UpdateSubscription(pb.UpdateSubscriptionRequest(application="portal", api_id="orders-v1", status="ACTIVE"),
                         metadata=AUTH)
    flow.expect(token, 200)

    claims = jwt.decode(token, options={"verify_signature": False})
    a.CreateRevocation(pb.CreateRevocationRequest(jti=claims["jti"], expires_at=claims["exp"]), metadata=AUTH)
    r = flow.expect(token, 401, 900901)
    assert r.headers["www-authenticate"].startswith('Bearer realm="authz", error="invalid_token"')
    assert r.json()["description"] == "The access token has been revoked"
    flow.expect(flow.token(), 200)  # another token of the same client is not revoked

    a.DeleteRevocation(pb.DeleteRevocationRequest(jti=claims["jti"]), metadata=AUTH)
    flow.expect(token, 200)

    a.DeleteApplication(pb.DeleteApplicationRequest(application="portal"), metadata=AUTH)
    flow.expect(token, 403, 900911)


def test_sandbox_keys_only_on_sandbox_routes_and_production_keys_only_on_production_routes(flow: Flow) -> None:
    a = flow.admin
    a.CreateApplication(pb.CreateApplicationRequest(name="Sandbox App", id="sbx-app"), metadata=AUTH)
    a.CreateClient(pb.CreateClientRequest(application="sbx-app", client_id="portal-sbx", key_type="SANDBOX"),
                   metadata=AUTH)
    a.CreateClient(pb.CreateClientRequest(application="sbx-app", client_id="demo-client"), metadata=AUTH)
    a.CreateSubscription(pb.CreateSubscriptionRequest(application="sbx-app", api_id="orders-v1"), metadata=AUTH)
    sandbox, production = flow.token("portal-sbx"), flow.token("demo-client")

    r = flow.expect(sandbox, 200, host=SANDBOX_HOST)
    assert r.json()["headers"]["x-client-id"] == "portal-sbx"
    r = flow.expect(sandbox, 403, 900908)
    assert r.json()["description"] == "A sandbox key cannot call a production route"
    flow.expect(production, 200)
    r = flow.expect(production, 403, 900908, host=SANDBOX_HOST)
    assert r.json()["description"] == "A production key cannot call a sandbox route"

    # PROD_ONLY_BLOCKED stops the production key and leaves the sandbox key working
    a.UpdateSubscription(pb.UpdateSubscriptionRequest(application="sbx-app", api_id="orders-v1",
                                                      status="PROD_ONLY_BLOCKED"), metadata=AUTH)
    flow.expect(production, 403, 900907)
    flow.expect(sandbox, 200, host=SANDBOX_HOST)

    # switching the key type over the admin API moves the client between environments
    a.UpdateClient(pb.UpdateClientRequest(application="sbx-app", client_id="portal-sbx", key_type="PRODUCTION"),
                   metadata=AUTH)
    flow.expect(sandbox, 403, 900908, host=SANDBOX_HOST)
    a.DeleteApplication(pb.DeleteApplicationRequest(application="sbx-app"), metadata=AUTH)


def test_admin_api_refuses_calls_without_the_token_and_envoy_is_unaffected(flow: Flow) -> None:
    with pytest.raises(grpc.RpcError) as info:
        flow.admin.CreateApplication(pb.CreateApplicationRequest(name="Evil", id="evil"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        flow.admin.GetApplication(pb.GetApplicationRequest(application="evil"), metadata=AUTH, timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


