"""The HTTP ext_authz listener (``server.http_listen``): request adaptation, direct calls, workers, the health probe
and the unavailable status. The Envoy side of HTTP mode (``authz envoy-config --authz-mode http``) is tested in tests/test_envoy_config.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from authz.config import Settings
from authz.dev.procs import free_port
from authz.envoy.http_service import (
    API_ID_HEADER,
    ENVIRONMENT_HEADER,
    HEALTH_HEADER,
    HEALTH_PATH,
    UNAVAILABLE_STATUS,
    HttpAuthorizationServer,
    adapt_http,
    wire_status,
)
from authz.envoy.requests import MAX_HEADERS, MAX_PATH_BYTES
from authz.errors import Denial, Reason
from authz.http1 import Answer
from tests.support.pipeline import running_pipeline
from tests.support.processes import AuthzProcess
from tests.support.rawhttp import RawClient


def test_adapt_http_lowercases_joins_repeated_headers_and_takes_host_from_the_host_header() -> None:
    request = adapt_http("GET", "/orders/v1/items?x=1", [
        (b"Host", b"api.example.test"), (b"Authorization", b"Bearer a"), (b"X-Request-Id", b"r-1"),
        (b"x-tag", b"a"), (b"X-Tag", b"b"), (b"x-utf8", "J\u00f6rg".encode()), (b"x-bad", b"\xff"),
    ])
    assert request.method == "GET"
    assert request.path == "/orders/v1/items?x=1"
    assert request.host == "api.example.test"
    assert dict(request.headers) == {"host": "api.example.test", "authorization": "Bearer a", "x-request-id": "r-1",
                                     "x-tag": "a,b", "x-utf8": "J\u00f6rg", "x-bad": "\ufffd"}
    assert dict(request.context_extensions) == {}
    assert request.request_id == "r-1"


def test_adapt_http_rejects_too_many_headers_and_too_long_paths_with_400() -> None:
    with pytest.raises(Denial) as many:
        adapt_http("GET", "/", [(b"x-h%d" % i, b"v") for i in range(MAX_HEADERS + 1)])
    assert many.value.reason is Reason.INVALID_REQUEST
    with pytest.raises(Denial) as long:
        adapt_http("GET", "/" + "a" * MAX_PATH_BYTES, [])
    assert long.value.reason is Reason.INVALID_REQUEST


ROUTE_HEADERS = [(b"host", b"api.test"), (API_ID_HEADER.encode(), b"payments-v1"),
                 (ENVIRONMENT_HEADER.encode(), b"sandbox")]


def test_route_headers_become_context_extensions_only_when_the_setting_says_envoy_sets_them() -> None:
    trusted = adapt_http("GET", "/orders/v1/items", ROUTE_HEADERS, route_headers=True)
    assert dict(trusted.context_extensions) == {"api_id": "payments-v1", "environment": "sandbox"}
    assert dict(trusted.headers) == {"host": "api.test"}
    ignored = adapt_http("GET", "/orders/v1/items", ROUTE_HEADERS)
    assert dict(ignored.context_extensions) == {}
    assert ignored.headers[API_ID_HEADER] == "payments-v1"
    # An empty value is no value; a repeated one (a client copy Envoy failed to remove) is joined, so it names
    # no configured API and the request is denied rather than routed by the client's choice.
    empty = adapt_http("GET", "/", [(API_ID_HEADER.encode(), b"")], route_headers=True)
    assert dict(empty.context_extensions) == {}
    twice = adapt_http("GET", "/", [(API_ID_HEADER.encode(), b"orders-v1"), (b"X-Authz-Api-Id", b"payments-v1")],
                       route_headers=True)
    assert dict(twice.context_extensions) == {"api_id": "orders-v1,payments-v1"}


def test_http_listener_answers_a_request_without_token_with_401_json_and_challenge(
    start_authz: Callable[..., AuthzProcess],
) -> None:
    port = free_port()
    authz = start_authz(server={"listen": f"127.0.0.1:{free_port()}", "http_listen": f"127.0.0.1:{port}",
                                "decision_timeout": 2.0, "grace_period": 2, "workers": 1})
    r = httpx.get(f"http://127.0.0.1:{port}/orders/v1/items", timeout=5)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert r.headers["www-authenticate"] == 'Bearer realm="authz"'
    assert r.json()["code"] == 900902
    long = httpx.get(f"http://127.0.0.1:{port}/" + "a" * (MAX_PATH_BYTES + 1), timeout=5)
    assert long.status_code == 400
    assert long.json()["code"] == Reason.INVALID_REQUEST.info.code
    # A 12 KB token (above the common 8 KiB header field limit of HTTP servers) reaches the pipeline: a JSON 401.
    big = httpx.get(f"http://127.0.0.1:{port}/orders/v1/items", timeout=5,
                    headers={"authorization": "Bearer " + "a" * 12_000})
    assert big.status_code == 401
    assert big.json()["code"] == 900901
    assert authz.stop() == 0


def test_with_two_workers_worker_i_serves_http_on_the_port_plus_i(start_authz: Callable[..., AuthzProcess]) -> None:
    base = free_port()
    start_authz(server={"listen": f"127.0.0.1:{free_port()}", "http_listen": f"127.0.0.1:{base}",
                        "decision_timeout": 2.0, "grace_period": 2, "workers": 2})
    for port in (base, base + 1):
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/orders/v1/items", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"no HTTP listener on {port}"
                time.sleep(0.1)
        assert r.status_code == 401
        assert r.json()["code"] == 900902


# ---- the health probe and the unavailable status ------------------------------------------------------------------


async def test_the_health_probe_answers_204_while_serving_and_429_otherwise_and_never_200(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_pipeline(make_settings()) as p:
        http = HttpAuthorizationServer(p.pipeline, "authz", "127.0.0.1:0", 1.0, route_headers=True)
        client = await RawClient.connect(await http.start())
        probe = f"GET {HEALTH_PATH} HTTP/1.1\r\nhost: authz_http\r\n{HEALTH_HEADER}: envoy\r\n\r\n".encode()
        try:
            assert http.serving is False  # until the process says it serves (after the JWKS prefetch)
            await client.send(probe)
            (starting,) = await client.responses(1)
            assert (starting.status, json.loads(starting.body)["code"]) == (UNAVAILABLE_STATUS, 900950)
            assert starting.header("retry-after") == "5"
            http.serving = True
            await client.send(probe + probe.replace(b"GET", b"HEAD").replace(b"envoy", b"1"))
            serving, head = await client.responses(2)
            assert (serving.status, serving.header("x-authz-health"), serving.body) == (204, "SERVING", b"")
            assert serving.header("content-length") is None  # RFC 9110 section 8.6: none on a 204
            assert (head.status, head.body) == (204, b"")
            # Anything else is an authorization request: no header, a query, another method, another path.
            for request in (f"GET {HEALTH_PATH} HTTP/1.1\r\nhost: a\r\n\r\n",
                            f"GET {HEALTH_PATH}?x=1 HTTP/1.1\r\nhost: a\r\n{HEALTH_HEADER}: 1\r\n\r\n",
                            f"POST {HEALTH_PATH} HTTP/1.1\r\nhost: a\r\n{HEALTH_HEADER}: 1\r\ncontent-length: 0\r\n\r\n",
                            f"GET {HEALTH_PATH}/x HTTP/1.1\r\nhost: a\r\n{HEALTH_HEADER}: 1\r\n\r\n"):
                await client.send(request.encode())
                (answer,) = await client.responses(1)
                assert (answer.status, json.loads(answer.body)["code"]) == (401, 900902), request
            http.serving = False  # draining
            await client.send(probe)
            (draining,) = await client.responses(1)
            assert draining.status == UNAVAILABLE_STATUS
        finally:
            client.close()
            await http.close()


def test_every_5xx_deny_goes_on_the_wire_as_429_and_every_other_status_as_itself() -> None:
    assert [wire_status(s) for s in (400, 401, 403, 408, 413, 429, 431, 500, 503, 504)] == [
        400, 401, 403, 408, 413, 429, 431, 429, 429, 429]
    assert UNAVAILABLE_STATUS == 429
    assert Answer(204, [("x-a", "b")]).head == b"HTTP/1.1 204 No Content\r\nx-a: b\r\n"
    with pytest.raises(ValueError, match="204 No Content answer has no body"):
        Answer(204, body=b"x")
