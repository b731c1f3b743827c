"""JWKS cache: ``authz.keys.jwks_cache.JwksCache`` against a real key manager on loopback (field cases C01, C02, C03, key loading)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from authz.config import Settings
from authz.decide.identity import TokenValidator
from authz.dev.keymanager import KeyManager, SigningKey
from authz.errors import Denial, DependencyUnavailable, Reason
from authz.keys.jwks_cache import JwksCache, parse_jwks
from tests.support.tokencraft import claims, running_validator, sign

JWKS = "/oauth2/jwks"


def _jwks_settings(**jwks: float) -> dict[str, Any]:
    base = {"refresh_interval": 300, "kid_refetch_cooldown": 30, "timeout": 2, "retry_interval": 0.2}
    base.update(jwks)
    return {"km": {"jwks": base}}


@asynccontextmanager
async def _cache(settings: Settings) -> AsyncIterator[JwksCache]:
    async with httpx.AsyncClient() as client:
        cache = JwksCache(settings.key_managers[0], client)
        try:
            await cache.start()
            yield cache
        finally:
            await cache.close()


async def _wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def _deny(validator: TokenValidator, token: str) -> Denial:
    with pytest.raises(Denial) as info:
        await validator.validate(token)
    return info.value


def _token(idp: KeyManager, key: SigningKey | None = None, **kw: Any) -> str:
    return sign(key or idp.signing_key, claims(idp, **kw))


# ------------------------------------------------------------------------------------- C01 rotation


async def test_c01_rotated_key_is_accepted_after_exactly_one_extra_fetch(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    k2 = SigningKey.generate_rsa(kid="k2")
    async with running_validator(make_settings(**_jwks_settings())) as (v, caches):
        assert idp.requests[JWKS] == 1
        assert (await v.validate(_token(idp))).client_id == "app-123"
        idp.published_keys = [idp.signing_key, k2]
        assert (await v.validate(_token(idp, k2))).client_id == "app-123"
        assert idp.requests[JWKS] == 2
        # Further k2 and k1 tokens are served from the refreshed set without more fetches.
        for _ in range(5):
            await v.validate(_token(idp, k2))
            await v.validate(_token(idp))
        assert idp.requests[JWKS] == 2
        assert [k.kid for k in caches["test-km"].keyset.keys] == ["k1", "k2"]


async def test_c01_withdrawn_key_is_rejected_after_the_background_refresh(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    k2 = SigningKey.generate_rsa(kid="k2")
    idp.published_keys = [idp.signing_key, k2]
    idp.jwks_cache_control = None  # no max-age: the configured refresh_interval applies
    settings = make_settings(**_jwks_settings(refresh_interval=0.5, kid_refetch_cooldown=0.1))
    async with running_validator(settings) as (v, caches):
        k1_token = _token(idp)
        assert (await v.validate(k1_token)).client_id == "app-123"
        idp.published_keys = [k2]
        fetched = idp.requests[JWKS]
        await _wait_for(lambda: idp.requests[JWKS] > fetched and caches["test-km"].keyset.by_kid("k1") == [])
        denial = await _deny(v, k1_token)  # the cached verification goes with the key
        assert denial.reason is Reason.INVALID_CREDENTIALS
        assert denial.description == "The access token was not signed by a key of its issuer"
        await _deny(v, _token(idp))
        assert (await v.validate(_token(idp, k2))).client_id == "app-123"


# ------------------------------------------------------------------------------------ C02 storm


def _random_kid_token(idp: KeyManager) -> str:
    return sign(idp.signing_key, claims(idp), kid=uuid.uuid4().hex)


async def test_c02_refetch_storm_makes_at_most_one_forced_fetch(
    idp: KeyManager, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="authz.jwks")
    settings = make_settings(**_jwks_settings(kid_refetch_cooldown=1.0))
    async with running_validator(settings) as (v, _):
        assert idp.requests[JWKS] == 1
        storm = [_random_kid_token(idp) for _ in range(500)]
        good = [_token(idp) for _ in range(50)]
        tokens = [t for pair in zip(storm[:50], good, strict=True) for t in pair] + storm[50:]
        results = await asyncio.gather(*(v.validate(t) for t in tokens), return_exceptions=True)
        by_token = dict(zip(tokens, results, strict=True))
        assert all(getattr(by_token[t], "client_id", None) == "app-123" for t in good)
        for t in storm:
            r = by_token[t]
            assert isinstance(r, Denial) and r.reason is Reason.INVALID_CREDENTIALS, r
            assert r.description == "The access token was not signed by a key of its issuer"
        assert idp.requests[JWKS] >= 2  # the prefetch and one forced refetch (two if the burst outlasted a cooldown)
        # A second burst inside the cooldown; then one after it.
        results = await asyncio.gather(*(v.validate(_random_kid_token(idp)) for _ in range(200)),
                                       return_exceptions=True)
        assert all(isinstance(r, Denial) for r in results)
        await asyncio.sleep(1.05)
        results = await asyncio.gather(*(v.validate(_random_kid_token(idp)) for _ in range(200)),
                                       return_exceptions=True)
        assert all(isinstance(r, Denial) for r in results)
        _assert_one_forced_fetch_per_cooldown(idp, caplog, 1.0, at_least=2)


def _assert_one_forced_fetch_per_cooldown(
    idp: KeyManager, caplog: pytest.LogCaptureFixture, cooldown: float, at_least: int,
) -> None:
    """Forced fetches (``at_least`` of them) started at least ``cooldown`` apart, each one JWKS request after the
    prefetch. Start times are the cache's own (its log record of each forced fetch): the key manager's arrival
    times carry the scheduling delays of a loaded machine."""
    forced = [r.created for r in caplog.records if r.getMessage() == "jwks test-km: unknown kid, refetching"]
    gaps = [b - a for a, b in zip(forced, forced[1:], strict=False)]
    assert len(forced) >= at_least and all(gap >= cooldown - 0.002 for gap in gaps), gaps
    assert idp.requests[JWKS] == 1 + len(forced)


async def test_c02_valid_tokens_do_not_wait_for_a_slow_forced_fetch(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(**_jwks_settings())) as (v, _):
        idp.jwks_delay = 0.8
        storm = [asyncio.ensure_future(v.validate(_random_kid_token(idp))) for _ in range(100)]
        await asyncio.sleep(0.05)  # the forced fetch is now in flight
        started = time.monotonic()
        for _ in range(20):
            assert (await v.validate(_token(idp))).client_id == "app-123"
        assert time.monotonic() - started < 0.5
        results = await asyncio.gather(*storm, return_exceptions=True)
        assert all(isinstance(r, Denial) and r.reason is Reason.INVALID_CREDENTIALS for r in results)
        assert idp.requests[JWKS] == 2


async def test_c02_failed_forced_fetch_never_evicts_cached_keys(
    idp: KeyManager, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="authz.jwks")
    async with running_validator(make_settings(**_jwks_settings(kid_refetch_cooldown=0.2))) as (v, caches):
        keyset = caches["test-km"].keyset
        idp.jwks_status = 503
        for _ in range(3):
            results = await asyncio.gather(*(v.validate(_random_kid_token(idp)) for _ in range(50)),
                                           return_exceptions=True)
            # An unknown kid is a token problem (401), not a dependency error (503), even while JWKS is down.
            assert all(isinstance(r, Denial) and r.reason is Reason.INVALID_CREDENTIALS for r in results)
            assert (await v.validate(_token(idp))).client_id == "app-123"
            await asyncio.sleep(0.25)
        assert caches["test-km"].keyset is keyset
        assert "503" in (caches["test-km"].last_error or "")
        _assert_one_forced_fetch_per_cooldown(idp, caplog, 0.2, at_least=3)  # one per round at least, never closer


async def test_c02_no_kid_tokens_never_refetch(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    idp.published_keys = [idp.signing_key, SigningKey.generate_rsa(kid="k2")]
    async with running_validator(make_settings(**_jwks_settings(kid_refetch_cooldown=0.1))) as (v, _):
        for _ in range(2):
            results = await asyncio.gather(
                *(v.validate(sign(idp.signing_key, claims(idp), kid=None)) for _ in range(100)),
                return_exceptions=True,
            )
            assert all(isinstance(r, Denial) and r.reason is Reason.INVALID_CREDENTIALS for r in results)
            await asyncio.sleep(0.15)
        assert idp.requests[JWKS] == 1


# ----------------------------------------------------------------------------- C03 fetch failures


async def test_c03a_cold_start_with_jwks_down_is_dependency_unavailable_then_recovers_without_restart(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.jwks_status = 503
    settings = make_settings(**_jwks_settings(retry_interval=0.1, refresh_interval=5))
    async with running_validator(settings) as (v, caches):
        cache = caches["test-km"]
        assert cache.keyset is None and not cache.usable()
        assert "503" in (cache.last_error or "")
        with pytest.raises(DependencyUnavailable) as info:
            await v.validate(_token(idp))
        assert info.value.dependency == "jwks:test-km"
        # An unknown kid at a cold start is a dependency problem too: nothing can be verified yet.
        with pytest.raises(DependencyUnavailable):
            await v.validate(_random_kid_token(idp))
        idp.jwks_status = 200
        await _wait_for(cache.usable, timeout=3)
        assert cache.last_error is None
        assert (await v.validate(_token(idp))).client_id == "app-123"


async def test_c03a_after_a_long_cold_start_outage_checks_get_the_keys_within_the_cooldown_not_the_backoff(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    """The background retry backs off (doubling up to ``refresh_interval``: minutes with the defaults), so a key
    manager back after a long outage would leave every check at 503 until the next retry. A check that finds no
    usable key set forces a fetch instead, at most one per ``kid_refetch_cooldown`` (shared with the unknown-kid
    refetches): the keys are there within the cooldown of the key manager's return, whatever the backoff."""
    idp.jwks_status = 503
    settings = make_settings(**_jwks_settings(retry_interval=60, refresh_interval=300, kid_refetch_cooldown=0.5))
    async with running_validator(settings) as (v, caches):
        assert caches["test-km"].keyset is None
        for _ in range(20):  # an outage under traffic: one forced fetch per cooldown, however many checks
            with pytest.raises(DependencyUnavailable):
                await v.validate(_token(idp))
        await _wait_for(lambda: idp.requests[JWKS] == 2)  # the prefetch, then one forced fetch (not awaited)
        await asyncio.sleep(0.2)
        assert idp.requests[JWKS] == 2
        idp.jwks_status = 200
        back = time.monotonic()
        while True:  # the next background retry is a minute away
            try:
                assert (await v.validate(_token(idp))).client_id == "app-123"
                break
            except DependencyUnavailable:
                assert time.monotonic() - back < 0.5 + 1.0, "keys not fetched within the cooldown"
                await asyncio.sleep(0.05)
        assert idp.requests[JWKS] <= 2 + (time.monotonic() - back) / 0.5 + 1


async def test_c03b_stale_if_error_serves_last_good_keys_within_max_stale_then_503(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.jwks_cache_control = None  # no max-age: the configured refresh_interval applies
    settings = make_settings(**_jwks_settings(refresh_interval=0.3, max_stale=0.6, retry_interval=0.1))
    async with running_validator(settings) as (v, caches):
        cache = caches["test-km"]
        cached = _token(idp)
        await v.validate(cached)
        idp.jwks_status = 503
        fetched = idp.requests[JWKS]
        await _wait_for(lambda: cache.last_error is not None)
        assert idp.requests[JWKS] > fetched
        await asyncio.sleep(max(0.0, cache.keyset.fetched_at + 0.5 - time.monotonic()))
        # Past the refresh interval, inside max_stale: still accepted.
        assert (await v.validate(_token(idp))).client_id == "app-123"
        assert (await v.validate(cached)).client_id == "app-123"
        await asyncio.sleep(max(0.0, cache.keyset.fetched_at + 0.95 - time.monotonic()))
        assert not cache.usable()
        with pytest.raises(DependencyUnavailable):
            await v.validate(_token(idp))
        with pytest.raises(DependencyUnavailable):
            await v.validate(cached)  # a cached verification does not outlive its key set
        idp.jwks_status = 200
        await _wait_for(cache.usable, timeout=3)
        assert (await v.validate(cached)).client_id == "app-123"


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Service Unavailable</body></html>",
        b"{}",
        b'{"keys":"x"}',
        b'{"keys":[]}',
        b'{"keys":null}',
        b"[]",
        b"null",
        b"",
        b'{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}',
        b'{"keys":[{"kty":"RSA","n":123,"e":"AQAB","kid":"k1"}]}',
        b'{"keys":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        b"\xff\xfe\x00garbage",
        b'{"keys":[1,"x",null,true]}',
    ],
    ids=["html", "empty-object", "keys-string", "keys-empty", "keys-null", "array", "null", "empty-body", "only-oct",
         "n-not-string", "deeply-nested", "binary", "non-object-keys"],
)
async def test_c03d_garbage_jwks_never_replaces_a_good_key_set(
    body: bytes, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(**_jwks_settings(kid_refetch_cooldown=0.1))) as (v, caches):
        cache = caches["test-km"]
        good = cache.keyset
        idp.jwks_body = body
        assert await cache.refresh() is False
        assert cache.keyset is good
        assert cache.last_error
        assert (await v.validate(_token(idp))).client_id == "app-123"
        # A forced refetch meeting the garbage is a 401 for the unknown kid, never an exception or a 503.
        denial = await _deny(v, _random_kid_token(idp))
        assert denial.reason is Reason.INVALID_CREDENTIALS
        assert idp.requests[JWKS] == 3


async def test_c03d_garbage_jwks_keeps_the_background_refresh_alive(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.jwks_cache_control = None  # no max-age: the configured refresh_interval applies
    settings = make_settings(**_jwks_settings(refresh_interval=0.2, retry_interval=0.05))
    async with _cache(settings) as cache:
        idp.jwks_body = b"[" * 100_000
        fetched = idp.requests[JWKS]
        await _wait_for(lambda: idp.requests[JWKS] >= fetched + 2)
        idp.jwks_body = None
        idp.published_keys = [SigningKey.generate_rsa(kid="k2")]
        await _wait_for(lambda: cache.keyset is not None and cache.keyset.by_kid("k2") != [])
        assert cache.last_error is None


async def test_c03c_slow_jwks_beyond_timeout_is_a_failed_fetch(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.jwks_delay = 1.5
    settings = make_settings(**_jwks_settings(timeout=0.3, retry_interval=5))
    started = time.monotonic()
    async with running_validator(settings) as (v, caches):
        assert time.monotonic() - started < 1.4  # start() waited for the timeout, not for the slow server
        cache = caches["test-km"]
        assert cache.keyset is None
        assert "Timeout" in (cache.last_error or "")
        with pytest.raises(DependencyUnavailable):
            await v.validate(_token(idp))


async def test_c03c_slow_forced_refetch_is_bounded_by_the_fetch_timeout(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(**_jwks_settings(timeout=0.3))) as (v, caches):
        idp.jwks_delay = 1.5
        started = time.monotonic()
        denial = await _deny(v, _random_kid_token(idp))
        assert denial.reason is Reason.INVALID_CREDENTIALS
        assert time.monotonic() - started < 1.0
        assert caches["test-km"].usable()
        assert (await v.validate(_token(idp))).client_id == "app-123"


async def test_jwks_http_error_status_is_a_failed_fetch(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    async with _cache(make_settings(**_jwks_settings())) as cache:
        for status in (404, 500, 302):
            idp.jwks_status = status
            assert await cache.refresh() is False
            assert cache.last_error == f"FetchError: HTTP status {status}"
            assert cache.usable()


async def test_concurrent_refreshes_are_single_flight(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    async with _cache(make_settings(**_jwks_settings())) as cache:
        idp.jwks_delay = 0.2
        results = await asyncio.gather(*(cache.refresh() for _ in range(50)))
        assert results == [True] * 50
        assert idp.requests[JWKS] == 2


# ---------------------------------------------------------------------------------- key loading


def _b64uint(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def test_use_enc_and_key_ops_without_verify_are_ignored(rsa_key: SigningKey) -> None:
    enc = {**rsa_key.public_jwk(), "use": "enc", "kid": "enc"}
    ops = {**rsa_key.public_jwk(), "key_ops": ["encrypt"], "kid": "ops"}
    ok = {**rsa_key.public_jwk(), "key_ops": ["verify"], "kid": "ok"}
    keys = parse_jwks({"keys": [enc, ops, ok]}, "t")
    assert [k.kid for k in keys] == ["ok"]


@pytest.mark.parametrize("e", [2, 65538, 1, 0], ids=["e=2", "e-even", "e=1", "e=0"])
def test_rsa_key_with_even_or_tiny_exponent_is_rejected(e: int, rsa_key: SigningKey) -> None:
    jwk = {**rsa_key.public_jwk(), "e": _b64uint(e) if e else "AA"}
    assert parse_jwks({"keys": [jwk]}, "t") == ()


def test_rsa_key_below_2048_bits_is_rejected() -> None:
    weak = SigningKey.generate_rsa(kid="weak", key_size=1024)
    strong = SigningKey.generate_rsa(kid="strong", key_size=3072)
    keys = parse_jwks({"keys": [weak.public_jwk(), strong.public_jwk()]}, "t")
    assert [k.kid for k in keys] == ["strong"]


def test_symmetric_oct_keys_are_skipped(rsa_key: SigningKey) -> None:
    oct_key = {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "k1", "alg": "HS256"}
    keys = parse_jwks({"keys": [oct_key, rsa_key.public_jwk()]}, "t")
    assert [(k.kid, k.alg) for k in keys] == [("k1", "RS256")]


def test_one_bad_key_does_not_spoil_the_others(rsa_key: SigningKey) -> None:
    ec_key = SigningKey.generate_ec("P-256", kid="e1").public_jwk()
    bad = [
        "x",
        None,
        [],
        {"kty": "RSA"},
        {"kty": "RSA", "n": 123, "e": "AQAB"},
        {"kty": "RSA", "n": "!!!", "e": "AQAB"},
        {**ec_key, "kid": "bad-point", "x": ec_key["y"]},
        {**ec_key, "kid": "bad-crv", "crv": "P-999"},
        {"kty": "OKP", "crv": "X25519", "x": "AAAA"},
        {"kty": "FOO"},
        {**rsa_key.public_jwk(), "kid": 7},
        {**rsa_key.public_jwk(), "alg": ["RS256"], "kid": "alg-list"},
        {**rsa_key.public_jwk(), "alg": "FOO256", "kid": "alg-unknown"},
        {**rsa_key.public_jwk(), "key_ops": "verify", "kid": "ops-string"},
    ]
    keys = parse_jwks({"keys": [*bad, rsa_key.public_jwk(), ec_key]}, "t")
    assert [k.kid for k in keys] == ["k1", "e1"]


@pytest.mark.parametrize("document", [None, [], "keys", {}, {"keys": "x"}, {"keys": {"a": 1}}], ids=repr)
def test_parse_jwks_rejects_documents_that_are_not_a_jwk_set(document: Any) -> None:
    with pytest.raises(ValueError, match="not a JWK Set"):
        parse_jwks(document, "t")


async def test_duplicate_kids_are_resolved_by_alg(
    idp: KeyManager, rsa_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    rs = SigningKey(kid="dup", alg="RS256", private_key=rsa_key.private_key)
    ps = SigningKey(kid="dup", alg="PS256", private_key=SigningKey.generate_rsa().private_key)
    es = SigningKey.generate_ec("P-256", kid="dup")
    idp.published_keys = [rs, ps, es]
    async with running_validator(make_settings(**_jwks_settings())) as (v, _):
        for key in (rs, ps, es):
            assert (await v.validate(_token(idp, key))).client_id == "app-123"
        assert idp.requests[JWKS] == 1


async def test_duplicate_kids_without_alg_are_ambiguous(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    a, b = SigningKey.generate_rsa(kid="dup"), SigningKey.generate_rsa(kid="dup")
    docs = []
    for key in (a, b):
        jwk = key.public_jwk()
        del jwk["alg"]
        docs.append(jwk)
    idp.jwks_body = json.dumps({"keys": docs}).encode()
    async with running_validator(make_settings(**_jwks_settings())) as (v, _):
        denial = await _deny(v, _token(idp, a))
        assert denial.description == "The access token was not signed by a key of its issuer"


async def test_oversized_jwks_response_is_a_failed_fetch(
    idp: KeyManager, rsa_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    async with _cache(make_settings(**_jwks_settings())) as cache:
        good = cache.keyset
        idp.jwks_body = json.dumps({"keys": [rsa_key.public_jwk()], "pad": "x" * (2 * 1024 * 1024)}).encode()
        assert await cache.refresh() is False
        assert cache.keyset is good
        assert "larger than" in (cache.last_error or "")


async def test_c03c_trickling_jwks_server_is_cut_off_at_the_fetch_timeout(
    make_settings: Callable[..., Settings],
) -> None:
    """A server that sends one byte every 100 ms never trips httpx's per-read timeout; the fetch must still end."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n")
        try:
            for _ in range(100):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.1)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = make_settings(km={"jwks_uri": f"http://127.0.0.1:{port}/jwks",
                                     "jwks": {"timeout": 0.5, "retry_interval": 30}})
        started = time.monotonic()
        async with _cache(settings) as cache:
            assert time.monotonic() - started < 1.8
            assert cache.keyset is None
            assert "Timeout" in (cache.last_error or "")
            started = time.monotonic()
            assert await cache.refresh() is False
            assert time.monotonic() - started < 1.0
    finally:
        server.close()


async def test_a_refresh_that_keeps_a_key_keeps_its_cached_verifications(make_settings, idp) -> None:  # noqa: ANN001
    """Unchanged keys keep their identity across refreshes, so the verified-token cache is not flushed."""
    import httpx

    from authz.keys.jwks_cache import JwksCache

    settings = make_settings()
    async with httpx.AsyncClient() as client:
        cache = JwksCache(settings.key_managers[0], client)
        await cache.start()
        try:
            before = await cache.signing_key("k1", "RS256")
            assert await cache.refresh() is True
            assert cache.contains(before)
            assert await cache.signing_key("k1", "RS256") is before
        finally:
            await cache.close()
