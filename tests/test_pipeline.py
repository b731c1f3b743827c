"""The decision pipeline (over the in-memory registry store, no Redis): one ordered phase list drives both the
full path and the cache-only fast path, and allow decisions are memoized on the exact objects they depend on."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from authz.config import Settings
from authz.decide.pipeline import Check
from authz.dev.keymanager import KeyManager
from authz.errors import Denial
from authz.model import Allow, Request
from tests.support.pipeline import running_pipeline


def _request(token: str, method: str = "GET", authorization: str | None = None, **ext: str) -> Request:
    return Request(method, "/orders/v1/items", "api.test", {"authorization": authorization or f"Bearer {token}"},
                   {"api_id": "orders-v1", **ext})


def test_the_phases_run_in_the_documented_order() -> None:
    from authz.decide import pipeline as module

    names = [cls.name for cls in (module.RoutePhase, module.PublicPhase, module.CredentialsPhase,
                                  module.IdentityPhase, module.KeyManagerPhase, module.RevocationPhase,
                                  module.ResourcePhase, module.RegistryPhase, module.PolicyPhase)]
    assert names == ["route", "public", "credentials", "identity", "key_manager", "revocation", "resource",
                     "registry", "policy"]
    assert ("route -> public -> credentials -> identity -> key_manager -> revocation -> resource -> registry -> "
            "policy") in (module.__doc__ or "")


async def test_pipeline_phase_list_is_that_order(make_settings: Callable[..., Settings]) -> None:
    async with running_pipeline(make_settings()) as p:
        assert [phase.name for phase in p.pipeline.phases] == [
            "route", "public", "credentials", "identity", "key_manager", "revocation", "resource", "registry",
            "policy"]


async def test_a_repeated_allowed_request_reuses_the_same_decision_until_the_registry_changes(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    async with running_pipeline(make_settings()) as p:
        await p.register()
        token = idp.issue_token("demo-client", "alice", "orders:read")
        first = await p.pipeline.decide(_request(token))
        assert isinstance(first, Allow)
        assert await p.pipeline.decide(_request(token)) is first
        other = await p.pipeline.decide(_request(idp.issue_token("demo-client", "bob", "orders:read")))
        assert isinstance(other, Allow) and other is not first
        assert dict(other.headers)["x-subject"] == "bob"
        # A registry write replaces the cached lookup object: the memo cannot serve a stale decision.
        await p.admin.set_subscription_status("demo-app", "orders-v1", "BLOCKED")
        await p.settle()
        blocked = await p.pipeline.decide(_request(token))
        assert isinstance(blocked, Denial) and blocked.reason.info.code == 900907


async def test_the_cache_only_fast_path_answers_exactly_what_the_full_pipeline_answered(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    async with running_pipeline(make_settings()) as p:
        pipeline = p.pipeline
        await p.register()
        token = idp.issue_token("demo-client", "alice", "orders:read", extra_claims={"jti": "jti-1"})
        assert pipeline.decide_cached(_request(token)) is None  # nothing cached yet
        full = await pipeline.decide(_request(token))
        assert isinstance(full, Allow)
        assert pipeline.decide_cached(_request(token)) is full
        # The credentials phase is the same function in both paths: every spelling of the same credential
        # that it accepts is the same token, so the same decision.
        for spelling in (f"bearer {token}", f"BEARER {token}", f"Bearer   {token}", f"Bearer {token} "):
            assert pipeline.decide_cached(_request(token, authorization=spelling)) is full
            assert await pipeline.decide(_request(token, authorization=spelling)) is full
        # Another environment: the fast path has no memoized allow, the full path denies (never memoized).
        sandbox = _request(token, environment="sandbox")
        assert pipeline.decide_cached(sandbox) is None
        denied = await pipeline.decide(sandbox)
        assert isinstance(denied, Denial) and denied.reason.info.code == 900908
        assert pipeline.decide_cached(sandbox) is None
        # A revocation clears the caches (the event); the fast path misses and the full path denies.
        await p.admin.revoke("jti-1", expires_at=time.time() + 600, key_manager="test-km")
        await p.settle()
        assert pipeline.decide_cached(_request(token)) is None
        revoked = await pipeline.decide(_request(token))
        assert isinstance(revoked, Denial) and revoked.description == "The access token has been revoked"


@pytest.mark.parametrize("authorization", ["Bearer a,Bearer b", "Basic dXNlcjpwYXNz", "Bearer", "Token x"])
async def test_a_credential_the_full_path_refuses_is_never_answered_by_the_fast_path(
    authorization: str, make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    async with running_pipeline(make_settings()) as p:
        await p.register()
        token = idp.issue_token("demo-client", "alice", "orders:read")
        assert isinstance(await p.pipeline.decide(_request(token)), Allow)
        bad = _request(token, authorization=authorization)
        assert p.pipeline.decide_cached(bad) is None
        assert isinstance(await p.pipeline.decide(bad), Denial)


async def test_each_phase_answers_from_its_cache_only_after_the_full_path_filled_it(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    """Walk the phase list by hand, as ``decide_cached`` does: before the first decision the first phase with
    I/O behind it (the route cache aside) misses; after it, every phase answers and the last one allows."""
    async with running_pipeline(make_settings()) as p:
        await p.register()
        request = _request(idp.issue_token("demo-client", "alice", "orders:read"))

        def walk() -> list[str]:
            check, answered = Check(request), []
            for phase in p.pipeline.phases:
                if not phase.cached(check):
                    break
                answered.append(phase.name)
            return answered

        assert walk() == []  # the route was never resolved
        allow = await p.pipeline.decide(request)
        assert walk() == ["route", "public", "credentials", "identity", "key_manager", "revocation", "resource",
                          "registry", "policy"]
        assert p.pipeline.decide_cached(request) is allow
        reads = p.store.reads
        assert await p.pipeline.decide(request) is allow and p.store.reads == reads  # no store read


async def test_a_public_resource_without_credentials_is_allowed_on_both_paths(
    make_settings: Callable[..., Settings],
) -> None:
    apis = [{"id": "open", "name": "Open", "context": "/open", "resources": [{"path": "/**", "auth": "none"}]}]
    async with running_pipeline(make_settings(apis=apis)) as p:
        request = Request("GET", "/open/x", "h", {}, {})
        first = await p.pipeline.decide(request)
        assert isinstance(first, Allow) and first.dynamic_metadata == {"api_id": "open", "auth": "none"}
        cached = p.pipeline.decide_cached(request)
        assert isinstance(cached, Allow) and cached.dynamic_metadata == first.dynamic_metadata
