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
