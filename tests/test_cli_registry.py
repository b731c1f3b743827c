"""The ``authz registry ...`` command as subprocesses against the real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml

from authz.dev.keymanager import KeyManager
from authz.dev.procs import RedisServer, free_port
from tests.support.cli import Run, registry_cli, run_cli
from tests.support.config import settings_dict


@pytest.fixture
def cli(idp: KeyManager, redis_server: RedisServer, key_prefix: str, tmp_path: Path) -> Run:
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(settings_dict(idp, redis_server.url, key_prefix)), encoding="utf-8")
    return registry_cli(path)


def test_app_create_add_client_subscribe_and_list(cli: Run, raw: redis.Redis, key_prefix: str) -> None:
    out = cli("app", "create", "Demo App", "--owner", "dev", "--tier", "Gold", "--id", "app-demo").stdout
    assert out.strip() == "created application Demo App (id app-demo)"
    out = cli("app", "add-client", "Demo App", "demo-client").stdout
    assert out.splitlines()[0] == "client ID demo-client of key manager test-km attached to application Demo App"
    out = cli("app", "add-client", "app-demo", "sbx-client", "--key-type", "sandbox").stdout
    assert out.splitlines()[0] == "client ID sbx-client of key manager test-km attached to application Demo App"
    out = cli("app", "add-client", "Demo App", "demo-client").stdout
    assert out.splitlines()[0] == (
        "client ID demo-client of key manager test-km already attached to application Demo App")
    out = cli("subscribe", "Demo App", "orders-v1", "--tier", "Bronze").stdout
    assert out.strip() == "subscribed Demo App to orders-v1 (ACTIVE, tier Bronze)"
    assert raw.hgetall(f"{key_prefix}client:test-km:demo-client") == {"app_id": "app-demo", "key_type": "PRODUCTION"}

    text = cli("app", "list").stdout
    assert text.splitlines() == [
        "Demo App  id=app-demo  owner=dev  tier=Gold  status=ACTIVE",
        "  client  test-km:demo-client  PRODUCTION",
        "  client  test-km:sbx-client  SANDBOX",
        "  subscribed  orders-v1  ACTIVE  tier=Bronze",
    ]
    assert json.loads(cli("app", "list", "--json").stdout) == [
        {
            "id": "app-demo", "name": "Demo App", "owner": "dev", "tier": "Gold", "status": "ACTIVE",
            "clients": [
                {"key_manager": "test-km", "client_id": "demo-client", "key_type": "PRODUCTION"},
                {"key_manager": "test-km", "client_id": "sbx-client", "key_type": "SANDBOX"},
            ],
            "subscriptions": [{"api_id": "orders-v1", "status": "ACTIVE", "tier": "Bronze"}],
        }
    ]


def test_app_list_when_empty(cli: Run) -> None:
    assert cli("app", "list").stdout.strip() == "no applications"
    assert json.loads(cli("app", "list", "--json").stdout) == []


def test_subscription_set_status_and_unsubscribe(cli: Run, raw: redis.Redis, key_prefix: str) -> None:
    cli("app", "create", "Demo App", "--id", "app-demo")
    cli("subscribe", "Demo App", "orders-v1")
    out = cli("subscription", "set-status", "Demo App", "orders-v1", "blocked").stdout
    assert out.strip() == "subscription of Demo App to orders-v1 is now BLOCKED"
    assert json.loads(raw.hget(f"{key_prefix}app:app-demo:subs", "orders-v1"))["status"] == "BLOCKED"
    [view] = json.loads(cli("app", "list", "--json").stdout)
    assert view["subscriptions"] == [{"api_id": "orders-v1", "status": "BLOCKED", "tier": "Unlimited"}]
    out = cli("unsubscribe", "Demo App", "orders-v1").stdout
    assert out.strip() == "unsubscribed Demo App from orders-v1"
    assert raw.hgetall(f"{key_prefix}app:app-demo:subs") == {}


def test_client_id_of_another_application_is_refused_on_stderr_with_exit_1(cli: Run) -> None:
    cli("app", "create", "Demo App")
    cli("app", "create", "Other App")
    cli("app", "add-client", "Demo App", "demo-client")
    result = cli("app", "add-client", "Other App", "demo-client", ok=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "error: client ID demo-client of key manager test-km is already used by application Demo App"


def test_unknown_api_id_is_refused_on_stderr_with_exit_1(cli: Run) -> None:
    cli("app", "create", "Demo App")
    for args in (("subscribe", "Demo App", "nope-v9"), ("unsubscribe", "Demo App", "nope-v9"),
                 ("subscription", "set-status", "Demo App", "nope-v9", "ACTIVE")):
        result = cli(*args, ok=False)
        assert result.returncode == 1
        assert result.stderr.startswith("error: unknown API id 'nope-v9'; configured: orders-v1, payments-v1")


def test_other_refusals_exit_1_with_a_message(cli: Run) -> None:
    cli("app", "create", "Demo App")
    cases = [
        (("app", "create", "Demo App"), "error: application name 'Demo App' is already used by "),
        (("app", "add-client", "Ghost", "c1"), "error: no application with ID or name 'Ghost'; applications: Demo App\n"),
        (("subscription", "set-status", "Demo App", "orders-v1", "PAUSED"),
         "error: unknown subscription status 'PAUSED'"),
        (("unsubscribe", "Demo App", "orders-v1"), "error: application Demo App is not subscribed to orders-v1"),
    ]
    for args, message in cases:
        result = cli(*args, ok=False)
        assert result.returncode == 1, args
        assert result.stderr.startswith(message), result.stderr


def test_corrupt_record_is_reported_without_traceback(cli: Run, raw: redis.Redis, key_prefix: str) -> None:
    cli("app", "create", "Demo App", "--id", "app-demo")
    raw.hset(f"{key_prefix}app:app-demo", "status", "WEIRD")
    result = cli("app", "list", ok=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: the registry holds a corrupt record: {key_prefix}app:app-demo: "
        "field 'status' has the unknown value 'WEIRD'"
    )


def test_unreachable_redis_exits_3_with_a_clear_message(idp: KeyManager, key_prefix: str, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(settings_dict(idp, url, key_prefix)), encoding="utf-8")
    run = registry_cli(path)
    for args in (("app", "list"), ("app", "create", "Demo App"), ("subscribe", "x", "orders-v1")):
        result = run(*args, ok=False)
        assert result.returncode == 3, args
        assert result.stdout == ""
        assert result.stderr.startswith(f"error: Redis at {url} is unreachable: "), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_config_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("key_managers: []\n", encoding="utf-8")
    result = registry_cli(path)("app", "list", ok=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == f"{path}: invalid configuration:"
    assert "  key_managers: list should have at least 1 item after validation, not 0" in result.stderr


def test_config_option_is_accepted_after_the_subcommand_too(
    idp: KeyManager, redis_server: RedisServer, key_prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump(settings_dict(idp, redis_server.url, key_prefix)), encoding="utf-8")
    created = run_cli("registry", "app", "create", "Late App", "--id", "late", "--config", str(path))
    assert created.returncode == 0, created.stderr
    listed = run_cli("registry", "app", "list", "--json", "--config", str(path))
    assert listed.returncode == 0, listed.stderr
    assert [a["name"] for a in json.loads(listed.stdout)] == ["Late App"]


def test_a_missing_config_file_is_named_once(tmp_path: Path) -> None:
    """Through the console entry point (``python -m authz``), as a user runs it."""
    missing = tmp_path / "nope.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "authz", "registry", "--config", str(missing), "app", "list"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count(str(missing)) == 2  # the header line, and the OS error's own quote of the path
    assert result.stderr.startswith(f"{missing}: invalid configuration:\n  cannot read: ")


def test_revoke_unrevoke_and_list_revocations(cli: Run, raw: redis.Redis, key_prefix: str) -> None:
    import time  # noqa: PLC0415

    exp = int(time.time()) + 600
    out = cli("revoke", "jti-abc", "--expires-at", str(exp)).stdout
    assert out.strip() == f"revoked token ID jti-abc of key manager test-km until {exp + 60}"
    assert raw.expiretime(f"{key_prefix}revoked:test-km:jti-abc") == exp + 60
    assert cli("revocations").stdout.strip() == f"test-km  jti-abc  until {exp + 60}"
    assert cli("revoke", "jti-def", "--exp", str(exp)).returncode == 0
    assert cli("unrevoke", "jti-abc").stdout.strip() == "token ID jti-abc is no longer revoked"
    assert cli("revocations").stdout.strip() == f"test-km  jti-def  until {exp + 60}"
    result = cli("revoke", "jti-old", "--expires-at", "1000", ok=False)
    assert (result.returncode, result.stderr.strip()) == (
        1, "error: expires_at is in the past: an expired token is refused anyway")
    result = cli("revoke", "jti-x", ok=False)
    assert result.returncode == 2 and "--expires-at" in result.stderr


def test_export_then_import_with_dry_run_into_another_prefix(
    cli: Run, idp: KeyManager, redis_server: RedisServer, tmp_path: Path
) -> None:
    cli("app", "create", "Demo App", "--id", "demo")
    cli("app", "add-client", "demo", "demo-client")
    cli("subscribe", "demo", "orders-v1")
    cli("subscription", "set-status", "demo", "orders-v1", "BLOCKED")
    exported = cli("export").stdout
    assert yaml.safe_load(exported) == {
        "schema": 1,
        "applications": [{
            "id": "demo", "name": "Demo App", "owner": "", "tier": "Unlimited", "status": "ACTIVE",
            "clients": [{"key_manager": "test-km", "client_id": "demo-client", "key_type": "PRODUCTION"}],
            "subscriptions": [{"api_id": "orders-v1", "status": "BLOCKED", "tier": "Unlimited"}],
        }],
        "revocations": [],
    }
    file = tmp_path / "registry.yaml"
    file.write_text(exported, encoding="utf-8")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(settings_dict(idp, redis_server.url, f"other{free_port()}:")), encoding="utf-8")
    copy = registry_cli(other)
    dry = copy("import", str(file), "--dry-run").stdout.strip().splitlines()
    assert dry == [
        "create application Demo App (id demo)",
        "attach client test-km:demo-client (PRODUCTION) to Demo App",
        "subscribe Demo App to orders-v1 (BLOCKED, tier Unlimited)",
        "would apply 3 change(s)",
    ]
    assert copy("app", "list").stdout.strip() == "no applications"
    assert copy("import", str(file)).stdout.strip().splitlines()[-1] == "applied 3 change(s)"
    assert copy("export").stdout == exported
    assert copy("import", str(file)).stdout.strip() == "no changes"
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications: [{id: x}]\n", encoding="utf-8")
    result = copy("import", str(bad), ok=False)
    assert (result.returncode, result.stderr.strip()) == (1, f"error: {bad}: applications[0].name: Field required")


def test_the_registry_cli_reads_a_serving_config_without_the_admin_secret(
    idp: KeyManager, redis_server: RedisServer, key_prefix: str, tmp_path: Path
) -> None:
    doc = settings_dict(idp, redis_server.url, key_prefix)
    doc["admin"] = {"listen": f"127.0.0.1:{free_port()}"}  # its token comes from AUTHZ_ADMIN_TOKEN when serving
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    run = run_cli

    listed = run("registry", "--config", str(path), "app", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "no applications"
    checked = run("check-config", str(path))
    assert checked.returncode == 1
    assert checked.stdout.strip() == "admin.token: is required when admin.listen is set (or set AUTHZ_ADMIN_TOKEN)"
    served = run("serve", "--config", str(path), "--workers", "1")
    assert served.returncode == 1
    assert "cannot serve:" in served.stderr and "admin.token: is required" in served.stderr
    assert "Traceback" not in served.stderr


def test_app_show_and_add_client_say_so_when_the_key_manager_has_no_token_endpoint(cli: Run, idp: KeyManager) -> None:
    cli("app", "create", "Demo App", "--id", "demo-app", "--owner", "dev")
    cli("subscribe", "Demo App", "payments-v1")
    out = cli("app", "add-client", "Demo App", "c1").stdout
    lines = out.splitlines()
    assert lines[2:9] == [
        "Key manager test-km:",
        f"  issuer            {idp.issuer}",
        "  token endpoint    unknown (see below)",
        f"  JWKS URI          {idp.url}/oauth2/jwks",
        "  grant types       not stated",
        "  from              the config",
        "  note: no token endpoint: key manager test-km has neither discovery nor token_endpoint in the config; "
        "ask its administrator for the token endpoint (or set key_managers[].token_endpoint)",
    ]
    assert ("    POST to the key manager's token endpoint (unknown) the form parameters grant_type=password "
            "username=<USER_NAME> password=<USER_PASSWORD> client_id=c1 client_secret=<CLIENT_SECRET> "
            "scope=payments:read payments:write") in lines
    assert "curl" in out  # the gateway call is still shown
    assert cli("app", "show", "demo-app").stdout.splitlines()[:6] == [
        "Demo App  id=demo-app  owner=dev  tier=Unlimited  status=ACTIVE",
        "",
        "Subscriptions:",
        "  payments-v1  Payments  ACTIVE  tier=Unlimited",
        "    GET     /payments/v1/charges  scope payments:read",
        "    POST    /payments/v1/charges  scope payments:write",
    ]
    data = json.loads(cli("app", "add-client", "Demo App", "c1", "--json").stdout)
    assert (data["added"], data["id"], [c["client_id"] for c in data["clients"]]) == (False, "demo-app", ["c1"])
    assert data["clients"][0]["connection"]["token_endpoint"] is None
    assert data["gateway_call"]["url"] == "<GATEWAY_URL>/payments/v1/charges"


def test_api_list_and_show_explore_the_configured_apis(cli: Run) -> None:
    assert cli("api", "list").stdout.splitlines()[0] == (
        "orders-v1  Orders  v1  context /orders/v1  hosts any  key managers test-km")
    shown = json.loads(cli("api", "show", "payments-v1", "--json").stdout)
    assert (shown["id"], shown["scopes"], shown["subscription"]) == (
        "payments-v1", ["payments:read", "payments:write"], None)


def test_developer_reads_refuse_unknown_names_with_did_you_mean(cli: Run) -> None:
    cli("app", "create", "Demo App")
    for args, message in (
        (("app", "show", "Demo"), "error: no application with ID or name 'Demo'; did you mean 'Demo App'? "
                                  "applications: Demo App\n"),
        (("api", "list", "--app", "Ghost"), "error: no application with ID or name 'Ghost'; applications: Demo App\n"),
        (("api", "show", "payment-v1"), "error: unknown API id 'payment-v1'; did you mean 'payments-v1'? "
                                        "configured: orders-v1, payments-v1\n"),
        (("subscribe", "Demo App", "Payments"), "error: unknown API id 'Payments'; did you mean 'payments-v1'? "
                                                "configured: orders-v1, payments-v1\n"),
    ):
        result = cli(*args, ok=False)
        assert (result.returncode, result.stderr) == (1, message)


def test_the_readmes_add_client_output_is_what_the_make_run_config_prints(
    redis_server: RedisServer, key_prefix: str, tmp_path: Path
) -> None:
    doc = yaml.safe_load(Path("config/authz.yaml").read_text(encoding="utf-8"))
    doc["redis"] = {"url": redis_server.url, "key_prefix": key_prefix}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    run = registry_cli(path)
    run("app", "create", "Demo App", "--id", "demo-app")
    run("app", "add-client", "Demo App", "demo-client")
    run("subscribe", "Demo App", "orders-v1")
    readme = Path("README.md").read_text(encoding="utf-8")
    block = readme.split('$ .venv/bin/authz registry app add-client "Demo App" demo-client\n', 1)[1].split("```", 1)[0]
    assert run("app", "add-client", "Demo App", "demo-client").stdout == block
