"""End to end in Envoy's HTTP ext_authz mode: real Envoy (``http_service``) -> authz's HTTP listener
(``server.http_listen``) -> echo upstream, real Redis, real tokens.

No context extensions travel in HTTP mode: authz matches the API by host + path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from authz.dev.procs import ManagedProcess, RedisServer, free_port
from tests.support.config import settings_dict
from tests.support.e2e import Stack, json_body, running_stack, start_gateway
from tests.support.processes import AuthzProcess

pytestmark = pytest.mark.e2e


def _http_envoy(tmp: Path, doc: dict, upstream_port: int) -> tuple[ManagedProcess, str]:
    return start_gateway(tmp, "envoy-http", doc, upstream_port, authz_mode="http")


def _listen_http(doc: dict) -> None:
    doc["server"]["http_listen"] = f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("e2e-http"), "e2ehttp:", "h", _http_envoy,
                       configure=_listen_http) as stack:
        yield stack


def test_http_mode_allow_forwards_identity_headers_and_strips_authorization(stack: Stack) -> None:
    r = stack.get("/orders/v1/items?page=2", stack.token())
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["x-application-id"] == "demo-app"
    assert seen["x-application-name"] == "Demo App"
    assert seen["x-client-id"] == "demo-client"
    assert seen["x-subject"] == "demo"
    assert seen["x-api-id"] == "orders-v1"
    assert "authorization" not in seen
    assert "x-envoy-auth-headers-to-remove" not in seen
    assert r.json()["path"] == "/orders/v1/items?page=2"


def test_http_mode_client_sent_identity_headers_are_overwritten(stack: Stack) -> None:
    r = stack.get("/orders/v1/items", stack.token(), headers={
        "x-application-id": "admin-app", "x-client-id": "admin", "x-subject": "root", "x-api-id": "payments-v1"})
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["x-application-id"] == "demo-app"
    assert seen["x-client-id"] == "demo-client"
    assert seen["x-subject"] == "demo"
    assert seen["x-api-id"] == "orders-v1"


def test_http_mode_no_token_is_401_with_challenge_and_jsonjson_body(stack: Stack) -> None:
    before = len(stack.upstream.received)
    r = stack.get("/orders/v1/items")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="authz"'
    body = json_body(r)
    assert body["code"] == 900902
    assert body["message"] == "Missing credentials"
    assert len(stack.upstream.received) == before


def test_http_mode_not_subscribed_is_403_900908(stack: Stack) -> None:
    before = len(stack.upstream.received)
    r = stack.get("/payments/v1/charges", stack.token(scope="payments:read"))
    assert r.status_code == 403
    assert json_body(r)["code"] == 900908
    assert len(stack.upstream.received) == before


def test_http_mode_missing_scope_is_403_900910_naming_the_scope(stack: Stack) -> None:
    r = stack.get("/orders/v1/items", stack.token(scope="orders:read"), method="POST")
    assert r.status_code == 403
    assert json_body(r)["code"] == 900910
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="orders:write"' in r.headers["www-authenticate"]


def test_http_mode_unknown_path_is_403_900906_matched_by_host_and_path(stack: Stack) -> None:
    r = stack.get("/nothing/here", stack.token())
    assert r.status_code == 403
    assert json_body(r)["code"] == 900906


def test_http_mode_envoy_denies_and_never_forwards_when_authz_is_down(stack: Stack, redis_server: RedisServer) -> None:
    d = stack.tmp / "authz-down"
    d.mkdir()
    doc = settings_dict(stack.km, redis_server.url, "e2ehttp:")
    _listen_http(doc)
    authz = AuthzProcess(doc, d).start()
    envoy, gateway = _http_envoy(d, doc, stack.upstream.port)
    try:
        token = stack.token()
        assert httpx.get(gateway + "/orders/v1/items", headers={"authorization": f"Bearer {token}"},
                         timeout=5).status_code == 200
        assert authz.stop() == 0
        before = len(stack.upstream.received)
        r = httpx.get(gateway + "/orders/v1/items", headers={"authorization": f"Bearer {token}"}, timeout=5)
        assert r.status_code == 503  # the filter's status_on_error
        assert len(stack.upstream.received) == before
    finally:
        envoy.stop()
