"""Hand-made JWTs for token and JWKS tests: real signatures over exact bytes, and forged/unsigned forms.

Used where ``KeyManager.issue_token`` cannot express the input (raw JSON such as ``NaN``, ``null`` claims,
headers without ``kid``, algorithm-confusion MACs).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt

from authz.config import Settings
from authz.decide.identity import TokenValidator
from authz.dev.keymanager import KeyManager, SigningKey
from authz.keys.jwks_cache import JwksCache
from authz.keys.static import StaticKeys

_NO_KID = object()


def b64url(data: bytes | str) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims(idp: KeyManager, client_id: str = "app-123", **overrides: Any) -> dict[str, Any]:
    """Valid access-token claims for ``idp``; ``overrides`` replace or add claims (``_drop`` removes names)."""
    now = int(time.time())
    out: dict[str, Any] = {
        "iss": idp.issuer,
        "sub": "user-42",
        "aud": idp.audience,
        "azp": client_id,
        "client_id": client_id,
        "scope": "orders:read",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    drop = overrides.pop("_drop", ())
    out.update(overrides)
    for name in drop:
        out.pop(name, None)
    return out


def sign(
    key: SigningKey,
    payload: dict[str, Any] | str | bytes,
    *,
    kid: Any = _NO_KID,
    alg: str | None = None,
    header: dict[str, Any] | None = None,
) -> str:
    """Sign ``payload`` (a dict, or raw JSON text/bytes used verbatim) with ``key``.

    ``kid`` defaults to the key's kid; pass ``kid=None`` for a header without ``kid``.
    """
    if isinstance(payload, dict):
        body = json.dumps(payload).encode("utf-8")
    elif isinstance(payload, str):
        body = payload.encode("utf-8")
    else:
        body = payload
    hdr: dict[str, Any] = {"typ": "at+jwt"}
    effective_kid = key.kid if kid is _NO_KID else kid
    if effective_kid is not None:
        hdr["kid"] = effective_kid
    hdr.update(header or {})
    return jwt.api_jws.encode(body, key.private_key, algorithm=alg or key.alg, headers=hdr)


def unsigned(header: dict[str, Any] | str, payload: dict[str, Any] | str, signature: str = "") -> str:
    """``b64(header).b64(payload).signature`` with no cryptography (for alg none and garbage)."""
    h = header if isinstance(header, str) else json.dumps(header)
    p = payload if isinstance(payload, str) else json.dumps(payload)
    return f"{b64url(h)}.{b64url(p)}.{signature}"


def hs256_forged(secret: bytes, payload: dict[str, Any], kid: str | None = "k1") -> str:
    """An HS256 token MAC'd with ``secret`` (the algorithm-confusion attack of C09), made by hand."""
    hdr: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        hdr["kid"] = kid
    signing_input = f"{b64url(json.dumps(hdr))}.{b64url(json.dumps(payload))}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


@asynccontextmanager
async def running_validator(settings: Settings):  # type: ignore[no-untyped-def]
    """A :class:`TokenValidator` over real, started key sources: a :class:`JwksCache` fetching from the key
    manager on loopback, or :class:`StaticKeys` for a key manager with ``certificates``.

    Yields:
        ``(validator, sources)`` with ``sources`` keyed by key manager name; closed on exit.
    """
    client = httpx.AsyncClient()
    caches: dict[str, Any] = {
        km.name: StaticKeys(km.name, km.certificates) if km.certificates else JwksCache(km, client)
        for km in settings.key_managers
    }
    try:
        for cache in caches.values():
            await cache.start()
        yield TokenValidator(settings.key_managers, caches, settings.tokens), caches
    finally:
        for cache in caches.values():
            await cache.close()
        await client.aclose()
