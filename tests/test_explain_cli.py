"""`authz explain` as a command against a real Redis and key manager (exit 0 allow, 1 deny naming the phase, 2
undecided), and `Explain` of the admin gRPC API behind the admin token."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from authz.admin.service import start_admin_server
from authz.admin.v1 import admin_pb2 as pb
from authz.admin.v1 import admin_pb2_grpc
from authz.config import Settings, parse_config
from authz.dev.keymanager import KeyManager
from authz.dev.procs import RedisServer, free_port
from authz.dev.stack import tamper_signature
from authz.ops.services import explainer
from authz.registry.admin import RegistryAdmin
from authz.registry.redis_store import RedisStore
from tests.support.config import NO_REDIS, settings_dict
from tests.support.tokencraft import running_validator

ADMIN_TOKEN = "admin-token-0123456789"


async def _seed(settings: Settings) -> None:
    store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, 2.0)
    admin = RegistryAdmin(store, settings)
    await admin.create_application("Demo App", app_id="demo-app")
    await admin.add_client("demo-app", "demo-client")
    await admin.subscribe("demo-app", "orders-v1")
    await admin.create_application("Other App", app_id="other-app")
    await admin.add_client("other-app", "other-client")
    await store.aclose()


@pytest.fixture
def config(idp: KeyManager, redis_server: RedisServer, key_prefix: str, tmp_path: Path) -> Path:
    doc = settings_dict(idp, redis_server.url, key_prefix)
    asyncio.run(_seed(parse_config(doc)))
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _explain(config: Path, tmp_path: Path, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "authz", "explain", "--config", str(config), *args]
    if token is None:
        command.append("--no-token")
    else:
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n", encoding="utf-8")
        command += ["--token-file", str(token_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_allowed_call_exits_0_and_prints_every_phase_in_order(
    config: Path, tmp_path: Path, idp: KeyManager
) -> None:
    token = idp.issue_token("demo-client", "alice", "orders:read")
    done = _explain(config, tmp_path, token, "--method", "GET", "--path", "/orders/v1/items", "--api-id", "orders-v1")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    headings = [line for line in out.splitlines() if line[:2] in {f"{i}." for i in range(1, 10)}]
    assert headings == ["1. route: passed", "2. public: passed", "3. credentials: passed", "4. identity: passed",
                        "5. key_manager: passed", "6. revocation: passed", "7. resource: passed", "8. registry: passed",
                        "9. policy: allowed"]
    assert "   ok   key manager: iss=" in out and "-> test-km" in out
    assert "   ok   subscription: to orders-v1: ACTIVE, tier Unlimited" in out
    assert "decision: ALLOW (phase policy)" in out
    assert "x-application-id: demo-app" in out and "upstream headers removed: authorization" in out
    assert token not in out + done.stderr and token.split(".")[2] not in out


DENIALS = [
    ("expired", lambda idp: idp.issue_token("demo-client", "a", "orders:read", lifetime=-3700), (),
     "decision: DENY 401 900903 Access token expired (phase identity)", "   FAIL exp: "),
    ("bad signature", lambda idp: tamper_signature(idp.issue_token("demo-client", "a", "orders:read")), (),
     "decision: DENY 401 900901 Invalid credentials (phase identity)", "   FAIL signature: RS256"),
    ("not subscribed", lambda idp: idp.issue_token("other-client", "a", "orders:read"), (),
     "decision: DENY 403 900908 Resource forbidden (phase policy)", "   FAIL subscription: to orders-v1: none"),
    ("insufficient scope", lambda idp: idp.issue_token("demo-client", "a", "orders:read"), ("--method", "POST"),
     "decision: DENY 403 900910 Insufficient scope (phase policy)", "   FAIL scopes: held: orders:read"),
    ("unknown client", lambda idp: idp.issue_token("ghost-client", "a", "orders:read"), (),
     "decision: DENY 403 900911 Client not registered to an application (phase policy)", "   FAIL client: ghost-client"),
    ("no token", lambda idp: None, (),
     "decision: DENY 401 900902 Missing credentials (phase credentials)", "   FAIL bearer token: "),
]


@pytest.mark.parametrize(("what", "make_token", "args", "decision", "failing"), DENIALS, ids=[d[0] for d in DENIALS])
def test_each_documented_denial_exits_1_naming_the_phase(
    config: Path, tmp_path: Path, idp: KeyManager, what: str, make_token: Callable[[KeyManager], str | None],
    args: tuple[str, ...], decision: str, failing: str,
) -> None:
    token = make_token(idp)
    done = _explain(config, tmp_path, token, "--path", "/orders/v1/items", "--api-id", "orders-v1", *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert decision in done.stdout, done.stdout
    assert failing in done.stdout, done.stdout
    if token:
        assert token not in done.stdout + done.stderr


def test_json_output_and_exit_2_when_the_registry_cannot_be_reached(
    idp: KeyManager, tmp_path: Path
) -> None:
    doc = settings_dict(idp, NO_REDIS, "t:")
    config = tmp_path / "down.yaml"
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    token = idp.issue_token("demo-client", "a", "orders:read")
    done = _explain(config, tmp_path, token, "--path", "/orders/v1/items", "--api-id", "orders-v1", "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert (result["result"], result["phase"], result["code"]) == ("undecided", "revocation", "900950")
    assert result["detail"].startswith("redis unavailable: ")
    # identity, key_manager, revocation
    assert [p["outcome"] for p in result["phases"]][3:6] == ["passed", "passed", "unavailable"]


def test_an_unreadable_config_or_token_file_is_exit_2_with_the_reason(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "authz", "explain", "--config", str(tmp_path / "none.yaml"),
                           "--no-token", "--path", "/x"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "cannot read" in done.stderr
    config = tmp_path / "c.yaml"
    config.write_text(Path("config/authz.yaml").read_text(), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "authz", "explain", "--config", str(config), "--token-file",
                           str(tmp_path / "missing"), "--path", "/x"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2 and "--token-file: cannot read" in done.stderr


async def test_admin_api_explain_answers_behind_the_admin_token(
    make_redis_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    settings = make_redis_settings(admin={"listen": f"127.0.0.1:{free_port()}", "token": ADMIN_TOKEN})
    await _seed(settings)
    store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, 2.0)
    async with running_validator(settings) as (_, keys):
        server = await start_admin_server(settings, store, explainer(settings, keys, store, None))
        assert server is not None
        try:
            async with grpc.aio.insecure_channel(str(settings.admin.listen)) as channel:
                stub = admin_pb2_grpc.RegistryAdminStub(channel)
                auth: Any = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
                token = idp.issue_token("other-client", "a", "orders:read")
                reply = await stub.Explain(pb.ExplainRequest(token=token, path="/orders/v1/items", api_id="orders-v1"),
                                           metadata=auth, timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as no_path:
                    await stub.Explain(pb.ExplainRequest(token=token), metadata=auth, timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                    await stub.Explain(pb.ExplainRequest(token=token, path="/orders/v1/items"), timeout=10)
        finally:
            await server.stop(0)
            await store.aclose()
    assert (reply.result, reply.phase, reply.code, reply.http_status) == ("deny", "policy", "900908", 403)
    assert reply.description == "Application 'Other App' is not subscribed to API 'orders-v1'"
    assert [p.name for p in reply.phases][:3] == ["route", "public", "credentials"]
    policy = next(p for p in reply.phases if p.name == "policy")
    assert policy.outcome == "denied"
    assert [(s.name, s.verdict) for s in policy.steps][-1] == ("subscription", "failed")
    assert token not in str(reply)
    assert no_path.value.code() == grpc.StatusCode.INVALID_ARGUMENT and no_path.value.details() == "path: is required"
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
