"""The developer's flow end to end, on a stack like ``make run``'s on free ports (demo key manager with OIDC
discovery, Redis, ``authz serve`` with the admin API, Envoy): ``authz registry app add-client`` and ``app show``
print the key manager's token endpoint and token requests; the printed password-grant and client-credentials
commands, run with the real ``curl`` binary and the demo secrets filled in, return tokens that Envoy lets
through with the printed gateway call; ``api list`` shows both demo APIs; the admin API's reads agree."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import yaml

from authz.admin.v1 import admin_pb2 as pb
from authz.admin.v1 import admin_pb2_grpc
from authz.dev.procs import RedisServer, free_port
from tests.support.cli import Run, registry_cli
from tests.support.e2e import Stack, running_stack, start_gateway

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "admin-token-developer-flow"
FILLED = {"<CLIENT_SECRET>": "demo-secret", "<USER_NAME>": "demo", "<USER_PASSWORD>": "demo"}


def _configure(doc: dict[str, Any]) -> None:
    km = doc["key_managers"][0]
    del km["jwks_uri"]
    km["discovery"] = "oidc"  # connection data (and keys) from the demo key manager's discovery document
    doc["admin"] = {"listen": f"127.0.0.1:{free_port()}", "token": ADMIN_TOKEN}


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    def gateway(tmp: Path, doc: dict[str, Any], upstream_port: int):  # noqa: ANN202
        return start_gateway(tmp, "envoy", doc, upstream_port)

    with running_stack(redis_server, tmp_path_factory.mktemp("dev"), "dev15:", "dev15", gateway,
                       configure=_configure) as stack:
        yield stack


@pytest.fixture(scope="module")
def cli(stack: Stack) -> Run:
    doc = {**stack.doc, "gateway_url": stack.gateway}
    path = stack.tmp / "cli.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return registry_cli(path)


def command_after(text: str, title: str) -> str:
    """The command printed under the first line containing ``title``: the next line and its ``\\`` continuations."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line) + 1
    end = start
    while lines[end].endswith("\\"):
        end += 1
    block = lines[start:end + 1]
    assert block[0].lstrip().startswith("curl "), block
    return "\n".join(block)


def run_shell(command: str) -> str:
    """Run a printed command with the real curl binary through sh; its stdout."""
    assert shutil.which("curl"), "curl is not installed (make deps installs it)"
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fill(command: str) -> str:
    for placeholder, value in FILLED.items():
        command = command.replace(placeholder, value)
    return command


def call_gateway(command: str, token: str) -> tuple[str, dict[str, Any]]:
    """Run the printed gateway call with ``token``: (status line, JSON body of the echo upstream)."""
    out = run_shell(command.replace("<ACCESS_TOKEN>", token))
    head, _, body = out.partition("\n\n")  # text mode: curl's CRLFs read as newlines
    return head.splitlines()[0], json.loads(body)


def test_add_client_prints_a_password_grant_curl_whose_token_envoy_lets_through(stack: Stack, cli: Run) -> None:
    km = stack.km.url
    cli("app", "remove-client", "Demo App", "demo-client")
    out = cli("app", "add-client", "Demo App", "demo-client").stdout
    lines = out.splitlines()
    assert lines[0] == "client ID demo-client of key manager test-km attached to application Demo App"
    assert lines[2:10] == [
        "Key manager test-km:",
        f"  issuer            {km}",
        f"  token endpoint    {km}/oauth2/token",
        f"  JWKS URI          {km}/oauth2/jwks",
        "  grant types       password, client_credentials",
        "  client auth       client_secret_basic, client_secret_post",
        f"  from              discovery ({km}/.well-known/openid-configuration)",
        "",
    ]
    password = command_after(out, "password grant")
    assert password == (
        f"    curl -sS {km}/oauth2/token \\\n"
        "      --data-urlencode grant_type=password \\\n"
        "      --data-urlencode 'username=<USER_NAME>' \\\n"
        "      --data-urlencode 'password=<USER_PASSWORD>' \\\n"
        "      --data-urlencode client_id=demo-client \\\n"
        "      --data-urlencode 'client_secret=<CLIENT_SECRET>' \\\n"
        "      --data-urlencode 'scope=orders:read orders:write'"
    )
    answer = json.loads(run_shell(fill(password)))
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert (claims["azp"], claims["sub"], claims["scope"]) == ("demo-client", "demo", "orders:read orders:write")

    gateway = command_after(out, "through the gateway")
    assert gateway == (f"  curl -sS -i {stack.gateway}/orders/v1/items \\\n"
                       "    -H 'Authorization: Bearer <ACCESS_TOKEN>'")
    status, echo = call_gateway(gateway, answer["access_token"])
    assert status == "HTTP/1.1 200 OK"
    assert (echo["path"], echo["headers"]["x-application-id"], echo["headers"]["x-client-id"]) == (
        "/orders/v1/items", "demo-app", "demo-client")


def test_app_show_prints_the_same_connection_data_and_a_working_client_credentials_curl(
    stack: Stack, cli: Run
) -> None:
    km = stack.km.url
    out = cli("app", "show", "Demo App").stdout
    lines = out.splitlines()
    assert lines[:7] == [
        "Demo App  id=demo-app  owner=e2e  tier=Unlimited  status=ACTIVE",
        "",
        "Subscriptions:",
        "  orders-v1  Orders  ACTIVE  tier=Unlimited",
        "    GET     /orders/v1/items       scope orders:read",
        "    POST    /orders/v1/items       scope orders:write",
        "    GET     /orders/v1/items/{id}  scope orders:read",
    ]
    assert f"  token endpoint    {km}/oauth2/token" in lines
    assert "Client ID demo-client (key manager test-km, PRODUCTION)" in lines
    data = json.loads(cli("app", "show", "Demo App", "--json").stdout)
    (client,) = data["clients"]
    assert client["connection"]["token_endpoint"] == f"{km}/oauth2/token"
    password, credentials = client["token_requests"]
    assert [password["grant_type"], credentials["grant_type"]] == ["password", "client_credentials"]
    # The text shows exactly the JSON's commands, indented.
    assert command_after(out, "password grant") == "\n".join(f"    {x}" for x in password["curl"].splitlines())
    assert credentials["parameters"] == {"grant_type": "client_credentials", "client_id": "demo-client",
                                         "client_secret": "<CLIENT_SECRET>", "scope": "orders:read orders:write"}
    answer = json.loads(run_shell(fill(command_after(out, "client credentials grant"))))
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert (claims["azp"], claims["sub"]) == ("demo-client", "demo-client")
    status, echo = call_gateway(data["gateway_call"]["curl"], answer["access_token"])
    assert (status, echo["headers"]["x-subject"]) == ("HTTP/1.1 200 OK", "demo-client")


def test_api_list_shows_both_demo_apis_with_scopes_and_demo_apps_subscription(cli: Run) -> None:
    assert cli("api", "list", "--app", "Demo App").stdout.splitlines() == [
        "orders-v1  Orders  v1  context /orders/v1  hosts any  key managers test-km  subscribed: ACTIVE (tier Unlimited)",
        "  GET     /orders/v1/items       scope orders:read",
        "  POST    /orders/v1/items       scope orders:write",
        "  GET     /orders/v1/items/{id}  scope orders:read",
        "",
        "payments-v1  Payments  v1  context /payments/v1  hosts any  key managers test-km  Demo App not subscribed",
        "  GET     /payments/v1/charges  scope payments:read",
        "  POST    /payments/v1/charges  scope payments:write",
    ]
    blocked = json.loads(cli("api", "list", "--app", "Blocked App", "--json").stdout)
    assert [(a["id"], a["scopes"], a["subscription"] and a["subscription"]["status"]) for a in blocked] == [
        ("orders-v1", ["orders:read", "orders:write"], "BLOCKED"), ("payments-v1", ["payments:read", "payments:write"], None)]


def test_admin_api_describe_application_gives_the_clis_commands(stack: Stack, cli: Run) -> None:
    shown = json.loads(cli("app", "show", "Demo App", "--json").stdout)
    auth = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    with grpc.insecure_channel(stack.doc["admin"]["listen"]) as channel:  # the admin API of `authz serve`
        stub = admin_pb2_grpc.RegistryAdminStub(channel)
        d = stub.DescribeApplication(pb.DescribeApplicationRequest(application="Demo App"), metadata=auth, timeout=10)
        apis = stub.ListApis(pb.ListApisRequest(application="demo-app"), metadata=auth, timeout=10)
    assert (d.application.id, [c.client.client_id for c in d.clients]) == ("demo-app", ["demo-client"])
    assert d.clients[0].connection.token_endpoint == f"{stack.km.url}/oauth2/token"
    assert [r.curl for r in d.clients[0].token_requests] == [r["curl"] for r in shown["clients"][0]["token_requests"]]
    # The server's config has no gateway_url: the call keeps the placeholder.
    assert d.gateway_call.url == "<GATEWAY_URL>/orders/v1/items"
    assert [(a.id, a.HasField("subscription") and a.subscription.status) for a in apis.apis] == [
        ("orders-v1", "ACTIVE"), ("payments-v1", False)]
