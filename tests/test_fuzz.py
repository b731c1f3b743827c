"""Fuzzing with hypothesis: hostile input never raises, never fails the RPC and never allows without a valid
token signed by a configured issuer's key.

Properties over the bearer parser (authz/decide/credentials.py), the JWS compact structure and claim types
(TokenValidator over a real key manager on loopback), path canonicalization (authz/decide/routes.py), header
adaptation (authz/envoy/requests.py, authz/envoy/grpc_service.py ``adapt``) and whole ``CheckRequest`` messages
through ``AuthorizationServicer.Check`` over the pipeline on the in-memory store.

Deterministic (``derandomize``: the same examples on every run, no example database) and bounded
(``max_examples`` per property, see :data:`EXAMPLES`); the whole module runs in well under a minute. For long
runs, ``make fuzz`` drives the atheris harness (tests/fuzz/harness.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.config import Settings
from authz.decide.credentials import _OTHER_SCHEMES, extract_bearer
from authz.decide.identity import TokenValidator
from authz.decide.pipeline import token_fingerprint
from authz.decide.routes import RouteTable, normalize_path
from authz.dev.keymanager import KeyManager
from authz.envoy.grpc_service import AuthorizationServicer, adapt
from authz.envoy.requests import MAX_HEADER_BYTES, build_request, fold_headers
from authz.errors import Denial, DependencyUnavailable, Reason
from authz.model import Identity, Request
from tests.fuzz import strategies as fz
from tests.fuzz.strategies import B64TOKEN_SYNTAX
from tests.fuzz.targets import CORPUS, Harness, decoded, replay
from tests.support.pipeline import PipelineUnderTest, running_pipeline
from tests.support.tokencraft import running_validator, sign

EXAMPLES = {"parser": 600, "spelling": 300, "jws": 500, "claims": 300, "paths": 800, "routes": 500, "headers": 300,
            "builder": 300, "check": 600}
"""Examples per property (4,500 in all): sized so that the module runs in about 15 s on an idle 2-core machine."""


def fuzz(kind: str) -> Callable[[Any], Any]:
    """Hypothesis settings of one property: deterministic, bounded, no deadline (shared CPUs), no database."""
    return settings(max_examples=EXAMPLES[kind], derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


PUBLIC_ROUTE = {"path": "/public/**", "methods": ["GET"], "auth": "none"}


@dataclass
class Loop:
    """An event loop of the test's own, for async code under a synchronous hypothesis test."""

    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@pytest.fixture
def loop() -> Iterator[Loop]:
    event_loop = asyncio.new_event_loop()
    yield Loop(event_loop)
    event_loop.close()


# ---- the bearer parser ----------------------------------------------------------------------------------


@fuzz("parser")
@given(st.one_of(st.none(), fz.authorization_values(["eyJ0.eyJ0.c2ln", "abc", "a-b_c~d+e/f=="]), st.text()))
def test_the_bearer_parser_returns_a_b64token_or_a_precise_denial(value: str | None) -> None:
    headers = {} if value is None else {"authorization": value}
    try:
        token = extract_bearer(headers)
    except Denial as denial:
        assert denial.reason in (Reason.MISSING_CREDENTIALS, Reason.INVALID_REQUEST, Reason.INVALID_CREDENTIALS)
        if denial.reason is Reason.MISSING_CREDENTIALS:  # no header, or another registered scheme alone
            assert value is None or value.strip(" \t").partition(" ")[0].lower() in _OTHER_SCHEMES
        return
    assert value is not None and B64TOKEN_SYNTAX.fullmatch(token)
    assert value.strip(" \t").lower().startswith("bearer ") and value.rstrip(" \t").endswith(token)


@fuzz("spelling")
@given(fz.b64token_text, st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"]), fz.spaces.filter(lambda s: "\u00a0" not in s),
       st.sampled_from([" ", "  ", "    "]))  # RFC 6750: "Bearer" 1*SP b64token (SP only)
def test_every_spelling_of_one_bearer_credential_gives_the_same_token(
    token: str, scheme: str, around: str, separator: str,
) -> None:
    assert extract_bearer({"authorization": f"{around}{scheme}{separator}{token}{around}"}) == token


# ---- JWS compact structure and claim types (TokenValidator, real key manager) -------------------------------


@pytest.fixture
def validator(loop: Loop, make_settings: Callable[..., Settings]) -> Iterator[TokenValidator]:
    context = running_validator(make_settings())
    validator, _ = loop.run(context.__aenter__())
    yield validator
    loop.run(context.__aexit__(None, None, None))


def _validate(loop: Loop, validator: TokenValidator, token: str) -> Identity | Denial | DependencyUnavailable:
    try:
        return loop.run(validator.validate(token))
    except (Denial, DependencyUnavailable) as refused:
        return refused


@fuzz("jws")
@given(data=st.data())
def test_a_jws_that_is_not_the_signed_one_is_refused_and_never_raises(
    data: st.DataObject, loop: Loop, validator: TokenValidator, idp: KeyManager,
) -> None:
    valid = idp.issue_token("demo-client", "alice", "orders:read")
    original = decoded(valid)
    token = data.draw(st.one_of(fz.jws_like, fz.mutated(valid)))
    outcome = _validate(loop, validator, token)
    if isinstance(outcome, Identity):
        # Only the same signing input with the same signature bytes (base64url spellings of them) verifies.
        assert decoded(token) == original, token
    else:
        assert isinstance(outcome, Denial) and outcome.reason in (Reason.INVALID_CREDENTIALS, Reason.EXPIRED_TOKEN)


@pytest.fixture
def now() -> int:
    """The test's "now": fixed for all its examples, so that hypothesis draws the same claims when it replays one."""
    return int(time.time())


@fuzz("claims")
@given(data=st.data())
def test_signed_claims_of_any_type_are_validated_or_refused_never_raise(
    data: st.DataObject, loop: Loop, validator: TokenValidator, idp: KeyManager, now: int,
) -> None:
    claims = data.draw(fz.claim_sets(idp.issuer, idp.audience, now))
    outcome = _validate(loop, validator, sign(idp.signing_key, claims))
    if isinstance(outcome, Identity):
        assert claims.get("iss") == idp.issuer
        aud = claims["aud"]
        assert aud == idp.audience or (isinstance(aud, list) and idp.audience in aud)
        exp = claims["exp"]
        assert type(exp) in (int, float) and exp > now - 60 - 5  # leeway 60 s (and the test's own seconds)
        assert outcome.expires_at == float(exp)
        if "nbf" in claims:
            assert type(claims["nbf"]) in (int, float) and claims["nbf"] <= time.time() + 60
        if "iat" in claims:
            assert type(claims["iat"]) in (int, float)
        assert isinstance(outcome.client_id, str) and outcome.client_id in (claims.get("azp"), claims.get("client_id"))
    else:
        assert isinstance(outcome, Denial) and outcome.reason in (Reason.INVALID_CREDENTIALS, Reason.EXPIRED_TOKEN)


# ---- path canonicalization and routes ---------------------------------------------------------------------


@fuzz("paths")
@given(raw=fz.paths)
def test_a_canonical_path_has_no_dot_segments_no_empty_segments_and_is_a_fixed_point(raw: str) -> None:
    try:
        path = normalize_path(raw)
    except Denial as denial:
        assert denial.reason is Reason.INVALID_REQUEST
        return
    assert path.startswith("/") and "//" not in path and "?" not in path and "#" not in path
    segments = path.split("/")[1:]
    assert "." not in segments and ".." not in segments
    assert "%2F" not in path.upper() and "%5C" not in path.upper() and "\\" not in path and ";" not in path
    assert normalize_path(path) == path


@pytest.fixture
def routes(make_settings: Callable[..., Settings]) -> RouteTable:
    return RouteTable(make_settings().apis)


@fuzz("routes")
@given(raw=fz.paths, method=fz.methods, host=st.sampled_from(["api.example.test", "x"]),
       api_id=st.sampled_from([None, "orders-v1", "nope"]))
def test_a_route_always_matches_its_api_context_on_segment_boundaries(
    raw: str, method: str, host: str, api_id: str | None, routes: RouteTable,
) -> None:
    table = routes
    request = Request(method, raw, host, {}, {} if api_id is None else {"api_id": api_id})
    try:
        route = table.resolve(request)
    except Denial as denial:
        assert denial.reason in (Reason.INVALID_REQUEST, Reason.NO_MATCHING_RESOURCE)
        return
    assert route.path == normalize_path(raw)
    if api_id is None:
        context = route.api.context.rstrip("/")
        assert route.path == context or route.path.startswith(context + "/")
    else:
        assert route.api.id == api_id
    assert method.upper() in route.resource.methods or "*" in route.resource.methods


# ---- header adaptation ------------------------------------------------------------------------------------


@fuzz("headers")
@given(message=fz.check_request(["eyJ0.eyJ0.c2ln"]))
def test_adapt_folds_every_spelling_of_a_header_and_never_raises_anything_but_a_400(message: CheckRequest) -> None:
    http = message.attributes.request.http
    try:
        request = adapt(message)
    except Denial as denial:
        assert denial.reason is Reason.INVALID_REQUEST
        return
    entries = [*http.headers.items(), *((e.key, e.value or e.raw_value.decode("utf-8", "replace"))
                                        for e in http.header_map.headers)]
    expected: dict[str, list[str]] = {}
    for name, value in entries:
        expected.setdefault(name.lower(), []).append(value)
    assert set(request.headers) == set(expected)
    for name, values in expected.items():
        folded = request.headers[name]
        assert len(folded) == sum(map(len, values)) + len(values) - 1 and all(v in folded for v in values)
    assert request.path == (http.path or request.headers.get(":path", ""))
    assert sum(map(len, request.headers.values())) + sum(map(len, request.headers)) <= MAX_HEADER_BYTES


@fuzz("builder")
@given(entries=st.lists(st.tuples(fz.header_names, st.text(max_size=30)), max_size=8), method=fz.methods,
       path=fz.paths)
def test_the_shared_request_builder_keeps_names_lower_case_and_log_fields_printable(
    entries: list[tuple[str, str]], method: str, path: str,
) -> None:
    headers = fold_headers(entries)
    assert all(name == name.lower() for name in headers)
    try:
        request = build_request(method, path, "h", headers, request_id="id\n\x00x")
    except Denial as denial:
        assert denial.reason is Reason.INVALID_REQUEST
        return
    assert all(0x20 < ord(c) < 0x7F for c in request.method + request.request_id)


# ---- whole CheckRequests through the gRPC servicer ------------------------------------------------------


@dataclass
class Served:
    """The servicer over a seeded in-memory registry, and the only tokens that may be allowed: on a protected
    resource ``allowed_tokens``; on a public one (``auth: none``) any token of ``valid_tokens`` (valid, whatever its
    application: C19 still refuses an expired or foreign-audience one)."""

    servicer: AuthorizationServicer
    routes: RouteTable
    allowed_tokens: set[str]
    valid_tokens: set[str]
    tokens: list[str]


@pytest.fixture
def served(loop: Loop, make_settings: Callable[..., Settings], idp: KeyManager) -> Iterator[Served]:
    base = make_settings()
    apis = [api.model_dump(exclude_none=True) for api in base.apis]
    apis[0]["resources"].append(PUBLIC_ROUTE)
    context = running_pipeline(make_settings(apis=apis))
    p: PipelineUnderTest = loop.run(context.__aenter__())

    async def seed() -> None:
        await p.register()
        await p.register("other-app", "other-client", "Other App", api=None)

    loop.run(seed())
    valid = [idp.issue_token("demo-client", "alice", "orders:read"),
             idp.issue_token("demo-client", "bob", "orders:read orders:write")]
    unsubscribed = idp.issue_token("other-client", "carol", "orders:read")  # valid, but not subscribed
    refused = [unsubscribed,
               idp.issue_token("demo-client", "dan", "orders:read", extra_claims={"aud": "someone-else"}),
               idp.issue_token("demo-client", "eve", "orders:read", lifetime=-120)]
    yield Served(AuthorizationServicer(p.pipeline, "authz"), RouteTable(make_settings(apis=apis).apis), set(valid),
                 {*valid, unsubscribed}, valid + refused)
    loop.run(context.__aexit__(None, None, None))


def _authorization_values(message: CheckRequest) -> list[str]:
    http = message.attributes.request.http
    values = [v for k, v in http.headers.items() if k.lower() == "authorization"]
    values += [e.value or e.raw_value.decode("utf-8", "replace") for e in http.header_map.headers
               if e.key.lower() == "authorization"]
    return values


@fuzz("check")
@given(data=st.data())
def test_a_check_request_never_fails_the_rpc_and_never_allows_without_a_valid_signed_token(
    data: st.DataObject, loop: Loop, served: Served, caplog: pytest.LogCaptureFixture,
) -> None:
    message = data.draw(fz.check_request(served.tokens))
    with caplog.at_level(logging.ERROR):
        answer = loop.run(served.servicer.Check(message, None))  # type: ignore[arg-type]
    response = CheckResponse.FromString(answer) if isinstance(answer, bytes) else answer
    assert isinstance(response, CheckResponse)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text  # no internal error path
    code = response.status.code
    assert code in (0, 7, 16)  # never UNAVAILABLE/UNKNOWN/INTERNAL: Envoy's failure_mode_allow never applies
    if code != 0:
        assert response.denied_response.status.code in (400, 401, 403)
        return
    values = _authorization_values(message)
    public = served.routes.resolve(adapt(message)).resource.auth == "none"
    if not values:  # only a public resource (auth: none) is allowed without credentials
        assert public, message.attributes.request.http.path
        return
    assert len(values) == 1, [token_fingerprint(v) for v in values]
    scheme, _, token = values[0].strip(" \t").partition(" ")
    assert scheme.lower() == "bearer", token_fingerprint(values[0])
    # A public resource takes any valid token (no application check); a protected one only a subscribed one.
    assert token.strip(" \t") in (served.valid_tokens if public else served.allowed_tokens), (
        f"allowed token {token_fingerprint(token.strip())} (public resource: {public})")


# ---- the atheris harness (make fuzz), replayed on its seed corpus -------------------------------------------


def test_the_atheris_seed_corpus_replays_clean_without_atheris() -> None:
    harness = Harness()
    try:
        assert replay(harness) == sum(1 for d in CORPUS.iterdir() for _ in d.iterdir()) == 48
        assert dict(harness.outcomes) == {"allow": 3, "deny 403": 3, "deny 401": 2, "deny 400": 2}
    finally:
        harness.loop.close()
