"""Redis faults under load through real Envoy (HTTP ext_authz mode) -> ``authz serve`` -> the echo upstream, with
a Redis of its own started as ``make run`` starts it (:func:`authz.dev.stack.dev_redis`: AOF, ``appendfsync
always``).

* ``kill -9`` of Redis and a restart, after a revocation and an unsubscribe made through the registry's admin
  operations: the revoked token stays 401, the unsubscribed application 403, valid warm traffic is allowed,
  lookups Redis must answer are denied 503 while it is down (fail closed), and once it is back no request gets
  a 503 (a dead pooled connection is retried once on a fresh one).
* Redis paused past ``redis.socket_timeout`` (``CLIENT PAUSE``): warm (cached) traffic keeps being allowed,
  uncached lookups are denied 503, nothing fails and nothing is wrongly allowed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import jwt
import pytest

from authz.dev.keymanager import KeyManager
from authz.dev.procs import RedisServer, free_port
from authz.dev.stack import dev_redis
from authz.dev.upstream import EchoUpstream
from tests.faults.load import Shot, Tally, driving, report
from tests.faults.stack import (
    Authz,
    Gateway,
    config_doc,
    forged,
    fresh_tokens,
    key_manager,
    seed,
    serving,
    valid,
)
from tests.support.registry import run_admin

pytestmark = pytest.mark.e2e


@dataclass
class RedisStack:
    redis: RedisServer
    km: KeyManager
    authz: Authz
    gateway: Gateway
    revoked: str
    """A demo-client token whose jti was revoked."""
    other: str
    """A valid token of Other App, unsubscribed from orders-v1."""


def _status(g: Gateway, token: str) -> int:
    return httpx.get(g.url + "/orders/v1/items", headers={"authorization": f"Bearer {token}"}, timeout=5).status_code


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisStack]:
    tmp = tmp_path_factory.mktemp("faults-redis")
    redis = dev_redis(free_port(), tmp / "run").start()
    km, upstream = key_manager(), EchoUpstream()
    upstream.start()
    doc = config_doc(km, redis.url, "faults-redis:")
    seed(doc)
    try:
        with serving(tmp, doc, upstream.port) as (authz, gateways):
            g = gateways["http"]
            revoked, other = valid(km), valid(km, "other-client")
            assert (_status(g, revoked), _status(g, other)) == (200, 200)
            claims = jwt.decode(revoked, options={"verify_signature": False})

            async def write(admin):  # noqa: ANN001, ANN202
                await admin.revoke(claims["jti"], claims["exp"])
                await admin.unsubscribe("other-app", "orders-v1")

            run_admin(doc, write)
            deadline = time.monotonic() + 10
            while (_status(g, revoked), _status(g, other)) != (401, 403):  # every cache heard of the writes
                assert time.monotonic() < deadline
                time.sleep(0.1)
            yield RedisStack(redis, km, authz, g, revoked, other)
    finally:
        upstream.stop()
        km.stop()
        redis.cleanup()


def _mix(s: RedisStack) -> list[Shot]:
    return [Shot("valid", valid(s.km)), Shot("fresh", fresh_tokens(s.km, 300)),
            Shot("revoked", s.revoked, True), Shot("unsubscribed", s.other, True), Shot("forged", forged(s.km), True)]


def _assert_decided(tally: Tally) -> None:
    """What holds through any Redis fault: nothing failed or wrongly allowed, warm valid traffic allowed, the
    revoked token 401, the unsubscribed application 403; only uncached lookups may be denied 503."""
    assert tally.wrong_allows == 0
    assert tally.failed == 0, tally.failures()
    for label, status in (("valid", 200), ("revoked", 401), ("unsubscribed", 403), ("forged", 401)):
        assert tally.statuses(label) == {status: len(tally.select(label))}, label
    assert set(tally.statuses("fresh")) <= {200, 503}


def test_kill_9_of_redis_keeps_the_revocation_and_the_unsubscribe_and_fails_no_request(
        stack: RedisStack, record_property) -> None:  # noqa: ANN001
    with driving(stack.gateway.url, _mix(stack), seconds=5) as tally:
        time.sleep(1.5)
        assert stack.redis.kill() == -9
        down = tally.clock()
        time.sleep(1.0)
        stack.redis.start()
        back = tally.clock()
    report(tally, "redis-kill-9", record_property)
    _assert_decided(tally)
    assert tally.denied("fresh", since=down + 0.6).get(503, 0) > 0  # Redis was missed: the fault happened
    assert 503 not in tally.statuses(since=back), [r for r in tally.select(since=back) if r.status == 503][:3]
    assert len(tally.select(since=back)) > 200  # traffic after the restart was measured
    with stack.redis.client(decode_responses=True) as client:
        assert client.config_get("appendfsync") == {"appendfsync": "always"}


def test_redis_paused_past_the_socket_timeout_keeps_warm_traffic_and_denies_uncached_lookups(
        stack: RedisStack, record_property) -> None:  # noqa: ANN001
    socket_timeout = stack.authz.doc["redis"]["socket_timeout"]
    with stack.redis.client() as client:
        assert client.ping()
    with driving(stack.gateway.url, _mix(stack), seconds=6) as tally:
        time.sleep(1)
        paused = tally.clock()
        with stack.redis.client() as client:
            client.execute_command("CLIENT", "PAUSE", 3000, "ALL")  # every other client's commands wait 3 s
        resumed = paused + 3.0
    report(tally, "redis-slow", record_property)
    _assert_decided(tally)
    # Uncached lookups sent well inside the pause fail closed, after the socket timeout, long before Redis resumes.
    slow = [r for r in tally.select("fresh") if paused + 0.2 < r.at < resumed - socket_timeout - 1.0]
    assert len(slow) > 20 and {r.status for r in slow} == {503}
    assert all(r.took >= socket_timeout for r in slow)
    assert {r.status for r in tally.select("fresh", since=resumed + 0.5)} == {200}

