"""End to end, in both of Envoy's ext_authz modes: the route names the API and the environment, never the client.

gRPC mode carries them in the route's ``context_extensions``; HTTP mode in the ``x-authz-api-id`` /
``x-authz-environment`` headers the generated Envoy sets per route (``server.http_route_headers: true``). Each test
runs through an Envoy of each mode made by ``authz envoy-config`` in front of one real authz: per-route API
selection where host + path would name another API, an API named on a path outside its context, sandbox routes
that take SANDBOX keys only, and a client's own copies of the route headers, which decide nothing and never reach
the upstream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authz.dev.keymanager import DEMO_CLIENTS
from authz.dev.procs import RedisServer
from authz.ops.envoy_routes import RoutePlan
from authz.registry.admin import RegistryAdmin
from tests.support.e2e import CLIENTS, MODES, Stack, http_mode_view, listen_http, mode_gateway, running_stack

pytestmark = pytest.mark.e2e

SANDBOX_HOST = "sandbox.api.test"
ROUTE_HEADERS = ("x-authz-api-id", "x-authz-environment")
GATEWAY_OPTIONS: dict[str, Any] = {
    # orders-items (context /orders/v1/items) gets no route of its own: /orders/v1/items takes the orders-v1 route,
    # while authz's host + path matching alone would pick orders-items (the longer context).
    "routed_apis": {"orders-v1", "payments-v1"},
    # payments-v1 named on /charges, outside its context /payments/v1: host + path matches no API there.
    "extra_routes": [RoutePlan("/charges", "payments-v1", None, None)],
    "tier_limits": {},
}


def _configure(doc: dict[str, Any]) -> None:
    listen_http(doc)
    orders = next(api for api in doc["apis"] if api["id"] == "orders-v1")
    orders["sandbox"] = {"hosts": [SANDBOX_HOST]}
    doc["apis"].append({"id": "orders-items", "name": "Order items", "context": "/orders/v1/items", "version": "v1",
                        "resources": [{"path": "/**", "methods": ["GET"], "scopes": ["orders:read"]}]})


def _seed(admin: RegistryAdmin):  # noqa: ANN202
    async def go() -> None:
        for app_id, client_id, key_type, apis in (
            ("demo-app", "demo-client", "PRODUCTION", ["orders-v1"]),
            ("sandbox-app", "sandbox-client", "SANDBOX", ["orders-v1"]),
            ("payments-app", "other-client", "PRODUCTION", ["payments-v1"]),
        ):
            await admin.create_application(app_id, owner="e2e", app_id=app_id)
            await admin.add_client(app_id, client_id, key_type=key_type)
            for api in apis:
                await admin.subscribe(app_id, api)

    return go()


@pytest.fixture(scope="module")
def grpc_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("e2e-routes"), "e2eroutes:", "routes",
                       lambda tmp, doc, port: mode_gateway(tmp, doc, port, "grpc", **GATEWAY_OPTIONS),
                       configure=_configure, seeding=_seed,
                       clients={**CLIENTS, "sandbox-client": DEMO_CLIENTS["demo-client"]}) as stack:
        yield stack


@pytest.fixture(scope="module")
def http_stack(grpc_stack: Stack) -> Iterator[Stack]:
    with http_mode_view(grpc_stack, **GATEWAY_OPTIONS) as stack:
        yield stack


@pytest.fixture(params=MODES)
def stack(request: pytest.FixtureRequest) -> Stack:
    return request.getfixturevalue(f"{request.param}_stack")


def _call(stack: Stack, path: str, client_id: str, scope: str = "orders:read", host: str | None = None,
          method: str = "GET", **headers: str) -> httpx.Response:
    extra = {name.replace("_", "-"): value for name, value in headers.items()}
    if host is not None:
        extra["host"] = host
    return stack.get(path, stack.token(client_id, scope), headers=extra, method=method)


def _decision(r: httpx.Response) -> tuple[int, object]:
    """The status and, for a deny, authz's code and description; for an allow, the API the upstream was told."""
    if r.status_code == 200:
        seen = r.json()["headers"]
        assert not [name for name in ROUTE_HEADERS if name in seen], seen  # never forwarded, not even a client's
        return 200, seen["x-api-id"]
    return r.status_code, (r.json()["code"], r.json()["description"])


def test_the_route_names_the_api_where_host_and_path_would_name_another(stack: Stack) -> None:
    # authz's host + path matching alone gives orders-items (longest context), to which demo-app is not subscribed.
    assert _decision(_call(stack, "/orders/v1/items", "demo-client")) == (200, "orders-v1")
    assert _decision(_call(stack, "/orders/v1/items/7", "demo-client")) == (200, "orders-v1")


def test_an_api_named_on_a_path_outside_its_context_gets_its_own_resources(stack: Stack) -> None:
    assert _decision(_call(stack, "/charges", "other-client", "payments:read")) == (200, "payments-v1")
    status, (code, _) = _decision(_call(stack, "/charges", "other-client", "payments:read", method="POST"))
    assert (status, code) == (403, 900910)  # payments-v1's own POST /charges needs payments:write
    assert _decision(_call(stack, "/charges", "demo-client", "payments:read")) == (
        403, (900908, "Application 'demo-app' is not subscribed to API 'payments-v1'"))


def test_sandbox_routes_take_sandbox_keys_only_and_production_routes_production_keys_only(stack: Stack) -> None:
    assert _decision(_call(stack, "/orders/v1/items", "sandbox-client", host=SANDBOX_HOST)) == (200, "orders-v1")
    assert _decision(_call(stack, "/orders/v1/items", "sandbox-client")) == (
        403, (900908, "A sandbox key cannot call a production route"))
    assert _decision(_call(stack, "/orders/v1/items", "demo-client", host=SANDBOX_HOST)) == (
        403, (900908, "A production key cannot call a sandbox route"))
    assert _decision(_call(stack, "/orders/v1/items", "demo-client")) == (200, "orders-v1")


@pytest.mark.parametrize(("path", "client_id", "host", "spoof", "expected"), [
    # a production route told "sandbox" / another API: still the production orders-v1 route
    ("/orders/v1/items", "demo-client", None, {"x-authz-environment": "sandbox", "x-authz-api-id": "payments-v1"},
     (200, "orders-v1")),
    ("/orders/v1/items", "sandbox-client", None, {"x-authz-environment": "sandbox"},
     (403, (900908, "A sandbox key cannot call a production route"))),
    # a sandbox route told "production": still a sandbox route
    ("/orders/v1/items", "demo-client", SANDBOX_HOST, {"x-authz-environment": "production"},
     (403, (900908, "A production key cannot call a sandbox route"))),
    ("/orders/v1/items", "sandbox-client", SANDBOX_HOST, {"x-authz-environment": "production",
                                                          "x-authz-api-id": "payments-v1"}, (200, "orders-v1")),
    # the catch-all route names no API: a client naming orders-v1 for /items (one of its resource paths) gets no API
    ("/items", "demo-client", None, {"x-authz-api-id": "orders-v1"},
     (403, (900906, "No API matches the request path"))),
])
def test_a_client_cannot_set_the_route_headers_itself(
        stack: Stack, path: str, client_id: str, host: str | None, spoof: dict[str, str],
        expected: tuple[int, object]) -> None:
    before = len(stack.upstream.received)
    r = stack.get(path, stack.token(client_id), headers={**spoof, **({"host": host} if host else {})})
    assert _decision(r) == expected
    received = stack.upstream.received[before:]
    assert len(received) == (1 if expected[0] == 200 else 0)
    assert not [name for seen in received for name in ROUTE_HEADERS if name in seen["headers"]]
