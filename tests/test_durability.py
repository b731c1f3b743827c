"""Durable security state: the Redis of ``make run`` keeps every acknowledged write through ``kill -9``; authz
checks the persistence of the Redis it is given and reports it (log and the ``authz.durability`` health
service); a Redis restarted from an older copy of its data is noticed and a revocation once seen stays enforced.

Real redis-servers (started with the dev stack's own settings, :func:`authz.dev.stack.dev_redis`), real
``authz serve`` processes and real gRPC Checks.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import jwt
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.dev.keymanager import KeyManager
from authz.dev.procs import DURABLE_REDIS_ARGS, ManagedProcess, RedisServer, free_port, redis_server_binary
from authz.dev.stack import dev_redis
from authz.ops.server import DURABILITY_SERVICE
from authz.registry.durability import AT_RISK, DURABLE, UNKNOWN, Durability, assess, redis_durability, worst
from authz.registry.redis_conn import connect
from tests.support.cli import run_cli
from tests.support.config import settings_dict
from tests.support.processes import AuthzProcess
from tests.test_registry_processes import ALLOW, NOT_SUBSCRIBED, Admin, Checker, Verdict, seed

REVOKED = Verdict(16, 401, 900901)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """The Redis of ``make run``, as the dev stack builds it, in this test's directory."""
    server = dev_redis(free_port(), tmp_path / "run")
    server.start()
    yield server
    server.cleanup()


def durability_health(listen: str, timeout: float = 5.0, want: int | None = None) -> int:
    """The ``authz.durability`` health status of an authz process (waiting up to ``timeout`` for ``want``)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(listen) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            status = stub.Check(health_pb2.HealthCheckRequest(service=DURABILITY_SERVICE), timeout=2).status
            if want is None or status == want or time.monotonic() > deadline:
                return status
            time.sleep(0.05)


def _wait_log(proc: AuthzProcess, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log_text():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{proc.log_text()[-3000:]}"
        time.sleep(0.05)


def _seed(admin: Admin) -> None:
    """Demo App and Other App, both subscribed to orders-v1."""
    seed(admin)
    admin("subscribe", "other", "orders-v1")


def _jti(token: str) -> tuple[str, int]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return claims["jti"], int(claims["exp"])


def test_every_redis_the_project_ships_keeps_every_acknowledged_write() -> None:
    compose = yaml.safe_load(Path("docker-compose.yml").read_text(encoding="utf-8"))
    assert compose["services"]["redis"]["command"] == ["redis-server", *DURABLE_REDIS_ARGS]
    statefulset = yaml.safe_load(
        Path("deploy/kubernetes/components/redis/redis-statefulset.yaml").read_text(encoding="utf-8"))
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[: 1 + len(DURABLE_REDIS_ARGS)] == ["redis-server", *DURABLE_REDIS_ARGS]
    assert DURABLE_REDIS_ARGS == ("--appendonly", "yes", "--appendfsync", "always", "--save", "")


def test_the_dev_stack_redis_fsyncs_every_write(durable_redis: RedisServer) -> None:
    with durable_redis.client(decode_responses=True) as client:
        config = client.config_get("append*") | client.config_get("save")
    assert (config["appendonly"], config["appendfsync"], config["save"]) == ("yes", "always", "")
    assert assess(config) == Durability(DURABLE, "AOF on, appendfsync always: every acknowledged write is on disk")


def test_an_acknowledged_revocation_and_unsubscribe_survive_kill_9_of_the_dev_stack_redis(
    durable_redis: RedisServer, idp: KeyManager, start_authz: Callable[..., AuthzProcess], key_prefix: str,
) -> None:
    doc = settings_dict(idp, durable_redis.url, key_prefix)
    admin = Admin(doc)
    try:
        _seed(admin)
        authz = start_authz(redis=doc["redis"])
        assert durability_health(authz.listen, want=SERVING) == SERVING
        _wait_log(authz, "registry durability: durable: AOF on, appendfsync always")
        assert run_cli("health", "--address", authz.listen, "--service", "authz.durability").stdout == (
            f"{authz.listen} authz.durability: SERVING\n")
        checker = Checker(authz.listen)
        demo = idp.issue_token("demo-client", "demo", "orders:read")
        other = idp.issue_token("other-client", "demo", "orders:read")
        assert (checker.check(demo), checker.check(other)) == (ALLOW, ALLOW)
        jti, exp = _jti(demo)
        admin("revoke", jti, exp)
        admin("unsubscribe", "other", "orders-v1")
        assert durable_redis.kill() == -9  # at once: both writes were acknowledged, nothing else waited for
        durable_redis.start()
        admin.close()
        admin = Admin(doc)
        assert admin("revocation", jti).token_id == jti
        assert admin("subscriptions", "other") == []
        # A process started after the crash knows only what Redis kept.
        fresh = Checker(start_authz(redis=doc["redis"]).listen)
        assert (fresh.check(demo), fresh.check(other)) == (REVOKED, NOT_SUBSCRIBED)
        # The process that ran through the crash decides the same.
        deadline = time.monotonic() + 5
        while (checker.check(demo), checker.check(other)) != (REVOKED, NOT_SUBSCRIBED):
            assert time.monotonic() < deadline, (checker.check(demo), checker.check(other))
            time.sleep(0.05)
        print(f"\nkill -9 of the dev stack's Redis: revocation and unsubscribe kept; checks after the restart: "
              f"revoked token {fresh.check(demo).http_status}, unsubscribed application {fresh.check(other).http_status}")
        checker.close()
        fresh.close()
    finally:
        admin.close()


def test_a_redis_restarted_from_an_older_copy_is_noticed_and_a_seen_revocation_stays_enforced(
    durable_redis: RedisServer, idp: KeyManager, start_authz: Callable[..., AuthzProcess], key_prefix: str,
    tmp_path: Path,
) -> None:
    doc = settings_dict(idp, durable_redis.url, key_prefix)
    doc["redis"]["max_stale"] = 0
    admin = Admin(doc)
    try:
        _seed(admin)
        token = idp.issue_token("demo-client", "demo", "orders:read")
        authz = start_authz(redis=doc["redis"])
        checker = Checker(authz.listen)
        assert checker.check(token) == ALLOW
        assert durability_health(authz.listen, want=SERVING) == SERVING
        older = tmp_path / "older-copy"
        shutil.copytree(durable_redis.dir / "appendonlydir", older)  # the registry before the revocation
        jti, exp = _jti(token)
        admin("revoke", jti, exp)
        assert checker.until(token, REVOKED) == REVOKED  # seen through the registry event
        durable_redis.kill()
        shutil.rmtree(durable_redis.dir / "appendonlydir")
        shutil.copytree(older, durable_redis.dir / "appendonlydir")
        durable_redis.start()  # Redis is back, without the revocation
        assert durable_health_after_rollback(authz) == NOT_SERVING
        said = run_cli("health", "--address", authz.listen, "--service", "authz.durability")
        assert (said.returncode, said.stderr) == (1, f"{authz.listen} authz.durability: NOT_SERVING\n")
        assert run_cli("health", "--address", authz.listen).returncode == 0  # checks are still served
        assert checker.check(token) == REVOKED  # whatever Redis now says
        admin.close()
        admin = Admin(doc)
        with pytest.raises(Exception, match="is not revoked"):
            admin("revocation", jti)
        # A process that never saw the revocation cannot know: this is what the memory protects against.
        assert Checker(start_authz(redis=doc["redis"]).listen).check(token) == ALLOW
        assert "registry rollback: registry sequence went back from 7 to 6" in authz.log_text()
        checker.close()
    finally:
        admin.close()


def durable_health_after_rollback(authz: AuthzProcess) -> int:
    """The durability health once the process has resubscribed to the restarted Redis and read its sequence."""
    _wait_log(authz, "registry rollback:", timeout=10)
    return durability_health(authz.listen, want=NOT_SERVING)


# ---- what authz reads from the Redis it is given ------------------------------------------------------------


def _redis(tmp_path: Path, *args: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    proc = ManagedProcess([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                           *args], name="redis-server", log_dir=tmp_path).start()
    proc.wait_port("127.0.0.1", port)
    return proc, f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize(("args", "level", "detail"), [
    (("--appendonly", "yes", "--appendfsync", "always", "--save", ""), DURABLE,
     "AOF on, appendfsync always: every acknowledged write is on disk"),
    (("--appendonly", "yes", "--appendfsync", "everysec"), AT_RISK,
     "AOF with appendfsync everysec: a crash of its host loses up to about one second of acknowledged writes "
     "(two at worst)"),
    (("--appendonly", "no", "--save", "60 1"), AT_RISK,
     "no AOF (appendonly no), RDB snapshots only (save '60 1'): a crash loses every write since the last snapshot"),
    (("--appendonly", "no", "--save", ""), AT_RISK,
     "no AOF (appendonly no) and no RDB snapshots: a restart loses the whole registry"),
])
async def test_the_persistence_of_a_real_redis_is_read_and_judged(
    tmp_path: Path, args: tuple[str, ...], level: str, detail: str,
) -> None:
    proc, url = _redis(tmp_path, *args)
    client = connect(url, 1.0)
    try:
        assert await redis_durability(client) == Durability(level, detail)  # type: ignore[arg-type]
    finally:
        await client.aclose()
        proc.stop()


async def test_a_redis_that_refuses_config_is_a_warning_not_a_failure(
    tmp_path: Path, idp: KeyManager, start_authz: Callable[..., AuthzProcess], key_prefix: str,
) -> None:
    proc, url = _redis(tmp_path, "--rename-command", "CONFIG", "", "--save", "")  # as managed services do
    try:
        client = connect(url, 1.0)
        report = await redis_durability(client)
        await client.aclose()
        assert report.level == UNKNOWN
        assert report.detail.startswith("Redis refused CONFIG GET (unknown command 'CONFIG'")
        authz = start_authz(redis=settings_dict(idp, url, key_prefix)["redis"])
        assert durability_health(authz.listen, want=health_pb2.HealthCheckResponse.UNKNOWN) == (
            health_pb2.HealthCheckResponse.UNKNOWN)
        _wait_log(authz, "WARNING authz.registry: registry durability: unknown: Redis refused CONFIG GET")
        with grpc.insecure_channel(authz.listen) as channel:  # serving checks all the same
            overall = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        assert overall.status == SERVING
    finally:
        proc.stop()


def test_an_unreachable_or_refusing_node_and_the_worst_of_several() -> None:
    good = Durability(DURABLE, "fine")
    assert worst({"a:1": good, "b:2": good}) == good
    assert worst({"a:1": good, "b:2": Durability(UNKNOWN, "refused")}) == Durability(UNKNOWN, "b:2: refused")
    assert worst({"a:1": Durability(AT_RISK, "no AOF"), "b:2": Durability(UNKNOWN, "refused"),
                  "c:3": Durability(AT_RISK, "everysec")}) == Durability(AT_RISK, "a:1: no AOF; c:3: everysec")
    assert worst({}) == Durability(UNKNOWN, "no node answered")


async def test_an_unreachable_redis_is_unknown_not_an_error() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0", 0.5)
    try:
        report = await redis_durability(client)
    finally:
        await client.aclose()
    assert report.level == UNKNOWN
    assert report.detail.startswith("could not ask Redis for its persistence settings (ConnectionError: ")


def test_the_dev_stack_redis_keeps_the_data_of_a_run_without_aof(tmp_path: Path) -> None:
    old = RedisServer(data_dir=tmp_path / "run" / "redis")  # what `make run` wrote before: RDB snapshots only
    old.start()
    with old.client(decode_responses=True) as client:
        client.set("authz:app:demo-app", "kept")
        client.save()
    old.stop()
    server = dev_redis(free_port(), tmp_path / "run")
    try:
        server.start()
        with server.client(decode_responses=True) as client:
            assert client.get("authz:app:demo-app") == "kept"
            assert client.config_get("append*")["appendonly"] == "yes"
            assert client.config_get("append*")["appendfsync"] == "always"
        server.kill()
        server.start()  # from the append-only file now
        with server.client(decode_responses=True) as client:
            assert client.get("authz:app:demo-app") == "kept"
        assert (server.dir / "appendonlydir").is_dir()
    finally:
        server.cleanup()
