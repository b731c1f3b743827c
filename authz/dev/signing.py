"""Signing keys of the demo key manager and of tests: RSA, EC and Ed25519 keys with their public JWKs
(RFC 7517, thumbprint ``kid`` per RFC 7638). Development aid, NOT for production."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

_EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], str]] = {
    "P-256": (ec.SECP256R1, "ES256"),
    "P-384": (ec.SECP384R1, "ES384"),
    "P-521": (ec.SECP521R1, "ES512"),
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of a public JWK dict."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
    members = {name: public_jwk[name] for name in required[public_jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("utf-8")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(canonical)
    return _b64url(digest.finalize())


def _raw_public_jwk(private_key: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return RSAAlgorithm.to_jwk(public, as_dict=True)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(public, as_dict=True)
    if isinstance(public, ed25519.Ed25519PublicKey):
        return OKPAlgorithm.to_jwk(public, as_dict=True)
    raise TypeError(f"unsupported key type {type(private_key).__name__}")


@dataclass(frozen=True)
class SigningKey:
    """A private signing key with its JOSE identity.

    Attributes:
        kid: key ID published in the JWKS and put in the JWT header.
        alg: JWS algorithm (``RS256``, ``ES256``/``ES384``/``ES512`` or ``EdDSA``).
        private_key: a ``cryptography`` private key object (RSA, EC or Ed25519).
    """

    kid: str
    alg: str
    private_key: Any

    @classmethod
    def _with_kid(cls, private_key: Any, alg: str, kid: str | None) -> SigningKey:
        return cls(kid=kid or _thumbprint(_raw_public_jwk(private_key)), alg=alg, private_key=private_key)

    @classmethod
    def generate_rsa(cls, kid: str | None = None, key_size: int = 2048) -> SigningKey:
        """Generate an RS256 key (``key_size`` bits, default 2048).

        ``kid`` defaults to the RFC 7638 thumbprint of the public key.
        """
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        return cls._with_kid(key, "RS256", kid)

    @classmethod
    def generate_ec(cls, curve: str = "P-256", kid: str | None = None) -> SigningKey:
        """Generate an EC key on ``curve`` (``P-256`` -> ES256, ``P-384`` -> ES384, ``P-521`` -> ES512).

        Raises:
            ValueError: unknown curve name.
        """
        if curve not in _EC_CURVES:
            raise ValueError(f"unsupported curve {curve!r}; expected one of {sorted(_EC_CURVES)}")
        curve_cls, alg = _EC_CURVES[curve]
        return cls._with_kid(ec.generate_private_key(curve_cls()), alg, kid)

    @classmethod
    def generate_ed25519(cls, kid: str | None = None) -> SigningKey:
        """Generate an Ed25519 key (JWS alg ``EdDSA``)."""
        return cls._with_kid(ed25519.Ed25519PrivateKey.generate(), "EdDSA", kid)

    @classmethod
    def from_pem(cls, pem: bytes, kid: str | None = None) -> SigningKey:
        """Load an unencrypted PEM (PKCS#8 or traditional) private key; the alg follows the key type.

        Raises:
            ValueError: the PEM is not a supported private key.
        """
        key = serialization.load_pem_private_key(pem, password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            alg = "RS256"
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            by_name = {curve_cls.name: a for curve_cls, a in _EC_CURVES.values()}
            if key.curve.name not in by_name:
                raise ValueError(f"unsupported EC curve {key.curve.name}")
            alg = by_name[key.curve.name]
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            alg = "EdDSA"
        else:
            raise ValueError(f"unsupported private key type {type(key).__name__}")
        return cls._with_kid(key, alg, kid)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM bytes (for the dev ``--key-file`` only)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK as a dict, with ``kid``, ``alg`` and ``use: sig`` set."""
        jwk = dict(_raw_public_jwk(self.private_key))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk
