"""Strict JWS compact syntax (RFC 7515 sections 2 and 7.1, RFC 4648 sections 5 and 3.5), checked by the identity
phase before pyjwt reads a token and before a verified token is cached.

A token is exactly three ``.``-separated segments of canonical, unpadded base64url: no ``=``, no whitespace, no
character outside ``A-Za-z0-9-_``, no length a base64url encoding cannot have, no non-zero unused bits in the last
character. pyjwt alone accepts ``=`` padding (older releases also skipped characters outside the alphabet and
ignored the unused bits), so two spellings of one token could be decided, and cached, apart.
"""

from __future__ import annotations

import re

_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_SET = frozenset(_B64URL_ALPHABET)
_JWS_COMPACT = re.compile(r"[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_SEGMENTS = ("header", "payload", "signature")
# Unpadded base64url: a last group of 2 or 3 characters leaves 4 or 2 bits of the last character unused, and a
# canonical encoding sets them to zero (RFC 4648 section 3.5); a group of 1 character encodes nothing.
_UNUSED_BITS = {2: 0x0F, 3: 0x03}


def compact_jws_problem(token: str) -> str | None:
    """What keeps ``token`` from being a JWS compact serialization of canonical unpadded base64url segments.

    RFC 7515 section 7.1 (``BASE64URL(header) . BASE64URL(payload) . BASE64URL(signature)``), section 2
    (base64url without padding, no line breaks, whitespace or other characters) and RFC 4648 sections 5 and 3.5
    (the URL-safe alphabet; the unused bits of the last character are zero). An empty segment is the encoding
    of zero octets (the signature checks refuse it later).

    Args:
        token: the bearer token.
    Returns:
        None when the syntax is right; else the problem, naming the segment (``"its signature segment has
        base64 padding '='"``).
    """
    if _JWS_COMPACT.fullmatch(token):
        for name, segment in zip(_SEGMENTS, token.split("."), strict=True):
            rest = len(segment) % 4
            if rest == 1:
                return f"its {name} segment has a length no base64url encoding has"
            if rest and _B64URL_ALPHABET.index(segment[-1]) & _UNUSED_BITS[rest]:
                return f"its {name} segment is not canonical base64url (non-zero unused bits)"
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return f"a JWS has three segments separated by '.', this has {len(parts)}"
    for name, segment in zip(_SEGMENTS, parts, strict=True):
        if "=" in segment:
            return f"its {name} segment has base64 padding '=' (base64url in a JWS is unpadded)"
        if any(c.isspace() for c in segment):
            return f"its {name} segment contains whitespace"
        if not set(segment) <= _B64URL_SET:
            return f"its {name} segment has a character outside the base64url alphabet (A-Z a-z 0-9 - _)"
    return "it is not three base64url segments"  # unreachable: one of the above holds
