"""``redis+cluster://`` against a real 3-node Redis Cluster started here (``redis-server --cluster-enabled yes``
joined by ``redis-cli --cluster create``): registry writes and lookups, pub/sub invalidation across nodes, and
the hash-tag rule of the configuration."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import yaml
from redis.crc import key_slot

from authz.config import ConfigError, Settings
from authz.dev.procs import ManagedProcess, free_port, redis_server_binary
from authz.model import ApplicationStatus, KeyType, Lookup, SubscriptionStatus
from authz.registry.admin import RegistryAdmin
from authz.registry.cache import RegistryCache
from authz.registry.redis_conn import connect
from authz.registry.redis_store import RedisStore
from authz.registry.redis_urls import cluster_hash_tag, parse_cluster_url
from authz.registry.store import RegistryError
from tests.test_config import check_config

KM = "test-km"

REDIS_CLI_MISSING = (
    "redis-cli not found (it ships with redis-server): install it with `sudo apt-get install -y redis-server` "
    "(or run `make test`, which installs it)"
)


def _redis_cli() -> str:
    found = shutil.which("redis-cli") or str(Path(redis_server_binary()).with_name("redis-cli"))
    if not Path(found).exists():
        raise RuntimeError(REDIS_CLI_MISSING)
    return found


class Cluster:
    """Three master redis-servers in one cluster (no replicas), slots spread by ``redis-cli --cluster create``."""

    def __init__(self, root: Path, *extra: str) -> None:
        self.ports = [free_port() for _ in range(3)]
        self.procs: list[ManagedProcess] = []
        for port in self.ports:
            d = root / f"node-{port}"
            d.mkdir()
            self.procs.append(ManagedProcess(
                # An explicit bus port: the default (port + 10000) may be taken, or above 65535.
                [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-port", str(free_port()),
                 "--cluster-config-file", str(d / f"nodes-{port}.conf"), "--cluster-node-timeout", "2000",
                 "--save", "", "--appendonly", "no", "--dir", str(d), *extra],
                name="redis-cluster-node", log_dir=d,
            ).start())
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        for proc, port in zip(self.procs, self.ports, strict=True):
            while True:
                try:
                    with self.node(port) as client:
                        client.ping()
                    break
                except redis.RedisError:
                    assert proc.alive(), proc.log_text()
                    assert time.monotonic() < deadline, proc.log_text()
                    time.sleep(0.05)
        created = subprocess.run(
            [_redis_cli(), "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        for port in self.ports:
            while True:
                with self.node(port) as client:
                    if client.execute_command("CLUSTER INFO").get("cluster_state") == "ok":
                        break
                assert time.monotonic() < deadline, f"cluster not ok on {port}"
                time.sleep(0.05)

    def owner(self, key: str) -> int:
        """The port of the master serving ``key``'s slot (asked of every node: only the owner counts it)."""
        slot = key_slot(key.encode())
        with self.node(self.ports[0]) as client:
            shards = client.execute_command("CLUSTER SHARDS")
        for shard in shards:
            if any(start <= slot <= end for start, end in zip(shard["slots"][::2], shard["slots"][1::2],
                                                               strict=True)):
                return next(int(n["port"]) for n in shard["nodes"] if n["role"] == "master")
        raise AssertionError(f"slot {slot} is not served")

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.wait_ready()
        yield c
    finally:
        c.stop()


def _prefix_not_on(cluster: Cluster, port: int) -> str:
    """A hash-tagged prefix whose slot is served by another master than ``port``."""
    for i in range(100):
        prefix = f"{{authz{i}}}:"
        if cluster.owner(prefix + "schema") != port:
            return prefix
    raise AssertionError("every prefix hashed to one node")


async def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, what
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def test_cluster_urls_are_parsed_and_malformed_ones_refused() -> None:
    assert parse_cluster_url("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001/") == (
        [("10.0.0.1", 7000), ("10.0.0.2", 7001)], {"password": "s3cret"})
    assert parse_cluster_url("rediss+cluster://u:p@h:7000?ssl_ca_certs=/ca.pem") == (
        [("h", 7000)], {"ssl_ca_certs": "/ca.pem", "username": "u", "password": "p", "ssl": True})
    for url, reason in (("redis+cluster://h/", "cluster node address 'h' is not host:port"),
                        ("redis+cluster://h:1,h:x/", "cluster node address 'h:x' is not host:port"),
                        ("redis+cluster://h:1/2", "a Redis Cluster has only database 0, not '2'")):
        with pytest.raises(ValueError, match=reason):
            parse_cluster_url(url)
    assert [cluster_hash_tag(p) for p in ("{authz}:", "a{b}c:", "authz:", "{}authz:", "{authz:", "x{}{y}:")] == [
        "authz", "b", None, None, None, None]


def test_check_config_refuses_a_cluster_url_with_a_prefix_without_hash_tag(tmp_path: Path) -> None:
    doc = yaml.safe_load(Path("config/authz.yaml").read_text())
    doc["redis"] = {**doc.get("redis", {}), "url": "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/",
                    "key_prefix": "authz:"}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = check_config(path)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "redis.key_prefix: 'authz:' has no hash tag: with a redis+cluster:// URL the prefix must contain one, "
        "e.g. '{authz}:', so that every registry key is in one cluster slot (see docs/registry.md)"
    )
    doc["redis"]["key_prefix"] = "{authz}:"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert check_config(path).returncode == 0


def test_a_cluster_url_with_a_hash_tagged_prefix_is_valid(make_redis_settings: Callable[..., Settings]) -> None:
    settings = make_redis_settings(redis={"url": "rediss+cluster://127.0.0.1:7000/", "key_prefix": "{authz}:"})
    assert (settings.redis.url, settings.redis.key_prefix) == ("rediss+cluster://127.0.0.1:7000/", "{authz}:")
    with pytest.raises(ConfigError) as info:
        make_redis_settings(redis={"url": "redis+cluster://127.0.0.1:7000/0", "key_prefix": "{}authz:"})
    assert info.value.errors == [
        "redis.key_prefix: '{}authz:' has no hash tag: with a redis+cluster:// URL the prefix must contain one, "
        "e.g. '{authz}:', so that every registry key is in one cluster slot (see docs/registry.md)"
    ]


async def test_registry_operations_and_lookups_through_a_cluster_url(
    cluster: Cluster, make_redis_settings: Callable[..., Settings],
) -> None:
    prefix = "{ops}:"
    settings = make_redis_settings(redis={"url": cluster.url, "key_prefix": prefix, "socket_timeout": 2.0})
    client = connect(settings.redis.url, 2.0)
    store = RedisStore(client, prefix)
    admin = RegistryAdmin(store, settings)
    cache = RegistryCache(store, settings.redis.model_copy(update={"cache_ttl": 300}))
    writers = [connect(settings.redis.url, 5.0) for _ in range(10)]
    await cache.start()
    try:
        await _wait(lambda: cache.invalidations > 0, 5, "invalidation listener did not subscribe")
        apps = [await admin.create_application(f"Racer {i:02d}", app_id=f"racer-{i:02d}") for i in range(10)]
        with pytest.raises(RegistryError, match="application name 'Racer 00' is already used by racer-00"):
            await admin.create_application("Racer 00")
        # A client ID belongs to one application, also with ten writers racing through their own clients.
        results = await asyncio.gather(
            *(RegistryAdmin(RedisStore(w, prefix), settings).add_client(app.id, "demo-client")
              for w, app in zip(writers, apps, strict=True)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1 and len(losers) == 9
        winner = winners[0][0]
        assert {str(e) for e in losers} == {f"client ID demo-client of key manager test-km is already used by application {winner.name}"}
        assert [a.id for a in apps if (c := await admin.clients(a.id)) and c] == [winner.id]

        assert (await cache.lookup(KM, "demo-client", "orders-v1")).subscription is None
        seen = cache.invalidations
        await admin.subscribe(winner.id, "orders-v1")
        await _wait(lambda: cache.invalidations > seen, 1, "no invalidation after subscribe")
        found = await cache.lookup(KM, "demo-client", "orders-v1")
        assert found.binding is not None and found.binding.application_id == winner.id
        assert found.binding.key_type is KeyType.PRODUCTION
        assert found.application is not None and found.application.status is ApplicationStatus.ACTIVE
        assert found.subscription is not None and found.subscription.status is SubscriptionStatus.ACTIVE

        seen = cache.invalidations
        await admin.set_application_status(winner.id, "INACTIVE")
        await admin.set_subscription_status(winner.id, "orders-v1", "BLOCKED")
        await _wait(lambda: cache.invalidations >= seen + 2, 1, "no invalidation after status changes")
        found = await cache.lookup(KM, "demo-client", "orders-v1")
        assert found.application is not None and found.application.status is ApplicationStatus.INACTIVE
        assert found.subscription is not None and found.subscription.status is SubscriptionStatus.BLOCKED

        expiry = int(time.time()) + 600
        await admin.revoke("jti-1", expiry, add_leeway=False)
        assert await cache.is_revoked(KM, "jti-1") is True
        assert [(r.key_manager, r.token_id, r.expires_at) for r in await admin.list_revocations()] == [
            (KM, "jti-1", expiry)]

        # Every registry key is in the prefix's slot, on the master serving it.
        slot = key_slot((prefix + "schema").encode())
        with cluster.node(cluster.owner(prefix + "schema")) as owner:
            assert owner.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == len(owner.keys(prefix + "*")) > 0
            assert owner.hget(f"{prefix}client:{KM}:demo-client", "app_id") == winner.id

            deleted = await admin.delete_application(winner.id)
            assert deleted.id == winner.id
            assert owner.exists(f"{prefix}client:{KM}:demo-client", f"{prefix}app:{winner.id}",
                                f"{prefix}app:{winner.id}:subs", f"{prefix}app:{winner.id}:clients",
                                f"{prefix}app-name:{winner.name}") == 0
            assert not owner.sismember(prefix + "apps", winner.id)
        await _wait(lambda: cache.cached_lookup(KM, "demo-client", "orders-v1") is None, 1,
                    "no invalidation after delete")
        assert await cache.lookup(KM, "demo-client", "orders-v1") == Lookup(None, None, None)
        assert len(await admin.list_applications()) == 9
    finally:
        await cache.close()
        for w in writers:
            await w.aclose()
        await client.aclose()


async def test_a_write_reaches_a_listener_subscribed_on_another_node_within_a_second(
    cluster: Cluster, make_redis_settings: Callable[..., Settings],
) -> None:
    first_node = sorted(f"127.0.0.1:{p}" for p in cluster.ports)[0]  # where the listener subscribes first
    prefix = _prefix_not_on(cluster, int(first_node.rsplit(":", 1)[1]))
    settings = make_redis_settings(redis={"url": cluster.url, "key_prefix": prefix, "socket_timeout": 2.0})
    writer_client = connect(settings.redis.url, 2.0)
    reader_client = connect(settings.redis.url, 2.0)
    writer = RegistryAdmin(RedisStore(writer_client, prefix), settings)
    cache = RegistryCache(RedisStore(reader_client, prefix), settings.redis.model_copy(update={"cache_ttl": 300}))
    await cache.start()
    try:
        await _wait(lambda: cache.invalidations > 0, 5, "invalidation listener did not subscribe")
        subscribers = {}
        for port in cluster.ports:
            with cluster.node(port) as node:
                subscribers[port] = dict(node.pubsub_numsub(prefix + "events"))[prefix + "events"]
        owner = cluster.owner(prefix + "schema")
        assert owner != int(first_node.rsplit(":", 1)[1])
        assert subscribers[owner] == 0
        assert subscribers[int(first_node.rsplit(":", 1)[1])] == 1

        await writer.create_application("Demo", app_id="demo")
        await writer.add_client("demo", "demo-client")
        assert (await cache.lookup(KM, "demo-client", "orders-v1")).subscription is None
        seen = cache.invalidations
        await writer.subscribe("demo", "orders-v1")
        elapsed = await _wait(lambda: cache.invalidations > seen, 1.0, "invalidation did not arrive within 1 s")
        found = await cache.lookup(KM, "demo-client", "orders-v1")
        assert found.subscription is not None and found.subscription.api_id == "orders-v1"
        print(f"\ncluster invalidation: {elapsed * 1000:.1f} ms from the write's return to the listener")
    finally:
        await cache.close()
        await writer_client.aclose()
        await reader_client.aclose()


async def test_the_listener_moves_to_another_node_when_its_node_dies(
    tmp_path: Path, make_redis_settings: Callable[..., Settings],
) -> None:
    # Its own cluster, which keeps serving the other slots while a master is down.
    cluster = Cluster(tmp_path, "--cluster-require-full-coverage", "no")
    try:
        cluster.wait_ready()
        first_port = int(sorted(f"127.0.0.1:{p}" for p in cluster.ports)[0].rsplit(":", 1)[1])
        prefix = _prefix_not_on(cluster, first_port)
        settings = make_redis_settings(redis={"url": cluster.url, "key_prefix": prefix, "socket_timeout": 1.0})
        writer_client = connect(settings.redis.url, 1.0)
        reader_client = connect(settings.redis.url, 1.0)
        writer = RegistryAdmin(RedisStore(writer_client, prefix), settings)
        cache = RegistryCache(RedisStore(reader_client, prefix), settings.redis.model_copy(update={"cache_ttl": 300}))
        await cache.start()
        try:
            await _wait(lambda: cache.invalidations > 0, 5, "invalidation listener did not subscribe")
            await writer.create_application("Demo", app_id="demo")
            await _wait(lambda: cache.invalidations > 1, 1, "no invalidation before the node died")
            cluster.procs[cluster.ports.index(first_port)].kill()  # the node the listener is subscribed on
            seen = cache.invalidations  # the listener clears once more when it has resubscribed elsewhere
            await _wait(lambda: cache.invalidations > seen, 3, "the listener did not resubscribe")
            seen = cache.invalidations
            await writer.add_client("demo", "demo-client")
            await _wait(lambda: cache.invalidations > seen, 1, "no invalidation after the node died")
            survivors = [p for p in cluster.ports if p != first_port]
            counts = []
            for port in survivors:
                with cluster.node(port) as node:
                    counts.append(dict(node.pubsub_numsub(prefix + "events"))[prefix + "events"])
            assert sorted(counts) == [0, 1]
        finally:
            await cache.close()
            await writer_client.aclose()
            await reader_client.aclose()
    finally:
        cluster.stop()
