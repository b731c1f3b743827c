"""Shared fixtures: real redis-server, a real key manager on loopback, authz settings and servers.

Lifecycle is visible: every service is started here, waited for, and stopped; logs are printed when a
test using a subprocess fails. Nothing is assumed to be running, nothing is faked.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from authz.config import Settings, parse_config
from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey
from authz.dev.procs import ManagedProcess, RedisServer, free_port
from authz.dev.stack import wait_serving
from authz.registry.admin import RegistryAdmin
from authz.registry.redis_store import RedisStore, connect

AUDIENCE = "authz-test"


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
    """A real OAuth2 key manager on a free loopback port, serving JWKS and discovery (RSA key ``k1``)."""
    km = KeyManager("http://issuer.invalid", AUDIENCE, DEMO_CLIENTS, DEMO_USERS, keys=[rsa_key])
    km.start()
    km.issuer = km.url  # iss is the server's own URL, as for a real IdP
    yield km
    km.stop()


def settings_dict(idp: KeyManager, redis_url: str, prefix: str, **overrides: Any) -> dict[str, Any]:
    """A config document for tests: one key manager (``idp``), the demo APIs, fast JWKS timings.

    Keyword overrides replace top-level sections; ``km`` updates the key manager entry.
    """
    km = {
        "name": "test-km",
        "issuer": idp.issuer,
        "jwks_uri": f"{idp.url}/oauth2/jwks",
        "audiences": [AUDIENCE],
        "algorithms": ["RS256", "PS256", "ES256", "EdDSA"],
        "leeway": 60,
        "jwks": {"refresh_interval": 300, "kid_refetch_cooldown": 30, "timeout": 2, "retry_interval": 0.2},
    }
    km.update(overrides.pop("km", {}))
    doc: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{free_port()}", "decision_timeout": 2.0, "grace_period": 2, "workers": 1},
        "redis": {"url": redis_url, "key_prefix": prefix, "socket_timeout": 0.5},
        "key_managers": [km],
        "apis": yaml.safe_load(Path("config/authz.yaml").read_text())["apis"],
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def make_settings(idp: KeyManager, redis_server: RedisServer, key_prefix: str) -> Callable[..., Settings]:
    """Build validated :class:`Settings` for this test's key manager, Redis and prefix."""

    def build(**overrides: Any) -> Settings:
        return parse_config(settings_dict(idp, redis_server.url, key_prefix, **overrides))

    return build


class AuthzProcess:
    """``authz serve`` in a subprocess with a config file written from a settings document."""

    def __init__(self, doc: dict[str, Any], tmp: Path) -> None:
        self.doc = doc
        self.config = tmp / "authz.yaml"
        self.config.write_text(yaml.safe_dump(doc), encoding="utf-8")
        self.listen = doc["server"]["listen"]
        self.port = int(self.listen.rsplit(":", 1)[1])
        self.proc = ManagedProcess(
            [sys.executable, "-m", "authz", "serve", "--config", str(self.config), "--log-level", "info"],
            name="authz", log_dir=tmp,
        )

    def start(self) -> AuthzProcess:
        self.proc.start()
        wait_serving(self.listen, timeout=20)
        return self

    def stop(self) -> int | None:
        return self.proc.stop()

    def log_text(self) -> str:
        return self.proc.log_text()


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
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """This test's validated settings (its key manager, Redis and key prefix)."""
    return make_settings()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStore]:
    """The registry store on this test's key prefix."""
    client = connect(settings.redis.url, 2.0)
    yield RedisStore(client, settings.redis.key_prefix)
    await client.aclose()


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
