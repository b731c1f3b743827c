"""Hypothesis strategies for hostile input: authorization header values, JWS compact strings and mutations of
valid tokens, claim values of every JSON type, request paths, header sets and whole ``CheckRequest`` messages.

Shared by the property tests (tests/test_fuzz.py) and the atheris harness (tests/fuzz/harness.py builds its
inputs from raw bytes instead, but reuses :func:`check_request`).
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from hypothesis import strategies as st

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
B64TOKEN = B64URL + ".~+/"
B64TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750 section 2.1 ``b64token`` as a regular expression: the oracle the bearer parser's tokens are checked
against (the parser itself checks the syntax another way, :func:`authz.decide.credentials.extract_bearer`)."""

# Characters that matter to the parsers under test, mixed into otherwise random text.
SPECIAL = list(" \t,;=.%/\\?#:\"'\x00\r\n\x7f") + ["%2e", "%2E", "%2f", "%5C", "..", "//", "\u00e9", "\ufeff", "\u202e"]

schemes = st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR", "Bea", "Bearer:", "Basic", "Token", "DPoP",
                           "Digest", "", "Bearer\t", "Négotiate"])
spaces = st.sampled_from(["", " ", "  ", "\t", " \t ", "\u00a0"])
b64url_text = st.text(alphabet=B64URL, max_size=60)
b64token_text = st.text(alphabet=B64TOKEN, min_size=1, max_size=60).map(lambda s: s + "=" * (len(s) % 3))
messy_text = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(SPECIAL)), max_size=8).map("".join)


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


ODD_VALUES = [None, True, False, 0, -1, 1.5, -0.0, "", "x", "1700000000", [], {}, [1], {"a": 1}, [None], math.nan,
              math.inf, -math.inf, 1e308, 2**64, -(2**63), "\u0000", "a b", ["orders:read"], {"exp": 1}]
"""Values of the wrong type or at the edges, the cheap way to hit type confusion in a claim."""
odd_values = st.one_of(st.sampled_from(ODD_VALUES), st.integers(), st.text(max_size=12))


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """Any JSON value, floats included (NaN, infinities and huge numbers as Python's json writes them)."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                        max_leaves=max_leaves)


# ---- JWS compact structure -----------------------------------------------------------------------------

segment = st.one_of(
    b64url_text,
    b64url_text.map(lambda s: s + "="),
    b64url_text.map(lambda s: s + "=="),
    st.text(alphabet=B64URL + "+/=!*", max_size=40),
    st.builds(lambda v: b64url(json.dumps(v).encode()), json_values(3)),
    st.builds(lambda h: b64url(json.dumps(h).encode()), st.fixed_dictionaries(
        {"alg": st.sampled_from(["RS256", "none", "HS256", "ES256", "PS256", "EdDSA", "RS1", ""]),
         "kid": st.one_of(st.none(), st.text(max_size=10), st.integers())},
        optional={"typ": st.sampled_from(["JWT", "at+jwt", "x"]), "crit": st.lists(st.text(max_size=5), max_size=2),
                  "jku": st.just("https://attacker.example/jwks")})),
    messy_text,
)
jws_like = st.lists(segment, min_size=0, max_size=6).map(".".join)


@st.composite
def mutated(draw: st.DrawFn, token: str) -> str:
    """``token`` after one to three edits of the kinds that break JWS parsers: a character replaced, inserted or
    deleted, padding added, a segment dropped, duplicated, swapped or re-encoded, case flipped."""
    out = token
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "pad", "drop", "dup", "swap", "case",
                                     "reencode", "truncate"]))
        parts = out.split(".")
        if kind in ("replace", "insert", "delete", "case", "truncate") and out:
            i = draw(st.integers(min_value=0, max_value=len(out) - 1))
            ch = draw(st.sampled_from(list(B64URL + "=+/. \x00é")))
            out = {"replace": out[:i] + ch + out[i + 1:], "insert": out[:i] + ch + out[i:],
                   "delete": out[:i] + out[i + 1:], "case": out[:i] + out[i].swapcase() + out[i + 1:],
                   "truncate": out[:i]}[kind]
        elif kind == "pad":
            j = draw(st.integers(min_value=0, max_value=len(parts) - 1))
            parts[j] += draw(st.sampled_from(["=", "==", "==="]))
            out = ".".join(parts)
        elif kind == "drop" and len(parts) > 1:
            del parts[draw(st.integers(min_value=0, max_value=len(parts) - 1))]
            out = ".".join(parts)
        elif kind == "dup":
            j = draw(st.integers(min_value=0, max_value=len(parts) - 1))
            out = ".".join([*parts[: j + 1], parts[j], *parts[j + 1:]])
        elif kind == "swap" and len(parts) > 1:
            parts[0], parts[1] = parts[1], parts[0]
            out = ".".join(parts)
        elif kind == "reencode":  # the same bytes in standard base64 (with + / =)
            j = draw(st.integers(min_value=0, max_value=len(parts) - 1))
            try:
                raw = base64.urlsafe_b64decode(parts[j] + "=" * (-len(parts[j]) % 4))
            except ValueError:
                continue
            parts[j] = base64.b64encode(raw).decode()
            out = ".".join(parts)
    return out


# ---- claims -------------------------------------------------------------------------------------------------

TIME_CLAIMS = ("exp", "nbf", "iat")


def time_values(now: int) -> st.SearchStrategy[Any]:
    """NumericDate claims of every shape: valid and skewed numbers, floats, strings, bools, null, lists, NaN."""
    return st.one_of(
        st.integers(min_value=now - 4000, max_value=now + 4000),
        st.floats(min_value=now - 4000, max_value=now + 4000),
        st.sampled_from([math.nan, math.inf, -math.inf, 1e20, -1e20, 0, 2**63, True, False, None]),
        st.integers(min_value=now - 4000, max_value=now + 4000).map(str),
        st.lists(st.integers(min_value=now, max_value=now + 600), max_size=2),
        odd_values,
    )


def claim_sets(issuer: str, audience: str, now: int) -> st.SearchStrategy[dict[str, Any]]:
    """Claims around a valid set: each registered claim kept, dropped or replaced by a value of another type."""
    def around(good: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(st.just(good), other)

    return st.fixed_dictionaries(
        {},
        optional={
            "iss": around(issuer, st.one_of(st.just(issuer + "/"), st.just(issuer.upper()), odd_values)),
            "aud": around(audience, st.one_of(st.just([audience, "x"]), st.just([]), odd_values)),
            "exp": around(now + 600, time_values(now)),
            "nbf": around(now, time_values(now)),
            "iat": around(now, time_values(now)),
            "azp": around("demo-client", odd_values),
            "client_id": around("demo-client", odd_values),
            "scope": around("orders:read", odd_values),
            "scp": odd_values,
            "sub": around("alice", odd_values),
            "jti": around("jti-fuzz", st.one_of(st.text(max_size=600), odd_values)),
        },
    )


# ---- requests -------------------------------------------------------------------------------------------------

path_segments = st.one_of(st.sampled_from(["orders", "v1", "items", "payments", "charges", "public", "health",
                                           "..", ".", "", "%2e%2e", "%2E", "ORDERS", "items;x=1", "%2F", "a%20b",
                                           "%zz", "%", "admin", "42", "*"]), st.text(max_size=6))
paths = st.one_of(
    st.lists(path_segments, max_size=6).map(lambda s: "/" + "/".join(s)),
    st.tuples(st.lists(path_segments, max_size=5), st.sampled_from(["", "?a=1", "?next=/admin", "#f", "?x=%2F"]))
    .map(lambda t: "/" + "/".join(t[0]) + t[1]),
    messy_text,
)
ROUTED_PATHS = ["/orders/v1/items", "/orders/v1/items/42", "/orders/v1/items?limit=1", "/payments/v1/charges",
                "/orders/v1/public/status", "/orders/v1/public/../items", "/orders//v1/items/", "/public/x"]
"""Paths that reach a resource of the test config, so that most requests get past routing to the token checks."""
methods = st.one_of(st.sampled_from(["GET", "POST", "get", "PUT", "DELETE", "HEAD", "OPTIONS", ""]), st.text(max_size=10))
header_names = st.one_of(
    st.sampled_from(["authorization", "Authorization", "AUTHORIZATION", ":path", ":method", ":authority", "host",
                     "x-application-id", "x-client-id", "x-request-id", "x-envoy-original-path", "content-type"]),
    st.text(min_size=1, max_size=12),
)


def authorization_values(tokens: list[str]) -> st.SearchStrategy[str]:
    """``authorization`` header values: the given tokens under every scheme spelling, mutations of them, JWS-like
    garbage, several credentials, and random text."""
    token = st.sampled_from(tokens)
    return st.one_of(
        st.builds(lambda s, a, t, b: f"{s}{a}{t}{b}", schemes, spaces, token, spaces),
        st.builds(lambda s, t: f"{s} {t}", schemes, token.flatmap(mutated)),
        st.builds(lambda s, t: f"{s} {t}", schemes, jws_like),
        st.builds(lambda t, u: f"Bearer {t},Bearer {u}", token, token),
        st.builds(lambda t: f"Bearer {t}, Basic dXNlcjpwYXNz", token),
        messy_text,
        st.text(max_size=40),
    )


@st.composite
def check_request(draw: st.DrawFn, tokens: list[str]) -> CheckRequest:
    """A whole ``CheckRequest`` as Envoy could send it, and shapes it would not: headers under several
    spellings, ``header_map`` entries with raw bytes, missing or conflicting pseudo-headers, route context."""
    req = CheckRequest()
    http = req.attributes.request.http
    if draw(st.booleans()):  # half of them as Envoy sends a real call, one credential, only the token varies
        http.method = draw(st.sampled_from(["GET", "POST"]))
        http.path = draw(st.sampled_from(ROUTED_PATHS))
        http.host = "api.example.test"
        http.headers["authorization"] = draw(st.one_of(
            st.sampled_from(tokens).map(lambda t: f"Bearer {t}"), authorization_values(tokens)))
        if draw(st.booleans()):
            req.attributes.context_extensions["api_id"] = draw(st.sampled_from(["orders-v1", "payments-v1"]))
        return req
    http.method = draw(st.one_of(st.sampled_from(["GET", "POST"]), methods))
    http.path = draw(st.one_of(st.sampled_from(ROUTED_PATHS), paths, st.just("")))
    http.host = draw(st.sampled_from(["api.example.test", "", "API.example.test:8080", "[::1]:80", "x"]))
    http.id = draw(st.text(max_size=12))
    headers = draw(st.dictionaries(header_names, st.text(max_size=20), max_size=6))
    for name, value in headers.items():
        http.headers[name] = value
    if draw(st.integers(min_value=0, max_value=3)):  # three times in four
        http.headers[draw(st.sampled_from(["authorization", "Authorization"]))] = draw(authorization_values(tokens))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        entry = http.header_map.headers.add()
        entry.key = draw(header_names)
        if draw(st.booleans()):
            entry.value = draw(st.one_of(authorization_values(tokens), st.text(max_size=10)))
        else:
            entry.raw_value = draw(st.binary(max_size=20))
    for name, value in draw(st.dictionaries(
            st.sampled_from(["api_id", "environment", "x"]),
            st.one_of(st.sampled_from(["orders-v1", "payments-v1", "nope", "sandbox", "production", ""]),
                      st.text(max_size=8)), max_size=2)).items():
        req.attributes.context_extensions[name] = value
    return req
