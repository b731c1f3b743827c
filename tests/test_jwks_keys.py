"""Key shapes in a JWKS (``authz.keys.jwk.parse_jwks``): ``x5c``-only keys, and EC keys whose coordinates are shorter
or longer (leading zero bytes) than the curve size, on every curve and both coordinates, each also verified end to
end with a real token against a JWKS served on loopback; EC keys that are not a point of their curve are skipped
one by one."""

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


# ------------------------------------------------- EC coordinates shorter or longer than the curve size


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


CURVES = [(ec.SECP256R1(), "P-256", 32, "ES256"), (ec.SECP384R1(), "P-384", 48, "ES384"),
          (ec.SECP521R1(), "P-521", 66, "ES512")]
EC_ALGORITHMS = {"km": {"algorithms": ["RS256", "ES256", "ES384", "ES512"]}}


def _coordinate(value: int, size: int, prefix: bytes = b"") -> str:
    """``value`` as ``size`` big-endian bytes after ``prefix``, base64url without padding."""
    return base64.urlsafe_b64encode(prefix + value.to_bytes(size, "big")).rstrip(b"=").decode()


def _ec_jwk(numbers: ec.EllipticCurvePublicNumbers, crv: str, size: int, kid: str) -> dict[str, Any]:
    return {"kty": "EC", "crv": crv, "kid": kid, "use": "sig", "x": _coordinate(numbers.x, size),
            "y": _coordinate(numbers.y, size)}


@pytest.mark.parametrize("zeros", [1, 2])
@pytest.mark.parametrize("member", ["x", "y"])
@pytest.mark.parametrize(("curve", "crv", "size", "alg"), CURVES, ids=[c[1] for c in CURVES])
async def test_ec_jwk_with_a_coordinate_over_long_by_leading_zeros_is_accepted(
    curve: ec.EllipticCurve, crv: str, size: int, alg: str, member: str, zeros: int,
    idp: KeyManager, make_settings: Callable[..., Settings],
) -> None:
    private = ec.generate_private_key(curve)
    numbers = private.public_key().public_numbers()
    jwk = _ec_jwk(numbers, crv, size, "long")
    jwk[member] = _coordinate(getattr(numbers, member), size, b"\0" * zeros)  # e.g. 33 bytes for P-256
    assert len(base64.urlsafe_b64decode(jwk[member] + "==")) == size + zeros
    # pyjwt alone refuses such a key: the stripping is ours.
    with pytest.raises(jwt.InvalidKeyError, match=f"Coords should be {size} bytes"):
        jwt.PyJWK(jwk)
    (loaded,) = parse_jwks({"keys": [jwk]}, "test")
    assert loaded.key.public_numbers() == numbers
    await _accepts(idp, {"keys": [jwk]}, SigningKey(kid="long", alg=alg, private_key=private),
                   make_settings(**EC_ALGORITHMS))


@pytest.mark.parametrize("member", ["x", "y"])
@pytest.mark.parametrize(("curve", "crv", "size", "alg"), CURVES, ids=[c[1] for c in CURVES])
async def test_ec_jwk_with_a_coordinate_shorter_than_the_curve_is_accepted(
    curve: ec.EllipticCurve, crv: str, size: int, alg: str, member: str,
    idp: KeyManager, make_settings: Callable[..., Settings],
) -> None:
    for _ in range(20_000):  # a coordinate with a leading zero byte: 1 key in 256 (P-521: 1 in 2)
        private = ec.generate_private_key(curve)
        numbers = private.public_key().public_numbers()
        if getattr(numbers, member) < 1 << (8 * (size - 1)):
            break
    jwk = _ec_jwk(numbers, crv, size, "short")
    jwk[member] = _b64(getattr(numbers, member))
    assert len(base64.urlsafe_b64decode(jwk[member] + "==")) < size
    (loaded,) = parse_jwks({"keys": [jwk]}, "test")
    assert loaded.key.public_numbers() == numbers
    await _accepts(idp, {"keys": [jwk]}, SigningKey(kid="short", alg=alg, private_key=private),
                   make_settings(**EC_ALGORITHMS))


def _not_a_point(numbers: ec.EllipticCurvePublicNumbers, member: str, size: int) -> str:
    """The coordinate with its last bit flipped, over-long by one zero byte: strips fine, lands off the curve."""
    return _coordinate(getattr(numbers, member) ^ 1, size, b"\0")


@pytest.mark.parametrize("fault", ["non-zero excess byte", "zero excess but not on the curve", "short and not on the curve",
                                   "three bytes over"])
@pytest.mark.parametrize("member", ["x", "y"])
@pytest.mark.parametrize(("curve", "crv", "size", "alg"), CURVES, ids=[c[1] for c in CURVES])
async def test_ec_jwk_that_is_not_a_point_of_its_curve_skips_that_key_only(
    curve: ec.EllipticCurve, crv: str, size: int, alg: str, member: str, fault: str,
    idp: KeyManager, rsa_key: SigningKey, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture,
) -> None:
    numbers = ec.generate_private_key(curve).public_key().public_numbers()
    bad = _ec_jwk(numbers, crv, size, "bad")
    value = getattr(numbers, member)
    bad[member] = {
        "non-zero excess byte": _coordinate(value, size, b"\x01"),
        "zero excess but not on the curve": _not_a_point(numbers, member, size),
        "short and not on the curve": _b64((value ^ 1) & ((1 << (8 * (size - 1))) - 1)),
        "three bytes over": _coordinate(value, size, b"\0\0\x07"),
    }[fault]
    caplog.set_level(logging.WARNING, logger="authz.jwks")
    jwks = {"keys": [bad, rsa_key.public_jwk()]}
    assert [k.kid for k in parse_jwks(jwks, "test")] == ["k1"]  # never the whole set
    assert "jwks test: key 0 skipped:" in caplog.text
    await _accepts(idp, jwks, rsa_key, make_settings(**EC_ALGORITHMS))
