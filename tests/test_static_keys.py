"""Static keys from PEM files (``certificates``, ``authz.keys.pem``): tokens verified with no JWKS at all,
and every unusable file refused by the config loader with its YAML path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authz.config import ConfigError, Settings
from authz.dev.keymanager import KeyManager, SigningKey
from authz.errors import Denial, Reason
from tests.support.pki import cert_pem, certificate, public_pem, rsa_private
from tests.support.tokencraft import claims, running_validator, sign

JWKS = "/oauth2/jwks"


def _static(paths: list[Any]) -> dict[str, Any]:
    return {"km": {"jwks_uri": None, "certificates": paths}}


async def test_tokens_verify_with_a_pem_certificate_and_a_pem_public_key_without_any_fetch(
    tmp_path: Path, idp: KeyManager, rsa_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    cert_file = tmp_path / "idp.crt"
    cert_file.write_bytes(cert_pem(certificate(rsa_key.private_key, "idp signing")))
    ec_key = SigningKey.generate_ec("P-256", kid="e1")
    key_file = tmp_path / "ec.pub.pem"
    key_file.write_bytes(public_pem(ec_key.private_key))
    settings = make_settings(**_static([{"path": str(cert_file), "kid": "k1"}, str(key_file)]))
    assert [(c.path, c.kid) for c in settings.key_managers[0].certificates] == [
        (str(cert_file), "k1"), (str(key_file), None)
    ]
    async with running_validator(settings) as (v, caches):
        assert (await v.validate(sign(rsa_key, claims(idp)))).client_id == "app-123"
        # A file without kid: chosen by the token's alg when the token names no kid.
        assert (await v.validate(sign(ec_key, claims(idp), kid=None))).client_id == "app-123"
        assert type(caches["test-km"]).__name__ == "StaticKeys"  # no JWKS cache: nothing is ever fetched
    assert idp.requests[JWKS] == 0


async def test_unknown_kid_with_static_keys_is_401_and_fetches_nothing(
    tmp_path: Path, idp: KeyManager, rsa_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    cert_file = tmp_path / "idp.crt"
    cert_file.write_bytes(cert_pem(certificate(rsa_key.private_key)))
    async with running_validator(make_settings(**_static([{"path": str(cert_file), "kid": "k1"}]))) as (v, _):
        with pytest.raises(Denial) as info:
            await v.validate(sign(rsa_key, claims(idp), kid="k9"))
        assert info.value.reason is Reason.INVALID_CREDENTIALS
        assert info.value.description == "The access token was not signed by a key of its issuer"
        other = SigningKey.generate_rsa(kid="k1")
        with pytest.raises(Denial) as info:
            await v.validate(sign(other, claims(idp)))
        assert info.value.description == "The access token's signature is not valid"
    assert idp.requests[JWKS] == 0


async def test_expired_certificate_key_is_still_used_and_logged(
    tmp_path: Path, idp: KeyManager, rsa_key: SigningKey, make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cert_file = tmp_path / "old.crt"
    cert_file.write_bytes(cert_pem(certificate(rsa_key.private_key, "old signing", days=-1, not_before_days=-10)))
    caplog.set_level(logging.WARNING, logger="authz.static_keys")
    async with running_validator(make_settings(**_static([{"path": str(cert_file), "kid": "k1"}]))) as (v, _):
        assert (await v.validate(sign(rsa_key, claims(idp)))).client_id == "app-123"
    assert any("outside its validity period" in r.getMessage() for r in caplog.records)


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("make_file", "reason"),
    [
        (lambda d: str(d / "missing.pem"), "cannot read {path}: No such file or directory"),
        (lambda d: _write(d, "garbage.pem", b"not a pem"),
         "{path}: no PEM block (expected -----BEGIN CERTIFICATE----- or -----BEGIN PUBLIC KEY-----)"),
        (lambda d: _write(d, "private.pem", ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
         "{path}: holds a private key: give the certificate or the public key only"),
        (lambda d: _write(d, "weak.pem", public_pem(rsa_private(1024))), "{path}: RSA key of 1024 bits is below 2048"),
        (lambda d: _write(d, "k256.pem", public_pem(ec.generate_private_key(ec.SECP256K1()))),
         "{path}: EC curve secp256k1 is not P-256, P-384 or P-521"),
        (lambda d: _write(d, "csr.pem", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
         "{path}: unsupported PEM block 'CERTIFICATE REQUEST' (expected CERTIFICATE or PUBLIC KEY)"),
    ],
    ids=["missing", "garbage", "private-key", "weak-rsa", "secp256k1", "csr"],
)
def test_unusable_pem_file_is_a_config_error_with_its_path(
    make_file: Callable[[Path], str], reason: str, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    path = make_file(tmp_path)
    with pytest.raises(ConfigError) as info:
        make_settings(**_static([{"path": path, "kid": "k1"}]))
    assert info.value.errors == [f"key_managers[0].certificates[0]: {reason.format(path=path)}"]


def test_certificates_and_jwks_uri_together_are_refused(
    tmp_path: Path, rsa_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    path = _write(tmp_path, "idp.crt", cert_pem(certificate(rsa_key.private_key)))
    with pytest.raises(ConfigError) as info:
        make_settings(km={"certificates": [path]})
    assert info.value.errors == [
        "key_managers[0]: set exactly one of jwks_uri, discovery, certificates (got jwks_uri, certificates)"
    ]
