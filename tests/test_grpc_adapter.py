"""The gRPC adapter's defences: bounded, linear work per message; malformed messages are rendered denies."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as pb

from authz.dev.keymanager import KeyManager, SigningKey
from authz.envoy.grpc_service import adapt, parse_check_request
from authz.envoy.requests import MAX_HEADERS
from authz.errors import Denial, Reason
from tests.support.processes import AuthzProcess

CHECK = "/envoy.service.auth.v3.Authorization/Check"


def _request(path: str = "/orders/v1/items") -> pb.CheckRequest:
    req = pb.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", path, "api.example.test"
    return req


def test_too_many_repeated_headers_are_a_400_not_quadratic_work() -> None:
    req = _request()
    for _ in range(MAX_HEADERS + 1):
        entry = req.attributes.request.http.header_map.headers.add()
        entry.key, entry.value = "x-a", ""
    with pytest.raises(Denial) as caught:
        adapt(req)
    assert caught.value.reason is Reason.INVALID_REQUEST


def test_repeated_headers_are_comma_joined_once() -> None:
    req = _request()
    for value in ("a", "b", "c"):
        entry = req.attributes.request.http.header_map.headers.add()
        entry.key, entry.value = "X-Multi", value
    req.attributes.request.http.headers["x-multi"] = "z"
    assert adapt(req).headers["x-multi"] == "z,a,b,c"


def test_oversized_headers_and_paths_are_a_400() -> None:
    big = _request()
    big.attributes.request.http.headers["x-big"] = "v" * (100 * 1024)
    with pytest.raises(Denial) as caught:
        adapt(big)
    assert caught.value.description == "The request headers are too large"
    with pytest.raises(Denial) as caught:
        adapt(_request("/" + "a" * 20000))
    assert caught.value.description == "The request path is too long"


def test_request_id_and_method_lose_control_characters_so_logs_cannot_be_forged() -> None:
    req = _request()
    req.attributes.request.http.headers["x-request-id"] = "abc\nFAKE INFO authz.decisions: allow"
    req.attributes.request.http.method = "GET\r\n"
    adapted = adapt(req)
    assert adapted.request_id == "abcFAKEINFOauthz.decisions:allow"
    assert adapted.method == "GET"


def _bad_utf8_message() -> bytes:
    req = _request()
    req.attributes.request.http.headers["x-bad"] = "\u00e9\u00e9"
    data = req.SerializeToString()
    assert b"\xc3\xa9\xc3\xa9" in data
    return data.replace(b"\xc3\xa9\xc3\xa9", b"\xff\xfe\xff\xfe")


def test_a_message_protobuf_cannot_parse_deserializes_to_none() -> None:
    assert parse_check_request(_bad_utf8_message()) is None
    assert parse_check_request(_request().SerializeToString()) == _request()


def test_bad_utf8_over_grpc_is_a_rendered_400_not_an_rpc_error(start_authz: Callable[..., AuthzProcess]) -> None:
    authz = start_authz()
    with grpc.insecure_channel(authz.listen) as channel:
        call = channel.unary_unary(CHECK, request_serializer=lambda b: b, response_deserializer=pb.CheckResponse.FromString)
        response = call(_bad_utf8_message(), timeout=5)
    assert response.status.code == 16
    assert response.denied_response.status.code == 400
    assert '"code":900940' in response.denied_response.body


def test_c02_unknown_kid_with_a_slow_key_manager_is_401_not_503(
    start_authz: Callable[..., AuthzProcess], idp: KeyManager
) -> None:
    authz = start_authz(km={"jwks": {"kid_refetch_cooldown": 0.01, "forced_refetch_wait": 0.2}})
    idp.jwks_delay = 1.5
    stranger = SigningKey.generate_rsa(kid="nobody-knows-me")
    token = idp.issue_token("demo-client", "demo", "orders:read", key=stranger)
    req = _request()
    req.attributes.request.http.headers["authorization"] = f"Bearer {token}"
    started = time.monotonic()
    with grpc.insecure_channel(authz.listen) as channel:
        response = channel.unary_unary(
            CHECK, request_serializer=pb.CheckRequest.SerializeToString, response_deserializer=pb.CheckResponse.FromString
        )(req, timeout=5)
    assert time.monotonic() - started < 1.2
    assert response.status.code == 16
    assert response.denied_response.status.code == 401
    assert '"code":900901' in response.denied_response.body
