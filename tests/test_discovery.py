"""OIDC Discovery and RFC 8414 metadata (``authz.keys.discovery``) through ``JwksCache`` and ``TokenValidator``, against
real key managers on loopback: the discovered ``jwks_uri`` is used, the issuer must match, retries and moves."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from authz.config import ConfigError, Settings
from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey
from authz.errors import DependencyUnavailable
from authz.keys.discovery import metadata_url
from tests.support.tokencraft import claims, running_validator, sign

JWKS = "/oauth2/jwks"
OIDC = "/realms/demo/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server/realms/demo"


def _discovery_km(idp: KeyManager, style: str, **extra: Any) -> dict[str, Any]:
    km: dict[str, Any] = {"jwks_uri": None, "discovery": style, "issuer": idp.issuer,
                          "jwks": {"timeout": 1, "retry_interval": 0.05, "refresh_interval": 300}}
    km.update(extra)
    return {"km": km}


@pytest.fixture
def realm_idp(idp: KeyManager) -> KeyManager:
    """The key manager with a Keycloak-like issuer path; its metadata points at its JWKS."""
    idp.issuer = f"{idp.url}/realms/demo"
    idp.discovery_overrides = {"jwks_uri": f"{idp.url}{JWKS}"}
    return idp


async def _wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("issuer", "style", "url"),
    [
        ("https://sso.example.test/realms/demo", "oidc",
         "https://sso.example.test/realms/demo/.well-known/openid-configuration"),
        ("https://sso.example.test/realms/demo/", "oidc",
         "https://sso.example.test/realms/demo/.well-known/openid-configuration"),
        ("https://as.example.test", "oidc", "https://as.example.test/.well-known/openid-configuration"),
        ("https://as.example.test/tenant1", "oauth", "https://as.example.test/.well-known/oauth-authorization-server/tenant1"),
        ("https://as.example.test/", "oauth", "https://as.example.test/.well-known/oauth-authorization-server"),
    ],
)
def test_metadata_url_follows_oidc_discovery_and_rfc8414(issuer: str, style: Any, url: str) -> None:
    assert metadata_url(issuer, style) == url


@pytest.mark.parametrize(("style", "path"), [("oidc", OIDC), ("oauth", RFC8414)])
async def test_discovered_jwks_uri_is_used_to_validate_tokens(
    style: str, path: str, realm_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(**_discovery_km(realm_idp, style))) as (v, caches):
        identity = await v.validate(realm_idp.issue_token("app-123", "user-42", "orders:read"))
        assert (identity.client_id, identity.issuer) == ("app-123", realm_idp.issuer)
        assert caches["test-km"].jwks_uri == f"{realm_idp.url}{JWKS}"
        assert realm_idp.requests[path] == 1
        assert realm_idp.requests[JWKS] == 1
        assert caches["test-km"].discovery_count == 1


async def test_configured_issuer_with_trailing_slash_matches_metadata_issuer_without(
    realm_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(**_discovery_km(realm_idp, "oidc", issuer=realm_idp.issuer + "/"))
    async with running_validator(settings) as (v, caches):
        assert caches["test-km"].usable()
        assert (await v.validate(realm_idp.issue_token("app-123", "u", ""))).client_id == "app-123"


async def test_metadata_naming_another_issuer_makes_the_key_manager_unusable_until_it_matches(
    realm_idp: KeyManager, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    realm_idp.discovery_overrides["issuer"] = "https://attacker.example.test/realms/demo"
    caplog.set_level(logging.ERROR, logger="authz.jwks")
    async with running_validator(make_settings(**_discovery_km(realm_idp, "oidc"))) as (v, caches):
        token = realm_idp.issue_token("app-123", "u", "orders:read")
        with pytest.raises(DependencyUnavailable) as info:  # rendered as 503, never an allow
            await v.validate(token)
        assert info.value.dependency == "jwks:test-km"
        assert realm_idp.requests[JWKS] == 0  # the other issuer's jwks_uri is never fetched
        assert caches["test-km"].jwks_uri is None
        line = next(r.getMessage() for r in caplog.records if "unusable" in r.getMessage())
        assert line.startswith("key manager test-km unusable: metadata at ")
        assert "has issuer 'https://attacker.example.test/realms/demo'" in line
        assert f"expected '{realm_idp.issuer}'" in line
        # The IdP is fixed: the background retry picks it up without a restart.
        del realm_idp.discovery_overrides["issuer"]
        await _wait_for(caches["test-km"].usable)
        assert (await v.validate(token)).client_id == "app-123"


async def test_with_several_issuers_discovery_reads_the_first_and_every_issuer_validates(
    realm_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    second = f"{realm_idp.url}/sts/tenant/"  # like Entra's v1.0 issuer next to its v2.0 one
    settings = make_settings(**_discovery_km(realm_idp, "oidc", issuer=[realm_idp.issuer, second]))
    async with running_validator(settings) as (v, caches):
        for iss in (realm_idp.issuer, second):
            identity = await v.validate(sign(realm_idp.signing_key, claims(realm_idp, iss=iss)))
            assert (identity.key_manager, identity.issuer) == ("test-km", iss)
        assert caches["test-km"].discovery_count == 1
        assert realm_idp.requests[OIDC] == 1  # the first issuer's metadata
        assert realm_idp.requests["/sts/tenant/.well-known/openid-configuration"] == 0
        assert realm_idp.requests[JWKS] == 1


async def test_with_several_issuers_the_metadata_must_name_the_first(
    realm_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    second = f"{realm_idp.url}/sts/tenant/"
    realm_idp.discovery_overrides["issuer"] = second  # another issuer of the same key manager: still a mismatch
    settings = make_settings(**_discovery_km(realm_idp, "oidc", issuer=[realm_idp.issuer, second]))
    async with running_validator(settings) as (v, caches):
        with pytest.raises(DependencyUnavailable):
            await v.validate(sign(realm_idp.signing_key, claims(realm_idp, iss=second)))
        assert (caches["test-km"].last_error or "").startswith("IssuerMismatch: ")
        assert realm_idp.requests[JWKS] == 0


@pytest.mark.parametrize("jwks_uri", ["ftp://127.0.0.1/jwks", "/relative/jwks", 42, None], ids=repr)
async def test_metadata_without_a_usable_jwks_uri_is_a_failed_discovery(
    jwks_uri: Any, realm_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    realm_idp.discovery_overrides["jwks_uri"] = jwks_uri  # None: no jwks_uri member at all
    async with running_validator(make_settings(**_discovery_km(realm_idp, "oidc"))) as (v, caches):
        with pytest.raises(DependencyUnavailable):
            await v.validate(realm_idp.issue_token("app-123", "u", ""))
        assert "jwks_uri" in (caches["test-km"].last_error or "")
        assert realm_idp.requests[JWKS] == 0


async def test_metadata_endpoint_down_at_start_is_503_then_recovers_in_the_background(
    realm_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    configured = realm_idp.issuer
    realm_idp.issuer = f"{realm_idp.url}/realms/elsewhere"  # the configured issuer's metadata URL answers 404
    async with running_validator(make_settings(**_discovery_km(realm_idp, "oidc", issuer=configured))) as (v, caches):
        realm_idp.issuer = configured
        token = realm_idp.issue_token("app-123", "u", "")
        realm_idp.issuer = f"{realm_idp.url}/realms/elsewhere"
        with pytest.raises(DependencyUnavailable):
            await v.validate(token)
        assert "HTTP status 404" in (caches["test-km"].last_error or "")
        first = realm_idp.requests[OIDC]
        await _wait_for(lambda: realm_idp.requests[OIDC] >= first + 2)  # retried, with backoff
        realm_idp.issuer = configured  # the IdP is up
        await _wait_for(caches["test-km"].usable)
        assert (await v.validate(token)).client_id == "app-123"


async def test_metadata_without_issuer_is_refused_like_a_wrong_issuer(
    realm_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    realm_idp.discovery_overrides["issuer"] = None
    async with running_validator(make_settings(**_discovery_km(realm_idp, "oidc"))) as (v, caches):
        with pytest.raises(DependencyUnavailable):
            await v.validate(realm_idp.issue_token("app-123", "u", ""))
        assert "has issuer 'None'" in (caches["test-km"].last_error or "")
        assert realm_idp.requests[JWKS] == 0


async def test_failed_jwks_fetch_reads_the_metadata_again_and_follows_a_moved_jwks_uri(
    realm_idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    new_key = SigningKey.generate_rsa(kid="k-new")
    with KeyManager("authz-test", DEMO_CLIENTS, DEMO_USERS, keys=[new_key]) as new_home:
        settings = make_settings(**_discovery_km(realm_idp, "oidc"))
        async with running_validator(settings) as (v, caches):
            cache = caches["test-km"]
            assert cache.jwks_uri == f"{realm_idp.url}{JWKS}"
            # The IdP moves its keys: the old JWKS URL fails, the metadata names the new one.
            realm_idp.jwks_status = 404
            realm_idp.discovery_overrides["jwks_uri"] = f"{new_home.url}{JWKS}"
            assert await cache.refresh() is False
            assert cache.jwks_uri is None
            assert await cache.refresh() is True
            assert cache.jwks_uri == f"{new_home.url}{JWKS}"
            assert cache.discovery_count == 2
            assert new_home.requests[JWKS] == 1
            token = sign(new_key, claims(realm_idp))
            assert (await v.validate(token)).client_id == "app-123"


@pytest.mark.parametrize(
    ("km", "line"),
    [
        ({"jwks_uri": None}, "key_managers[0]: set exactly one of jwks_uri, discovery, certificates"),
        ({"discovery": "oidc"},
         "key_managers[0]: set exactly one of jwks_uri, discovery, certificates (got jwks_uri, discovery)"),
        ({"jwks_uri": None, "discovery": "webfinger"}, "key_managers[0].discovery: input should be 'oidc' or 'oauth'"),
        ({"jwks_uri": None, "discovery": "oidc", "issuer": "urn:example:idp"},
         "key_managers[0]: discovery needs an http(s) issuer URL"),
        ({"jwks_uri": None, "discovery": "oidc", "issuer": ["urn:example:idp", "https://idp.example.test"]},
         "key_managers[0]: discovery needs an http(s) issuer URL (the first issuer's metadata is read)"),
    ],
)
def test_key_source_settings_are_validated(km: dict[str, Any], line: str, make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(km=km)
    assert line in info.value.errors, info.value.errors


async def test_metadata_turning_to_another_issuer_drops_the_keys_found_through_it_at_once(
    realm_idp: KeyManager, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(**_discovery_km(realm_idp, "oidc"))
    async with running_validator(settings) as (v, caches):
        cache = caches["test-km"]
        token = sign(realm_idp.signing_key, claims(realm_idp))
        assert (await v.validate(token)).client_id == "app-123"
        # The JWKS fails, discovery runs again and the metadata now names someone else.
        realm_idp.jwks_status = 500
        realm_idp.discovery_overrides["issuer"] = "http://other-issuer.example"
        assert await cache.refresh() is False
        assert await cache.refresh() is False
        with pytest.raises(DependencyUnavailable):
            await v.validate(sign(realm_idp.signing_key, claims(realm_idp)))


async def test_credentials_in_a_discovered_jwks_uri_never_reach_the_log(
    realm_idp: KeyManager, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    realm_idp.discovery_overrides = {"jwks_uri": f"http://user:p4ssw0rd@127.0.0.1:{realm_idp.port}{JWKS}?sig=s3cret"}
    caplog.set_level(logging.DEBUG)
    settings = make_settings(**_discovery_km(realm_idp, "oidc"))
    async with running_validator(settings) as (_v, caches):
        assert caches["test-km"].jwks_uri is not None
        realm_idp.jwks_status = 500
        await caches["test-km"].refresh()
    # Everything authz (and the HTTP client it uses) logged; the dev key manager's own access log is the
    # server side and not authz's.
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("authz.dev"))
    assert "discovered jwks_uri http://***@127.0.0.1:" in text
    assert "p4ssw0rd" not in text and "s3cret" not in text
