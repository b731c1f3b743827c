"""Redis URL forms against real redis-servers: ``rediss://`` (TLS), ``unix://`` (a Unix socket) and
``redis+sentinel://`` (a real Sentinel)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authz.config import Settings
from authz.dev.procs import ManagedProcess, RedisServer, free_port, redis_server_binary
from authz.registry.admin import RegistryAdmin
from authz.registry.cache import RegistryCache
from authz.registry.redis_conn import connect
from authz.registry.redis_store import RedisStore
from authz.registry.redis_urls import parse_sentinel_url
from authz.registry.store import StoreUnavailable


def _write_certs(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM files: ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authz test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = d / "ca.pem", d / "server.pem", d / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _start(args: list[str], d: Path, ready: Callable[[], bool]) -> ManagedProcess:
    proc = ManagedProcess([redis_server_binary(), "--save", "", "--appendonly", "no", "--dir", str(d), *args],
                          name="redis-server", log_dir=d).start()
    deadline = time.monotonic() + 10
    while not ready():
        assert proc.alive(), proc.log_text()
        assert time.monotonic() < deadline, proc.log_text()
        time.sleep(0.05)
    return proc


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca, cert, key = _write_certs(tmp_path)
    port = free_port()
    proc = _start(["--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port), "--tls-cert-file", str(cert),
                   "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"],
                  tmp_path, lambda: "Ready to accept connections" in (tmp_path / "redis-server.log").read_text())
    yield f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", ca
    proc.stop()


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[str]:
    sock = tmp_path / "redis.sock"
    proc = _start(["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"], tmp_path, sock.exists)
    yield f"unix://{sock}?db=0"
    proc.stop()


async def _registry_round_trip(settings: Settings) -> None:
    """Write through RegistryAdmin, read through the RegistryCache, and see a pub/sub invalidation."""
    client = connect(settings.redis.url, 2.0)
    store = RedisStore(client, settings.redis.key_prefix)
    admin = RegistryAdmin(store, settings)
    cache = RegistryCache(store, settings.redis.model_copy(update={"cache_ttl": 300}))
    await cache.start()
    try:
        deadline = time.monotonic() + 5
        while cache.invalidations == 0:
            assert time.monotonic() < deadline, "invalidation listener did not subscribe"
            await asyncio.sleep(0.01)
        await admin.create_application("Demo App", app_id="demo")
        await admin.add_client("demo", "demo-client")
        assert (await cache.lookup("test-km", "demo-client", "orders-v1")).subscription is None
        seen = cache.invalidations
        await admin.subscribe("demo", "orders-v1")
        while cache.invalidations == seen:
            assert time.monotonic() < deadline + 5, "no invalidation event"
            await asyncio.sleep(0.005)
        found = await cache.lookup("test-km", "demo-client", "orders-v1")
        assert found.subscription is not None and found.subscription.api_id == "orders-v1"
    finally:
        await cache.close()
        await client.aclose()


async def test_rediss_url_with_a_private_ca_reads_writes_and_invalidates(
    tls_redis: tuple[str, Path], make_redis_settings: Callable[..., Settings],
) -> None:
    url, _ = tls_redis
    await _registry_round_trip(make_redis_settings(redis={"url": url, "key_prefix": "tls:"}))


async def test_rediss_url_refuses_a_server_certificate_from_an_unknown_ca(tls_redis: tuple[str, Path]) -> None:
    url, _ = tls_redis
    client = connect(url.split("?")[0], 2.0)  # system CAs only: the test CA is not trusted
    try:
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            await client.ping()
    finally:
        await client.aclose()


async def test_unix_socket_url_reads_writes_and_invalidates(
    unix_redis: str, make_redis_settings: Callable[..., Settings],
) -> None:
    await _registry_round_trip(make_redis_settings(redis={"url": unix_redis, "key_prefix": "unix:"}))


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[tuple[str, RedisServer]]:
    """A real master redis-server watched by a real Sentinel (``redis-server --sentinel``)."""
    master = RedisServer().start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor authzgroup 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds authzgroup 1000\n",
        encoding="utf-8",
    )
    proc = ManagedProcess([redis_server_binary(), str(conf), "--sentinel"], name="redis-sentinel",
                          log_dir=tmp_path).start()

    def ready() -> bool:
        try:
            client = redis.Redis(port=port, socket_timeout=0.5, decode_responses=True)
            try:
                return client.sentinel_get_master_addr_by_name("authzgroup", return_responses=True) == (
                    "127.0.0.1", master.port)
            finally:
                client.close()
        except redis.RedisError:
            return False

    deadline = time.monotonic() + 10
    while not ready():
        assert proc.alive() and time.monotonic() < deadline, proc.log_text()
        time.sleep(0.05)
    yield f"redis+sentinel://127.0.0.1:{port}/authzgroup/0", master
    proc.stop()
    master.cleanup()


async def test_sentinel_url_finds_the_master_reads_writes_and_invalidates(
    sentinel_group: tuple[str, RedisServer], make_redis_settings: Callable[..., Settings],
) -> None:
    url, master = sentinel_group
    settings = make_redis_settings(redis={"url": url, "key_prefix": "sentinel:"})
    await _registry_round_trip(settings)
    direct = master.client(decode_responses=True)
    assert direct.hget("sentinel:app:demo", "name") == "Demo App"  # the data is on the master
    direct.close()


def test_sentinel_urls_are_parsed_and_malformed_ones_refused() -> None:
    assert parse_sentinel_url("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/mymaster/2") == (
        [("10.0.0.1", 26379), ("10.0.0.2", 26380)], "mymaster", 2, {"password": "s3cret"})
    assert parse_sentinel_url("rediss+sentinel://h:26379/m?ssl_ca_certs=/ca.pem") == (
        [("h", 26379)], "m", 0, {"ssl_ca_certs": "/ca.pem", "ssl": True})
    for url, reason in (("redis+sentinel://h/m", "sentinel address 'h' is not host:port"),
                        ("redis+sentinel://h:1", "the path must be /service_name or /service_name/db"),
                        ("redis+sentinel://h:1/m/x", "db 'x' is not a number")):
        with pytest.raises(ValueError, match=re.escape(reason)):
            parse_sentinel_url(url)


async def test_sentinel_url_follows_a_failover_to_the_promoted_replica(
    tmp_path: Path, make_redis_settings: Callable[..., Settings],
) -> None:
    master = RedisServer().start()
    replica_dir = tmp_path / "replica"
    replica_dir.mkdir()
    replica = RedisServer(data_dir=replica_dir)
    replica_port = replica.port
    replica_proc = _start(["--port", str(replica_port), "--bind", "127.0.0.1", "--replicaof", "127.0.0.1",
                           str(master.port)], replica_dir,
                          lambda: "MASTER <-> REPLICA sync: Finished" in (replica_dir / "redis-server.log").read_text())
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor g 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds g 300\nsentinel failover-timeout g 2000\n",
        encoding="utf-8",
    )
    sentinel = ManagedProcess([redis_server_binary(), str(conf), "--sentinel"], name="sentinel",
                              log_dir=tmp_path).start()
    settings = make_redis_settings(redis={"url": f"redis+sentinel://127.0.0.1:{port}/g/0", "key_prefix": "fo:",
                                    "socket_timeout": 0.5})
    client = connect(settings.redis.url, 0.5)
    admin = RegistryAdmin(RedisStore(client, "fo:"), settings)
    try:
        deadline = time.monotonic() + 10
        probe = redis.Redis(port=port, socket_timeout=0.5)
        while True:  # the sentinel needs a moment to learn about the replica
            try:
                if len(probe.sentinel_slaves("g")) == 1:
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, sentinel.log_text()
            time.sleep(0.05)
        probe.close()
        await admin.create_application("Before", app_id="before")
        master.kill()
        failed_over_at = time.monotonic()
        deadline = failed_over_at + 10
        while True:
            try:
                await admin.create_application("After", app_id="after")
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, sentinel.log_text()
                await asyncio.sleep(0.1)
        elapsed = time.monotonic() - failed_over_at
        promoted = redis.Redis(port=replica_port, decode_responses=True)
        assert promoted.role()[0] == "master"
        assert sorted(promoted.smembers("fo:apps")) == ["after", "before"]  # replicated, then written there
        promoted.close()
        print(f"\nsentinel failover: writes resumed {elapsed * 1000:.0f} ms after the master was killed")
    finally:
        await client.aclose()
        sentinel.stop()
        replica_proc.stop()
        master.cleanup()
        replica.cleanup()
