"""Strict JWS compact syntax in the identity phase (RFC 7515 sections 2 and 7.1, RFC 4648 sections 5 and 3.5).

pyjwt accepts a token whose signature segment carries ``=`` padding (up to two, "used by some issuers"); older
releases also skipped characters outside the alphabet and ignored the unused bits of the last character.
Such spellings of a valid token verify (the signature covers the header and payload text, not the signature
segment's spelling) and got cache entries of their own. authz checks the syntax itself, whatever pyjwt does.
Every segment x every kind of variant is pinned here: 401 ``invalid_token`` naming the segment, no cache entry,
and the original token still decided (and cached) as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from authz.config import Settings
from authz.decide.identity import TokenValidator
from authz.decide.jws_syntax import compact_jws_problem
from authz.dev.keymanager import KeyManager
from authz.errors import Denial, Reason
from tests.support.pipeline import running_pipeline
from tests.support.tokencraft import claims, running_validator, sign

SEGMENTS = ("header", "payload", "signature")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _token(idp: KeyManager) -> str:
    """A valid token whose three segments each end in a partial base64 group (2 or 3 characters), so that every
    segment has unused trailing bits to play with (an RS256 signature is 342 characters, 342 % 4 == 2)."""
    for pad in range(64):
        for hpad in range(4):
            token = sign(idp.signing_key, claims(idp, pad="p" * pad), header={"x": "h" * hpad})
            if all(len(s) % 4 in (2, 3) for s in token.split(".")):
                return token
    raise AssertionError("no token with three partial last groups")


def _with_segment(token: str, index: int, change: Callable[[str], str]) -> str:
    parts = token.split(".")
    parts[index] = change(parts[index])
    return ".".join(parts)


def _flip_unused_bit(segment: str) -> str:
    """The same octets, spelled with a non-zero unused bit in the last character (not canonical)."""
    return segment[:-1] + ALPHABET[ALPHABET.index(segment[-1]) ^ 1]


def _std_alphabet(segment: str) -> str:
    """The standard base64 alphabet's spelling ('+' for '-', '/' for '_'), or '+' put in when there is neither."""
    swapped = segment.replace("-", "+").replace("_", "/")
    return swapped if swapped != segment else segment[:5] + "+" + segment[5:]


# variant -> (how the segment changes, what the description says about it)
VARIANTS: dict[str, tuple[Callable[[str], str], str]] = {
    "padding =": (lambda s: s + "=", "has base64 padding '='"),
    "padding ==": (lambda s: s + "==", "has base64 padding '='"),
    "full padding": (lambda s: s + "=" * (-len(s) % 4), "has base64 padding '='"),
    "= inside": (lambda s: s[:4] + "=" + s[4:], "has base64 padding '='"),
    "space inside": (lambda s: s[:4] + " " + s[4:], "contains whitespace"),
    "tab inside": (lambda s: s[:4] + "\t" + s[4:], "contains whitespace"),
    "CRLF inside": (lambda s: s[:4] + "\r\n" + s[4:], "contains whitespace"),
    "LF at the end": (lambda s: s + "\n", "contains whitespace"),
    "leading space": (lambda s: " " + s, "contains whitespace"),
    "no-break space": (lambda s: s[:4] + "\u00a0" + s[4:], "contains whitespace"),
    "standard alphabet + /": (_std_alphabet, "character outside the base64url alphabet"),
    "tilde": (lambda s: s[:4] + "~" + s[4:], "character outside the base64url alphabet"),
    "dot-free junk !": (lambda s: s + "!", "character outside the base64url alphabet"),
    "non-ASCII letter": (lambda s: s[:4] + "é" + s[4:], "character outside the base64url alphabet"),
    "NUL": (lambda s: s + "\x00", "character outside the base64url alphabet"),
    "non-zero unused bits": (_flip_unused_bit, "is not canonical base64url (non-zero unused bits)"),
    "impossible length": (lambda s: s + "A" * ((1 - len(s)) % 4), "has a length no base64url encoding has"),
}


@pytest.fixture
async def validator(make_settings: Callable[..., Settings]) -> AsyncIterator[TokenValidator]:
    async with running_validator(make_settings()) as (v, _):
        yield v


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("segment", SEGMENTS)
async def test_every_segment_variant_is_401_naming_it_and_never_cached(
    segment: str, variant: str, validator: TokenValidator, idp: KeyManager
) -> None:
    token = _token(idp)
    identity = await validator.validate(token)
    assert validator.cached_tokens == 1
    change, problem = VARIANTS[variant]
    bad = _with_segment(token, SEGMENTS.index(segment), change)
    assert bad != token
    with pytest.raises(Denial) as info:
        await validator.validate(bad)
    assert info.value.reason is Reason.INVALID_CREDENTIALS  # 401 invalid_token, 900901
    assert info.value.description.startswith(f"The access token is not a well-formed JWT: its {segment} segment ")
    assert problem in info.value.description
    assert validator.cached(bad) is None
    assert validator.cached_tokens == 1  # the variant got no cache entry
    assert await validator.validate(token) is identity  # the original is still the one cached decision


async def test_a_padded_signature_pyjwt_verifies_is_refused(validator: TokenValidator, idp: KeyManager) -> None:
    """The fault of the issue: the padded spelling of a valid token's signature verifies with pyjwt alone."""
    import jwt

    token = _token(idp)
    bad = _with_segment(token, 2, VARIANTS["full padding"][0])
    key = idp.signing_key.private_key.public_key()
    assert jwt.decode(bad, key, algorithms=["RS256"], options={"verify_aud": False})["azp"] == "app-123"
    with pytest.raises(Denial) as info:
        await validator.validate(bad)
    assert info.value.description.startswith("The access token is not a well-formed JWT: its signature segment")


@pytest.mark.parametrize(("token", "problem"), [
    ("a.b", "a JWS has three segments separated by '.', this has 2"),
    ("a.b.c.d", "a JWS has three segments separated by '.', this has 4"),
    ("abcd", "a JWS has three segments separated by '.', this has 1"),
    ("..", None),  # three empty segments are syntax; the JSON and signature checks refuse them
    ("e30.e30.", None),
    ("e30.e30.AA", None),
    ("e30.e30.AB", "its signature segment is not canonical base64url (non-zero unused bits)"),
    ("e30.e30.AAA", None),
    ("e30.e30.AAB", "its signature segment is not canonical base64url (non-zero unused bits)"),
    ("e30.e30.AAAAB", "its signature segment has a length no base64url encoding has"),
    ("e3=.e30.AA", "its header segment has base64 padding '=' (base64url in a JWS is unpadded)"),
    ("e30.e 30.AA", "its payload segment contains whitespace"),
    ("e30.e30.A+", "its signature segment has a character outside the base64url alphabet (A-Z a-z 0-9 - _)"),
], ids=repr)
def test_compact_jws_problem_describes_the_first_fault(token: str, problem: str | None) -> None:
    assert compact_jws_problem(token) == problem


async def test_variants_are_never_allowed_and_never_cached_on_either_pipeline_path(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    from authz.model import Allow, Request

    async with running_pipeline(make_settings()) as p:
        await p.register("app", "app-123", "App")
        token = _token(idp)

        def request(t: str) -> Request:
            return Request("GET", "/orders/v1/items", "h", {"authorization": f"Bearer {t}"}, {"api_id": "orders-v1"})

        assert isinstance(await p.pipeline.decide(request(token)), Allow)
        assert p.pipeline.decide_cached(request(token)) is not None
        tokens = p.pipeline.phases[3].tokens  # type: ignore[attr-defined]
        for segment in range(3):
            # the spellings an Authorization header can carry (b64token allows '+', '/', '~' and trailing '=')
            for variant in ("padding ==", "standard alphabet + /", "tilde", "non-zero unused bits"):
                bad = _with_segment(token, segment, VARIANTS[variant][0])
                assert p.pipeline.decide_cached(request(bad)) is None
                denial = await p.pipeline.decide(request(bad))
                assert isinstance(denial, Denial) and denial.reason is Reason.INVALID_CREDENTIALS, (segment, variant)
                assert denial.description.startswith((
                    "The access token is not a well-formed JWT",
                    "The bearer token has characters outside the token syntax",  # '=' before the end: not b64token
                ))
                assert tokens.cached_tokens == 1
