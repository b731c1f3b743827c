"""The pipeline memoizes allow decisions on the exact objects they depend on, and nothing else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from authz.config import Settings
from authz.dev.keymanager import KeyManager
from authz.model import Allow, Request
from authz.ops.server import build_services
from authz.registry.admin import RegistryAdmin


def _request(token: str, method: str = "GET") -> Request:
    return Request(method, "/orders/v1/items", "api.test", {"authorization": f"Bearer {token}"}, {"api_id": "orders-v1"})


async def test_a_repeated_allowed_request_reuses_the_same_decision_until_the_registry_changes(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    settings = make_settings()
    services = await build_services(settings)
    try:
        admin = RegistryAdmin(services.store, settings)
        await admin.create_application("Demo App", app_id="demo-app")
        await admin.add_client("demo-app", "demo-client")
        await admin.subscribe("demo-app", "orders-v1")
        token = idp.issue_token("demo-client", "alice", "orders:read")
        first = await services.pipeline.decide(_request(token))
        assert isinstance(first, Allow)
        assert await services.pipeline.decide(_request(token)) is first
        other = await services.pipeline.decide(_request(idp.issue_token("demo-client", "bob", "orders:read")))
        assert isinstance(other, Allow) and other is not first
        assert dict(other.headers)["x-subject"] == "bob"
        # A registry write replaces the cached lookup object: the memo cannot serve a stale decision.
        await admin.set_subscription_status("demo-app", "orders-v1", "BLOCKED")
        services.registry.clear()  # what the invalidation listener does on the write's event
        blocked = await services.pipeline.decide(_request(token))
        assert not isinstance(blocked, Allow)
        assert blocked.reason.info.code == 900907
    finally:
        await services.close()


async def test_the_cache_only_fast_path_answers_exactly_what_the_full_pipeline_answered(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    settings = make_settings()
    services = await build_services(settings)
    pipeline = services.pipeline
    try:
        admin = RegistryAdmin(services.store, settings)
        await admin.create_application("Demo App", app_id="demo-app")
        await admin.add_client("demo-app", "demo-client")
        await admin.subscribe("demo-app", "orders-v1")
        token = idp.issue_token("demo-client", "alice", "orders:read", extra_claims={"jti": "jti-1"})
        await settle(services)
        assert pipeline.decide_cached(_request(token)) is None  # nothing cached yet
        full = await pipeline.decide(_request(token))
        assert isinstance(full, Allow)
        assert pipeline.decide_cached(_request(token)) is full
        # Any other shape of the same credential, another route or another environment: the full path.
        spaced = Request("GET", "/orders/v1/items", "api.test", {"authorization": f"Bearer  {token}"},
                         {"api_id": "orders-v1"})
        assert pipeline.decide_cached(spaced) is None
        sandbox = Request("GET", "/orders/v1/items", "api.test", {"authorization": f"Bearer {token}"},
                          {"api_id": "orders-v1", "environment": "sandbox"})
        assert pipeline.decide_cached(sandbox) is None
        denied = await pipeline.decide(sandbox)
        assert not isinstance(denied, Allow) and denied.reason.info.code == 900908
        assert pipeline.decide_cached(sandbox) is None  # denials are never memoized
        # A revocation clears the caches (the event); the fast path misses and the full path denies.
        await admin.revoke("jti-1", expires_at=time.time() + 600, key_manager="test-km")
        await settle(services)
        assert pipeline.decide_cached(_request(token)) is None
        revoked = await pipeline.decide(_request(token))
        assert not isinstance(revoked, Allow) and revoked.description == "The access token has been revoked"
    finally:
        await services.close()


async def settle(services) -> None:  # noqa: ANN001
    """Wait until the invalidation events of the writes so far have reached the registry cache."""
    for _ in range(100):
        before = services.registry.invalidations
        await asyncio.sleep(0.05)
        if services.registry.invalidations == before and before > 0:
            return
    raise AssertionError("registry invalidations did not settle")
