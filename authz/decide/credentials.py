"""Credentials phase: take the bearer token out of the ``authorization`` header (RFC 6750 section 2.1).

Only the header form is accepted: form-encoded body and ``access_token`` query parameters
(RFC 6750 sections 2.2 and 2.3) are ignored, so a token never lands in access logs through the URL.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from authz.errors import Denial, Reason


def token_too_large(max_token_bytes: int) -> Denial:
    """The 401 ``INVALID_CREDENTIALS`` for a bearer token longer than ``max_token_bytes`` (``tokens.max_size``),
    given before any parsing by the credentials and the identity phases alike."""
    return Denial(Reason.INVALID_CREDENTIALS, f"The access token is too large (larger than {max_token_bytes} bytes)")

# RFC 6750 section 2.1: credentials = "Bearer" 1*SP b64token; the scheme is case-insensitive (RFC 7235).
# b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_BYTES = (string.ascii_letters + string.digits + "-._~+/").encode("ascii")
_CANONICAL = "Bearer "
# Other registered HTTP authentication schemes: a request that carries one of these sent no bearer
# credentials at all (RFC 6750 section 3.1: then the challenge has no error attribute).
_OTHER_SCHEMES = frozenset(
    {"basic", "digest", "negotiate", "ntlm", "hoba", "mutual", "vapid", "scram-sha-1", "scram-sha-256",
     "aws4-hmac-sha256", "dpop", "privatetoken", "concealed"}
)
# After a comma, the start of another credential (``scheme SP ...`` or a bare scheme), as opposed to the next
# auth-param of the same credential (``name = value``, e.g. in ``Digest username="u", realm="r"``).
_NEXT_CREDENTIAL = re.compile(r"[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]+(?!=|[ \t])|[ \t]*$)")


def _is_b64token(token: str) -> bool:
    """Whether ``token`` is an RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".

    Deleting every allowed byte leaves nothing exactly when all are allowed (twice the speed of a regular
    expression on a 600-byte token: this runs on every check).
    """
    body = token.rstrip("=")
    return bool(body) and body.isascii() and not body.encode("ascii").translate(None, _B64TOKEN_BYTES)


def _several_credentials(value: str) -> bool:
    """Whether a non-Bearer header value holds more than one credential (repeated headers comma-joined)."""
    return any(_NEXT_CREDENTIAL.match(part) for part in value.split(",")[1:])


def extract_bearer(headers: Mapping[str, str], max_size: int | None = None) -> str:
    """Return the bearer token of the request.

    Args:
        headers: request headers, names lower-cased, repeated headers comma-joined (as Envoy sends them).
        max_size: longest token accepted, in bytes (``tokens.max_size``); a longer one is refused before its
            characters are looked at, so a huge header costs no scan. None: no limit here.
    Returns:
        The token string (b64token syntax), without scheme and surrounding spaces.
    Raises:
        Denial: ``MISSING_CREDENTIALS`` when there is no ``authorization`` header or it uses another
            scheme (e.g. ``Basic``); ``INVALID_REQUEST`` (400) when it carries more than one credential
            (two headers, or a comma-joined list); ``INVALID_CREDENTIALS`` when it is malformed
            (``Bearer`` alone, ``Bearer<token>``, an unknown scheme, characters outside b64token) or longer
            than ``max_size`` ("too large").
    """
    value = headers.get("authorization")
    if value is None:
        raise Denial(Reason.MISSING_CREDENTIALS, "No bearer access token was sent in the Authorization header")
    if value.startswith(_CANONICAL):  # the common case, "Bearer <b64token>": one scan of the token
        token = value[len(_CANONICAL):]
        if (max_size is None or len(token) <= max_size) and _is_b64token(token):
            return token
        # otherwise the general path below finds which denial it is
    scheme, sep, rest = value.strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        if _several_credentials(value):
            raise Denial(Reason.INVALID_REQUEST, "The request carries more than one Authorization credential")
        if scheme.lower() in _OTHER_SCHEMES:
            raise Denial(
                Reason.MISSING_CREDENTIALS, "No bearer access token was sent in the Authorization header"
            )
        raise Denial(Reason.INVALID_CREDENTIALS, "The Authorization header is not a Bearer credential")
    token = rest.strip(" \t")
    if not sep or not token:
        raise Denial(Reason.INVALID_CREDENTIALS, "The Authorization header carries an empty Bearer token")
    if max_size is not None and len(token) > max_size:
        raise token_too_large(max_size)
    if _is_b64token(token):  # no comma, no space: a single credential
        return token
    if "," in token or "bearer " in token.lower():
        raise Denial(Reason.INVALID_REQUEST, "The request carries more than one Authorization credential")
    raise Denial(Reason.INVALID_CREDENTIALS, "The bearer token has characters outside the token syntax")
