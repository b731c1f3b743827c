"""Policy phase: registration, application and subscription state, scopes (plain values)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from authz.config import Settings, parse_config
from authz.decide.policy import authorize
from authz.decide.routes import Route
from authz.errors import Denial, Reason
from authz.model import (
    Application,
    ApplicationStatus,
    ClientBinding,
    Identity,
    KeyType,
    Lookup,
    Subscription,
    SubscriptionStatus,
)

APP = Application(id="app-1", name="Demo App", owner="dev", tier="Gold")


@pytest.fixture(scope="module")
def settings() -> Settings:
    doc = yaml.safe_load(Path("config/authz.yaml").read_text(encoding="utf-8"))
    doc["apis"].append({
        "id": "reports",
        "name": "Reports",
        "context": "/reports",
        "resources": [
            {"path": "/all", "scopes": ["reports:read", "reports:export"], "scope_match": "all"},
            {"path": "/open"},
        ],
    })
    return parse_config(doc)


def route(settings: Settings, api_id: str, path: str, method: str = "GET") -> Route:
    api = settings.api(api_id)
    assert api is not None
    resource = next(r for r in api.resources if r.path == path and (method in r.methods or "*" in r.methods))
    return Route(api=api, resource=resource, path=api.context + path)


def identity(*scopes: str, client_id: str = "demo-client") -> Identity:
    return Identity(
        key_manager="demo", issuer="http://127.0.0.1:8081", subject="user-1", client_id=client_id,
        scopes=frozenset(scopes), expires_at=2e9, token_id=None, claims={},
    )


def found(
    status: SubscriptionStatus | None = SubscriptionStatus.ACTIVE,
    key_type: KeyType = KeyType.PRODUCTION,
    app: Application = APP,
    api_id: str = "orders-v1",
) -> Lookup:
    sub = None if status is None else Subscription(app.id, api_id, status, "Bronze")
    return Lookup(ClientBinding(app.id, key_type), app, sub)


def deny(settings: Settings, ident: Identity, rt: Route, look: Lookup, environment: str | None = None) -> Denial:
    with pytest.raises(Denial) as info:
        authorize(ident, rt, look, environment)
    return info.value


def test_active_subscription_with_the_scope_is_allowed(settings: Settings) -> None:
    app, sub = authorize(identity("orders:read"), route(settings, "orders-v1", "/items"), found())
    assert app == APP
    assert (sub.api_id, sub.status, sub.tier) == ("orders-v1", SubscriptionStatus.ACTIVE, "Bronze")


def test_unknown_client_is_denied_with_900911(settings: Settings) -> None:
    d = deny(settings, identity("orders:read", client_id="ghost"), route(settings, "orders-v1", "/items"),
             Lookup(None, None, None))
    assert (d.reason, d.reason.info.code, d.reason.info.http_status) == (Reason.UNKNOWN_CLIENT, 900911, 403)
    assert d.description == "The token's client ID is not registered to any application"
    assert d.log_detail == "client 'ghost' of key manager demo"


def test_client_bound_to_a_vanished_application_is_an_unknown_client(settings: Settings) -> None:
    look = Lookup(ClientBinding("gone"), None, None)
    d = deny(settings, identity("orders:read"), route(settings, "orders-v1", "/items"), look)
    assert d.reason is Reason.UNKNOWN_CLIENT


def test_inactive_application_is_denied_with_900909(settings: Settings) -> None:
    inactive = Application(id="app-1", name="Demo App", status=ApplicationStatus.INACTIVE)
    d = deny(settings, identity("orders:read"), route(settings, "orders-v1", "/items"), found(app=inactive))
    assert (d.reason, d.reason.info.code) == (Reason.SUBSCRIPTION_INACTIVE, 900909)
    assert d.description == "Application 'Demo App' is not active"


def test_application_not_subscribed_is_denied_with_900908(settings: Settings) -> None:
    d = deny(settings, identity("orders:read"), route(settings, "orders-v1", "/items"), found(status=None))
    assert (d.reason, d.reason.info.code) == (Reason.NOT_SUBSCRIBED, 900908)
    assert d.description == "Application 'Demo App' is not subscribed to API 'orders-v1'"


@pytest.mark.parametrize("key_type", [KeyType.PRODUCTION, KeyType.SANDBOX])
def test_blocked_subscription_is_denied_with_900907_for_every_key_type(settings: Settings, key_type: KeyType) -> None:
    d = deny(settings, identity("orders:read"), route(settings, "orders-v1", "/items"),
             found(SubscriptionStatus.BLOCKED, key_type), "sandbox" if key_type is KeyType.SANDBOX else None)
    assert (d.reason, d.reason.info.code) == (Reason.SUBSCRIPTION_BLOCKED, 900907)
    assert d.description == "Application 'Demo App' has a blocked subscription to API 'orders-v1'"


def test_prod_only_blocked_blocks_production_keys(settings: Settings) -> None:
    d = deny(settings, identity("orders:read"), route(settings, "orders-v1", "/items"),
             found(SubscriptionStatus.PROD_ONLY_BLOCKED, KeyType.PRODUCTION))
    assert (d.reason, d.reason.info.code) == (Reason.SUBSCRIPTION_BLOCKED, 900907)


def test_prod_only_blocked_lets_sandbox_keys_through(settings: Settings) -> None:
    app, sub = authorize(identity("orders:read"), route(settings, "orders-v1", "/items"),
                         found(SubscriptionStatus.PROD_ONLY_BLOCKED, KeyType.SANDBOX), "sandbox")
    assert (app.id, sub.status) == ("app-1", SubscriptionStatus.PROD_ONLY_BLOCKED)


@pytest.mark.parametrize("status", [SubscriptionStatus.ON_HOLD, SubscriptionStatus.REJECTED])
def test_on_hold_and_rejected_subscriptions_are_denied_with_900909(
    settings: Settings, status: SubscriptionStatus
) -> None:
    d = deny(settings, identity("orders:read"), route(settings, "orders-v1", "/items"), found(status))
    assert (d.reason, d.reason.info.code) == (Reason.SUBSCRIPTION_INACTIVE, 900909)
    assert d.description == f"The subscription of application 'Demo App' to API 'orders-v1' is {status.value}"


def test_subscription_state_is_checked_before_scopes(settings: Settings) -> None:
    d = deny(settings, identity(), route(settings, "orders-v1", "/items"), found(SubscriptionStatus.BLOCKED))
    assert d.reason is Reason.SUBSCRIPTION_BLOCKED


def test_any_of_scopes_needs_one_of_them(settings: Settings) -> None:
    rt = route(settings, "orders-v1", "/items", "POST")
    authorize(identity("orders:write", "other"), rt, found())
    d = deny(settings, identity("orders:read"), rt, found())
    assert (d.reason, d.reason.info.code, d.scope) == (Reason.INSUFFICIENT_SCOPE, 900910, "orders:write")
    assert d.description == "The access token lacks the scope required by this resource (any of: orders:write)"


def test_all_of_scopes_needs_every_one(settings: Settings) -> None:
    rt = route(settings, "reports", "/all")
    look = found(api_id="reports")
    authorize(identity("reports:read", "reports:export", "x"), rt, look)
    d = deny(settings, identity("reports:read"), rt, look)
    assert (d.reason, d.scope) == (Reason.INSUFFICIENT_SCOPE, "reports:read reports:export")
    assert d.description == (
        "The access token lacks the scope required by this resource (all of: reports:read reports:export)"
    )


def test_scopes_match_exactly_not_by_prefix_or_case(settings: Settings) -> None:
    rt = route(settings, "orders-v1", "/items")
    for held in ("orders", "orders:read:all", "ORDERS:READ", "orders:read "):
        assert deny(settings, identity(held), rt, found()).reason is Reason.INSUFFICIENT_SCOPE


def test_resource_without_scopes_needs_none(settings: Settings) -> None:
    app, _ = authorize(identity(), route(settings, "reports", "/open"), found(api_id="reports"))
    assert app.name == "Demo App"


def test_sandbox_key_is_allowed_only_on_a_sandbox_route(settings: Settings) -> None:
    rt = route(settings, "orders-v1", "/items")
    app, sub = authorize(identity("orders:read"), rt, found(key_type=KeyType.SANDBOX), "sandbox")
    assert (app.id, sub.api_id) == ("app-1", "orders-v1")
    for environment in (None, "production"):
        d = deny(settings, identity("orders:read"), rt, found(key_type=KeyType.SANDBOX), environment)
        assert (d.reason, d.reason.info.code, d.reason.info.http_status) == (Reason.NOT_SUBSCRIBED, 900908, 403)
        assert d.description == "A sandbox key cannot call a production route"


def test_production_key_is_allowed_only_on_a_production_route(settings: Settings) -> None:
    rt = route(settings, "orders-v1", "/items")
    for environment in (None, "production"):
        app, _ = authorize(identity("orders:read"), rt, found(key_type=KeyType.PRODUCTION), environment)
        assert app.id == "app-1"
    d = deny(settings, identity("orders:read"), rt, found(key_type=KeyType.PRODUCTION), "sandbox")
    assert (d.reason, d.reason.info.code) == (Reason.NOT_SUBSCRIBED, 900908)
    assert d.description == "A production key cannot call a sandbox route"


@pytest.mark.parametrize("key_type", [KeyType.PRODUCTION, KeyType.SANDBOX])
def test_unknown_route_environment_denies_every_key_with_900906(settings: Settings, key_type: KeyType) -> None:
    d = deny(settings, identity("orders:read"), route(settings, "orders-v1", "/items"), found(key_type=key_type),
             "staging")
    assert (d.reason, d.reason.info.code, d.reason.info.http_status) == (Reason.NO_MATCHING_RESOURCE, 900906, 403)
    assert d.description == "The route's environment is not configured correctly"
