"""JWKS refresh period from ``Cache-Control`` within the configured bounds, and TLS to the key manager: a real
HTTPS JWKS server on loopback with a private CA trusted through ``ca_bundle``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from authz.config import Settings
from authz.decide.identity import TokenValidator
from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey
from authz.errors import DependencyUnavailable
from authz.keys.fetch import freshness, http_client
from authz.keys.jwks_cache import JwksCache
from tests.support.pki import LoopbackTls

JWKS = "/oauth2/jwks"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"cache-control": "max-age=120"}, 120.0),
        ({"cache-control": "public, max-age=600, must-revalidate"}, 600.0),
        ({"cache-control": 'max-age="60"'}, 60.0),
        ({"cache-control": "MAX-AGE=30"}, 30.0),
        ({"cache-control": "max-age=120", "age": "20"}, 100.0),
        ({"cache-control": "max-age=120", "age": "500"}, 0.0),
        ({"cache-control": "max-age=120", "age": "soon"}, 120.0),
        ({"cache-control": "no-cache"}, 0.0),
        ({"cache-control": "no-store, max-age=300"}, 0.0),
        ({"cache-control": "max-age=abc"}, None),
        ({"cache-control": "max-age=-5"}, None),
        ({"cache-control": "private"}, None),
        ({}, None),
    ],
)
def test_freshness_from_cache_control_and_age(headers: dict[str, str], expected: float | None) -> None:
    assert freshness(httpx.Headers(headers)) == expected


@asynccontextmanager
async def _cache(settings: Settings) -> AsyncIterator[JwksCache]:
    km = settings.key_managers[0]
    async with http_client(km) as client:
        cache = JwksCache(km, client)
        try:
            await cache.start()
            yield cache
        finally:
            await cache.close()


def _bounds(**jwks: float) -> dict[str, Any]:
    base: dict[str, float] = {"refresh_interval": 300, "timeout": 2, "retry_interval": 0.2,
                              "min_refresh_interval": 10, "max_refresh_interval": 1000}
    base.update(jwks)
    return {"km": {"jwks": base}}


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [("max-age=120", 120.0), ("max-age=5", 10.0), ("max-age=86400", 1000.0), ("no-store", 10.0), (None, 300.0),
     ("max-age=bogus", 300.0)],
)
async def test_refresh_interval_follows_max_age_within_the_configured_bounds(
    cache_control: str | None, expected: float, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.jwks_cache_control = cache_control
    async with _cache(make_settings(**_bounds())) as cache:
        assert cache.keyset is not None
        assert cache.keyset.refresh_interval == expected


async def test_background_refresh_comes_after_the_bounded_max_age(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.jwks_cache_control = "max-age=1"  # clamped to 0.3 below
    settings = make_settings(**_bounds(refresh_interval=300, min_refresh_interval=0.1, max_refresh_interval=0.3))
    async with _cache(settings) as cache:
        assert idp.requests[JWKS] == 1
        started = time.monotonic()
        while idp.requests[JWKS] < 3:
            await asyncio.sleep(0.02)
            assert time.monotonic() - started < 2.0, "background refresh did not follow the bounded max-age"
        assert cache.keyset is not None and cache.keyset.refresh_interval == 0.3


def test_min_refresh_interval_above_max_is_a_config_error(make_settings: Callable[..., Settings]) -> None:
    from authz.config import ConfigError

    with pytest.raises(ConfigError) as info:
        make_settings(**_bounds(min_refresh_interval=100, max_refresh_interval=50))
    assert info.value.errors == [
        "key_managers[0].jwks: jwks.min_refresh_interval must not be above jwks.max_refresh_interval"
    ]


# ------------------------------------------------------------------------------------------ TLS


@pytest.fixture
def tls_idp(tmp_path: Path) -> Iterator[tuple[KeyManager, LoopbackTls]]:
    """A key manager serving HTTPS with a certificate for 127.0.0.1 issued by a private CA."""
    tls = LoopbackTls.create(tmp_path)
    km = KeyManager("authz-test", DEMO_CLIENTS, DEMO_USERS,
                    keys=[SigningKey.generate_rsa(kid="t1")])
    km.start(ssl_context=tls.server_context)
    yield km, tls
    km.stop()


def _tls_km(km: KeyManager, **extra: Any) -> dict[str, Any]:
    entry = {"issuer": km.issuer, "jwks_uri": f"{km.url}{JWKS}", "jwks": {"timeout": 1, "retry_interval": 5}}
    entry.update(extra)
    return {"km": entry}


async def test_https_jwks_with_the_private_ca_in_ca_bundle_is_fetched_and_tokens_verify(
    tls_idp: tuple[KeyManager, LoopbackTls], make_settings: Callable[..., Settings]
) -> None:
    km, tls = tls_idp
    assert km.url is not None and km.url.startswith("https://127.0.0.1:")
    settings = make_settings(**_tls_km(km, ca_bundle=str(tls.ca_file)))
    async with _cache(settings) as cache:
        assert cache.last_error is None
        identity = await TokenValidator(settings.key_managers, {"test-km": cache}, settings.tokens).validate(km.issue_token("app-123", "u", ""))
        assert identity.client_id == "app-123"
    assert km.requests[JWKS] == 1


async def test_https_jwks_without_the_ca_fails_verification_and_checks_get_503(
    tls_idp: tuple[KeyManager, LoopbackTls], make_settings: Callable[..., Settings]
) -> None:
    km, _tls = tls_idp
    settings = make_settings(**_tls_km(km))  # verify_tls defaults to true, default CA bundle
    async with _cache(settings) as cache:
        assert cache.keyset is None
        assert "CERTIFICATE_VERIFY_FAILED" in (cache.last_error or "")
        with pytest.raises(DependencyUnavailable):
            await TokenValidator(settings.key_managers, {"test-km": cache}, settings.tokens).validate(km.issue_token("app-123", "u", ""))
    assert km.requests[JWKS] == 0  # the TLS handshake failed before any HTTP request


async def test_discovery_over_https_refuses_a_plain_http_jwks_uri(
    tls_idp: tuple[KeyManager, LoopbackTls], idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    km, tls = tls_idp
    km.discovery_overrides = {"jwks_uri": f"{idp.url}{JWKS}"}  # http:// from an https:// metadata document
    settings = make_settings(**_tls_km(km, jwks_uri=None, discovery="oidc", ca_bundle=str(tls.ca_file)))
    async with _cache(settings) as cache:
        assert cache.keyset is None
        assert "(https required)" in (cache.last_error or "")
    assert idp.requests[JWKS] == 0
