"""Registry behaviour across real `authz serve` processes: invalidation latency between two workers, and a
Redis killed under load and restarted (field case C26). Every decision is a real gRPC Check."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc

from authz.config import parse_config
from authz.dev.keymanager import KeyManager
from authz.dev.procs import RedisServer
from authz.registry.admin import RegistryAdmin
from authz.registry.redis_store import RedisStore
from tests.support.config import settings_dict
from tests.support.processes import AuthzProcess


@dataclass(frozen=True)
class Verdict:
    grpc_code: int
    http_status: int  # 200 for an allow
    code: int | None  # authz error code of a denial


class Checker:
    """A persistent gRPC channel to one authz process."""

    def __init__(self, listen: str) -> None:
        self.channel = grpc.insecure_channel(listen)
        self.stub = external_auth_pb2_grpc.AuthorizationStub(self.channel)

    def check(self, token: str) -> Verdict:
        req = pb.CheckRequest()
        http = req.attributes.request.http
        http.method, http.path, http.host = "GET", "/orders/v1/items", "api.example.test"
        http.headers["authorization"] = f"Bearer {token}"
        req.attributes.context_extensions["api_id"] = "orders-v1"
        reply = self.stub.Check(req, timeout=5)
        if reply.status.code == 0:
            return Verdict(0, 200, None)
        return Verdict(reply.status.code, reply.denied_response.status.code,
                       json.loads(reply.denied_response.body)["code"])

    def until(self, token: str, expected: Verdict, timeout: float = 5.0) -> Verdict:
        """Check until the verdict is ``expected`` (a registry write reaches the process through pub/sub, a few
        milliseconds after it is acknowledged) or ``timeout`` seconds passed; returns the last verdict."""
        deadline = time.monotonic() + timeout
        verdict = self.check(token)
        while verdict != expected and time.monotonic() < deadline:
            time.sleep(0.02)
            verdict = self.check(token)
        return verdict

    def close(self) -> None:
        self.channel.close()


class Admin:
    """RegistryAdmin on a private event loop, so each write is one Redis round trip from the test thread."""

    def __init__(self, doc: dict) -> None:
        self.loop = asyncio.new_event_loop()
        settings = parse_config(doc)
        self.store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, 2.0)
        self.admin = RegistryAdmin(self.store, settings)

    def __call__(self, method: str, *args: object, **kwargs: object) -> object:
        return self.loop.run_until_complete(getattr(self.admin, method)(*args, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.store.aclose())
        self.loop.close()


def seed(admin: Admin) -> None:
    admin("create_application", "Demo App", app_id="demo")
    admin("add_client", "demo", "demo-client")
    admin("subscribe", "demo", "orders-v1")
    admin("create_application", "Other App", app_id="other")
    admin("add_client", "other", "other-client")


ALLOW = Verdict(0, 200, None)
BLOCKED = Verdict(7, 403, 900907)
NOT_SUBSCRIBED = Verdict(7, 403, 900908)
UNAVAILABLE = Verdict(7, 503, 900950)


def test_a_write_reaches_two_worker_processes_in_under_100_ms(
    start_authz: Callable[..., AuthzProcess], idp: KeyManager, redis_server: RedisServer, key_prefix: str,
) -> None:
    doc = settings_dict(idp, redis_server.url, key_prefix)
    admin = Admin(doc)
    seed(admin)
    workers = [start_authz(redis={**doc["redis"], "cache_ttl": 300}) for _ in range(2)]
    checkers = [Checker(w.listen) for w in workers]
    token = idp.issue_token("demo-client", "demo", "orders:read")
    try:
        for c in checkers:
            assert c.check(token) == ALLOW  # warm: from now on both answer from their caches
        latencies = []
        for status, expected in (("BLOCKED", BLOCKED), ("ACTIVE", ALLOW)) * 3:
            start = time.perf_counter()
            admin("set_subscription_status", "demo", "orders-v1", status)
            pending = set(range(len(checkers)))
            while pending:
                for i in list(pending):
                    if checkers[i].check(token) == expected:
                        pending.discard(i)
                assert time.perf_counter() - start < 1.0, f"{status} not enforced by workers {pending} within 1 s"
            latencies.append(time.perf_counter() - start)
        print(f"\ninvalidation latency across 2 workers (write + both enforcing), ms: "
              f"{', '.join(f'{x * 1000:.1f}' for x in latencies)}")
        assert max(latencies) < 0.100, latencies
    finally:
        for c in checkers:
            c.close()
        admin.close()


@pytest.fixture
def outage_redis() -> Iterator[RedisServer]:
    """A private redis-server that saves its data, so it comes back with it after a SIGKILL and restart."""
    server = RedisServer(persist=True).start()
    yield server
    server.cleanup()


def test_redis_killed_under_load_never_allows_wrongly_and_recovers_without_restart(
    start_authz: Callable[..., AuthzProcess], idp: KeyManager, outage_redis: RedisServer, key_prefix: str,
) -> None:
    doc = settings_dict(idp, outage_redis.url, key_prefix)
    admin = Admin(doc)
    seed(admin)
    admin.close()
    raw = outage_redis.client()
    raw.save()  # the restarted server loads this snapshot
    raw.close()
    authz = start_authz(
        redis={**doc["redis"], "socket_timeout": 0.2, "cache_ttl": 0.3, "negative_cache_ttl": 0.3, "max_stale": 0.5},
        server={**doc["server"], "decision_timeout": 1.0},
    )
    good = idp.issue_token("demo-client", "demo", "orders:read")
    unsubscribed = idp.issue_token("other-client", "demo", "orders:read")
    log: list[tuple[float, str, Verdict]] = []
    stop = threading.Event()

    def load(name: str, token: str) -> None:
        checker = Checker(authz.listen)
        try:
            while not stop.is_set():
                log.append((time.monotonic(), name, checker.check(token)))
                time.sleep(0.005)
        finally:
            checker.close()

    threads = [threading.Thread(target=load, args=a) for a in (("good", good), ("unsubscribed", unsubscribed))]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        killed_at = time.monotonic()
        outage_redis.kill()
        time.sleep(1.5)  # past cache_ttl + max_stale: cached entries stop deciding
        outage_redis.restart()
        restarted_at = time.monotonic()
        deadline = restarted_at + 5
        while time.monotonic() < deadline:
            if any(t > restarted_at and n == "good" and v == ALLOW for t, n, v in log[-50:]):
                break
            time.sleep(0.02)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)

    good_verdicts = {v for _, n, v in log if n == "good"}
    bad_verdicts = {v for _, n, v in log if n == "unsubscribed"}
    assert good_verdicts == {ALLOW, UNAVAILABLE}, good_verdicts  # never 401/403 for an outage
    assert bad_verdicts == {NOT_SUBSCRIBED, UNAVAILABLE}, bad_verdicts  # never an allow on error
    first_503 = min(t for t, n, v in log if v == UNAVAILABLE)
    assert killed_at < first_503 < killed_at + 0.3 + 0.5 + 0.4  # by cache_ttl + max_stale (+ scheduling slack)
    assert not any(v == UNAVAILABLE for t, _, v in log if t < killed_at)
    # fresh cached entries keep deciding right after the kill (stale allowance up to ttl + max_stale)
    assert any(v == ALLOW for t, n, v in log if killed_at < t < killed_at + 0.25 and n == "good")
    recovered = min(t for t, n, v in log if n == "good" and v == ALLOW and t > restarted_at)
    after = [v for t, n, v in log if t > recovered + 0.1]
    assert after and set(after) <= {ALLOW, NOT_SUBSCRIBED}
    print(f"\nchecks under load: {len(log)}; first 503 {1000 * (first_503 - killed_at):.0f} ms after the kill; "
          f"recovered {1000 * (recovered - restarted_at):.0f} ms after redis answered again")
    assert recovered - restarted_at < 2.0
