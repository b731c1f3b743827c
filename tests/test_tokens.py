"""Identity phase: ``authz.decide.identity.TokenValidator`` with a real ``JwksCache`` against a real key manager on loopback.

Field cases C04, C09, C10, C11, C12, C14, C15, C16, C17, plus size limits, hostile input and the token cache.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from authz.config import ConfigError, Settings
from authz.decide.identity import TokenValidator
from authz.dev.keymanager import KeyManager, SigningKey
from authz.dev.stack import tamper_signature
from authz.errors import Denial, Reason
from authz.model import Identity
from tests.support.tokencraft import claims, hs256_forged, running_validator, sign, unsigned

JWKS = "/oauth2/jwks"


@pytest.fixture
async def validator(make_settings: Callable[..., Settings]) -> AsyncIterator[TokenValidator]:
    async with running_validator(make_settings()) as (v, _caches):
        yield v


async def _deny(validator: TokenValidator, token: str) -> Denial:
    with pytest.raises(Denial) as info:
        await validator.validate(token)
    return info.value


async def _invalid(validator: TokenValidator, token: str, *fragments: str) -> Denial:
    denial = await _deny(validator, token)
    assert denial.reason is Reason.INVALID_CREDENTIALS, denial
    assert denial.reason.info.http_status == 401
    assert denial.reason.info.code == 900901
    for fragment in fragments:
        assert fragment in denial.description, denial.description
    return denial


# --------------------------------------------------------------------------------------- valid tokens


async def test_valid_rs256_token_gives_identity(validator: TokenValidator, idp: KeyManager) -> None:
    token = idp.issue_token("app-123", "user-42", "orders:read orders:write")
    identity = await validator.validate(token)
    assert identity.key_manager == "test-km"
    assert identity.issuer == idp.issuer
    assert identity.subject == "user-42"
    assert identity.client_id == "app-123"
    assert identity.scopes == frozenset({"orders:read", "orders:write"})
    assert identity.token_id is not None and len(identity.token_id) == 32
    assert identity.expires_at == pytest.approx(time.time() + 3600, abs=5)


@pytest.mark.parametrize("kind", ["PS256", "ES256", "EdDSA"])
async def test_valid_ps256_es256_eddsa_tokens_are_accepted(
    kind: str, idp: KeyManager, rsa_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    if kind == "PS256":
        key = SigningKey(kid="ps1", alg="PS256", private_key=rsa_key.private_key)
    elif kind == "ES256":
        key = SigningKey.generate_ec("P-256", kid="e1")
    else:
        key = SigningKey.generate_ed25519(kid="ed1")
    idp.published_keys = [rsa_key, key]
    async with running_validator(make_settings()) as (v, _):
        identity = await v.validate(idp.issue_token("app-ec", "u", "orders:read", key=key))
        assert identity.client_id == "app-ec"
        assert identity.scopes == frozenset({"orders:read"})


async def test_algorithm_outside_the_key_managers_allow_list_is_rejected(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    ec_key = SigningKey.generate_ec("P-256", kid="e1")
    idp.published_keys = [idp.signing_key, ec_key]
    async with running_validator(make_settings(km={"algorithms": ["RS256"]})) as (v, _):
        await _invalid(v, idp.issue_token("app-123", "u", "", key=ec_key), "signing algorithm is not accepted")


async def test_rs256_token_signed_by_the_key_published_as_ps256_is_rejected(
    idp: KeyManager, rsa_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    # The key's JWK 'alg' pins it to PS256: an RS256 token naming it finds no fitting key.
    ps_key = SigningKey(kid="ps1", alg="PS256", private_key=rsa_key.private_key)
    idp.published_keys = [ps_key]
    async with running_validator(make_settings()) as (v, _):
        await _invalid(v, sign(ps_key, claims(idp), alg="RS256"), "not signed by a key of its issuer")


async def test_expired_token_is_denied_with_900903(validator: TokenValidator, idp: KeyManager) -> None:
    token = idp.issue_token("app-123", "u", "orders:read", lifetime=-3600)
    denial = await _deny(validator, token)
    assert denial.reason is Reason.EXPIRED_TOKEN
    assert denial.reason.info.code == 900903
    assert denial.reason.info.http_status == 401
    assert denial.description == "The access token expired"


async def test_bad_signature_is_rejected(validator: TokenValidator, idp: KeyManager) -> None:
    token = tamper_signature(idp.issue_token("app-123", "u", "orders:read"))
    await _invalid(validator, token, "signature is not valid")


async def test_token_signed_by_an_unpublished_key_with_the_published_kid_is_rejected(
    validator: TokenValidator, idp: KeyManager
) -> None:
    attacker = SigningKey.generate_rsa(kid="k1")
    await _invalid(validator, sign(attacker, claims(idp)), "signature is not valid")


async def test_unsupported_crit_header_is_rejected(validator: TokenValidator, idp: KeyManager) -> None:
    for crit in (["exp"], ["b64"], [], "exp", [1]):
        token = sign(idp.signing_key, claims(idp), header={"crit": crit, "exp": 1, "b64": True})
        denial = await _invalid(validator, token)
        assert denial.description in (
            "The access token uses critical header parameters that are not supported",
            "The access token is not a well-formed JWT",  # pyjwt refuses some crit forms itself
        )


async def test_non_string_kid_is_rejected_without_fetch(validator: TokenValidator, idp: KeyManager) -> None:
    before = idp.requests[JWKS]
    for kid in (["k1"], 1, {"k": "k1"}, True):
        denial = await _invalid(validator, unsigned({"alg": "RS256", "kid": kid}, claims(idp), signature="c2ln"))
        assert denial.description in (
            "The access token's 'kid' header is not a string",
            "The access token is not a well-formed JWT",  # pyjwt may refuse it while parsing
        )
    assert idp.requests[JWKS] == before


# ------------------------------------------------------------------------------------ C04 no kid


def _jwk_without_kid(key: SigningKey) -> dict[str, Any]:
    jwk = key.public_jwk()
    del jwk["kid"]
    return jwk


async def test_c04a_no_kid_token_with_single_no_kid_key_is_accepted(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.jwks_body = json.dumps({"keys": [_jwk_without_kid(idp.signing_key)]}).encode()
    async with running_validator(make_settings()) as (v, _):
        identity = await v.validate(sign(idp.signing_key, claims(idp), kid=None))
        assert identity.client_id == "app-123"


async def test_c04b_no_kid_token_with_single_kid_key_is_accepted(
    validator: TokenValidator, idp: KeyManager
) -> None:
    identity = await validator.validate(sign(idp.signing_key, claims(idp), kid=None))
    assert identity.subject == "user-42"


async def test_c04b_no_kid_token_picks_the_only_key_of_its_type(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    ec_key = SigningKey.generate_ec("P-256", kid="e1")
    idp.published_keys = [idp.signing_key, ec_key]
    async with running_validator(make_settings()) as (v, _):
        assert (await v.validate(sign(ec_key, claims(idp), kid=None))).client_id == "app-123"
        assert (await v.validate(sign(idp.signing_key, claims(idp), kid=None))).client_id == "app-123"


async def test_c04c_no_kid_token_with_two_candidate_keys_is_ambiguous_and_never_refetches(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    k2 = SigningKey.generate_rsa(kid="k2")
    idp.published_keys = [idp.signing_key, k2]
    async with running_validator(make_settings()) as (v, _):
        before = idp.requests[JWKS]
        for _ in range(20):
            await _invalid(v, sign(k2, claims(idp), kid=None), "not signed by a key of its issuer")
        assert idp.requests[JWKS] == before


async def test_c04d_token_naming_a_kid_never_matches_a_key_without_kid(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    idp.jwks_body = json.dumps({"keys": [_jwk_without_kid(idp.signing_key)]}).encode()
    async with running_validator(make_settings()) as (v, _):
        await _invalid(v, sign(idp.signing_key, claims(idp), kid="k9"), "not signed by a key of its issuer")


# ------------------------------------------------------------------------------ C09 alg confusion


def _public_key_encodings(key: SigningKey) -> dict[str, bytes]:
    public = key.private_key.public_key()
    ser = serialization
    n = public.public_numbers().n
    return {
        "pem-spki": public.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo),
        "pem-pkcs1": public.public_bytes(ser.Encoding.PEM, ser.PublicFormat.PKCS1),
        "der-spki": public.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo),
        "der-pkcs1": public.public_bytes(ser.Encoding.DER, ser.PublicFormat.PKCS1),
        "jwk-json": json.dumps(key.public_jwk()).encode(),
        "openssh": public.public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH),
        "raw-n": n.to_bytes((n.bit_length() + 7) // 8, "big"),
    }


async def test_c09_hs256_macd_with_the_rsa_public_key_is_rejected_in_every_encoding(
    validator: TokenValidator, idp: KeyManager
) -> None:
    for name, secret in _public_key_encodings(idp.signing_key).items():
        for kid in ("k1", None):
            denial = await _invalid(
                validator, hs256_forged(secret, claims(idp), kid=kid), "signing algorithm is not accepted"
            )
            assert denial.reason.info.oauth_error == "invalid_token", name


async def test_c09_hmac_algorithms_cannot_be_configured() -> None:
    from authz.config import KeyManagerSettings

    for alg in ("HS256", "HS384", "HS512", "none"):
        with pytest.raises(ValueError, match="asymmetric algorithms only"):
            KeyManagerSettings(name="x", issuer="https://x", jwks_uri="https://x/jwks", algorithms=[alg])


async def test_c09_hmac_algorithm_rejected_by_config_loader(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(km={"algorithms": ["RS256", "HS256"]})
    assert "key_managers[0].algorithms" in str(info.value)


async def test_c09_jwk_jku_x5u_headers_are_ignored_and_never_fetched(
    validator: TokenValidator, idp: KeyManager
) -> None:
    attacker = SigningKey.generate_rsa(kid="k1")
    header = {
        "jwk": attacker.public_jwk(),
        "jku": f"{idp.url}/attacker/jwks",
        "x5u": f"{idp.url}/attacker/x5u",
    }
    before = dict(idp.requests)
    await _invalid(validator, sign(attacker, claims(idp), header=header), "signature is not valid")
    await _invalid(validator, sign(attacker, claims(idp), kid=None, header=header), "signature is not valid")
    assert idp.requests["/attacker/jwks"] == 0
    assert idp.requests["/attacker/x5u"] == 0
    assert dict(idp.requests) == before


# ----------------------------------------------------------------------------------- C10 alg none


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none"},
        {"alg": "None"},
        {"alg": "NONE"},
        {"alg": "nOnE"},
        {"alg": ""},
        {},
        {"alg": ["RS256"]},
        {"alg": None},
        {"alg": 256},
        {"alg": {"RS256": True}},
        {"alg": "none", "kid": "k1"},
        {"alg": "RS256 "},
        {"alg": "rs256"},
    ],
    ids=repr,
)
async def test_c10_alg_none_and_non_string_alg_are_rejected(
    header: dict[str, Any], validator: TokenValidator, idp: KeyManager
) -> None:
    await _invalid(validator, unsigned(header, claims(idp)), "signing algorithm is not accepted")
    await _invalid(validator, unsigned(header, claims(idp), signature="c2ln"), "signing algorithm is not accepted")


@pytest.mark.parametrize("suffix", ["", "."], ids=["h.p", "h.p."])
async def test_c10_two_segment_forms_are_rejected(suffix: str, validator: TokenValidator, idp: KeyManager) -> None:
    from tests.support.tokencraft import b64url

    token = f"{b64url(json.dumps({'alg': 'none'}))}.{b64url(json.dumps(claims(idp)))}{suffix}"
    denial = await _invalid(validator, token)
    assert denial.description in (
        "The access token is not a well-formed JWT: a JWS has three segments separated by '.', this has 2",
        "The access token's signing algorithm is not accepted",
    )
    token = f"{b64url(json.dumps({'alg': 'RS256', 'kid': 'k1'}))}.{b64url(json.dumps(claims(idp)))}{suffix}"
    denial = await _invalid(validator, token)
    assert denial.description in (
        "The access token is not a well-formed JWT: a JWS has three segments separated by '.', this has 2",
        "The access token's signature is not valid",
    )


async def test_c10_rs256_header_with_empty_signature_is_rejected(validator: TokenValidator, idp: KeyManager) -> None:
    await _invalid(validator, unsigned({"alg": "RS256", "kid": "k1"}, claims(idp)), "signature is not valid")


# ------------------------------------------------------------------------------------- C11 aud


@pytest.mark.parametrize("aud", ["authz-test", ["api://other", "authz-test"], ["authz-test"]], ids=repr)
async def test_c11_audience_string_or_list_any_match_is_accepted(
    aud: Any, validator: TokenValidator, idp: KeyManager
) -> None:
    identity = await validator.validate(sign(idp.signing_key, claims(idp, aud=aud)))
    assert identity.claims["aud"] == aud


@pytest.mark.parametrize(
    "aud",
    [[], ["api://other"], 123, [123], {"x": 1}, "AUTHZ-TEST", "authz-test ", "", None, True, ["authz-test", 123]],
    ids=repr,
)
async def test_c11_audience_mismatch_or_wrong_type_is_rejected(
    aud: Any, validator: TokenValidator, idp: KeyManager
) -> None:
    await _invalid(validator, sign(idp.signing_key, claims(idp, aud=aud)), "audience ('aud')")


async def test_c11_absent_audience_is_rejected_with_audience_description(
    validator: TokenValidator, idp: KeyManager
) -> None:
    await _invalid(validator, sign(idp.signing_key, claims(idp, _drop=["aud"])), "audience ('aud')")


async def test_c11_configured_audience_list_is_any_match(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(km={"audiences": ["authz-test", "authz-test-v2"]})) as (v, _):
        for aud in ("authz-test-v2", ["x", "authz-test-v2"], "authz-test"):
            assert (await v.validate(sign(idp.signing_key, claims(idp, aud=aud)))).client_id == "app-123"
        for aud in ("authz-test-v3", ["x"], []):
            await _invalid(v, sign(idp.signing_key, claims(idp, aud=aud)), "audience ('aud')")


# ------------------------------------------------------------------------------------- C12 iss


async def test_c12_issuer_with_one_trailing_slash_is_accepted(validator: TokenValidator, idp: KeyManager) -> None:
    for iss in (idp.issuer, idp.issuer + "/"):
        identity = await validator.validate(sign(idp.signing_key, claims(idp, iss=iss)))
        assert identity.key_manager == "test-km"
        assert identity.issuer == iss


async def test_c12_configured_issuer_with_trailing_slash_accepts_both_forms(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(km={"issuer": idp.issuer + "/"})) as (v, _):
        for iss in (idp.issuer, idp.issuer + "/"):
            assert (await v.validate(sign(idp.signing_key, claims(idp, iss=iss)))).issuer == iss
        await _invalid(v, sign(idp.signing_key, claims(idp, iss=idp.issuer + "//")), "issuer is not accepted")


async def test_c12_unknown_issuers_are_rejected_without_any_outbound_request(
    validator: TokenValidator, idp: KeyManager
) -> None:
    variants = [
        idp.issuer + "//",
        idp.issuer.upper(),
        idp.issuer + "2",
        idp.issuer + "/realms/demo2",
        idp.issuer.replace("127.0.0.1", "127.0.0.1.evil"),
        " " + idp.issuer,
        "",
    ]
    before = dict(idp.requests)
    for iss in variants:
        # An unknown kid too: were the issuer accepted, this would force a JWKS refetch.
        await _invalid(validator, sign(idp.signing_key, claims(idp, iss=iss), kid="zz-unknown"), "issuer is not accepted")
    assert dict(idp.requests) == before


@pytest.mark.parametrize("iss", [["x"], {"a": 1}, 42, None, True, 1.5], ids=repr)
async def test_c12_non_string_or_absent_issuer_is_rejected_without_fetch(
    iss: Any, validator: TokenValidator, idp: KeyManager
) -> None:
    before = idp.requests[JWKS]
    await _invalid(validator, sign(idp.signing_key, claims(idp, iss=iss), kid="zz"), "no issuer ('iss')")
    await _invalid(validator, sign(idp.signing_key, claims(idp, _drop=["iss"]), kid="zz"), "no issuer ('iss')")
    assert idp.requests[JWKS] == before


# -------------------------------------------------------------------------------- C14 client id


def _km(idp: KeyManager, name: str, issuer: str, client_claims: list[str], **extra: Any) -> dict[str, Any]:
    km = {
        "name": name,
        "issuer": issuer,
        "jwks_uri": f"{idp.url}/oauth2/jwks",
        "audiences": ["authz-test"],
        "algorithms": ["RS256"],
        "client_id_claims": client_claims,
        "jwks": {"refresh_interval": 300, "kid_refetch_cooldown": 30, "timeout": 2, "retry_interval": 0.2},
    }
    km.update(extra)
    return km


@pytest.fixture
async def three_idps(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> AsyncIterator[tuple[TokenValidator, dict[str, str]]]:
    issuers = {
        "okta": f"{idp.url}/oauth2/default",
        "keycloak": f"{idp.url}/realms/demo",
        "auth0": f"{idp.url}/tenant/",
    }
    settings = make_settings(key_managers=[
        _km(idp, "okta", issuers["okta"], ["cid"]),
        _km(idp, "keycloak", issuers["keycloak"], ["azp"]),
        _km(idp, "auth0", issuers["auth0"], ["azp", "client_id"]),
    ])
    async with running_validator(settings) as (v, _):
        yield v, issuers


async def test_c14a_okta_cid_claim_gives_the_client_id(three_idps, idp: KeyManager) -> None:
    v, issuers = three_idps
    payload = claims(idp, iss=issuers["okta"], cid="app-123", uid="00u-user", scp=["orders:read"],
                     _drop=["azp", "client_id", "scope"])
    identity = await v.validate(sign(idp.signing_key, payload))
    assert (identity.key_manager, identity.client_id) == ("okta", "app-123")
    assert identity.scopes == frozenset({"orders:read"})


async def test_c14b_keycloak_m2m_wrong_audience_says_audience_not_missing_claim(three_idps, idp: KeyManager) -> None:
    v, issuers = three_idps
    payload = claims(idp, iss=issuers["keycloak"], aud="account", clientId="app-123", scope="profile email",
                     _drop=["client_id", "sub"])
    denial = await _invalid(v, sign(idp.signing_key, payload), "audience ('aud') is not accepted")
    assert "missing" not in denial.description.lower()
    assert "client identifier" not in denial.description


async def test_c14b_keycloak_m2m_with_our_audience_is_accepted(three_idps, idp: KeyManager) -> None:
    v, issuers = three_idps
    payload = claims(idp, iss=issuers["keycloak"], aud=["authz-test", "account"], clientId="app-123",
                     _drop=["client_id", "sub"])
    identity = await v.validate(sign(idp.signing_key, payload))
    assert (identity.key_manager, identity.client_id, identity.subject) == ("keycloak", "app-123", "")


async def test_c14c_auth0_m2m_token_is_accepted_with_client_from_azp(three_idps, idp: KeyManager) -> None:
    v, issuers = three_idps
    payload = claims(idp, iss=issuers["auth0"], sub="app-123@clients", gty="client-credentials",
                     _drop=["client_id"])
    identity = await v.validate(sign(idp.signing_key, payload))
    assert (identity.key_manager, identity.client_id, identity.subject) == ("auth0", "app-123", "app-123@clients")


@pytest.mark.parametrize(
    ("km_name", "looked_for"), [("okta", "cid"), ("keycloak", "azp"), ("auth0", "azp, client_id")]
)
async def test_c14d_missing_client_claim_is_401_naming_the_claims_looked_for(
    km_name: str, looked_for: str, three_idps, idp: KeyManager
) -> None:
    v, issuers = three_idps
    payload = claims(idp, iss=issuers[km_name], sub="app-123", _drop=["azp", "client_id"])
    denial = await _invalid(v, sign(idp.signing_key, payload))
    assert denial.description == f"The access token has no client identifier (looked for: {looked_for})"


async def test_c14f_first_configured_client_claim_wins(three_idps, idp: KeyManager) -> None:
    v, issuers = three_idps
    payload = claims(idp, iss=issuers["auth0"], azp="app-123", client_id="app-999")
    assert (await v.validate(sign(idp.signing_key, payload))).client_id == "app-123"
    payload = claims(idp, iss=issuers["auth0"], client_id="app-999", _drop=["azp"])
    assert (await v.validate(sign(idp.signing_key, payload))).client_id == "app-999"


@pytest.mark.parametrize("value", [42, "", None, ["app-123"], {"id": "app-123"}], ids=repr)
async def test_c14_non_string_client_claim_is_rejected_not_skipped(
    value: Any, validator: TokenValidator, idp: KeyManager
) -> None:
    denial = await _invalid(validator, sign(idp.signing_key, claims(idp, azp=value)))
    assert denial.description == "The access token's client identifier claim 'azp' is not a non-empty string"


# ---------------------------------------------------------------------------------- C15 scopes


@pytest.mark.parametrize(
    ("scope_claims", "expected"),
    [
        ({"scope": "orders:read orders:write"}, {"orders:read", "orders:write"}),
        ({"scp": ["orders:read"]}, {"orders:read"}),
        ({"scp": "orders:read"}, {"orders:read"}),
        ({"scope": ["orders:read", "orders:write"]}, {"orders:read", "orders:write"}),
        ({"scope": "orders:reader"}, {"orders:reader"}),
        ({"scope": "orders:read,orders:write"}, {"orders:read,orders:write"}),
        ({"scope": "  orders:read   orders:write "}, {"orders:read", "orders:write"}),
        ({"scope": 42}, set()),
        ({"scope": None}, set()),
        ({"scope": {"orders:read": True}}, set()),
        ({"scp": ["orders:read", 7, None, ""]}, {"orders:read"}),
        ({"scope": "orders:read", "scp": ["orders:write"]}, {"orders:read"}),
        ({"scope": "", "scp": ["orders:write"]}, set()),
        ({}, set()),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else None,
)
async def test_c15_scope_shapes_first_claim_wins_never_a_union(
    scope_claims: dict[str, Any], expected: set[str], validator: TokenValidator, idp: KeyManager
) -> None:
    payload = claims(idp, _drop=["scope"])
    payload.update(scope_claims)
    identity = await validator.validate(sign(idp.signing_key, payload))
    assert identity.scopes == frozenset(expected)


async def test_c15_configured_scope_claim_order_decides(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    async with running_validator(make_settings(km={"scope_claims": ["scp", "scope"]})) as (v, _):
        payload = claims(idp, scope="orders:read", scp=["orders:write"])
        assert (await v.validate(sign(idp.signing_key, payload))).scopes == frozenset({"orders:write"})


# ------------------------------------------------------------------------------ C16 clock skew


@pytest.mark.parametrize(
    "delta",
    [{"iat": 5}, {"nbf": 30}, {"exp": -30}, {"iat": 59, "nbf": 59}, {"_drop": ["iat"]}, {"_drop": ["nbf"]}],
    ids=repr,
)
async def test_c16_within_leeway_is_accepted(delta: dict[str, Any], validator: TokenValidator, idp: KeyManager) -> None:
    now = int(time.time())
    overrides: dict[str, Any] = {k: now + v for k, v in delta.items() if k != "_drop"}
    overrides["_drop"] = delta.get("_drop", [])
    identity = await validator.validate(sign(idp.signing_key, claims(idp, **overrides)))
    assert identity.client_id == "app-123"


@pytest.mark.parametrize(
    ("delta", "fragment"),
    [
        ({"nbf": 61}, "not yet valid"),
        ({"iat": 3600}, "not yet valid"),
        ({"nbf": 3600}, "not yet valid"),
    ],
    ids=repr,
)
async def test_c16_beyond_leeway_in_the_future_is_rejected(
    delta: dict[str, Any], fragment: str, validator: TokenValidator, idp: KeyManager
) -> None:
    now = int(time.time())
    token = sign(idp.signing_key, claims(idp, **{k: now + v for k, v in delta.items()}))
    await _invalid(validator, token, fragment)


async def test_c16_expired_beyond_leeway_is_rejected(validator: TokenValidator, idp: KeyManager) -> None:
    token = sign(idp.signing_key, claims(idp, exp=int(time.time()) - 61))
    denial = await _deny(validator, token)
    assert denial.reason is Reason.EXPIRED_TOKEN
    assert "expired" in denial.description


async def test_c16_missing_exp_is_rejected(validator: TokenValidator, idp: KeyManager) -> None:
    await _invalid(validator, sign(idp.signing_key, claims(idp, _drop=["exp"])), "required claim 'exp'")


async def test_c16_leeway_comes_from_config(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    now = int(time.time())
    async with running_validator(make_settings(km={"leeway": 0})) as (v, _):
        await _invalid(v, sign(idp.signing_key, claims(idp, nbf=now + 30)), "not yet valid")
        denial = await _deny(v, sign(idp.signing_key, claims(idp, exp=now - 30)))
        assert denial.reason is Reason.EXPIRED_TOKEN
        assert (await v.validate(sign(idp.signing_key, claims(idp)))).client_id == "app-123"


# ------------------------------------------------------------------------------ C17 NumericDate


async def test_c17_float_times_are_accepted(validator: TokenValidator, idp: KeyManager) -> None:
    now = time.time()
    identity = await validator.validate(sign(idp.signing_key, claims(idp, exp=now + 300.5, iat=now - 0.25, nbf=now)))
    assert identity.expires_at == pytest.approx(now + 300.5)


def _raw_payload(idp: KeyManager, claim: str, literal: str) -> str:
    payload = claims(idp)
    payload[claim] = "__LITERAL__"
    return json.dumps(payload).replace('"__LITERAL__"', literal)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "literal",
    ['"{NOW}"', "null", "[{NOW}]", "true", "false", "NaN", "Infinity", "-Infinity", '{"t": 1}', "1" + "0" * 400,
     "-1" + "0" * 400],
    ids=["string", "null", "list", "true", "false", "NaN", "Infinity", "-Infinity", "object", "huge-int",
         "huge-negative-int"],
)
async def test_c17_non_numeric_or_non_finite_times_are_invalid_time_claim(
    claim: str, literal: str, validator: TokenValidator, idp: KeyManager
) -> None:
    raw = _raw_payload(idp, claim, literal.replace("{NOW}", str(int(time.time()) + 300)))
    denial = await _invalid(validator, sign(idp.signing_key, raw))
    assert denial.description == f"The access token has an invalid time claim '{claim}'"


async def test_c17_huge_finite_exp_does_not_crash(validator: TokenValidator, idp: KeyManager) -> None:
    raw = _raw_payload(idp, "exp", "1e20")
    identity = await validator.validate(sign(idp.signing_key, raw))
    assert identity.expires_at == 1e20
    # A cached huge exp is still bounded by the cache TTL: the same token is served from the cache.
    assert await validator.validate(sign(idp.signing_key, raw)) is not None


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_c17_huge_future_nbf_or_iat_is_not_yet_valid(
    claim: str, validator: TokenValidator, idp: KeyManager
) -> None:
    await _invalid(validator, sign(idp.signing_key, _raw_payload(idp, claim, "1e20")), "not yet valid")


# ---------------------------------------------------------------------------- size and garbage


async def test_token_larger_than_max_size_is_rejected_before_parsing(
    validator: TokenValidator, idp: KeyManager
) -> None:
    token = sign(idp.signing_key, claims(idp, pad="x" * 20000))
    assert len(token) > 16 * 1024
    await _invalid(validator, token, "larger than 16384 bytes")
    await _invalid(validator, "a" * (16 * 1024 + 1), "larger than 16384 bytes")


async def test_token_size_limit_comes_from_config(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    async with running_validator(make_settings(tokens={"max_size": 1024})) as (v, _):
        small = sign(idp.signing_key, claims(idp))
        assert len(small) < 1024
        assert (await v.validate(small)).client_id == "app-123"
        await _invalid(v, sign(idp.signing_key, claims(idp, pad="x" * 800)), "larger than 1024 bytes")


def _garbage_tokens() -> list[str]:
    rng = random.Random(1234)

    def b64(data: str | bytes) -> str:
        raw = data.encode() if isinstance(data, str) else data
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def seg3(header: str | bytes, payload: str | bytes, sig: str = "c2ln") -> str:
        return ".".join((b64(header), b64(payload), sig))

    deep = "[" * 5000 + "]" * 5000
    rs256 = '{"alg":"RS256","kid":"k1"}'
    out = [
        "", ".", "..", "...", "a.b", "a.b.c", "a.b.c.d", "." * 1024, "\x00", "Bearer x",
        "eyJ", "eyJhbGciOiJSUzI1NiJ9", "eyJhbGciOiJSUzI1NiJ9..", "eyJhbGciOiJSUzI1NiJ9.e30.",
        seg3(deep, "{}"),
        seg3("{}", deep),
        seg3(rs256, '{"a":' * 3000 + "1" + "}" * 3000),
        seg3('{"a":' * 3000 + "1" + "}" * 3000, "{}"),
        seg3("[]", "{}"),
        seg3('"RS256"', "{}"),
        seg3("null", "null", ""),
        seg3(rs256, "[1,2]"),
        seg3(rs256, '"str"'),
        seg3(rs256, "1e999999"),
        seg3(b"\xff\xfe\xfd", b"\x80"),
        seg3('{"alg":"RS256","kid":"k1"', "{"),
        "!!!.@@@.###",
        "\u00e9.\u00fc.\u00df",
        "\ud800.a.b",
    ]
    for _ in range(30):
        out.append("".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randrange(1, 200))))
        out.append(os.urandom(rng.randrange(1, 300)).decode("latin-1"))
    return out


async def test_garbage_tokens_are_denied_never_raising_anything_but_denial(
    validator: TokenValidator, idp: KeyManager
) -> None:
    before = idp.requests[JWKS]
    for token in _garbage_tokens():
        denial = await _deny(validator, token)
        assert denial.reason is Reason.INVALID_CREDENTIALS, repr(token[:40])
    assert idp.requests[JWKS] == before


# ------------------------------------------------------------------------------------ token cache


async def test_repeated_token_is_served_from_the_cache(validator: TokenValidator, idp: KeyManager) -> None:
    token = idp.issue_token("app-123", "u", "orders:read")
    first = await validator.validate(token)
    assert validator.cached_tokens == 1
    assert await validator.validate(token) is first
    assert validator.cached_tokens == 1


async def test_token_differing_in_one_byte_misses_the_cache(validator: TokenValidator, idp: KeyManager) -> None:
    token = idp.issue_token("app-123", "u", "orders:read")
    await validator.validate(token)
    await _invalid(validator, tamper_signature(token), "signature is not valid")
    head, payload, sig = token.split(".")
    await _invalid(validator, f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}")
    assert validator.cached_tokens == 1


async def test_cached_token_is_rejected_once_its_key_is_withdrawn_and_refreshed(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    k2 = SigningKey.generate_rsa(kid="k2")
    async with running_validator(make_settings()) as (v, caches):
        token = idp.issue_token("app-123", "u", "orders:read")
        identity: Identity = await v.validate(token)
        assert await v.validate(token) is identity
        idp.published_keys = [k2]
        assert await caches["test-km"].refresh() is True
        await _invalid(v, token, "not signed by a key of its issuer")
        assert v.cached_tokens == 0


async def test_cached_token_expires_with_its_exp(validator: TokenValidator, idp: KeyManager) -> None:
    token = sign(idp.signing_key, claims(idp, exp=int(time.time()) - 59))  # inside the 60 s leeway
    await validator.validate(token)
    assert validator.cached_tokens == 1
    await asyncio.sleep(1.2)
    denial = await _deny(validator, token)
    assert denial.reason is Reason.EXPIRED_TOKEN
    assert validator.cached_tokens == 0


async def test_cache_size_zero_disables_the_cache(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    async with running_validator(make_settings(tokens={"cache_size": 0})) as (v, _):
        token = idp.issue_token("app-123", "u", "orders:read")
        a, b = await v.validate(token), await v.validate(token)
        assert a is not b and a.client_id == b.client_id == "app-123"
        assert v.cached_tokens == 0


@pytest.mark.parametrize(
    ("jti", "accepted"),
    [("abc-123", True), ("x" * 512, True), ("x" * 513, False), ("", False), ("a\nb", False), ("a\x7fb", False)],
)
async def test_a_jti_the_registry_could_not_revoke_is_refused(
    idp: KeyManager, make_settings: Callable[..., Settings], jti: str, accepted: bool
) -> None:
    async with running_validator(make_settings()) as (v, _):
        token = sign(idp.signing_key, claims(idp, jti=jti))
        if accepted:
            assert (await v.validate(token)).token_id == jti
        else:
            with pytest.raises(Denial) as info:
                await v.validate(token)
            assert info.value.description == "The access token's 'jti' is not a valid token identifier"
