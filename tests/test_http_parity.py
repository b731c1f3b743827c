"""The HTTP ext_authz front end renders every decision as the gRPC adapter does (one pipeline, one rendering),
over a real socket: the same status, headers and body for each denial, the same headers, removals and dynamic
metadata for an allow; the per-route headers select the API and the environment exactly as
``context_extensions`` do; a warm check is answered without a task."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
from envoy.service.auth.v3 import external_auth_pb2 as pb
from google.protobuf.json_format import MessageToDict

from authz.config import Settings
from authz.dev.keymanager import KeyManager
from authz.envoy.grpc_service import AuthorizationServicer
from authz.envoy.http_service import (
    API_ID_HEADER,
    ENVIRONMENT_HEADER,
    HEADERS_TO_REMOVE,
    UNAVAILABLE_STATUS,
    HttpAuthorizationServer,
    adapt_http,
)
from authz.envoy.render import deny_parts
from authz.errors import unavailable
from authz.http1 import Answer
from authz.model import Allow
from tests.support.pipeline import PipelineUnderTest, running_pipeline
from tests.support.rawhttp import RawClient, Response

METADATA = ("application_id", "application_name", "application_tier", "client_id", "subject", "api_id",
            "subscription_tier", "key_type")


@dataclass
class Fronts:
    p: PipelineUnderTest
    http: HttpAuthorizationServer
    grpc: AuthorizationServicer
    client: RawClient


@pytest.fixture
async def fronts(make_settings: Callable[..., Settings]) -> AsyncIterator[Fronts]:
    async with running_pipeline(make_settings()) as p:
        await p.register()
        http = HttpAuthorizationServer(p.pipeline, "authz", "127.0.0.1:0", 1.0, route_headers=True)
        port = await http.start()
        client = await RawClient.connect(port)
        try:
            yield Fronts(p, http, AuthorizationServicer(p.pipeline, "authz"), client)
        finally:
            client.close()
            await http.close()


async def _both(f: Fronts, method: str, path: str, headers: dict[str, str],
                extensions: dict[str, str]) -> tuple[Response, pb.CheckResponse]:
    wire = {"host": "api.test", **headers, **{
        {"api_id": API_ID_HEADER, "environment": ENVIRONMENT_HEADER}[k]: v for k, v in extensions.items()}}
    await f.client.send(f"{method} {path} HTTP/1.1\r\n".encode()
                        + b"".join(f"{k}: {v}\r\n".encode() for k, v in wire.items()) + b"\r\n")
    (answer,) = await f.client.responses(1)
    req = pb.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = method, path, "api.test"
    http.headers.update({"host": "api.test", **headers})
    req.attributes.context_extensions.update(extensions)
    reply = await f.grpc.Check(req, None)  # type: ignore[arg-type]  # the servicer never reads its context
    return answer, reply if isinstance(reply, pb.CheckResponse) else pb.CheckResponse.FromString(reply)


def _same_denial(answer: Response, reply: pb.CheckResponse) -> None:
    denied = reply.denied_response
    assert reply.status.code in (7, 16)
    assert answer.status == denied.status.code
    grpc_headers = [(h.header.key, h.header.value) for h in denied.headers]
    assert [(n, v) for n, v in answer.headers if n not in ("content-length", "date")] == grpc_headers
    assert answer.body.decode() == denied.body


@pytest.mark.parametrize(("method", "path", "auth", "extensions", "status", "code"), [
    ("GET", "/orders/v1/items", None, {}, 401, 900902),
    ("GET", "/orders/v1/items", "Bearer not-a-jwt", {}, 401, 900901),
    ("GET", "/payments/v1/charges", "token", {}, 403, 900908),
    ("POST", "/orders/v1/items", "token", {}, 403, 900910),
    ("GET", "/orders/v1/items", "token", {"api_id": "payments-v1"}, 403, 900906),
    ("GET", "/orders/v1/items", "token", {"api_id": "no-such-api"}, 403, 900906),
    ("GET", "/orders/v1/items", "token", {"api_id": "orders-v1", "environment": "sandbox"}, 403, 900908),
])
async def test_each_denial_is_rendered_by_http_exactly_as_by_grpc(
    fronts: Fronts, idp: KeyManager, method: str, path: str, auth: str | None, extensions: dict[str, str],
    status: int, code: int,
) -> None:
    token = idp.issue_token("demo-client", "alice", "orders:read")
    headers = {} if auth is None else {"authorization": f"Bearer {token}" if auth == "token" else auth}
    answer, reply = await _both(fronts, method, path, headers, extensions)
    assert (answer.status, json.loads(answer.body)["code"]) == (status, code)
    _same_denial(answer, reply)


async def test_an_allow_carries_the_grpc_headers_removals_and_metadata_as_headers(
    fronts: Fronts, idp: KeyManager,
) -> None:
    token = idp.issue_token("demo-client", "J\u00f6rg 100%", "orders:read")
    answer, reply = await _both(fronts, "GET", "/orders/v1/items", {"authorization": f"Bearer {token}"},
                                {"api_id": "orders-v1"})
    assert answer.status == 200 and reply.status.code == 0
    ok = reply.ok_response
    sent = dict(answer.headers)
    assert [(h.header.key, h.header.value) for h in ok.headers] == [
        (n, v) for n, v in answer.headers if n.startswith("x-") and n != HEADERS_TO_REMOVE]
    assert sent["x-subject"] == "J%C3%B6rg 100%25"  # identity headers are encoded in both modes (issue 10)
    assert sent[HEADERS_TO_REMOVE] == ", ".join(ok.headers_to_remove) == "authorization"
    metadata = MessageToDict(reply.dynamic_metadata)
    assert sorted(metadata) == sorted(METADATA)
    assert {k: unquote(sent[k]) for k in METADATA} == metadata
    # Not printable ASCII, or a '%': percent-encoded UTF-8, reversibly; printable ASCII as is.
    assert sent["subject"] == "J%C3%B6rg 100%25"
    assert (sent["application_name"], sent["api_id"], sent["key_type"]) == ("Demo App", "orders-v1", "PRODUCTION")
    assert answer.body == b""


async def test_without_route_headers_the_api_is_matched_by_path_and_the_headers_are_ignored(
    make_settings: Callable[..., Settings], idp: KeyManager,
) -> None:
    async with running_pipeline(make_settings()) as p:
        await p.register()
        http = HttpAuthorizationServer(p.pipeline, "authz", "127.0.0.1:0", 1.0)  # http_route_headers: false
        client = await RawClient.connect(await http.start())
        token = idp.issue_token("demo-client", "alice", "orders:read")
        try:
            await client.send(f"GET /orders/v1/items HTTP/1.1\r\nhost: api.test\r\nauthorization: Bearer {token}\r\n"
                              f"{API_ID_HEADER}: payments-v1\r\n{ENVIRONMENT_HEADER}: sandbox\r\n\r\n".encode())
            (answer,) = await client.responses(1)
            assert answer.status == 200
            assert answer.header("api_id") == "orders-v1"
        finally:
            client.close()
            await http.close()


async def test_a_warm_check_is_answered_at_once_from_the_rendered_allow(fronts: Fronts, idp: KeyManager) -> None:
    handler = fronts.http.handler
    headers = [(b"host", b"api.test"), (b"authorization", f"Bearer {idp.issue_token('demo-client', 'a', 'orders:read')}"
                                        .encode())]
    cold = handler("GET", "/orders/v1/items", headers)
    assert not isinstance(cold, Answer)  # the first check awaits the key manager and the registry
    first = await cold
    assert first.status == 200
    warm = handler("GET", "/orders/v1/items", headers)
    assert warm is first  # no task, no await, no rendering: the cached bytes of the memoized Allow
    allow = fronts.p.pipeline.decide_cached(adapt_http("GET", "/orders/v1/items", headers, route_headers=True))
    assert isinstance(allow, Allow)
    assert handler.allow(allow) is first


async def test_a_failure_is_the_503_deny_of_the_grpc_adapter_sent_as_429(fronts: Fronts) -> None:
    """The body and headers of the 503; the status on the wire is 429, which Envoy's ext_authz filter takes as a deny
    (a 5xx would be an authz failure) and the generated Envoy maps back to 503 (tests/test_e2e_responses.py)."""
    answer = fronts.http.handler.reject(503, "ignored")
    status, headers, body = deny_parts(unavailable("authz failed to decide; retry later"), "authz")
    assert (answer.status, status) == (UNAVAILABLE_STATUS, 503)
    assert answer.body == body.encode()
    assert b"retry-after: 5\r\n" in answer.head
    assert all(f"{n}: {v}\r\n".encode() in answer.head for n, v in headers)
