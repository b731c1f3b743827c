"""Shared fixtures: a real key manager on loopback, settings, a real redis-server when a test needs one.

Lifecycle is visible: every service is started here, waited for, and stopped; logs are printed when a
test using a subprocess fails. Nothing is assumed to be running, nothing is faked. Tests of the code above the
store (pipeline, policy, registry cache) use :class:`authz.registry.memory.MemoryStore` and never start Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from authz.config import Settings, parse_config
from authz.dev.keymanager import KeyManager, SigningKey
from authz.dev.procs import RedisServer
from authz.registry.admin import RegistryAdmin
from authz.registry.redis_store import RedisStore
from tests.support.config import AUDIENCE, settings_dict
from tests.support.processes import AuthzProcess


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (tests isolate themselves by key prefix)."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def key_prefix() -> str:
    """A key prefix of its own for each test, so tests never see each other's registry."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey.generate_rsa(kid="k1")


@pytest.fixture
def idp(rsa_key: SigningKey) -> Iterator[KeyManager]:
    """A real OAuth2 key manager on a free loopback port, serving JWKS and discovery (RSA key ``k1``); its
    issuer is its own URL, as for a real IdP."""
    km = KeyManager(AUDIENCE, keys=[rsa_key])
    km.start()
    yield km
    km.stop()


@pytest.fixture
def make_settings(idp: KeyManager, key_prefix: str) -> Callable[..., Settings]:
    """Build validated :class:`Settings` for this test's key manager (no Redis: the URL answers nothing)."""

    def build(**overrides: Any) -> Settings:
        return parse_config(settings_dict(idp, prefix=key_prefix, **overrides))

    return build


@pytest.fixture
def make_redis_settings(idp: KeyManager, redis_server: RedisServer, key_prefix: str) -> Callable[..., Settings]:
    """Build validated :class:`Settings` for this test's key manager, the session's Redis and this test's prefix."""

    def build(**overrides: Any) -> Settings:
        return parse_config(settings_dict(idp, redis_server.url, key_prefix, **overrides))

    return build


@pytest.fixture
def start_authz(
    idp: KeyManager, redis_server: RedisServer, key_prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., AuthzProcess]]:
    """Start ``authz serve`` subprocesses; stopped after the test, their logs printed if it failed."""
    started: list[AuthzProcess] = []

    def start(**overrides: Any) -> AuthzProcess:
        doc = settings_dict(idp, redis_server.url, key_prefix, **overrides)
        d = tmp_path / f"authz{len(started)}"
        d.mkdir()
        proc = AuthzProcess(doc, d)
        started.append(proc)
        return proc.start()

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for proc in started:
        proc.stop()
        if failed:
            print(f"\n----- authz log ({proc.listen}) -----\n{proc.log_text()[-6000:]}")


@pytest.fixture
def settings(make_redis_settings: Callable[..., Settings]) -> Settings:
    """This test's validated settings (its key manager, the session's Redis, its key prefix)."""
    return make_redis_settings()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStore]:
    """The Redis registry store on this test's key prefix."""
    store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, 2.0)
    yield store
    await store.aclose()


@pytest.fixture
def admin(store: RedisStore, settings: Settings) -> RegistryAdmin:
    """Validated registry operations, as the CLI and the admin API perform them."""
    return RegistryAdmin(store, settings)


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain synchronous client, to look at (and damage) records by hand."""
    client = redis_server.client(decode_responses=True)
    yield client
    client.close()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
