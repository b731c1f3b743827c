"""Per-API key managers (``apis[].key_managers``): the pure ``key_manager`` phase on both pipeline paths, the
configuration checks, and the registry refusing subscriptions an application could never use (subscribe and
import), over :class:`authz.registry.memory.MemoryStore` and real key sources on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import ConfigError, Settings
from authz.dev.keymanager import KeyManager
from authz.errors import Denial, Reason
from authz.model import Allow, Request
from authz.registry.memory import MemoryStore
from authz.registry.store import RegistryError
from authz.registry.subscriptions import unusable_subscription
from authz.registry.yaml_io import import_yaml
from tests.support.pipeline import PipelineUnderTest, running_pipeline
from tests.support.tokencraft import claims, sign

JWKS = "/oauth2/jwks"


def _km(idp: KeyManager, name: str) -> dict[str, Any]:
    return {"name": name, "issuer": f"{idp.url}/{name}", "jwks_uri": f"{idp.url}{JWKS}", "audiences": [idp.audience],
            "jwks": {"refresh_interval": 300, "kid_refetch_cooldown": 30, "timeout": 2, "retry_interval": 0.2}}


def _apis(orders_key_managers: list[str] | None) -> list[dict[str, Any]]:
    apis = yaml.safe_load(Path("config/authz.yaml").read_text(encoding="utf-8"))["apis"]
    if orders_key_managers is not None:
        apis[0]["key_managers"] = orders_key_managers  # orders-v1 accepts only these
    apis.append({"id": "open-v1", "name": "Open", "context": "/open/v1", "key_managers": ["corp"],
                 "resources": [{"path": "/**", "auth": "none"}]})
    return apis


@pytest.fixture
def two_km_settings(idp: KeyManager, make_settings: Callable[..., Settings]) -> Settings:
    """Key managers ``corp`` and ``partner`` (two issuers on the loopback IdP); orders-v1 accepts ``corp`` only,
    payments-v1 every key manager."""
    return make_settings(key_managers=[_km(idp, "corp"), _km(idp, "partner")], apis=_apis(["corp"]))


def _token(idp: KeyManager, key_manager: str, client_id: str = "app-client", scope: str = "orders:read") -> str:
    return sign(idp.signing_key, claims(idp, client_id, iss=f"{idp.url}/{key_manager}", scope=scope))


def _request(token: str | None, path: str = "/orders/v1/items", api_id: str | None = "orders-v1") -> Request:
    return Request("GET", path, "api.test", {"authorization": f"Bearer {token}"} if token else {},
                   {"api_id": api_id} if api_id else {})


async def _app_with_clients(p: PipelineUnderTest, *key_managers: str) -> None:
    await p.admin.create_application("App", app_id="app")
    for km in key_managers:
        await p.admin.add_client("app", "app-client", key_manager=km)
    await p.admin.subscribe("app", "orders-v1")
    await p.admin.subscribe("app", "payments-v1")
    await p.settle()


# ---- the key_manager phase -----------------------------------------------------------------------------------------


async def test_a_token_of_a_key_manager_the_api_does_not_accept_is_401_naming_the_cause(
    two_km_settings: Settings, idp: KeyManager
) -> None:
    async with running_pipeline(two_km_settings) as p:
        await _app_with_clients(p, "corp", "partner")
        reads = p.store.reads
        denial = await p.pipeline.decide(_request(_token(idp, "partner")))
        assert isinstance(denial, Denial)
        assert denial.reason is Reason.INVALID_CREDENTIALS and denial.reason.info.oauth_error == "invalid_token"
        assert denial.description == ("The access token was issued by key manager 'partner', which API 'orders-v1' "
                                      "does not accept")
        assert p.store.reads == reads  # decided before any registry read
        assert isinstance(await p.pipeline.decide(_request(_token(idp, "corp"))), Allow)
        # an API without key_managers accepts every key manager
        pay = _request(_token(idp, "partner", scope="payments:read"), "/payments/v1/charges", "payments-v1")
        assert isinstance(await p.pipeline.decide(pay), Allow)


async def test_the_cached_path_never_answers_for_a_key_manager_the_api_refuses(
    two_km_settings: Settings, idp: KeyManager
) -> None:
    async with running_pipeline(two_km_settings) as p:
        await _app_with_clients(p, "corp", "partner")
        partner = _token(idp, "partner", scope="orders:read payments:read")
        # Warm every cache with this very token on an API that accepts it...
        pay = _request(partner, "/payments/v1/charges", "payments-v1")
        assert isinstance(await p.pipeline.decide(pay), Allow)
        assert p.pipeline.decide_cached(pay) is not None
        # ...then the API that does not: the token and registry caches answer, the key_manager phase does not.
        refused = _request(partner)
        assert p.pipeline.decide_cached(refused) is None
        for _ in range(2):
            denial = await p.pipeline.decide(refused)
            assert isinstance(denial, Denial) and denial.reason is Reason.INVALID_CREDENTIALS


async def test_public_resources_and_unknown_routes_with_a_refused_key_manager(
    two_km_settings: Settings, idp: KeyManager
) -> None:
    async with running_pipeline(two_km_settings) as p:
        # open-v1 is public and accepts corp only: no credential -> allowed; a corp token -> allowed;
        # a partner token is not a credential of this API -> 401, as an invalid token would be (C19).
        assert isinstance(await p.pipeline.decide(_request(None, "/open/v1/x", "open-v1")), Allow)
        assert isinstance(await p.pipeline.decide(_request(_token(idp, "corp"), "/open/v1/x", "open-v1")), Allow)
        denial = await p.pipeline.decide(_request(_token(idp, "partner"), "/open/v1/x", "open-v1"))
        assert isinstance(denial, Denial) and denial.reason is Reason.INVALID_CREDENTIALS
        assert "which API 'open-v1' does not accept" in denial.description
        # no route: the resource phase's 403, whoever issued the token
        denial = await p.pipeline.decide(_request(_token(idp, "partner"), "/nothing/here", None))
        assert isinstance(denial, Denial) and denial.reason is Reason.NO_MATCHING_RESOURCE


# ---- configuration -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("accepted", "errors"), [
    (["corp", "nope"], ["apis[0].key_managers[1]: unknown key manager 'nope' (configured: corp, partner)"]),
    (["Corp"], ["apis[0].key_managers[0]: unknown key manager 'Corp' (configured: corp, partner)"]),
    (["corp", "corp"], ["apis[0].key_managers: 'corp' is listed twice"]),
    ([], ["apis[0].key_managers: list should have at least 1 item after validation, not 0"]),
    ("corp", ["apis[0].key_managers: input should be a valid list"]),
], ids=repr)
def test_api_key_managers_must_name_configured_key_managers(
    accepted: Any, errors: list[str], idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(key_managers=[_km(idp, "corp"), _km(idp, "partner")], apis=_apis(accepted))
    assert info.value.errors == errors


def test_an_unknown_key_manager_is_reported_next_to_other_field_errors(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    apis = _apis(["ghost"])
    apis[1]["context"] = "no-slash"
    with pytest.raises(ConfigError) as info:
        make_settings(key_managers=[_km(idp, "corp")], apis=apis)
    assert info.value.errors == ["apis[1].context: must start with '/', have no trailing '/' and no empty segment",
                                 "apis[0].key_managers[0]: unknown key manager 'ghost' (configured: corp)"]


def test_key_managers_default_to_all(two_km_settings: Settings) -> None:
    assert two_km_settings.api("orders-v1").key_managers == ["corp"]  # type: ignore[union-attr]
    assert two_km_settings.api("payments-v1").key_managers is None  # type: ignore[union-attr]


# ---- the registry: no subscription that could never be used ----------------------------------------------------


@pytest.mark.parametrize(("clients", "refused"), [
    ((), False),                      # no client ID yet: keys come later (subscribe-then-generate-keys)
    (("corp",), False),
    (("corp", "partner"), False),
    (("partner",), True),             # every client ID is of a key manager orders-v1 refuses
])
async def test_subscribe_refuses_an_application_whose_clients_are_all_of_refused_key_managers(
    clients: tuple[str, ...], refused: bool, two_km_settings: Settings
) -> None:
    from authz.registry.admin import RegistryAdmin

    admin = RegistryAdmin(MemoryStore(), two_km_settings)
    await admin.create_application("App", app_id="app")
    for index, km in enumerate(clients):
        await admin.add_client("app", f"c{index}", key_manager=km)
    await admin.subscribe("app", "payments-v1")  # accepts every key manager
    if not refused:
        assert (await admin.subscribe("app", "orders-v1")).api_id == "orders-v1"
        return
    with pytest.raises(RegistryError) as info:
        await admin.subscribe("app", "orders-v1")
    assert (info.value.kind, info.value.field) == ("failed_precondition", "api_id")
    assert str(info.value) == (
        "application App has client IDs of key managers partner only, and API orders-v1 accepts tokens of corp: "
        "attach a client ID of corp first (app add-client --key-manager NAME)")
    assert [s.api_id for s in await admin.subscriptions("app")] == ["payments-v1"]  # nothing written


def test_unusable_subscription_rule(two_km_settings: Settings) -> None:
    assert unusable_subscription(two_km_settings, "A", "orders-v1", {"partner"}) is not None
    assert unusable_subscription(two_km_settings, "A", "orders-v1", {"partner", "corp"}) is None
    assert unusable_subscription(two_km_settings, "A", "orders-v1", set()) is None
    assert unusable_subscription(two_km_settings, "A", "payments-v1", {"partner"}) is None


async def test_import_refuses_an_unusable_subscription_before_writing_anything(two_km_settings: Settings) -> None:
    from authz.registry.admin import RegistryAdmin

    store = MemoryStore()
    admin = RegistryAdmin(store, two_km_settings)
    doc = {"schema": 1, "applications": [
        {"id": "good", "name": "Good", "clients": [{"key_manager": "corp", "client_id": "g"}],
         "subscriptions": [{"api_id": "orders-v1"}]},
        {"id": "bad", "name": "Bad", "clients": [{"key_manager": "partner", "client_id": "b"}],
         "subscriptions": [{"api_id": "payments-v1"}, {"api_id": "orders-v1"}]},
    ]}
    with pytest.raises(RegistryError) as info:
        await import_yaml(admin, yaml.safe_dump(doc))
    assert info.value.kind == "failed_precondition"
    assert str(info.value).startswith("applications[1].subscriptions[1]: application Bad has client IDs of key "
                                      "managers partner only, and API orders-v1 accepts tokens of corp")
    assert await admin.list_applications() == []  # planned first: nothing half-applied
    # the file's own client IDs count: a corp client in the same file makes it usable
    doc["applications"][1]["clients"].append({"key_manager": "corp", "client_id": "b2"})
    assert len(await import_yaml(admin, yaml.safe_dump(doc))) == 8
