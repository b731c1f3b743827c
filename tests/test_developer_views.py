"""The developer views (``authz.registry.developer``) over the in-memory store: explore APIs, an application
with its client IDs and token requests, the call through the gateway, and unknown names with did-you-mean."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from authz.config import Settings
from authz.dev.keymanager import KeyManager
from authz.keys.connection import ConnectionDirectory
from authz.model import Application, KeyType
from authz.registry.admin import RegistryAdmin
from authz.registry.developer import DeveloperViews, GatewayCall, as_data, gateway_call
from authz.registry.memory import MemoryStore
from authz.registry.names import unknown_application
from authz.registry.store import RegistryError

APIS: list[dict[str, Any]] = [
    {"id": "orders-v1", "name": "Orders", "context": "/orders/v1", "version": "v1", "resources": [
        {"path": "/items/{id}", "methods": ["GET"], "scopes": ["orders:read"]},
        {"path": "/items", "methods": ["POST"], "scopes": ["orders:write", "orders:admin"], "scope_match": "all"},
        {"path": "/health", "methods": ["GET"], "auth": "none"},
        {"path": "/items", "methods": ["GET"], "scopes": ["orders:read", "orders:admin"]},
    ]},
    {"id": "catalog", "name": "Catalog", "context": "/", "hosts": ["catalog.example.test"], "resources": [
        {"path": "/files/**", "methods": ["*"]},
    ]},
    {"id": "status", "name": "Status", "context": "/status", "resources": [{"path": "/", "auth": "none"}]},
]


def _views(settings: Settings) -> tuple[DeveloperViews, RegistryAdmin]:
    admin = RegistryAdmin(MemoryStore(), settings)
    return DeveloperViews(admin, ConnectionDirectory(settings.key_managers)), admin


async def _seed(admin: RegistryAdmin) -> None:
    await admin.create_application("Demo App", owner="dev", app_id="demo-app")
    await admin.add_client("demo-app", "demo-client")
    await admin.subscribe("demo-app", "catalog", status="ON_HOLD")
    await admin.subscribe("demo-app", "orders-v1")


async def test_explore_apis_shows_resources_scopes_public_and_the_applications_subscription(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    views, admin = _views(make_settings(apis=APIS))
    await _seed(admin)
    listed = await views.apis("Demo App")
    assert [(a.id, a.public, a.key_managers, a.subscription and a.subscription.status) for a in listed] == [
        ("orders-v1", False, ("test-km",), "ACTIVE"), ("catalog", False, ("test-km",), "ON_HOLD"),
        ("status", True, ("test-km",), None)]
    orders = listed[0]
    assert orders.scopes == ("orders:read", "orders:write", "orders:admin")
    assert [(r.path, r.methods, r.scopes, r.scope_match, r.public) for r in orders.resources] == [
        ("/orders/v1/items/{id}", ("GET",), ("orders:read",), "any", False),
        ("/orders/v1/items", ("POST",), ("orders:write", "orders:admin"), "all", False),
        ("/orders/v1/health", ("GET",), (), "any", True),
        ("/orders/v1/items", ("GET",), ("orders:read", "orders:admin"), "any", False),
    ]
    assert [r.path for r in listed[1].resources] == ["/files/**"]  # context "/"
    assert [r.path for r in listed[2].resources] == ["/status"]
    assert all(a.subscription is None for a in await views.apis())
    assert (await views.api("Orders", "demo-app")).id == "orders-v1"  # by exact name too


async def test_unknown_names_say_what_exists_with_did_you_mean(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    views, admin = _views(make_settings(apis=APIS))
    await _seed(admin)
    with pytest.raises(RegistryError) as info:
        await views.api("order-v1")
    assert (info.value.kind, info.value.field, str(info.value)) == (
        "invalid", "api_id", "unknown API id 'order-v1'; did you mean 'orders-v1'? configured: orders-v1, catalog, status")
    with pytest.raises(RegistryError) as info:
        await admin.subscribe("demo-app", "catalogue")
    assert str(info.value) == "unknown API id 'catalogue'; did you mean 'catalog'? configured: orders-v1, catalog, status"
    with pytest.raises(RegistryError) as info:
        await views.application("demo app")
    assert (info.value.kind, str(info.value)) == (
        "not_found", "no application with ID or name 'demo app'; did you mean 'Demo App'? applications: Demo App")
    with pytest.raises(RegistryError) as info:
        await views.apis("Nothing Like It")
    assert str(info.value) == "no application with ID or name 'Nothing Like It'; applications: Demo App"
    with pytest.raises(RegistryError) as info:
        await views.application("demo-app", client_id="other-client")
    assert str(info.value) == "client ID other-client is not attached to application Demo App"
    with pytest.raises(RegistryError) as info:
        await admin.add_client("demo-app", "c", key_manager="test_km")
    assert str(info.value) == "unknown key manager 'test_km'; did you mean 'test-km'? configured: test-km"


def test_a_long_list_of_applications_is_cut_with_a_pointer_to_the_full_list() -> None:
    apps = [Application(id=f"id-{i}", name=f"App {i:02d}") for i in range(25)]
    message = unknown_application("no application with ID or name 'id-7x'", "id-7x", apps)
    assert message == (
        "no application with ID or name 'id-7x'; did you mean 'App 07', 'App 17' or 'App 09'? applications: "
        + ", ".join(f"App {i:02d}" for i in range(20)) + " and 5 more (authz registry app list)")


async def test_application_details_carry_connection_data_scopes_and_token_requests(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    views, admin = _views(make_settings(apis=APIS, km={"token_endpoint": f"{idp.url}/oauth2/token"}))
    await _seed(admin)
    await admin.add_client("demo-app", "sbx-client", key_type="SANDBOX")
    details = await views.application("Demo App")
    assert (details.id, details.name, details.owner, details.status) == ("demo-app", "Demo App", "dev", "ACTIVE")
    assert [(c.client_id, c.key_type) for c in details.clients] == [("demo-client", "PRODUCTION"),
                                                                    ("sbx-client", "SANDBOX")]
    client = details.clients[0]
    assert client.connection.token_endpoint == f"{idp.url}/oauth2/token"
    assert client.scopes == ("orders:read", "orders:write", "orders:admin")  # of both subscribed APIs, once each
    assert client.token_requests[0].parameters["scope"] == "orders:read orders:write orders:admin"
    assert [a.id for a in details.subscriptions] == ["catalog", "orders-v1"]
    # The ACTIVE subscription is the one called, on a resource without template that needs a token.
    assert details.gateway_call == GatewayCall(
        "orders-v1", "GET", "<GATEWAY_URL>/orders/v1/items", {"Authorization": "Bearer <ACCESS_TOKEN>"},
        "curl -sS -i '<GATEWAY_URL>/orders/v1/items' \\\n  -H 'Authorization: Bearer <ACCESS_TOKEN>'")
    only = await views.application("demo-app", client_id="sbx-client")
    assert [c.client_id for c in only.clients] == ["sbx-client"]
    data = as_data(only)
    assert data["clients"][0]["token_requests"][1]["parameters"]["client_secret"] == "<CLIENT_SECRET>"
    assert data["subscriptions"][0]["subscription"]["status"] == "ON_HOLD"


async def test_an_application_without_subscription_has_no_gateway_call_and_no_scope(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    views, admin = _views(make_settings(apis=APIS))
    await admin.create_application("Bare", app_id="bare")
    await admin.add_client("bare", "bare-client")
    details = await views.application("bare")
    assert (details.gateway_call, details.subscriptions, details.clients[0].scopes) == (None, (), ())
    assert "scope" not in details.clients[0].token_requests[0].parameters


def test_gateway_call_uses_gateway_url_and_the_apis_host(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(apis=APIS, gateway_url="https://gw.example.test/base/")
    catalog = settings.api("catalog")
    assert catalog is not None
    call = gateway_call(settings, catalog)
    assert (call.method, call.url, call.headers) == (
        "GET", "https://gw.example.test/base/files/<path>",
        {"Host": "catalog.example.test", "Authorization": "Bearer <ACCESS_TOKEN>"})
    settings = make_settings(apis=APIS, gateway_url="https://catalog.example.test")
    assert gateway_call(settings, catalog).headers == {"Authorization": "Bearer <ACCESS_TOKEN>"}
    status = settings.api("status")
    assert status is not None and gateway_call(settings, status).url == "https://catalog.example.test/status"


async def test_a_client_id_of_a_key_manager_removed_from_the_config_is_said_so(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(apis=APIS)
    views, admin = _views(settings)
    await _seed(admin)
    app = await admin.application("demo-app")
    await admin.store.add_client(app, "retired-km", "old-client", KeyType.PRODUCTION)  # as an older config allowed
    details = await views.application("demo-app")
    old = next(c for c in details.clients if c.client_id == "old-client")
    assert (old.connection.token_endpoint, old.token_requests, old.connection.problems) == (
        None, (), ("key manager retired-km is not in the configuration any more: tokens of this client ID are "
                   "refused",))
    assert [c.client_id for c in details.clients] == ["old-client", "demo-client"]  # by key manager, then ID
