"""JWKS cache of one key manager (RFC 7517): fetched with httpx, refreshed in the background.

Rules it keeps:

* the key set is prefetched at start and refreshed every ``jwks.refresh_interval`` seconds; a failed
  fetch is retried after ``jwks.retry_interval`` (doubling, capped at the refresh interval);
* an unknown ``kid`` forces at most one refetch per ``jwks.kid_refetch_cooldown`` seconds, shared by all
  concurrent callers (single-flight), whatever the number of distinct unknown kids;
* a failed or garbage fetch never replaces a good key set; the last good set is used for
  ``jwks.max_stale`` seconds past its refresh time, then :class:`DependencyUnavailable` (503);
* keys that cannot be loaded (bad encoding, ``use: enc``, weak RSA) are skipped and logged, the others work;
* the refresh period follows the response's ``Cache-Control: max-age`` (minus ``Age``) bounded by
  ``jwks.min_refresh_interval`` and ``jwks.max_refresh_interval``; without it, ``jwks.refresh_interval``;
* with ``discovery``, the ``jwks_uri`` comes from the issuer's metadata (:mod:`authz.keys.discovery`), fetched
  before the first JWKS fetch and again after a failed one; metadata naming another issuer makes the key
  manager unusable (its tokens get 503) until it names the configured issuer;
* with ``certificates``, the keys come from PEM files (:mod:`authz.keys.pem`), loaded once at start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authz.config import KeyManagerSettings
from authz.errors import Denial, DependencyUnavailable, Reason
from authz.keys.discovery import IssuerMismatch, discover_jwks_uri
from authz.keys.fetch import MAX_DOCUMENT_BYTES, fetch_json, freshness, redact_url
from authz.keys.pem import MIN_RSA_BITS, check_public_key, load_pem_file, public_key_of_certificate

log = logging.getLogger("authz.jwks")

__all__ = ["MIN_RSA_BITS", "JwksCache", "KeySet", "VerificationKey", "parse_jwks"]

MAX_JWKS_BYTES = MAX_DOCUMENT_BYTES
"""A JWKS response larger than this is a failed fetch (a key set is a few KB)."""
_EC_CURVE_FOR_ALG = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_EC_COORDINATE_BYTES = {"P-256": 32, "P-384": 48, "P-521": 66}
_KEY_MEMBERS = {"RSA": ("n", "e"), "EC": ("x", "y"), "OKP": ("x",)}


@dataclass(frozen=True, slots=True, eq=False)
class VerificationKey:
    """One usable public key of a key set.

    Attributes:
        kid: the JWK ``kid`` or None.
        alg: the JWK ``alg`` or None (then any allowed algorithm of the key's type fits).
        key: the cryptography public key object.
    """

    kid: str | None
    alg: str | None
    key: Any

    def fits(self, alg: str) -> bool:
        """Whether this key can verify a JWS signed with ``alg`` (RFC 7518 key type and curve)."""
        if self.alg is not None and self.alg != alg:
            return False
        if alg[:2] in ("RS", "PS"):
            return isinstance(self.key, rsa.RSAPublicKey)
        if alg in _EC_CURVE_FOR_ALG:
            return isinstance(self.key, ec.EllipticCurvePublicKey) and self.key.curve.name == _EC_CURVE_FOR_ALG[alg]
        if alg == "EdDSA":
            return isinstance(self.key, ed25519.Ed25519PublicKey)
        return False


@dataclass(frozen=True, slots=True)
class KeySet:
    """An immutable snapshot of a fetched JWKS.

    Attributes:
        keys: the usable keys, in document order.
        fetched_at: monotonic seconds of the fetch.
        refresh_interval: seconds until the next background refresh (from ``Cache-Control`` or the config).
    """

    keys: tuple[VerificationKey, ...]
    fetched_at: float
    refresh_interval: float = math.inf

    def by_kid(self, kid: str) -> list[VerificationKey]:
        """Keys whose ``kid`` equals ``kid``."""
        return [k for k in self.keys if k.kid == kid]


def _identity(key: VerificationKey) -> tuple[str | None, str | None, bytes]:
    return (key.kid, key.alg, _spki(key.key))


def parse_jwks(document: Any, source: str) -> tuple[VerificationKey, ...]:
    """Load the usable signature keys of a JWKS document.

    Args:
        document: the parsed JSON (``{"keys": [...]}``).
        source: name used in log lines (the key manager).
    Returns:
        The keys that loaded; unusable ones are logged and skipped.
    Raises:
        ValueError: the document is not a JWK Set (not an object, no ``keys`` list).
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set: expected an object with a 'keys' array")
    out: list[VerificationKey] = []
    for index, jwk in enumerate(document["keys"]):
        try:
            out.append(_load_jwk(jwk))
        except Exception as exc:  # any failure to load one key (pyjwt, cryptography, base64) skips only it
            log.warning("jwks %s: key %d skipped: %s: %s", source, index, type(exc).__name__, exc)
    return tuple(out)


def _load_jwk(jwk: Any) -> VerificationKey:
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"use {jwk.get('use')!r} is not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ValueError("key_ops does not include 'verify'")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid is not a string")
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise ValueError("alg is not a string")
    if jwk.get("kty") == "oct":
        raise ValueError("symmetric (oct) keys are never used")
    cert_key = _x5c_key(jwk)
    members = _KEY_MEMBERS.get(jwk.get("kty"), ())
    if cert_key is not None and not any(m in jwk for m in members):
        key = cert_key  # an x5c-only JWK: the key of the first certificate (RFC 7517 section 4.7)
    else:
        key = jwt.PyJWK(_pad_ec_coordinates(jwk)).key
        if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            key = key.public_key()
        if cert_key is not None and _spki(cert_key) != _spki(key):
            raise ValueError("x5c certificate does not hold the JWK's key")
    return VerificationKey(kid=kid, alg=alg, key=check_public_key(key))


def _spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _x5c_key(jwk: dict[str, Any]) -> Any:
    """The public key of the first ``x5c`` certificate (standard base64 DER, RFC 7517 section 4.7), or None."""
    chain = jwk.get("x5c")
    if chain is None:
        return None
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        raise ValueError("x5c is not a non-empty array of strings")
    der = base64.b64decode(chain[0], validate=True)
    return public_key_of_certificate(x509.load_der_x509_certificate(der), "x5c")


def _pad_ec_coordinates(jwk: dict[str, Any]) -> dict[str, Any]:
    """Left-pad EC ``x``/``y`` shorter than the curve size with zero bytes (some IdPs drop leading zeros,
    against RFC 7518 section 6.2.1.2); pyjwt refuses such coordinates."""
    size = _EC_COORDINATE_BYTES.get(jwk.get("crv")) if jwk.get("kty") == "EC" else None
    if size is None:
        return jwk
    out = dict(jwk)
    for member in ("x", "y"):
        value = jwk.get(member)
        if isinstance(value, str):
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            if len(raw) < size:
                out[member] = base64.urlsafe_b64encode(raw.rjust(size, b"\0")).rstrip(b"=").decode("ascii")
    return out


class JwksCache:
    """The key set of one key manager: a JWKS with background refresh and rate-limited forced refetch, or
    static PEM keys.

    Args:
        settings: the key manager's settings (``jwks_uri`` / ``discovery`` / ``certificates``, ``jwks.*``).
        client: an httpx client used for the fetches (TLS settings already applied: :func:`authz.keys.fetch.http_client`).
        clock: monotonic clock in seconds (tests may pass their own).

    Attributes:
        fetch_count: JWKS fetches attempted (discovery fetches not included).
        discovery_count: metadata fetches attempted (``discovery`` only).
        last_error: why the last fetch failed, or None after a success.
        jwks_uri: the JWKS URL in use (configured or discovered), None before discovery succeeded.
    """

    def __init__(
        self,
        settings: KeyManagerSettings,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._client = client
        self._clock = clock
        self._keyset: KeySet | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self._last_forced = -math.inf
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.fetch_count = 0
        self.discovery_count = 0
        self.jwks_uri: str | None = settings.jwks_uri

    @property
    def static(self) -> bool:
        """Whether the keys come from PEM files (``certificates``) rather than a JWKS."""
        return bool(self.settings.certificates)

    @property
    def keyset(self) -> KeySet | None:
        """The current key set, or None before the first successful fetch."""
        return self._keyset

    def usable(self) -> bool:
        """Whether the key set exists and is not older than its refresh interval + ``max_stale`` seconds."""
        ks = self._keyset
        if ks is None:
            return False
        return self._clock() - ks.fetched_at <= ks.refresh_interval + self.settings.jwks.max_stale

    def contains(self, key: VerificationKey) -> bool:
        """Whether ``key`` is still part of the current, usable key set (for cached verifications)."""
        ks = self._keyset
        return ks is not None and key in ks.keys and self.usable()

    async def start(self, initial_timeout: float | None = None) -> None:
        """Fetch once (waiting at most ``initial_timeout`` seconds), then keep refreshing in the background.

        A failed first fetch does not raise: the background loop retries and checks answer 503 until then.
        Static keys are loaded from their files here (a file that no longer loads is logged and skipped).
        """
        if self.static:
            self._load_static()
            return
        first = asyncio.ensure_future(self.refresh())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(first), initial_timeout or self.settings.jwks.timeout + 1)
        self._task = asyncio.create_task(self._refresh_loop(), name=f"jwks-refresh-{self.name}")

    def _load_static(self) -> None:
        keys = []
        for cert in self.settings.certificates:
            try:
                keys.append(VerificationKey(kid=cert.kid, alg=None, key=load_pem_file(cert.path)))
            except ValueError as exc:
                log.error("key manager %s: static key skipped: %s", self.name, exc)
        if keys:
            self._keyset = KeySet(keys=tuple(keys), fetched_at=self._clock(), refresh_interval=math.inf)
            self.last_error = None
        else:
            self.last_error = "no static key could be loaded"
            log.error("key manager %s unusable: %s; checks with its tokens answer 503", self.name, self.last_error)

    async def close(self) -> None:
        """Stop the background refresh."""
        for task in (self._task, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _refresh_loop(self) -> None:
        cfg = self.settings.jwks
        delay = cfg.retry_interval
        while True:
            if self._keyset is not None and self.last_error is None:
                age = self._clock() - self._keyset.fetched_at
                await asyncio.sleep(max(0.0, self._keyset.refresh_interval - age))
            else:
                await asyncio.sleep(delay)
            try:
                ok = await self.refresh()
            except Exception:  # never let the loop die: a dead loop means 503 after max_stale
                log.exception("jwks %s: refresh failed unexpectedly", self.name)
                ok = False
            delay = cfg.retry_interval if ok else min(delay * 2, cfg.refresh_interval)

    def refresh(self) -> asyncio.Future[bool]:
        """Fetch the JWKS now, joining a fetch already in flight (single-flight).

        Returns:
            An awaitable of True when a usable key set was stored, False when the fetch failed.
        """
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._fetch())
        return asyncio.shield(self._inflight)

    async def _fetch(self) -> bool:
        if self.static:
            return self._keyset is not None
        cfg = self.settings.jwks
        try:
            if self.jwks_uri is None:
                await self._discover()
            assert self.jwks_uri is not None
            self.fetch_count += 1
            document, headers = await fetch_json(self._client, self.jwks_uri, cfg.timeout)
            keys = parse_jwks(document, self.name)
            if not keys:
                raise ValueError("the key set has no usable signature key")
        except IssuerMismatch as exc:
            self.last_error = f"IssuerMismatch: {exc}"
            self._keyset = None  # keys found through metadata that names another issuer are not trusted
            log.error("key manager %s unusable: %s; checks with its tokens answer 503 until it matches",
                      self.name, exc)
            return False
        except Exception as exc:
            # Anything (HTTP, timeout, JSON nesting -> RecursionError, a bug in key loading) is a failed
            # fetch: it must neither replace the last good set nor escape into checks or the refresh loop.
            self.last_error = f"{type(exc).__name__}: {exc}"
            kept = "keeping the last good key set" if self._keyset is not None else "no key set yet"
            log.warning("jwks %s: fetch from %s failed (%s); %s", self.name,
                        redact_url(self.jwks_uri) if self.jwks_uri else "(discovery)", self.last_error, kept)
            if self.settings.discovery:
                self.jwks_uri = None  # the next attempt reads the metadata again (the jwks_uri may have moved)
            return False
        self._keyset = KeySet(
            keys=self._keep_unchanged(keys), fetched_at=self._clock(), refresh_interval=self._interval(headers)
        )
        if self.last_error is not None:
            log.info("jwks %s: fetch recovered, %d keys", self.name, len(keys))
        self.last_error = None
        return True

    async def _discover(self) -> None:
        self.discovery_count += 1
        assert self.settings.discovery is not None
        self.jwks_uri = await discover_jwks_uri(
            self._client, self.settings.issuer, self.settings.discovery, self.settings.jwks.timeout
        )
        log.info("key manager %s: discovered jwks_uri %s", self.name, redact_url(self.jwks_uri))

    def _interval(self, headers: httpx.Headers) -> float:
        """The refresh period: ``Cache-Control`` freshness within the configured bounds, else ``refresh_interval``."""
        cfg = self.settings.jwks
        fresh = freshness(headers)
        if fresh is None:
            return cfg.refresh_interval
        return min(max(fresh, cfg.min_refresh_interval), cfg.max_refresh_interval)

    def _keep_unchanged(self, keys: tuple[VerificationKey, ...]) -> tuple[VerificationKey, ...]:
        """Reuse the previous objects of keys that did not change, so verified-token cache entries stay valid."""
        if self._keyset is None:
            return keys
        previous = {_identity(k): k for k in self._keyset.keys}
        return tuple(previous.get(_identity(k), k) for k in keys)

    async def signing_key(self, kid: str | None, alg: str) -> VerificationKey:
        """Choose the key that verifies a token with header ``kid`` and ``alg``.

        A token that names a ``kid`` is matched only against keys with that ``kid``; an unknown ``kid``
        forces one refetch per cooldown. A token without ``kid`` uses the only key that fits ``alg``.

        Args:
            kid: the JWS header ``kid``, or None.
            alg: the JWS header ``alg``, already checked against the allow-list.
        Returns:
            The :class:`VerificationKey`.
        Raises:
            Denial: ``INVALID_CREDENTIALS`` when no key (or more than one, without ``kid``) fits.
            DependencyUnavailable: no usable key set (key manager down at a cold start or past ``max_stale``).
        """
        if not self.usable():
            raise DependencyUnavailable(f"jwks:{self.name}", self.last_error or "key set expired")
        key = self._select(kid, alg)
        if key is None and kid is not None and not self.static:
            now = self._clock()
            if now - self._last_forced >= self.settings.jwks.kid_refetch_cooldown:
                self._last_forced = now
                log.info("jwks %s: unknown kid, refetching", self.name)
                await self._await_refetch(self.refresh())
                key = self._select(kid, alg)
            elif self._inflight is not None and not self._inflight.done():
                await self._await_refetch(asyncio.shield(self._inflight))
                key = self._select(kid, alg)
        if key is None:
            raise Denial(
                Reason.INVALID_CREDENTIALS,
                "The access token was not signed by a key of its issuer",
                log_detail=f"key manager {self.name}: no key for kid={(kid or '')[:64]!r} alg={alg}",
            )
        return key

    async def _await_refetch(self, fetch: asyncio.Future[bool]) -> None:
        """Wait for a forced refetch at most ``jwks.forced_refetch_wait`` seconds; it goes on in the background.

        An unknown ``kid`` is a token problem (401): a slow key manager must not turn it into a timeout (503).
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fetch, self.settings.jwks.forced_refetch_wait)

    def _select(self, kid: str | None, alg: str) -> VerificationKey | None:
        ks = self._keyset
        if ks is None:
            return None
        if kid is not None:
            candidates = [k for k in ks.by_kid(kid) if k.fits(alg)]
        else:
            candidates = [k for k in ks.keys if k.fits(alg)]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1 and kid is not None:
            # Duplicate kids: prefer the key that states the token's alg.
            exact = [k for k in candidates if k.alg == alg]
            return exact[0] if len(exact) == 1 else None
        return None
