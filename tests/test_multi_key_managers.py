"""Several key managers at once: two real IdPs on loopback, each with its own JWKS cache, settings and URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from authz.config import Settings
from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey
from authz.errors import Denial, DependencyUnavailable, Reason
from tests.support.tokencraft import claims, running_validator, sign

JWKS = "/oauth2/jwks"


@pytest.fixture
def okta_idp() -> Iterator[KeyManager]:
    km = KeyManager("orders-api", DEMO_CLIENTS, DEMO_USERS,
                    keys=[SigningKey.generate_ec("P-256", kid="okta-e1")])
    km.start()
    km.issuer = f"{km.url}/oauth2/default"
    yield km
    km.stop()


def _two(idp: KeyManager, okta_idp: KeyManager) -> dict[str, Any]:
    timings = {"timeout": 1, "retry_interval": 5, "kid_refetch_cooldown": 30}
    return {"key_managers": [
        {"name": "keycloak", "preset": "keycloak", "issuer": idp.issuer, "jwks_uri": f"{idp.url}{JWKS}",
         "audiences": ["authz-test"], "jwks": timings},
        {"name": "okta", "preset": "okta", "issuer": okta_idp.issuer, "jwks_uri": f"{okta_idp.url}{JWKS}",
         "audiences": ["orders-api"], "algorithms": ["ES256"], "leeway": 0, "jwks": timings},
    ]}


def _okta_token(okta_idp: KeyManager, **extra: Any) -> str:
    payload = claims(okta_idp, cid="0oa-orders", scp=["orders:read"], _drop=["azp", "client_id", "scope"])
    payload.update(extra)
    return sign(okta_idp.signing_key, payload)


async def test_tokens_of_two_idps_are_each_accepted_with_their_own_settings(
    idp: KeyManager, okta_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(**_two(idp, okta_idp))) as (v, caches):
        kc = await v.validate(idp.issue_token("orders-web", "alice", "orders:read"))
        assert (kc.key_manager, kc.client_id, kc.scopes) == ("keycloak", "orders-web", frozenset({"orders:read"}))
        ok = await v.validate(_okta_token(okta_idp))
        assert (ok.key_manager, ok.client_id, ok.scopes) == ("okta", "0oa-orders", frozenset({"orders:read"}))
        assert caches["keycloak"].jwks_uri == f"{idp.url}{JWKS}"
        assert caches["okta"].jwks_uri == f"{okta_idp.url}{JWKS}"
        assert caches["keycloak"].keyset is not caches["okta"].keyset
    # Each cache fetched once, from its own URL only.
    assert (idp.requests[JWKS], okta_idp.requests[JWKS]) == (1, 1)


async def test_unknown_kid_refetches_only_the_tokens_own_key_manager(
    idp: KeyManager, okta_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(**_two(idp, okta_idp))) as (v, _):
        # A keycloak-issued token signed by the Okta key: looked up in keycloak's set only.
        with pytest.raises(Denial) as info:
            await v.validate(sign(okta_idp.signing_key, claims(idp)))
        assert info.value.reason is Reason.INVALID_CREDENTIALS
    assert (idp.requests[JWKS], okta_idp.requests[JWKS]) == (1, 1)  # keycloak: ES256 not allowed, no refetch
    async with running_validator(make_settings(**_two(idp, okta_idp))) as (v, _):
        with pytest.raises(Denial):
            await v.validate(sign(idp.signing_key, claims(idp), kid="rotated-kid"))
    assert (idp.requests[JWKS], okta_idp.requests[JWKS]) == (3, 2)  # start + one forced refetch of keycloak


async def test_settings_are_per_key_manager(
    idp: KeyManager, okta_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    import time

    async with running_validator(make_settings(**_two(idp, okta_idp))) as (v, _):
        # okta: leeway 0 and ES256 only; keycloak: leeway 60 (default) and RS256 (preset).
        assert (await v.validate(idp.issue_token("orders-web", "u", "", lifetime=-30))).key_manager == "keycloak"
        with pytest.raises(Denial) as info:
            await v.validate(_okta_token(okta_idp, exp=int(time.time()) - 30))
        assert info.value.reason is Reason.EXPIRED_TOKEN
        with pytest.raises(Denial) as info:
            await v.validate(_okta_token(okta_idp, aud="authz-test"))  # keycloak's audience, not okta's
        assert info.value.description == "The access token's audience ('aud') is not accepted"


async def test_one_key_manager_down_does_not_affect_the_other(
    idp: KeyManager, okta_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    okta_idp.jwks_status = 503
    async with running_validator(make_settings(**_two(idp, okta_idp))) as (v, caches):
        assert (await v.validate(idp.issue_token("orders-web", "u", ""))).client_id == "orders-web"
        with pytest.raises(DependencyUnavailable) as info:
            await v.validate(_okta_token(okta_idp))
        assert info.value.dependency == "jwks:okta"
        assert caches["keycloak"].usable() and not caches["okta"].usable()


# ---- several issuers in one key manager (Entra ID v1.0 + v2.0 of one tenant: one key set) -------------------------

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _tenant_issuers(idp: KeyManager) -> tuple[str, str]:
    """(v2.0-like, v1.0-like) issuers on the loopback key manager; the v1.0 one ends with '/', as Entra's does."""
    return f"{idp.url}/{TENANT}/v2.0", f"{idp.url}/sts/{TENANT}/"


def _entra_and_okta(idp: KeyManager, okta_idp: KeyManager) -> dict[str, Any]:
    v2, v1 = _tenant_issuers(idp)
    two = _two(idp, okta_idp)
    two["key_managers"][0].update(name="entra", preset="entra", issuer=[v2, v1])
    return two


async def test_one_key_manager_accepts_each_of_its_issuers_with_one_key_set(
    idp: KeyManager, okta_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    v2, v1 = _tenant_issuers(idp)
    settings = make_settings(**_entra_and_okta(idp, okta_idp))
    assert settings.key_managers[0].issuer == [v2, v1]
    async with running_validator(settings) as (v, _):
        # each issuer, with and without one trailing '/' (the rule of a single issuer, for each)
        for iss, client_claim in ((v2, "azp"), (v2 + "/", "azp"), (v1, "appid"), (v1.rstrip("/"), "appid")):
            drop = ["client_id"] + (["azp"] if client_claim == "appid" else [])  # v1.0 tokens carry no azp
            payload = claims(idp, iss=iss, _drop=drop, **{client_claim: "entra-app"})
            identity = await v.validate(sign(idp.signing_key, payload))
            assert (identity.key_manager, identity.issuer, identity.client_id) == ("entra", iss, "entra-app")
        assert (await v.validate(_okta_token(okta_idp))).key_manager == "okta"
    assert (idp.requests[JWKS], okta_idp.requests[JWKS]) == (1, 1)  # one key set for both issuers


@pytest.mark.parametrize("variant", [
    lambda v2, v1: v2 + "//", lambda v2, v1: v1 + "/", lambda v2, v1: v2.upper(), lambda v2, v1: v2.replace("v2.0", "v1.0"),
    lambda v2, v1: v1.replace(TENANT, "00000000-0000-0000-0000-000000000000"), lambda v2, v1: " " + v2,
    lambda v2, v1: v2 + v1, lambda v2, v1: f"{v2}, {v1}", lambda v2, v1: [v2], lambda v2, v1: {"iss": v2},
], ids=["v2//", "v1//", "upper", "other version", "other tenant", "leading space", "concatenated", "comma list",
        "list", "object"])
async def test_anything_but_an_exact_issuer_is_401_before_any_fetch(
    variant: Callable[[str, str], Any], idp: KeyManager, okta_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    v2, v1 = _tenant_issuers(idp)
    async with running_validator(make_settings(**_entra_and_okta(idp, okta_idp))) as (v, _):
        before = (idp.requests[JWKS], okta_idp.requests[JWKS])
        token = sign(idp.signing_key, claims(idp, iss=variant(v2, v1)), kid="never-seen")  # would force a refetch
        with pytest.raises(Denial) as info:
            await v.validate(token)
        assert info.value.reason is Reason.INVALID_CREDENTIALS
        assert info.value.description in ("The access token's issuer is not accepted",
                                          "The access token has no issuer ('iss')")
        assert (idp.requests[JWKS], okta_idp.requests[JWKS]) == before  # chosen by iss, before the network


@pytest.mark.parametrize(("issuer", "errors"), [
    ("https://a", None),
    (["https://a"], None),
    (["https://a/v2.0", "https://b/"], None),
    ([], ["key_managers[0].issuer: list should have at least 1 item after validation, not 0"]),
    (42, ["key_managers[0].issuer: must be a string or a list of strings"]),
    (["https://a", 7], ["key_managers[0].issuer[1]: input should be a valid string"]),
    (["https://a", ""], ["key_managers[0].issuer[1]: string should have at least 1 character"]),
    (["https://a/", "https://b", "https://a"],
     ["key_managers[0].issuer: issuer[2] 'https://a' is already listed as issuer[0] (one trailing '/' is ignored)"]),
], ids=repr)
def test_issuer_is_a_string_or_a_list_of_distinct_strings(
    issuer: Any, errors: list[str] | None, make_settings: Callable[..., Settings]
) -> None:
    from authz.config import ConfigError

    if errors is None:
        km = make_settings(km={"issuer": issuer}).key_managers[0]
        assert km.issuer == ([issuer] if isinstance(issuer, str) else issuer)
        assert km.discovery_issuer == km.issuer[0]
        return
    with pytest.raises(ConfigError) as info:
        make_settings(km={"issuer": issuer})
    assert info.value.errors == errors


@pytest.mark.parametrize(("second", "line"), [
    ("https://a", "key_managers[1].issuer: 'https://a' is already used by key_managers[0]"),
    ("https://b/", "key_managers[1].issuer: 'https://b' is already used by key_managers[0]"),
    (["https://c", "https://b"], "key_managers[1].issuer[1]: 'https://b' is already used by key_managers[0]"),
])
def test_an_issuer_listed_by_two_key_managers_is_refused_naming_both(
    second: Any, line: str, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    from authz.config import ConfigError

    first = {"name": "one", "issuer": ["https://a", "https://b"], "jwks_uri": f"{idp.url}{JWKS}"}
    other = {"name": "two", "issuer": second, "jwks_uri": f"{idp.url}{JWKS}"}
    with pytest.raises(ConfigError) as info:
        make_settings(key_managers=[first, other])
    assert info.value.errors == [line]
    # reported next to field errors too (pydantic skips the model-level check then)
    with pytest.raises(ConfigError) as info:
        make_settings(key_managers=[first, other], realm='bad"realm')
    assert line in info.value.errors
