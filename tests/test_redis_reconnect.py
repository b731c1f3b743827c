"""A restarted Redis costs no failed command: every Redis URL form retries once on a fresh connection
(``authz.registry.redis_conn.retry_once``) before the store reports an outage (503).

Each test reads through one store, restarts the real redis-server behind it (same address, so the pooled
connections are dead but the server is back), and reads again: the second read must answer, not raise
``StoreUnavailable: ConnectionError: Connection closed by server``. Sentinel and Cluster run against a real
Sentinel and a real 3-node cluster, as in tests/test_redis_urls.py and tests/test_redis_cluster.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.asyncio.retry import Retry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from authz.dev.procs import ManagedProcess, RedisServer, free_port, redis_server_binary
from authz.model import Lookup
from authz.registry.redis_conn import connect, retry_once
from authz.registry.redis_store import RedisStore
from authz.registry.store import StoreUnavailable
from tests.test_redis_cluster import Cluster

KM = "km"
EMPTY = Lookup(None, None, None)


async def _lookups_survive(store: RedisStore, restart: Callable[[], None]) -> None:
    """Seed, read, restart Redis, read again on the same store: the second read answers."""
    await store.client.set(store.prefix + "probe", "1")
    assert await store.lookup(KM, "c1", "orders") == EMPTY
    assert await store.schema_version() is None
    restart()
    assert await store.lookup(KM, "c1", "orders") == EMPTY  # raised StoreUnavailable before the retry
    assert await store.client.get(store.prefix + "probe") is None  # really a new server (no persistence here)


def test_the_retry_policy_is_one_immediate_retry_on_connection_errors_only() -> None:
    policy = retry_once()
    assert isinstance(policy, Retry)
    assert policy.get_retries() == 1
    assert RedisConnectionError in policy._supported_errors
    assert RedisTimeoutError not in policy._supported_errors  # a slow Redis is not asked twice
    assert policy._backoff.compute(1) == 0


async def test_plain_url_lookup_after_a_redis_restart_succeeds() -> None:
    server = RedisServer().start()
    store = RedisStore(connect(server.url, 1.0), "plain:")
    try:
        await _lookups_survive(store, server.restart)
        # Both pooled connections of a burst are dead after a second restart: each is retried once.
        server.restart()
        results = await asyncio.gather(*(store.lookup(KM, f"c{i}", "orders") for i in range(8)))
        assert results == [EMPTY] * 8
    finally:
        await store.aclose()
        server.cleanup()


async def test_plain_url_without_redis_still_fails_after_its_one_retry() -> None:
    server = RedisServer().start()
    store = RedisStore(connect(server.url, 0.5), "down:")
    try:
        assert await store.lookup(KM, "c1", "orders") == EMPTY
        server.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="ConnectionError"):
            await store.lookup(KM, "c1", "orders")
        assert time.monotonic() - started < 0.5  # refused twice at once, no backoff
    finally:
        await store.aclose()
        server.cleanup()


async def test_unix_socket_url_lookup_after_a_redis_restart_succeeds(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    proc = ManagedProcess([redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm",
                           "700", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                          name="redis-server", log_dir=tmp_path)

    def start() -> None:
        proc.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(unix_socket_path=str(sock), socket_timeout=0.5) as probe:
                    if probe.ping():
                        return
            except redis.RedisError:
                pass
            assert proc.alive() and time.monotonic() < deadline, proc.log_text()
            time.sleep(0.05)

    def restart() -> None:
        proc.stop()
        start()

    start()
    store = RedisStore(connect(f"unix://{sock}?db=0", 1.0), "unix:")
    try:
        await _lookups_survive(store, restart)
    finally:
        await store.aclose()
        proc.stop()


async def test_sentinel_url_lookup_after_the_master_restarts_succeeds(tmp_path: Path) -> None:
    master = RedisServer().start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nsentinel monitor g 127.0.0.1 {master.port} 1\n"
                    "sentinel down-after-milliseconds g 5000\n", encoding="utf-8")
    sentinel = ManagedProcess([redis_server_binary(), str(conf), "--sentinel"], name="sentinel",
                              log_dir=tmp_path).start()
    sentinel.wait_port("127.0.0.1", port)
    store = RedisStore(connect(f"redis+sentinel://127.0.0.1:{port}/g/0", 1.0), "sentinel:")
    try:
        await _lookups_survive(store, master.restart)
    finally:
        await store.aclose()
        sentinel.stop()
        master.cleanup()


async def test_cluster_url_lookup_after_the_slot_owner_restarts_succeeds(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        cluster.wait_ready()
        prefix = "{reconnect}:"
        owner = cluster.owner(prefix + "schema")
        index = cluster.ports.index(owner)

        def restart() -> None:
            node = cluster.procs[index]
            node.stop()
            node.start()
            deadline = time.monotonic() + 15
            while True:  # back in the cluster, serving its slots again (its nodes.conf is kept)
                try:
                    with cluster.node(owner) as client:
                        if client.execute_command("CLUSTER INFO").get("cluster_state") == "ok":
                            return
                except redis.RedisError:
                    pass
                assert node.alive() and time.monotonic() < deadline, node.log_text()
                time.sleep(0.05)

        store = RedisStore(connect(cluster.url, 1.0), prefix)
        try:
            await _lookups_survive(store, restart)
        finally:
            await store.aclose()
    finally:
        cluster.stop()
