"""Key shapes in a JWKS (``authz.keys.jwks_cache.parse_jwks``): ``x5c``-only keys and EC keys with short coordinates, each
also verified end to end with a real token against a JWKS served on loopback."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authz.config import Settings
from authz.dev.keymanager import KeyManager, SigningKey
from authz.keys.jwks_cache import parse_jwks
from tests.support.pki import certificate
from tests.support.tokencraft import claims, running_validator, sign


def _x5c(private_key: Any) -> list[str]:
    der = certificate(private_key, "idp signing").public_bytes(serialization.Encoding.DER)
    return [base64.b64encode(der).decode("ascii")]


def _spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


async def _accepts(idp: KeyManager, jwks: dict[str, Any], key: SigningKey, settings: Settings, **sign_kw: Any) -> None:
    idp.jwks_body = json.dumps(jwks).encode()
    async with running_validator(settings) as (v, _):
        assert (await v.validate(sign(key, claims(idp), **sign_kw))).client_id == "app-123"


# ------------------------------------------------------------------------------------------- x5c


@pytest.mark.parametrize("kind", ["RSA", "EC"])
async def test_x5c_only_jwk_uses_the_key_of_the_first_certificate(
    kind: str, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    key = SigningKey.generate_rsa(kid="x1") if kind == "RSA" else SigningKey.generate_ec("P-256", kid="x1")
    jwk = {"kty": kind, "kid": "x1", "use": "sig", "x5c": _x5c(key.private_key)}
    (loaded,) = parse_jwks({"keys": [jwk]}, "test")
    assert _spki(loaded.key) == _spki(key.private_key.public_key())
    await _accepts(idp, {"keys": [jwk]}, key, make_settings())


async def test_jwk_with_matching_key_members_and_x5c_is_accepted(
    idp: KeyManager, rsa_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    jwk = {**rsa_key.public_jwk(), "x5c": _x5c(rsa_key.private_key)}
    await _accepts(idp, {"keys": [jwk]}, rsa_key, make_settings())


def test_jwk_whose_x5c_holds_another_key_is_skipped(rsa_key: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    other = SigningKey.generate_rsa(kid="other")
    bad = {**rsa_key.public_jwk(), "x5c": _x5c(other.private_key)}
    good = other.public_jwk()
    caplog.set_level(logging.WARNING, logger="authz.jwks")
    keys = parse_jwks({"keys": [bad, good]}, "test")
    assert [k.kid for k in keys] == ["other"]
    assert "jwks test: key 0 skipped: ValueError: x5c certificate does not hold the JWK's key" in caplog.text


@pytest.mark.parametrize("x5c", [[], "MIIB", [42], ["not base64!"], ["AAAA"]], ids=repr)
def test_unusable_x5c_skips_only_that_key(x5c: Any, rsa_key: SigningKey) -> None:
    keys = parse_jwks({"keys": [{"kty": "RSA", "kid": "bad", "x5c": x5c}, rsa_key.public_jwk()]}, "test")
    assert [k.kid for k in keys] == ["k1"]


# ------------------------------------------------------------------------------ short EC coordinates


def _ec_key_with_short_x(curve: ec.EllipticCurve, size: int) -> SigningKey:
    """An EC key whose x coordinate has a leading zero byte (1 in 256 keys)."""
    for _ in range(20_000):
        private = ec.generate_private_key(curve)
        if private.public_key().public_numbers().x < 1 << (8 * (size - 1)):
            return SigningKey(kid="short", alg={32: "ES256", 48: "ES384", 66: "ES512"}[size], private_key=private)
    raise AssertionError("no key with a short x coordinate found")


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


@pytest.mark.parametrize(("curve", "crv", "size"), [(ec.SECP256R1(), "P-256", 32), (ec.SECP384R1(), "P-384", 48)])
async def test_ec_jwk_with_coordinates_shorter_than_the_curve_is_left_padded(
    curve: ec.EllipticCurve, crv: str, size: int, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    key = _ec_key_with_short_x(curve, size)
    numbers = key.private_key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": crv, "kid": "short", "use": "sig", "x": _b64(numbers.x), "y": _b64(numbers.y)}
    assert len(base64.urlsafe_b64decode(jwk["x"] + "==")) < size
    # pyjwt alone refuses such a key: the padding is ours.
    with pytest.raises(jwt.InvalidKeyError, match=f"Coords should be {size} bytes"):
        jwt.PyJWK(jwk)
    (loaded,) = parse_jwks({"keys": [jwk]}, "test")
    assert loaded.key.public_numbers() == numbers
    settings = make_settings(km={"algorithms": ["ES256", "ES384"]})
    await _accepts(idp, {"keys": [jwk]}, key, settings)


def test_ec_jwk_with_coordinates_longer_than_the_curve_is_skipped() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    long_x = base64.urlsafe_b64encode(b"\0" + key.x.to_bytes(32, "big")).rstrip(b"=").decode()
    jwk = {"kty": "EC", "crv": "P-256", "kid": "long", "x": long_x, "y": _b64(key.y)}
    assert parse_jwks({"keys": [jwk]}, "test") == ()
