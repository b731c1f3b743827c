"""The HTTP ext_authz listener (``server.http_listen``): request adaptation, direct calls, workers. The Envoy side
of HTTP mode (``authz envoy-config --authz-mode http``) is tested in tests/test_envoy_config.py."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from authz.dev.procs import free_port
from authz.envoy.http_service import adapt_http
from authz.envoy.requests import MAX_HEADERS, MAX_PATH_BYTES
from authz.errors import Denial, Reason
from tests.support.processes import AuthzProcess


def test_adapt_http_lowercases_joins_repeated_headers_and_takes_host_from_the_host_header() -> None:
    request = adapt_http("GET", "/orders/v1/items?x=1", [
        ("Host", "api.example.test"), ("Authorization", "Bearer a"), ("X-Request-Id", "r-1"),
        ("x-tag", "a"), ("X-Tag", "b"),
    ])
    assert request.method == "GET"
    assert request.path == "/orders/v1/items?x=1"
    assert request.host == "api.example.test"
    assert dict(request.headers) == {"host": "api.example.test", "authorization": "Bearer a", "x-request-id": "r-1",
                                     "x-tag": "a,b"}
    assert dict(request.context_extensions) == {}
    assert request.request_id == "r-1"


def test_adapt_http_rejects_too_many_headers_and_too_long_paths_with_400() -> None:
    with pytest.raises(Denial) as many:
        adapt_http("GET", "/", [(f"x-h{i}", "v") for i in range(MAX_HEADERS + 1)])
    assert many.value.reason is Reason.INVALID_REQUEST
    with pytest.raises(Denial) as long:
        adapt_http("GET", "/" + "a" * MAX_PATH_BYTES, [])
    assert long.value.reason is Reason.INVALID_REQUEST


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
    # A 12 KB token (above aiohttp's default 8190-byte field limit) reaches the pipeline: a JSON 401.
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
