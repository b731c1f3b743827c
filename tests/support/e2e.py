"""End-to-end test support: the stack of processes a test drives through real Envoy, and small helpers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from authz.config import parse_config
from authz.dev.keymanager import DEMO_CLIENTS, KeyManager
from authz.dev.procs import ManagedProcess, RedisServer
from authz.dev.upstream import EchoUpstream
from authz.registry_admin import RegistryAdmin
from authz.store_redis import RedisStore, connect
from tests.conftest import AuthzProcess


def run_admin(doc: dict[str, Any], action):  # noqa: ANN001, ANN201
    """Run ``await action(RegistryAdmin)`` against the registry of the config document ``doc``."""
    settings = parse_config(doc)

    async def run():  # noqa: ANN202
        client = connect(settings.redis.url, 2.0)
        try:
            return await action(RegistryAdmin(RedisStore(client, settings.redis.key_prefix), settings))
        finally:
            await client.aclose()

    return asyncio.run(run())


def json_body(r: httpx.Response) -> dict:
    """The JSON body of an authz answer, after checking its content type."""
    assert r.headers["content-type"] == "application/json"
    return r.json()


def drop_keys(redis_server: RedisServer, prefix: str) -> None:
    """Delete every key under ``prefix`` (a module's registry) from the session's redis-server."""
    client = redis_server.client()
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


CLIENTS = {**DEMO_CLIENTS, "blocked-client": "blocked-secret"}


@dataclass
class Stack:
    """The processes of one end-to-end module: key manager, upstream, authz, Envoy."""

    km: KeyManager
    upstream: EchoUpstream
    authz: AuthzProcess
    envoy: ManagedProcess
    gateway: str
    doc: dict
    tmp: Path

    def token(self, client_id: str = "demo-client", scope: str = "orders:read", **claims: object) -> str:
        return self.km.issue_token(client_id, "demo", scope, extra_claims=claims or None)

    def get(self, path: str, token: str | None = None, headers: dict[str, str] | None = None,
            method: str = "GET") -> httpx.Response:
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        return httpx.request(method, self.gateway + path, headers=h, timeout=5)

    def admin(self, action):  # noqa: ANN001, ANN201
        return run_admin(self.doc, action)


def seed(admin: RegistryAdmin):  # noqa: ANN202
    async def go() -> None:
        for app_id, name, client_id, apis in (
            ("demo-app", "Demo App", "demo-client", ["orders-v1"]),
            ("other-app", "Other App", "other-client", []),
            ("blocked-app", "Blocked App", "blocked-client", ["orders-v1"]),
        ):
            await admin.create_application(name, owner="e2e", app_id=app_id)
            await admin.add_client(app_id, client_id)
            for api in apis:
                await admin.subscribe(app_id, api)
        await admin.set_subscription_status("blocked-app", "orders-v1", "BLOCKED")

    return go()


