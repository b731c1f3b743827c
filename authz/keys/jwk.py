"""JSON Web Keys (RFC 7517, RFC 7518): loading the usable signature keys of a JWK Set, choosing the key for a
token, and the interface every key source offers (:class:`KeySource`).

Pure: no network, no clock. The key sources are :class:`authz.keys.jwks_cache.JwksCache` (a remote JWKS) and
:class:`authz.keys.static.StaticKeys` (PEM files).
"""

from __future__ import annotations

import base64
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authz.keys.pem import check_public_key, public_key_of_certificate
from authz.model import Step

log = logging.getLogger("authz.jwks")

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


def key_identity(key: VerificationKey) -> tuple[str | None, str | None, bytes]:
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


def select_key(keyset: KeySet | None, kid: str | None, alg: str) -> VerificationKey | None:
    """The one key of ``keyset`` that verifies a token with header ``kid`` and ``alg``, or None.

    A token that names a ``kid`` is matched only against keys with that ``kid`` (duplicates: the one that states
    ``alg``); a token without ``kid`` uses the only key that fits ``alg`` (field case C04).

    Args:
        keyset: the current key set, or None (no key set yet).
        kid: the JWS header ``kid``, or None.
        alg: the JWS header ``alg``, already checked against the allow-list.
    Returns:
        The :class:`VerificationKey`, or None when none or several fit.
    """
    if keyset is None:
        return None
    if kid is not None:
        candidates = [k for k in keyset.by_kid(kid) if k.fits(alg)]
    else:
        candidates = [k for k in keyset.keys if k.fits(alg)]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1 and kid is not None:
        exact = [k for k in candidates if k.alg == alg]
        return exact[0] if len(exact) == 1 else None
    return None


class KeySource(Protocol):
    """Where a key manager's verification keys come from.

    Attributes:
        name: the key manager's name.
        last_error: why the keys cannot be had (last failed fetch, no loadable file), or None.
    """

    name: str
    last_error: str | None

    @property
    def keyset(self) -> KeySet | None:
        """The current key set (for metrics and ``authz explain``), or None when there is none."""
        ...

    def usable(self) -> bool:
        """Whether the keys may decide now (a key set exists and is not past its staleness bound)."""
        ...

    def contains(self, key: VerificationKey) -> bool:
        """Whether ``key`` is still part of the current, usable key set (for cached verifications)."""
        ...

    async def signing_key(self, kid: str | None, alg: str, trace: list[Step] | None = None) -> VerificationKey:
        """The key that verifies a token with these header values; with ``trace``, a ``key``
        :class:`authz.model.Step` says where it came from (``authz explain``).

        Raises:
            Denial: ``INVALID_CREDENTIALS`` when no key (or more than one, without ``kid``) fits.
            DependencyUnavailable: no usable key set (503).
        """
        ...

    async def start(self) -> None:
        """Load or fetch the keys (and start refreshing them, where they refresh)."""
        ...

    async def close(self) -> None:
        """Stop background work."""
        ...
