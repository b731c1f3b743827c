"""Static verification keys from PEM files (X.509 certificates or SubjectPublicKeyInfo public keys).

The alternative to a JWKS endpoint that WSO2 API Manager calls certificate type PEM: the key manager's
``certificates`` list names the files, each with an optional ``kid``. The files are read when the
configuration is validated (``authz check-config`` reports an unreadable file) and again when authz starts.

The key checks here are also applied to JWKS keys (:mod:`authz.keys.jwks_cache`): RSA keys of at least 2048 bits with an
odd public exponent of at least 3, EC keys on P-256/P-384/P-521, Ed25519 keys.
"""

from __future__ import annotations

import datetime
import logging
import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

log = logging.getLogger("authz.static_keys")

MIN_RSA_BITS = 2048
MAX_PEM_BYTES = 256 * 1024
_EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def check_public_key(key: Any) -> Any:
    """Refuse keys authz never verifies with.

    Args:
        key: a ``cryptography`` public key object.
    Returns:
        ``key`` unchanged.
    Raises:
        ValueError: weak RSA (below 2048 bits, even or < 3 exponent), EC on another curve, or another key type.
    """
    if isinstance(key, rsa.RSAPublicKey):
        e = key.public_numbers().e
        if e < 3 or e % 2 == 0:
            raise ValueError(f"RSA public exponent {e} is invalid")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is below {MIN_RSA_BITS}")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_CURVES:
            raise ValueError(f"EC curve {key.curve.name} is not P-256, P-384 or P-521")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key


def public_key_of_certificate(cert: x509.Certificate, source: str) -> Any:
    """The checked public key of an X.509 certificate; an expired or not yet valid certificate is logged only
    (JWS verification does not depend on certificate validity, as in WSO2 and most JWT libraries)."""
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        log.warning("%s: certificate %s is outside its validity period (%s - %s); its key is still used",
                    source, cert.subject.rfc4514_string()[:200], cert.not_valid_before_utc, cert.not_valid_after_utc)
    return check_public_key(cert.public_key())


def load_pem_public_key(data: bytes, source: str = "PEM") -> Any:
    """Load the first PEM block of ``data``: a ``CERTIFICATE``, ``PUBLIC KEY`` or ``RSA PUBLIC KEY``.

    Args:
        data: PEM text.
        source: name for log lines and errors (the file path).
    Returns:
        The checked ``cryptography`` public key (see :func:`check_public_key`).
    Raises:
        ValueError: no PEM block, a private key, an unsupported block or a key that fails the checks.
    """
    match = _PEM_LABEL.search(data)
    if match is None:
        raise ValueError("no PEM block (expected -----BEGIN CERTIFICATE----- or -----BEGIN PUBLIC KEY-----)")
    label = match.group(1).decode("ascii")
    block = data[match.start():]
    if label == "CERTIFICATE":
        return public_key_of_certificate(x509.load_pem_x509_certificate(block), source)
    if label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
        return check_public_key(serialization.load_pem_public_key(block))
    if "PRIVATE KEY" in label:
        raise ValueError("holds a private key: give the certificate or the public key only")
    raise ValueError(f"unsupported PEM block {label!r} (expected CERTIFICATE or PUBLIC KEY)")


def load_pem_file(path: str | Path) -> Any:
    """Read ``path`` and load its key with :func:`load_pem_public_key`.

    Raises:
        ValueError: ``cannot read <path>: ...`` or ``<path>: <reason>``.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PEM_BYTES:
        raise ValueError(f"{path}: larger than {MAX_PEM_BYTES} bytes")
    try:
        return load_pem_public_key(data, str(path))
    except Exception as exc:  # cryptography raises ValueError, UnsupportedAlgorithm, TypeError on bad input
        raise ValueError(f"{path}: {exc}") from None


def load_private_key_file(path: str, algorithm: str) -> Any:
    """Read a PEM private key (a backend JWT signing key) and check that it fits ``algorithm``.

    Args:
        path: PEM file (unencrypted PKCS#8 or traditional OpenSSL format).
        algorithm: ``RS256`` (RSA, at least 2048 bits) or ``ES256`` (EC on P-256).
    Returns:
        The ``cryptography`` private key object.
    Raises:
        ValueError: unreadable file, not a PEM private key, or a key of the wrong type or size; the message
            never echoes the file's content (it is key material).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path!r} is not an unencrypted PEM private key ({type(exc).__name__})") from None
    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
            raise ValueError(f"{path!r}: RS256 needs an RSA private key of at least {MIN_RSA_BITS} bits")
    elif not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path!r}: ES256 needs an EC private key on the P-256 curve")
    return key
