"""End to end, what authz tells Envoy and the upstream: forwarded identity, backend JWT, dynamic metadata in
Envoy's access log and rate-limit descriptor, public resources, routing without a route-named API, and the
error contract. Real Envoy -> real ``authz serve`` -> echo upstream; real Redis, real tokens.

Every test runs through an Envoy in each ext_authz mode (``stack`` is parametrized over
:data:`tests.support.e2e.MODES`), both made by ``authz envoy-config`` in front of the same authz: gRPC mode gets
the metadata as ``dynamic_metadata``, HTTP mode as response headers lifted by ``dynamic_metadata_from_headers``;
the access log and the rate-limit descriptor read ``envoy.filters.http.ext_authz`` metadata in both.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis

from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey
from authz.dev.procs import RedisServer, free_port, start_envoy
from authz.dev.stack import tamper_signature
from authz.dev.upstream import EchoUpstream
from authz.errors import Reason
from authz.registry.admin import RegistryAdmin
from tests.support.config import AUDIENCE, settings_dict
from tests.support.e2e import MODES, drop_keys, listen_http, mode_gateway, write_gateway_config
from tests.support.e2e import Stack as BaseStack
from tests.support.processes import AuthzProcess
from tests.test_backend_jwt import write_key

pytestmark = pytest.mark.e2e

PREFIX = "resp:"
CLIENTS = {**DEMO_CLIENTS, "bronze-client": "bronze-secret", "blocked-client": "blocked-secret",
           "held-client": "held-secret"}
BRONZE_LIMIT = 3
IDENTITY_HEADERS = ("x-application-id", "x-application-name", "x-application-tier", "x-client-id", "x-subject",
                    "x-api-id", "x-api-version", "x-key-type", "x-scopes", "x-jwt-assertion")


@dataclass
class Stack(BaseStack):
    """The shared stack, plus authz's backend-JWT JWKS endpoint and Envoy's admin (for its access log)."""

    jwks_url: str = ""
    admin_url: str = ""

    call = BaseStack.get

    def access_log(self, tag: str, timeout: float = 3.0) -> dict[str, Any]:
        """The JSON access log line Envoy wrote for the request whose path carries ``tag``."""
        deadline = time.monotonic() + timeout
        while True:
            # Envoy buffers access logs (flushed every 10 s); reopening the logs flushes them now.
            httpx.post(self.admin_url + "/reopen_logs", timeout=5).raise_for_status()
            for line in self.envoy.log_text().splitlines():
                if tag in line and line.startswith("{"):
                    return json.loads(line)
            assert time.monotonic() < deadline, f"no access log line for {tag} within {timeout}s"
            time.sleep(0.05)


def _seed(admin: RegistryAdmin):  # noqa: ANN202
    async def go() -> None:
        for app_id, name, tier, client_id, apis in (
            ("demo-app", "Demo App", "Gold", "demo-client", ["orders-v1", "payments-v1"]),
            ("other-app", "Other App", "Unlimited", "other-client", []),
            ("bronze-app", "Bronze App", "Bronze", "bronze-client", ["orders-v1"]),
            ("blocked-app", "Blocked App", "Unlimited", "blocked-client", ["orders-v1"]),
            ("held-app", "Held App", "Unlimited", "held-client", ["orders-v1"]),
        ):
            await admin.create_application(name, owner="e2e", tier=tier, app_id=app_id)
            await admin.add_client(app_id, client_id)
            for api in apis:
                await admin.subscribe(app_id, api)
        await admin.set_subscription_status("blocked-app", "orders-v1", "BLOCKED")
        await admin.set_subscription_status("held-app", "orders-v1", "ON_HOLD")

    return go()


def _apis(doc: dict[str, Any]) -> list[dict[str, Any]]:
    apis = [dict(a) for a in doc["apis"]]
    orders = next(a for a in apis if a["id"] == "orders-v1")
    orders["resources"] = [*orders["resources"], {"path": "/public/**", "methods": ["GET"], "auth": "none"}]
    orders["backend_jwt"] = {"audience": "orders-backend"}
    payments = next(a for a in apis if a["id"] == "payments-v1")
    payments["headers_to_remove"] = ["x-debug-token", "cookie"]
    return apis


def _gateway(stack: Stack, mode: str) -> Stack:
    """``stack`` seen through a new Envoy in ext_authz ``mode``: orders-v1 has no route of its own (the catch-all
    route names no API and authz matches it by host + path), payments-v1 is named by its route; Bronze has a
    bucket of :data:`BRONZE_LIMIT` requests a minute."""
    config = stack.tmp / f"envoy-{mode}.yaml"
    listen, admin_port = write_gateway_config(config, stack.doc, stack.upstream.port, authz_mode=mode,
                                              routed_apis={"payments-v1"}, tier_limits={"Bronze": BRONZE_LIMIT})
    (stack.tmp / f"envoy-{mode}").mkdir()
    envoy = start_envoy(config, stack.tmp / f"envoy-{mode}", admin_port=admin_port)
    return dataclasses.replace(stack, envoy=envoy, gateway=f"http://127.0.0.1:{listen}",
                               admin_url=f"http://127.0.0.1:{admin_port}", mode=mode)


@pytest.fixture(scope="module")
def processes(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Key manager, upstream and authz (both ext_authz listeners, route headers read), no Envoy yet."""
    tmp = tmp_path_factory.mktemp("e2e-responses")
    km = KeyManager(AUDIENCE, CLIENTS, DEMO_USERS, keys=[SigningKey.generate_rsa(kid="r1")])
    km.start()
    upstream = EchoUpstream()
    upstream.start()
    jwks_port = free_port()
    doc = settings_dict(km, redis_server.url, PREFIX)
    listen_http(doc)
    doc["redis"]["cache_ttl"] = 30
    doc["apis"] = _apis(doc)
    doc["headers"] = {
        "application_id": "x-application-id", "application_name": "x-application-name",
        "application_tier": "x-application-tier", "client_id": "x-client-id", "subject": "x-subject",
        "api_id": "x-api-id", "api_version": "x-api-version", "key_type": "x-key-type", "scopes": "x-scopes",
        "remove": ["authorization"],
    }
    doc["backend_jwt"] = {
        "issuer": "https://authz.e2e",
        "keys": [
            {"kid": "authz-2", "algorithm": "ES256", "key_file": write_key(tmp / "authz-2.pem", "ec")},
            {"kid": "authz-1", "algorithm": "RS256", "key_file": write_key(tmp / "authz-1.pem")},
        ],
        "claims": ["email"],
        "ttl": 60,
        "jwks_listen": f"127.0.0.1:{jwks_port}",
    }
    authz = AuthzProcess(doc, tmp)
    stack = Stack(km, upstream, authz, None, "", doc, tmp,  # type: ignore[arg-type]
                  jwks_url=f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json")
    try:
        stack.admin(_seed)
        authz.start()
        yield stack
    finally:
        authz.stop()
        upstream.stop()
        km.stop()
        drop_keys(redis_server, PREFIX)


@pytest.fixture(scope="module")
def grpc_stack(processes: Stack) -> Iterator[Stack]:
    stack = _gateway(processes, "grpc")
    yield stack
    stack.envoy.stop()


@pytest.fixture(scope="module")
def http_stack(processes: Stack) -> Iterator[Stack]:
    stack = _gateway(processes, "http")
    yield stack
    stack.envoy.stop()


@pytest.fixture(params=MODES)
def stack(request: pytest.FixtureRequest) -> Stack:
    """The stack seen through an Envoy in each ext_authz mode."""
    return request.getfixturevalue(f"{request.param}_stack")


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _denial(r: httpx.Response, status: int, code: int, token: str | None = None) -> dict[str, Any]:
    """Check a denial's contract and that nothing internal leaks into it; returns the JSON body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["code"] == code
    text = r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
    for secret in (PREFIX, "Traceback", "BEGIN", "PRIVATE KEY", "redis://", *([token] if token else [])):
        assert secret not in text, secret
    return body


# ---- forwarded identity ----------------------------------------------------------------------------------


def test_every_configured_identity_header_reaches_the_upstream_and_spoofed_copies_are_overwritten(
        stack: Stack) -> None:
    spoofed = {name: "spoofed" for name in IDENTITY_HEADERS}
    r = stack.call("/orders/v1/items", stack.token(scope="orders:read orders:write"), headers=spoofed)
    assert r.status_code == 200, r.text
    seen = r.json()["headers"]
    assert {name: seen.get(name) for name in IDENTITY_HEADERS if name != "x-jwt-assertion"} == {
        "x-application-id": "demo-app", "x-application-name": "Demo App", "x-application-tier": "Gold",
        "x-client-id": "demo-client", "x-subject": "demo", "x-api-id": "orders-v1", "x-api-version": "v1",
        "x-key-type": "PRODUCTION", "x-scopes": "orders:read orders:write",
    }
    assert seen["x-jwt-assertion"] != "spoofed"
    assert "authorization" not in seen


def test_headers_to_remove_is_per_api(stack: Stack) -> None:
    token = stack.token(scope="payments:read")
    r = stack.call("/payments/v1/charges", token, headers={"x-debug-token": "d", "cookie": "c=1", "x-jwt-assertion": "forged"})
    assert r.status_code == 200, r.text
    seen = r.json()["headers"]
    # payments-v1 lists its own headers_to_remove (without authorization): the bearer token goes through.
    assert seen["authorization"] == f"Bearer {token}"
    assert "x-debug-token" not in seen and "cookie" not in seen
    # payments-v1 has no backend JWT: a client-sent copy is removed, never forwarded as if authz set it.
    assert "x-jwt-assertion" not in seen
    assert seen["x-api-id"] == "payments-v1"
    orders = stack.call("/orders/v1/items", stack.token(), headers={"x-debug-token": "d"}).json()["headers"]
    assert "authorization" not in orders and orders["x-debug-token"] == "d"


# ---- backend JWT -----------------------------------------------------------------------------------------


def test_backend_jwt_verifies_upstream_against_the_published_jwks(stack: Stack) -> None:
    token = stack.token(scope="orders:read", email="demo@example.com", secret_claim="not-copied")
    r = stack.call("/orders/v1/items/42", token)
    assert r.status_code == 200, r.text
    assertion = r.json()["headers"]["x-jwt-assertion"]
    signing_key = jwt.PyJWKClient(stack.jwks_url).get_signing_key_from_jwt(assertion)
    claims = jwt.decode(assertion, signing_key.key, algorithms=["ES256", "RS256"], audience="orders-backend",
                        issuer="https://authz.e2e")
    assert jwt.get_unverified_header(assertion) == {"alg": "ES256", "kid": "authz-2", "typ": "JWT"}
    access = jwt.decode(token, options={"verify_signature": False})
    now = time.time()
    assert now - 30 <= claims["iat"] <= now + 1
    assert claims["exp"] == claims["iat"] + 60
    jti = claims.pop("jti")
    assert len(jti) == 32 and jti != access["jti"]
    claims.pop("iat"), claims.pop("exp")
    assert claims == {
        "iss": "https://authz.e2e", "sub": "demo", "aud": "orders-backend", "application_id": "demo-app",
        "application_name": "Demo App", "application_tier": "Gold", "client_id": "demo-client",
        "api_id": "orders-v1", "api_version": "v1", "key_type": "PRODUCTION", "scope": "orders:read",
        "email": "demo@example.com",
    }


def test_jwks_endpoint_publishes_every_rotation_key(stack: Stack) -> None:
    r = httpx.get(stack.jwks_url, timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/jwk-set+json"
    assert r.headers["cache-control"] == "public, max-age=300"
    keys = r.json()["keys"]
    assert [(k["kid"], k["alg"], k["kty"], k["use"]) for k in keys] == [
        ("authz-2", "ES256", "EC", "sig"), ("authz-1", "RS256", "RSA", "sig")]
    assert all("d" not in k for k in keys)
    assert httpx.get(stack.jwks_url.replace("jwks.json", "other"), timeout=5).status_code == 404


def test_backend_jwt_is_reused_for_the_same_token_and_new_for_another(stack: Stack) -> None:
    token = stack.token()
    first = stack.call("/orders/v1/items", token).json()["headers"]["x-jwt-assertion"]
    again = stack.call("/orders/v1/items?page=2", token).json()["headers"]["x-jwt-assertion"]
    other = stack.call("/orders/v1/items", stack.token()).json()["headers"]["x-jwt-assertion"]
    assert first == again
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != jwt.decode(
        first, options={"verify_signature": False})["jti"]


# ---- dynamic metadata: access log and rate-limit descriptor --------------------------------------------


def test_access_log_prints_the_dynamic_metadata_of_an_allowed_request(stack: Stack) -> None:
    tag = _tag()
    assert stack.call(f"/orders/v1/items?t={tag}", stack.token()).status_code == 200
    line = stack.access_log(tag)
    assert {k: v for k, v in line.items() if k.startswith("authz_")} == {
        "authz_application_id": "demo-app", "authz_application_name": "Demo App",
        "authz_application_tier": "Gold", "authz_client_id": "demo-client", "authz_subject": "demo",
        "authz_api_id": "orders-v1", "authz_subscription_tier": "Unlimited", "authz_key_type": "PRODUCTION",
        "authz_auth": None,  # set only for public resources
    }
    assert (line["method"], line["path"], line["status"]) == ("GET", f"/orders/v1/items?t={tag}", 200)


def test_denied_and_public_requests_log_no_application(stack: Stack) -> None:
    denied, public = _tag(), _tag()
    assert stack.call(f"/orders/v1/items?t={denied}").status_code == 401
    assert stack.call(f"/orders/v1/public/health?t={public}").status_code == 200
    d, p = stack.access_log(denied), stack.access_log(public)
    assert (d["status"], d["authz_application_id"], d["authz_api_id"]) == (401, None, None)
    assert (p["status"], p["authz_application_id"], p["authz_api_id"]) == (200, None, "orders-v1")
    assert (d["authz_auth"], p["authz_auth"]) == (None, "none")


def test_rate_limit_descriptor_uses_the_application_tier_from_metadata(stack: Stack) -> None:
    token = stack.token("bronze-client")
    codes = [stack.call("/orders/v1/items", token).status_code for _ in range(BRONZE_LIMIT + 1)]
    assert codes == [200] * BRONZE_LIMIT + [429]
    # Other tiers have their own (here: only the global) bucket.
    assert stack.call("/orders/v1/items", stack.token()).status_code == 200


# ---- public resources and routing without context extensions -------------------------------------------


def test_public_resource_needs_no_credentials_and_forwards_no_identity(stack: Stack) -> None:
    r = stack.call("/orders/v1/public/health", headers={"x-application-id": "admin-app", "x-client-id": "admin",
                                                         "x-jwt-assertion": "forged"})
    assert r.status_code == 200, r.text
    seen = r.json()["headers"]
    assert not [name for name in IDENTITY_HEADERS if name in seen]
    deadline = time.monotonic() + 3
    # The decision line of an anonymous allow (logged under the default logging.decisions: denies).
    while ("api=orders-v1 resource=/public/** method=GET path=/orders/v1/public/health result=allow code=ok "
           "phase=public") not in stack.authz.log_text():
        assert time.monotonic() < deadline, "public access not logged"
        time.sleep(0.05)


def test_public_resource_with_a_valid_token_of_an_unsubscribed_app_is_allowed_without_identity(
        stack: Stack) -> None:
    r = stack.call("/orders/v1/public/status", stack.token("other-client"))
    assert r.status_code == 200, r.text
    assert not [name for name in IDENTITY_HEADERS if name in r.json()["headers"]]
    assert "authorization" not in r.json()["headers"]


@pytest.mark.parametrize(
    ("authorization", "code"),
    [("Bearer not.a.token", 900901), ("Basic dXNlcjpwYXNz", 900902), ("Bea xyz", 900901), ("Bearer", 900901)],
)
def test_c19_invalid_credentials_on_a_public_resource_are_401_never_ignored(
        stack: Stack, authorization: str, code: int) -> None:
    r = httpx.get(stack.gateway + "/orders/v1/public/health", headers={"authorization": authorization}, timeout=5)
    _denial(r, 401, code)
    assert r.headers["www-authenticate"].startswith('Bearer realm="authz"')


def test_public_resource_with_a_tampered_token_is_401(stack: Stack) -> None:
    token = tamper_signature(stack.token())
    _denial(stack.call("/orders/v1/public/health", token), 401, 900901, token)


def test_c21_public_prefix_is_segment_aware_and_dot_segments_cannot_climb_out(stack: Stack) -> None:
    _denial(stack.call("/orders/v1/publicity"), 401, 900902)
    _denial(stack.call("/orders/v1/public/../items"), 401, 900902)  # resolves to the protected /items
    _denial(stack.call("/orders/v1/public/%2e%2e/items"), 401, 900902)
    before = len(stack.upstream.received)
    r = stack.call("/orders/v1/public%2Fhealth")
    assert r.status_code == 400
    assert len(stack.upstream.received) == before


def test_c22_host_and_path_routing_strips_the_query_and_ignores_original_path_headers(stack: Stack) -> None:
    token = stack.token()
    r = stack.call("/orders/v1/items?next=/payments/v1/charges", token)
    assert r.status_code == 200 and r.json()["headers"]["x-api-id"] == "orders-v1"
    spoof = {"x-envoy-original-path": "/orders/v1/public/health", "x-forwarded-uri": "/orders/v1/public/health",
             "x-original-url": "/orders/v1/public/health"}
    _denial(stack.call("/orders/v1/items", headers=spoof), 401, 900902)
    _denial(stack.call("/orders/v1/refunds", token), 403, 900906, token)


# ---- one error contract ----------------------------------------------------------------------------------


def test_every_reason_reachable_through_envoy_has_its_status_code_and_leaks_nothing(stack: Stack) -> None:
    now = int(time.time())
    expired = stack.token(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    tampered = tamper_signature(stack.token())
    unknown = stack.km.issue_token("unknown-client", "demo", "orders:read")
    cases: list[tuple[Reason, httpx.Response, str | None]] = [
        (Reason.INVALID_REQUEST, stack.call("/orders/v1/items", headers={"authorization": "Bearer a, Bearer b"}),
         None),
        (Reason.INVALID_CREDENTIALS, stack.call("/orders/v1/items", tampered), tampered),
        (Reason.MISSING_CREDENTIALS, stack.call("/orders/v1/items"), None),
        (Reason.EXPIRED_TOKEN, stack.call("/orders/v1/items", expired), expired),
        (Reason.NO_MATCHING_RESOURCE, stack.call("/nothing", stack.token()), None),
        (Reason.SUBSCRIPTION_BLOCKED, stack.call("/orders/v1/items", stack.token("blocked-client")), None),
        (Reason.NOT_SUBSCRIBED, stack.call("/orders/v1/items", stack.token("other-client")), None),
        (Reason.SUBSCRIPTION_INACTIVE, stack.call("/orders/v1/items", stack.token("held-client")), None),
        (Reason.INSUFFICIENT_SCOPE, stack.call("/orders/v1/items", stack.token(), method="POST"), None),
        (Reason.UNKNOWN_CLIENT, stack.call("/orders/v1/items", unknown), unknown),
    ]
    for reason, r, token in cases:
        info = reason.info
        body = _denial(r, info.http_status, info.code, token)
        assert body["message"] == info.message
        assert body.get("error") == info.body_error
        challenge = r.headers.get("www-authenticate")
        assert (challenge is not None) == info.challenge, reason
        if info.oauth_error:
            assert f'error="{info.oauth_error}"' in challenge
    scope_challenge = cases[8][1].headers["www-authenticate"]
    assert scope_challenge.startswith('Bearer realm="authz", error="insufficient_scope", error_description="')
    assert scope_challenge.endswith(', scope="orders:write"')


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
def test_c23_slow_registry_is_503_with_retry_after_within_the_budget(
        stack: Stack, redis_server: RedisServer, tmp_path: Path, fail_open: bool) -> None:
    """Through a fail-open Envoy too: in HTTP mode authz sends the 503 as a 429 deny (a 5xx would be an authz
    failure, let through by failure_mode_allow or stripped of its body), which the generated Envoy maps back."""
    doc = {**stack.doc, "server": {**stack.doc["server"], "listen": f"127.0.0.1:{free_port()}",
                                  "decision_timeout": 0.2}}
    listen_http(doc)
    doc.pop("backend_jwt")
    doc["apis"] = [{k: v for k, v in a.items() if k != "backend_jwt"} for a in doc["apis"]]
    authz = AuthzProcess(doc, tmp_path).start()
    envoy, gateway = mode_gateway(tmp_path, doc, stack.upstream.port, stack.mode, failure_mode_allow=fail_open)
    pauser = redis.Redis.from_url(redis_server.url)
    try:
        before = len(stack.upstream.received)
        for client_id in ("demo-client", "other-client"):  # subscribed (would allow) and not (would deny)
            token = stack.token(client_id)
            pauser.execute_command("CLIENT", "PAUSE", 1000, "ALL")
            started = time.monotonic()
            r = stack.call("/orders/v1/items", token, gateway=gateway)
            elapsed = time.monotonic() - started
            body = _denial(r, 503, 900950, token)
            assert body["error"] == "temporarily_unavailable"
            assert r.headers["retry-after"] == "5"
            assert elapsed < 0.9, elapsed
            pauser.execute_command("CLIENT", "UNPAUSE")
        assert len(stack.upstream.received) == before  # even through a fail-open Envoy nothing reached the upstream
    finally:
        pauser.execute_command("CLIENT", "UNPAUSE")
        pauser.close()
        envoy.stop()
        authz.stop()
