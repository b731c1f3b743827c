"""Credentials phase: ``authz.decide.credentials.extract_bearer`` (RFC 6750 section 2.1), field cases C19 and C20."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.decide.credentials import extract_bearer
from authz.errors import Denial, Reason
from tests.fuzz.strategies import B64TOKEN_SYNTAX

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def _deny(headers: dict[str, str]) -> Denial:
    with pytest.raises(Denial) as info:
        extract_bearer(headers)
    return info.value


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"BEARER {TOKEN}",
        f"bEaReR {TOKEN}",
        f"Bearer    {TOKEN}",
        f"Bearer {TOKEN} ",
        f"Bearer {TOKEN}   ",
        f" Bearer {TOKEN}",
    ],
    ids=["canonical", "lower", "upper", "mixed", "several-spaces", "trailing-space", "trailing-spaces", "leading"],
)
def test_c19_bearer_scheme_is_case_insensitive_and_spaces_are_trimmed(value: str) -> None:
    assert extract_bearer({"authorization": value}) == TOKEN


def test_c19_b64token_padding_and_all_token_characters_are_accepted() -> None:
    token = "Aa0-._~+/=="
    assert extract_bearer({"authorization": f"Bearer {token}"}) == token


@pytest.mark.parametrize(
    "value",
    [f"Bearer{TOKEN}", f"Bea {TOKEN}", f"Token {TOKEN}", "Bearer", "Bearer ", "Bearer    ", f"JWT {TOKEN}", ""],
    ids=["no-space", "truncated-scheme", "token-scheme", "bare", "bare-space", "bare-spaces", "jwt-scheme", "empty"],
)
def test_c19_present_but_unparseable_credential_is_invalid_never_anonymous(value: str) -> None:
    denial = _deny({"authorization": value})
    assert denial.reason is Reason.INVALID_CREDENTIALS
    assert denial.reason.info.http_status == 401
    assert denial.reason.info.code == 900901
    assert denial.reason.info.oauth_error == "invalid_token"


@pytest.mark.parametrize(
    "value",
    [f"Bearer {TOKEN} extra", f"Bearer {TOKEN}\x00", f"Bearer {TOKEN}\"", "Bearer tok\u00e9n", "Bearer =abc"],
    ids=["two-words", "nul", "quote", "non-ascii", "leading-equals"],
)
def test_c19_characters_outside_b64token_are_invalid_credentials(value: str) -> None:
    denial = _deny({"authorization": value})
    assert denial.reason is Reason.INVALID_CREDENTIALS
    assert "token syntax" in denial.description


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "basic dXNlcjpwYXNz", "Digest username=\"u\"", "Negotiate YII="])
def test_c19_other_registered_scheme_is_missing_bearer_credentials(value: str) -> None:
    denial = _deny({"authorization": value})
    assert denial.reason is Reason.MISSING_CREDENTIALS
    assert denial.reason.info.http_status == 401
    assert denial.reason.info.code == 900902
    assert denial.reason.info.oauth_error is None  # RFC 6750 3.1: no error attribute when no credentials sent


def test_c19_absent_header_is_missing_credentials() -> None:
    denial = _deny({":path": "/orders/v1/items", "x-other": "Bearer " + TOKEN})
    assert denial.reason is Reason.MISSING_CREDENTIALS
    assert "No bearer access token" in denial.description


def test_c19_query_parameter_token_is_not_accepted() -> None:
    denial = _deny({":path": f"/orders/v1/items?access_token={TOKEN}"})
    assert denial.reason is Reason.MISSING_CREDENTIALS


def test_c19_capitalised_header_name_is_not_looked_up_here() -> None:
    # The gRPC adapter lower-cases names; extract_bearer receives lower-cased names only.
    denial = _deny({"Authorization": f"Bearer {TOKEN}"})
    assert denial.reason is Reason.MISSING_CREDENTIALS


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {TOKEN},Bearer {TOKEN}x",
        f"Bearer {TOKEN}, Bearer {TOKEN}",
        f"bearer {TOKEN},bearer {TOKEN}",
        f"Bearer {TOKEN},",
        f"Basic dXNlcjpwYXNz,Bearer {TOKEN}",
        "Basic dXNlcjpwYXNz, Basic Zm9vOmJhcg==",
        f"Bea x,Bearer {TOKEN}",
        f"Bearer {TOKEN} Bearer {TOKEN}",
    ],
    ids=["two-bearers", "same-twice", "lower", "trailing-comma", "basic-then-bearer", "two-basic", "junk-then-bearer",
         "space-joined"],
)
def test_c20_comma_joined_credentials_are_invalid_request_400(value: str) -> None:
    denial = _deny({"authorization": value})
    assert denial.reason is Reason.INVALID_REQUEST
    assert denial.reason.info.http_status == 400
    assert denial.reason.info.code == 900940
    assert "more than one" in denial.description


@pytest.mark.parametrize(
    "value",
    [
        'Digest username="u", realm="r", nonce="n", uri="/a,b", response="x"',
        'Digest username="u",realm = "r"',
        "Negotiate YII=",
    ],
    ids=["digest", "digest-bws", "negotiate"],
)
def test_c19_single_other_scheme_credential_with_auth_params_is_missing_not_400(value: str) -> None:
    assert _deny({"authorization": value}).reason is Reason.MISSING_CREDENTIALS


@pytest.mark.parametrize(
    "value",
    [
        f'Digest username="u", realm="r", Bearer {TOKEN}',
        f"Token a,Token {TOKEN}",
        "Token a, Negotiate",
        f"Negotiate YII=,bearer {TOKEN}",
    ],
    ids=["digest-then-bearer", "token-twice", "then-bare-scheme", "negotiate-then-bearer"],
)
def test_c20_other_scheme_joined_with_another_credential_is_400(value: str) -> None:
    assert _deny({"authorization": value}).reason is Reason.INVALID_REQUEST


# ---- the fast path decides exactly as the full parse ------------------------------------------------------------

def _reference(value: str, max_size: int | None) -> tuple[str, str]:
    """The full parse as it stood before the common case got its shortcut (strip, scheme, size, comma / second
    "bearer ", regular expression): ``("token", token)`` or ``("deny", reason name)``."""
    scheme, sep, rest = value.strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        try:
            extract_bearer({"authorization": value}, max_size)
        except Denial as denial:  # another scheme: not the path the shortcut changed
            return "deny", denial.reason.name
        raise AssertionError("a non-Bearer scheme was accepted")
    token = rest.strip(" \t")
    if not sep or not token:
        return "deny", Reason.INVALID_CREDENTIALS.name
    if max_size is not None and len(token) > max_size:
        return "deny", Reason.INVALID_CREDENTIALS.name
    if "," in token or "bearer " in token.lower():
        return "deny", Reason.INVALID_REQUEST.name
    if not B64TOKEN_SYNTAX.fullmatch(token):
        return "deny", Reason.INVALID_CREDENTIALS.name
    return "token", token


def _outcome(value: str, max_size: int | None) -> tuple[str, str]:
    try:
        return "token", extract_bearer({"authorization": value}, max_size)
    except Denial as denial:
        return "deny", denial.reason.name


_PIECES = st.sampled_from(["Bearer ", "bearer ", "Bearer", " ", "\t", ",", "=", "==", "a", "Z9", "-._~+/",
                           TOKEN, "Basic ", "é", "\x00", '"', ";", "Bearer\t"])


@settings(max_examples=600, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=4), max_size=8).map("".join),
       st.one_of(st.none(), st.integers(min_value=0, max_value=80)))
def test_every_authorization_value_gets_the_decision_of_the_full_parse(value: str, max_size: int | None) -> None:
    assert _outcome(value, max_size) == _reference(value, max_size)


@pytest.mark.parametrize(("value", "max_size", "expected"), [
    (f"Bearer {TOKEN}", None, ("token", TOKEN)),
    (f"Bearer {TOKEN}", len(TOKEN), ("token", TOKEN)),
    (f"Bearer {TOKEN}", len(TOKEN) - 1, ("deny", "INVALID_CREDENTIALS")),  # too large, before any scan
    (f"Bearer {TOKEN},Bearer {TOKEN}", None, ("deny", "INVALID_REQUEST")),
    (f"Bearer {TOKEN} Bearer {TOKEN}", None, ("deny", "INVALID_REQUEST")),
    ("Bearer a=b", None, ("deny", "INVALID_CREDENTIALS")),
    ("Bearer ab==", None, ("token", "ab==")),
    ("Bearer ==", None, ("deny", "INVALID_CREDENTIALS")),
    ("Bearer t\u00e9", None, ("deny", "INVALID_CREDENTIALS")),
])
def test_the_canonical_form_takes_the_shortcut_and_anything_else_the_full_parse(
        value: str, max_size: int | None, expected: tuple[str, str]) -> None:
    assert _outcome(value, max_size) == expected == _reference(value, max_size)
