"""Per-key-manager claim rules of ``authz.decide.identity.TokenValidator``: ``typ`` (RFC 9068), ``required_claims`` and
``max_token_lifetime`` (field case C17's ``1e20``), with real keys and a real key manager on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from authz.config import ConfigError, Settings
from authz.dev.keymanager import KeyManager
from authz.errors import Denial, Reason
from tests.support.tokencraft import claims, running_validator, sign

JWKS = "/oauth2/jwks"


async def _invalid_description(validator: Any, token: str) -> str:
    with pytest.raises(Denial) as info:
        await validator.validate(token)
    assert info.value.reason is Reason.INVALID_CREDENTIALS
    assert info.value.reason.info.http_status == 401
    return info.value.description


# ------------------------------------------------------------------------------------------ typ


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+Jwt"])
async def test_configured_typ_accepts_rfc9068_spellings(
    typ: str, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(km={"typ": ["at+jwt"]})) as (v, _):
        identity = await v.validate(sign(idp.signing_key, claims(idp), header={"typ": typ}))
        assert identity.client_id == "app-123"


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt ", "application/jwt", 7, None, ["at+jwt"]], ids=repr)
async def test_configured_typ_rejects_other_types_before_any_fetch(
    typ: Any, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(km={"typ": ["at+jwt"]})) as (v, _):
        before = idp.requests[JWKS]
        header = {"typ": typ, "kid": "unknown-kid"}
        description = await _invalid_description(v, sign(idp.signing_key, claims(idp), header=header))
        assert description == "The access token's type ('typ' header) is not accepted"
        assert idp.requests[JWKS] == before  # refused before the unknown kid could force a refetch


async def test_missing_typ_header_is_rejected_when_typ_is_configured(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    import jwt as pyjwt

    token = pyjwt.api_jws.encode(
        json.dumps(claims(idp)).encode(), idp.signing_key.private_key, algorithm="RS256",
        headers={"kid": "k1", "typ": None},
    )
    assert "typ" not in pyjwt.get_unverified_header(token)
    async with running_validator(make_settings(km={"typ": ["at+jwt"]})) as (v, _):
        assert await _invalid_description(v, token) == "The access token's type ('typ' header) is not accepted"


async def test_typ_is_not_checked_by_default(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    async with running_validator(make_settings()) as (v, _):
        identity = await v.validate(sign(idp.signing_key, claims(idp), header={"typ": "JWT"}))
        assert identity.subject == "user-42"


# ------------------------------------------------------------------------------- required claims


async def test_required_claims_must_be_present_and_not_null(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(km={"required_claims": ["sub", "jti"]})) as (v, _):
        assert (await v.validate(sign(idp.signing_key, claims(idp)))).subject == "user-42"
        description = await _invalid_description(v, sign(idp.signing_key, claims(idp, _drop=["jti"])))
        assert description == "The access token lacks the required claim 'jti'"
        description = await _invalid_description(v, sign(idp.signing_key, claims(idp, sub=None)))
        assert description == "The access token lacks the required claim 'sub'"


async def test_without_required_claims_a_token_without_sub_or_jti_is_accepted(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings()) as (v, _):
        identity = await v.validate(sign(idp.signing_key, claims(idp, _drop=["sub", "jti"])))
        assert (identity.subject, identity.token_id) == ("", None)


# --------------------------------------------------------------------------- max token lifetime


async def test_token_within_max_token_lifetime_is_accepted(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    async with running_validator(make_settings(km={"max_token_lifetime": 3600})) as (v, _):
        identity = await v.validate(sign(idp.signing_key, claims(idp, exp=int(time.time()) + 3500)))
        assert identity.client_id == "app-123"


@pytest.mark.parametrize("exp_literal", ["{NOW_PLUS_2H}", "1e20", "1" + "0" * 300])
async def test_c17_token_outliving_max_token_lifetime_is_401_without_fetch(
    exp_literal: str, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    payload = claims(idp)
    payload["exp"] = "__EXP__"
    raw = json.dumps(payload).replace('"__EXP__"', exp_literal.replace("{NOW_PLUS_2H}", str(int(time.time()) + 7200)))
    async with running_validator(make_settings(km={"max_token_lifetime": 3600})) as (v, _):
        before = idp.requests[JWKS]
        description = await _invalid_description(v, sign(idp.signing_key, raw, kid="unknown-kid"))
        assert description == "The access token's lifetime exceeds the accepted maximum of 3600 seconds"
        assert idp.requests[JWKS] == before


async def test_c17_huge_exp_is_accepted_when_no_max_token_lifetime_is_set(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    payload = claims(idp)
    payload["exp"] = "__EXP__"
    raw = json.dumps(payload).replace('"__EXP__"', "1e20")
    async with running_validator(make_settings()) as (v, _):
        assert (await v.validate(sign(idp.signing_key, raw))).expires_at == 1e20


# ------------------------------------------------------------------------ forwarded claims are text


@pytest.mark.parametrize(("overrides", "what"), [
    ({"sub": "user-\ud800"}, "subject ('sub')"),
    ({"sub": "\udfff"}, "subject ('sub')"),
    ({"azp": "app-\udc80", "client_id": "app-\udc80"}, "client identifier"),
    ({"scope": "orders:read bad\ud83d"}, "scope"),
], ids=repr)
async def test_a_forwarded_claim_with_a_lone_surrogate_is_401_not_a_503(
    overrides: dict[str, str], what: str, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    """JSON's ``\\ud800`` escape decodes to a lone surrogate, which has no UTF-8 form: no header encoding and no
    protobuf string (the dynamic metadata) can carry it. It used to fail while rendering the allow (503)."""
    token = sign(idp.signing_key, claims(idp, **overrides))
    assert "\\ud" in json.dumps(claims(idp, **overrides))  # the escape really is in the signed payload
    async with running_validator(make_settings()) as (v, _):
        assert await _invalid_description(v, token) == f"The access token's {what} is not valid Unicode text"
        assert v.cached_tokens == 0
        # Valid non-ASCII text (a surrogate *pair* is one character) is fine.
        ok = await v.validate(sign(idp.signing_key, claims(idp, sub="Zoë \ud83d\udc4d", scope="lire:é")))
        assert (ok.subject, ok.scopes) == ("Zoë 👍", frozenset({"lire:é"}))


# ----------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("km", "line"),
    [
        ({"max_token_lifetime": 0}, "key_managers[0].max_token_lifetime: input should be greater than 0"),
        ({"typ": [""]}, "key_managers[0].typ[0]: string should have at least 1 character"),
        ({"required_claims": "sub"}, "key_managers[0].required_claims: input should be a valid list"),
    ],
)
def test_claim_settings_are_validated(km: dict[str, Any], line: str, make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(km=km)
    assert line in info.value.errors
