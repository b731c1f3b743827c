"""Component tests through the real gRPC server (``authz serve`` subprocess) with real ``CheckRequest`` messages.

Field cases C24 (response contract: every denial is gRPC status 7/16 with an explicit HTTP status and a JSON
body, the RPC never fails), C03a (cold start with the key manager down: 503 with status 7 and ``retry-after``),
C28 (message size: a 3 MiB body is decided normally, above ``server.max_receive_message_bytes`` the transport
answers RESOURCE_EXHAUSTED, which is why Envoy must not be configured to send bodies).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from authz.config import Settings
from authz.dev.keymanager import KeyManager
from authz.registry.admin import RegistryAdmin
from tests.support.registry import run_admin
from tests.support.tokencraft import claims, sign, unsigned

MiB = 1024 * 1024
CLIENT_ID = "app-123"


def _register(settings: Settings, client_id: str = CLIENT_ID, api_id: str = "orders-v1") -> str:
    async def run(admin: RegistryAdmin) -> str:
        app = await admin.create_application("orders-app", owner="tests")
        await admin.add_client(app.id, client_id, key_manager=settings.key_managers[0].name)
        await admin.subscribe(app.id, api_id)
        return app.id

    return run_admin(settings, run)


def _check_request(authorization: str | None, *, path: str = "/orders/v1/items", method: str = "GET",
                   body: bytes = b"") -> external_auth_pb2.CheckRequest:
    req = external_auth_pb2.CheckRequest()
    http = req.attributes.request.http
    http.id = uuid.uuid4().hex
    http.method = method
    http.path = path
    http.host = "api.example.test"
    headers = {":method": method, ":path": path, ":authority": "api.example.test"}
    if authorization is not None:
        headers["authorization"] = authorization
    http.headers.update(headers)
    if body:
        http.raw_body = body
        http.size = len(body)
    return req


class _Client:
    def __init__(self, listen: str) -> None:
        self.channel = grpc.insecure_channel(
            listen, options=[("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
        )
        self.stub = external_auth_pb2_grpc.AuthorizationStub(self.channel)

    def check(self, req: external_auth_pb2.CheckRequest) -> external_auth_pb2.CheckResponse:
        return self.stub.Check(req, timeout=10)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def authz_client(start_authz: Callable[..., Any]) -> Callable[..., _Client]:
    clients: list[_Client] = []

    def make(**overrides: Any) -> _Client:
        proc = start_authz(**overrides)
        client = _Client(proc.listen)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def _denied(resp: external_auth_pb2.CheckResponse) -> tuple[int, int, dict[str, Any], dict[str, str]]:
    """(grpc status, http status, JSON body, headers) of a denial, checking the C24 invariants."""
    assert resp.status.code in (7, 16), resp
    assert resp.HasField("denied_response")
    assert resp.denied_response.HasField("status")
    http_status = resp.denied_response.status.code
    assert http_status in (400, 401, 403, 503)
    headers = {h.header.key: h.header.value for h in resp.denied_response.headers}
    assert headers["content-type"] == "application/json"
    body = json.loads(resp.denied_response.body)
    assert isinstance(body["code"], int)
    return resp.status.code, http_status, body, headers


def _garbage_authorizations(idp: KeyManager) -> dict[str, tuple[int, int]]:
    """authorization value -> expected (http status, code)."""
    rng = random.Random(7)
    # Commas removed: a comma makes it a credential list, a 400 (covered by its own entry below).
    random_bytes = bytes(rng.randrange(256) for _ in range(300)).decode("latin-1").replace(",", "")
    return {
        random_bytes: (401, 900901),
        "Bearer " + random_bytes: (401, 900901),
        "." * 1024: (401, 900901),
        "Bearer " + "." * 1024: (401, 900901),
        "Bearer a.b": (401, 900901),
        "Bearer ...": (401, 900901),
        "Bearer " + unsigned({"alg": "none"}, claims(idp)): (401, 900901),
        "Bearer " + unsigned({"alg": "none"}, claims(idp)).rstrip("."): (401, 900901),
        "Bearer " + sign(idp.signing_key, claims(idp, aud=[1, 2, 3])): (401, 900901),
        "Bearer " + sign(idp.signing_key, claims(idp, exp="9999999999")): (401, 900901),
        "Bearer " + sign(idp.signing_key, json.dumps(claims(idp)).replace('"exp": ', '"exp": NaN, "x": ')):
            (401, 900901),
        "Bearer " + sign(idp.signing_key, claims(idp, exp=10**400)): (401, 900901),
        "Bearer " + "A" * (17 * 1024): (401, 900901),
        "Bearer " + sign(idp.signing_key, claims(idp), kid="unknown-kid"): (401, 900901),
        "Bearer a,Bearer b": (400, 900940),
        "Basic dXNlcjpwYXNz": (401, 900902),
        "": (401, 900901),
    }


def test_c24_garbage_authorization_values_are_explicit_denials_never_rpc_errors(
    authz_client: Callable[..., _Client], idp: KeyManager, make_redis_settings: Callable[..., Settings]
) -> None:
    _register(make_redis_settings())
    client = authz_client()
    for value, (want_status, want_code) in _garbage_authorizations(idp).items():
        grpc_code, http_status, body, headers = _denied(client.check(_check_request(value)))
        assert (http_status, body["code"]) == (want_status, want_code), (value[:60], body)
        assert grpc_code == 16
        assert headers["www-authenticate"].startswith('Bearer realm="authz"')
    # Absent header: 401 without an error attribute (RFC 6750 3.1).
    grpc_code, http_status, body, headers = _denied(client.check(_check_request(None)))
    assert (grpc_code, http_status, body["code"]) == (16, 401, 900902)
    assert headers["www-authenticate"] == 'Bearer realm="authz"'
    # The server is still healthy and allows a valid token afterwards.
    ok = client.check(_check_request("Bearer " + idp.issue_token(CLIENT_ID, "user-42", "orders:read")))
    assert ok.status.code == 0


def test_c24_unknown_kid_storm_is_401_not_503(
    authz_client: Callable[..., _Client], idp: KeyManager, make_redis_settings: Callable[..., Settings]
) -> None:
    client = authz_client()
    fetched = idp.requests["/oauth2/jwks"]
    for _ in range(30):
        token = sign(idp.signing_key, claims(idp), kid=uuid.uuid4().hex)
        grpc_code, http_status, body, headers = _denied(client.check(_check_request("Bearer " + token)))
        assert (grpc_code, http_status, body["code"]) == (16, 401, 900901)
        assert body["error"] == "invalid_token"
        assert 'error="invalid_token"' in headers["www-authenticate"]
    assert idp.requests["/oauth2/jwks"] - fetched <= 1  # cooldown 30 s in the test config


def test_c03a_cold_start_with_key_manager_down_is_503_with_status_7_and_retry_after(
    authz_client: Callable[..., _Client], idp: KeyManager
) -> None:
    idp.jwks_status = 503
    client = authz_client()
    token = idp.issue_token(CLIENT_ID, "user-42", "orders:read")
    grpc_code, http_status, body, headers = _denied(client.check(_check_request("Bearer " + token)))
    assert (grpc_code, http_status, body["code"]) == (7, 503, 900950)
    assert body["error"] == "temporarily_unavailable"
    assert headers["retry-after"] == "5"
    assert "www-authenticate" not in headers
    # Token problems are still 401 while the key manager is down (no fail-open lever, no 503 for garbage).
    _, http_status, body, _ = _denied(client.check(_check_request("Bearer a.b")))
    assert (http_status, body["code"]) == (401, 900901)


def test_c03a_recovers_without_restart_when_the_key_manager_comes_back(
    authz_client: Callable[..., _Client], idp: KeyManager, make_redis_settings: Callable[..., Settings]
) -> None:
    _register(make_redis_settings())
    idp.jwks_status = 503
    client = authz_client()
    token = idp.issue_token(CLIENT_ID, "user-42", "orders:read")
    _, http_status, _, _ = _denied(client.check(_check_request("Bearer " + token)))
    assert http_status == 503
    idp.jwks_status = 200
    deadline = time.monotonic() + 5
    while True:
        resp = client.check(_check_request("Bearer " + token))
        if resp.status.code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert resp.status.code == 0, resp


def test_c28_three_mib_body_with_valid_token_is_decided_normally(
    authz_client: Callable[..., _Client], idp: KeyManager, make_redis_settings: Callable[..., Settings]
) -> None:
    app_id = _register(make_redis_settings())
    client = authz_client()
    token = idp.issue_token(CLIENT_ID, "user-42", "orders:read")
    resp = client.check(_check_request("Bearer " + token, body=os.urandom(3 * MiB)))
    assert resp.status.code == 0, resp
    headers = {h.header.key: h.header.value for h in resp.ok_response.headers}
    assert headers["x-application-id"] == app_id
    assert headers["x-client-id"] == CLIENT_ID
    assert "authorization" in resp.ok_response.headers_to_remove
    # The same 3 MiB request with a bad token is a normal denial.
    _, http_status, body, _ = _denied(client.check(_check_request("Bearer a.b", body=os.urandom(3 * MiB))))
    assert (http_status, body["code"]) == (401, 900901)


def test_c28_body_above_the_receive_limit_is_resource_exhausted(
    authz_client: Callable[..., _Client], idp: KeyManager, make_redis_settings: Callable[..., Settings]
) -> None:
    _register(make_redis_settings())
    client = authz_client()
    token = idp.issue_token(CLIENT_ID, "user-42", "orders:read")
    with pytest.raises(grpc.RpcError) as info:
        client.check(_check_request("Bearer " + token, body=b"x" * (9 * MiB)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server keeps serving after refusing the oversized message.
    assert client.check(_check_request("Bearer " + token)).status.code == 0


def test_c28_receive_limit_comes_from_config(
    authz_client: Callable[..., _Client], idp: KeyManager, make_redis_settings: Callable[..., Settings], free_listen: str
) -> None:
    _register(make_redis_settings())
    client = authz_client(server={"listen": free_listen, "decision_timeout": 2.0, "grace_period": 2,
                                  "max_receive_message_bytes": 12 * MiB})
    token = idp.issue_token(CLIENT_ID, "user-42", "orders:read")
    assert client.check(_check_request("Bearer " + token, body=b"x" * (9 * MiB))).status.code == 0


@pytest.fixture
def free_listen() -> str:
    from authz.dev.procs import free_port

    return f"127.0.0.1:{free_port()}"
