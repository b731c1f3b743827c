"""A bearer token larger than ``tokens.max_size`` is 401 ``invalid_token`` ("too large") in both front ends, even
when it alone pushes the header block past the adapters' 96 KiB limit; a request whose *other* headers are over
that limit stays a 400. (Through real Envoy: ``tests/test_e2e_key_managers.py``.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from authz.config import Settings
from authz.decide.credentials import extract_bearer
from authz.dev.keymanager import KeyManager
from authz.dev.procs import free_port
from authz.envoy.grpc_service import adapt
from authz.envoy.http_service import adapt_http
from authz.envoy.requests import MAX_HEADER_BYTES, build_request
from authz.errors import Denial, Reason
from authz.model import Request
from tests.support.pipeline import running_pipeline
from tests.support.processes import AuthzProcess

KiB = 1024
TOO_LARGE = "The access token is too large (larger than 16384 bytes)"


def _deny(call: Callable[[], object]) -> Denial:
    with pytest.raises(Denial) as info:
        call()
    return info.value


# ---- the adapters' header limit counts the other headers only --------------------------------------------------


@pytest.mark.parametrize("token_bytes", [17 * KiB, MAX_HEADER_BYTES, 200 * KiB, 2 * 1024 * KiB])
def test_a_large_authorization_header_is_not_counted_against_the_header_limit(token_bytes: int) -> None:
    headers = {"authorization": "Bearer " + "a" * token_bytes, "x-other": "v" * (MAX_HEADER_BYTES - 100)}
    request = build_request("GET", "/orders/v1/items", "h", headers)
    assert request.headers["authorization"] == headers["authorization"]


def test_other_headers_over_the_limit_are_400_whatever_the_token() -> None:
    for token in ("", "Bearer abc", "Bearer " + "a" * 200 * KiB):
        headers = {"x-big": "v" * MAX_HEADER_BYTES, **({"authorization": token} if token else {})}
        denial = _deny(lambda h=headers: build_request("GET", "/", "h", h))
        assert (denial.reason, denial.description) == (Reason.INVALID_REQUEST, "The request headers are too large")
    # At the limit (names and values counted, the authorization value aside) accepted, one byte more refused.
    room = MAX_HEADER_BYTES - len("x-big") - len("authorization")
    build_request("GET", "/", "h", {"x-big": "v" * room, "authorization": "Bearer " + "a" * 100 * KiB})
    denial = _deny(lambda: build_request("GET", "/", "h", {"x-big": "v" * (room + 1), "authorization": "Bearer a"}))
    assert denial.reason is Reason.INVALID_REQUEST


def test_both_adapters_pass_an_oversized_token_on_and_refuse_oversized_other_headers() -> None:
    token = "Bearer " + "a" * 150 * KiB
    assert adapt_http("GET", "/x", [(b"Host", b"h"), (b"Authorization", token.encode())]).headers[
        "authorization"] == token
    check = external_auth_pb2.CheckRequest()
    check.attributes.request.http.headers.update({"authorization": token, ":path": "/x"})
    assert adapt(check).headers["authorization"] == token
    check.attributes.request.http.headers["x-big"] = "v" * MAX_HEADER_BYTES
    assert _deny(lambda: adapt(check)).reason is Reason.INVALID_REQUEST
    other = [(b"Host", b"h"), (b"Authorization", b"Bearer a"), (b"X-A", b"v" * (MAX_HEADER_BYTES // 2 + 1)),
             (b"X-B", b"v" * (MAX_HEADER_BYTES // 2 + 1))]
    assert _deny(lambda: adapt_http("GET", "/x", other)).reason is Reason.INVALID_REQUEST


# ---- the credentials phase refuses a long token before scanning it ----------------------------------------------


def test_the_size_check_comes_before_the_token_is_scanned() -> None:
    # Characters no token may hold: were the token scanned first, the description would say so.
    denial = _deny(lambda: extract_bearer({"authorization": "Bearer " + "!" * (16 * KiB + 1)}, 16 * KiB))
    assert (denial.reason, denial.description) == (Reason.INVALID_CREDENTIALS, TOO_LARGE)
    assert extract_bearer({"authorization": "Bearer " + "a" * 16 * KiB}, 16 * KiB) == "a" * 16 * KiB
    assert _deny(lambda: extract_bearer({"authorization": "Bearer " + "!" * 10}, 16 * KiB)).description == (
        "The bearer token has characters outside the token syntax")


async def test_pipeline_denies_an_oversized_token_401_on_both_paths(make_settings: Callable[..., Settings]) -> None:
    async with running_pipeline(make_settings()) as p:
        request = Request("GET", "/orders/v1/items", "h", {"authorization": "Bearer " + "a" * 200 * KiB},
                          {"api_id": "orders-v1"})
        assert p.pipeline.decide_cached(request) is None
        denial = await p.pipeline.decide(request)
        assert isinstance(denial, Denial)
        assert (denial.reason, denial.description) == (Reason.INVALID_CREDENTIALS, TOO_LARGE)
        assert denial.reason.info.oauth_error == "invalid_token"


# ---- both front ends, as processes ----------------------------------------------------------------------------------


@pytest.fixture
def authz(start_authz: Callable[..., AuthzProcess]) -> AuthzProcess:
    return start_authz(server={"listen": f"127.0.0.1:{free_port()}", "http_listen": f"127.0.0.1:{free_port()}",
                               "decision_timeout": 2.0, "grace_period": 2, "workers": 1})


def _grpc(authz: AuthzProcess, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    import json

    check = external_auth_pb2.CheckRequest()
    http = check.attributes.request.http
    http.method, http.path, http.host = "GET", "/orders/v1/items", "api.example.test"
    http.headers.update(headers)
    with grpc.insecure_channel(authz.listen) as channel:
        response = external_auth_pb2_grpc.AuthorizationStub(channel).Check(check, timeout=10)
    assert response.status.code == 16
    return response.denied_response.status.code, json.loads(response.denied_response.body)


def _http(authz: AuthzProcess, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"http://{authz.doc['server']['http_listen']}/orders/v1/items", headers=headers, timeout=10)
    assert r.headers["content-type"] == "application/json"
    return r.status_code, r.json()


@pytest.mark.parametrize("front_end", ["grpc", "http"])
@pytest.mark.parametrize("token_bytes", [17 * KiB, MAX_HEADER_BYTES - 10, 200 * KiB, 2 * 1024 * KiB])
def test_oversized_token_is_401_too_large_in_both_front_ends(
    front_end: str, token_bytes: int, authz: AuthzProcess, idp: KeyManager
) -> None:
    call = _grpc if front_end == "grpc" else _http
    # The token alone puts the header block over MAX_HEADER_BYTES in every case but the first.
    headers = {"authorization": "Bearer " + "a" * token_bytes, "x-other": "v" * 8 * KiB}
    status, body = call(authz, headers)
    assert (status, body["code"], body["error"], body["description"]) == (401, 900901, "invalid_token", TOO_LARGE)


@pytest.mark.parametrize("front_end", ["grpc", "http"])
def test_other_oversized_headers_stay_400_in_both_front_ends(front_end: str, authz: AuthzProcess, idp: KeyManager) -> None:
    call = _grpc if front_end == "grpc" else _http
    token = idp.issue_token("app-123", "u", "orders:read")
    headers = {"authorization": f"Bearer {token}", "x-a": "v" * 50 * KiB, "x-b": "v" * 50 * KiB}
    status, body = call(authz, headers)
    assert (status, body["code"], body["description"]) == (400, 900940, "The request headers are too large")
