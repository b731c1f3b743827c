"""Connection data of key managers (``authz.keys.connection``) against real key managers on loopback: from
discovery (cached, single-flight, the JWKS fetcher's TLS settings and limits), from the config, merged field by
field, and a clear problem instead of an empty URL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from authz.config import ConfigError, Settings
from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey
from authz.keys.connection import ConnectionData, ConnectionDirectory
from authz.keys.discovery import DiscoveryError, ServerMetadata
from tests.support.pki import LoopbackTls

OIDC = "/.well-known/openid-configuration"


def _km(idp: KeyManager, **fields: Any) -> dict[str, Any]:
    return {"km": {"jwks": {"timeout": 1, "retry_interval": 5, "refresh_interval": 300}, **fields}}


def _discovery(idp: KeyManager, **fields: Any) -> dict[str, Any]:
    return _km(idp, jwks_uri=None, discovery="oidc", **fields)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_discovery_gives_issuer_token_endpoint_jwks_uri_and_grants(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.discovery_overrides = {"scopes_supported": ["openid", "orders:read", 7]}
    settings = make_settings(**_discovery(idp))
    data = await ConnectionDirectory(settings.key_managers).get("test-km")
    assert data == ConnectionData(
        key_manager="test-km", issuer=idp.issuer, token_endpoint=f"{idp.url}/oauth2/token",
        jwks_uri=f"{idp.url}/oauth2/jwks", grant_types_supported=("password", "client_credentials"),
        scopes_supported=("openid", "orders:read"),  # non-strings dropped
        token_endpoint_auth_methods_supported=("client_secret_basic", "client_secret_post"),
        metadata_url=f"{idp.url}{OIDC}", source="discovery", problems=(),
    )


async def test_metadata_is_cached_for_its_max_age_and_fetched_once_for_concurrent_callers(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    clock = Clock()
    directory = ConnectionDirectory(make_settings(**_discovery(idp)).key_managers, clock=clock)
    first = await asyncio.gather(*(directory.get("test-km") for _ in range(5)))
    assert (directory.fetch_count["test-km"], idp.requests[OIDC]) == (1, 1)
    assert {d.token_endpoint for d in first} == {f"{idp.url}/oauth2/token"}
    clock.now += 299  # the demo key manager's metadata says Cache-Control: max-age=300
    await directory.get("test-km")
    assert idp.requests[OIDC] == 1
    idp.discovery_overrides = {"token_endpoint": f"{idp.url}/moved/token"}
    clock.now += 2
    assert (await directory.get("test-km")).token_endpoint == f"{idp.url}/moved/token"
    assert idp.requests[OIDC] == 2


async def test_failed_discovery_is_a_problem_retried_after_retry_interval_and_config_still_counts(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    clock = Clock()
    idp.discovery_overrides = {"issuer": "https://someone.else.test"}
    settings = make_settings(**_discovery(idp, token_endpoint="https://idp.example.test/token"))
    directory = ConnectionDirectory(settings.key_managers, clock=clock)
    data = await directory.get("test-km")
    assert (data.token_endpoint, data.jwks_uri, data.source) == ("https://idp.example.test/token", None, "config")
    assert data.problems == (
        f"discovery failed: metadata at {idp.url}{OIDC} has issuer 'https://someone.else.test', "
        f"expected '{idp.issuer}'",
    )
    clock.now += 4.9
    await directory.get("test-km")
    assert idp.requests[OIDC] == 1  # a failure is not refetched on every call
    idp.discovery_overrides = {}
    clock.now += 0.2
    data = await directory.get("test-km")
    assert (data.source, data.problems, data.jwks_uri) == ("discovery+config", (), f"{idp.url}/oauth2/jwks")
    assert data.token_endpoint == "https://idp.example.test/token"  # the configured one wins


async def test_without_discovery_the_config_is_the_only_source_and_nothing_is_fetched(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(**_km(idp, token_endpoint=f"{idp.url}/oauth2/token",
                                   grant_types_supported=["client_credentials"]))
    data = await ConnectionDirectory(settings.key_managers).get("test-km")
    assert (data.token_endpoint, data.jwks_uri, data.grant_types_supported, data.source, data.problems) == (
        f"{idp.url}/oauth2/token", f"{idp.url}/oauth2/jwks", ("client_credentials",), "config", ())
    assert sum(idp.requests.values()) == 0


async def test_no_token_endpoint_is_said_clearly_never_an_empty_url(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    data = await ConnectionDirectory(make_settings().key_managers).get("test-km")
    assert data.token_endpoint is None
    assert data.problems == (
        "no token endpoint: key manager test-km has neither discovery nor token_endpoint in the config; ask its "
        "administrator for the token endpoint (or set key_managers[].token_endpoint)",
    )
    idp.discovery_overrides = {"token_endpoint": None}
    data = await ConnectionDirectory(make_settings(**_discovery(idp)).key_managers).get("test-km")
    assert (data.token_endpoint, data.problems) == (
        None, (f"no token endpoint: the metadata at {idp.url}{OIDC} states none; set key_managers[].token_endpoint",))


async def test_a_token_endpoint_with_credentials_is_never_shown(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.discovery_overrides = {"token_endpoint": "http://user:s3cret@127.0.0.1:1/token"}
    data = await ConnectionDirectory(make_settings(**_discovery(idp)).key_managers).get("test-km")
    assert data.token_endpoint is None
    assert data.problems[0] == (f"metadata at {idp.url}{OIDC} has a token_endpoint with credentials "
                                "(http://***@127.0.0.1:1/token): not shown")
    assert "s3cret" not in repr(data)
    with pytest.raises(ConfigError) as info:
        make_settings(**_km(idp, token_endpoint="https://user:pw@idp.example.test/token"))
    assert info.value.errors[0].startswith("key_managers[0].token_endpoint: string should match pattern")


@pytest.fixture
def tls_idp(tmp_path: Path) -> Iterator[tuple[KeyManager, LoopbackTls]]:
    tls = LoopbackTls.create(tmp_path)
    km = KeyManager("authz-test", DEMO_CLIENTS, DEMO_USERS, keys=[SigningKey.generate_rsa(kid="t1")])
    km.start(ssl_context=tls.server_context)
    yield km, tls
    km.stop()


async def test_https_metadata_uses_the_key_managers_ca_bundle_and_refuses_an_http_token_endpoint(
    tls_idp: tuple[KeyManager, LoopbackTls], make_settings: Callable[..., Settings]
) -> None:
    km, tls = tls_idp
    fields = {"issuer": km.issuer, "jwks_uri": None, "discovery": "oidc", "jwks": {"timeout": 1}}
    data = await ConnectionDirectory(make_settings(km=fields).key_managers).get("test-km")
    assert data.token_endpoint is None and data.problems[0].startswith(
        f"discovery failed: fetch of {km.url}{OIDC} failed: ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED]")
    settings = make_settings(km={**fields, "ca_bundle": str(tls.ca_file)})
    data = await ConnectionDirectory(settings.key_managers).get("test-km")
    assert (data.token_endpoint, data.source) == (f"{km.url}/oauth2/token", "discovery")
    km.discovery_overrides = {"token_endpoint": "http://127.0.0.1:1/token"}
    data = await ConnectionDirectory(settings.key_managers).get("test-km")
    assert data.token_endpoint is None
    assert data.problems[0] == (f"metadata at {km.url}{OIDC} has an unusable token_endpoint "
                                "'http://127.0.0.1:1/token' (https required)")


def test_server_metadata_members_are_checked_and_absent_lists_are_not_stated() -> None:
    meta = ServerMetadata("https://idp.test/.well-known/openid-configuration",
                          {"token_endpoint": "https://idp.test/token", "jwks_uri": 7, "grant_types_supported": "x"})
    assert meta.endpoint("token_endpoint") == "https://idp.test/token"
    with pytest.raises(DiscoveryError, match="has no jwks_uri"):
        meta.endpoint("jwks_uri")
    assert (meta.strings("grant_types_supported"), meta.strings("scopes_supported")) == ((), ())


def test_connection_fields_are_validated_and_auth0_asks_for_the_audience(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(**_km(idp, token_endpoint="ftp://idp.test/token", audience_parameter="a b",
                            requested_scope="api://x/.default  two"))
    assert [e.split(":")[0] for e in info.value.errors] == [
        "key_managers[0].token_endpoint", "key_managers[0].audience_parameter",
        "key_managers[0].requested_scope"]
    km = make_settings(key_managers=[{"name": "auth0", "preset": "auth0", "issuer": "https://acme.eu.auth0.com/",
                                      "audiences": ["orders-api"]}]).key_managers[0]
    assert (km.audience_parameter, km.discovery) == ("audience", "oidc")
    km = make_settings(key_managers=[{"name": "auth0", "preset": "auth0", "issuer": "https://acme.eu.auth0.com/",
                                      "audience_parameter": "resource"}]).key_managers[0]
    assert km.audience_parameter == "resource"  # given explicitly: wins over the preset


async def test_the_make_run_config_shows_the_demo_key_managers_token_endpoint_and_gateway() -> None:
    from authz.config import load_config
    from authz.registry.developer import gateway_call

    settings = load_config("config/authz.yaml")
    data = await ConnectionDirectory(settings.key_managers).get("demo")
    assert (data.token_endpoint, data.grant_types_supported, data.source, data.problems) == (
        "http://127.0.0.1:8081/oauth2/token", ("password", "client_credentials"), "config", ())
    orders = settings.api("orders-v1")
    assert orders is not None and gateway_call(settings, orders).url == "http://127.0.0.1:8080/orders/v1/items"
