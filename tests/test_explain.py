"""`authz explain` at the pipeline level (in-memory registry, real key manager): the real phases walked one by one,
each reporting what it saw and the rule it applied; the documented denials name their phase."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from authz.config import Settings
from authz.decide.explain import Explanation
from authz.dev.keymanager import KeyManager
from authz.dev.stack import tamper_signature
from authz.envoy.requests import described_request
from authz.model import Step
from authz.ops.services import explainer
from tests.support.pipeline import PipelineUnderTest, running_pipeline

PHASES = ["route", "public", "credentials", "identity", "key_manager", "revocation", "resource", "registry", "policy"]


@asynccontextmanager
async def _registry(settings: Settings) -> AsyncIterator[tuple[PipelineUnderTest, Callable[..., Any]]]:
    async with running_pipeline(settings) as p:
        await p.register()
        await p.register("other-app", "other-client", "Other App", api=None)
        await p.register("blocked-app", "blocked-client", "Blocked App")
        await p.admin.set_subscription_status("blocked-app", "orders-v1", "BLOCKED")
        await p.settle()
        run = explainer(settings, p.keys, p.store, None)

        async def explain(token: str | None, path: str = "/orders/v1/items", **kw: str) -> Explanation:
            return await run(described_request(kw.pop("method", "GET"), path, token=token, api_id="orders-v1",
                                               **kw))

        yield p, explain


def _steps(explanation: Explanation, phase: str) -> dict[str, Step]:
    report = next(p for p in explanation.phases if p.name == phase)
    return {s.name: s for s in report.steps}


async def test_an_allowed_call_shows_every_phase_and_what_the_upstream_gets(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    token = idp.issue_token("demo-client", "alice", "orders:read")
    async with _registry(make_settings()) as (_, explain):
        e = await explain(token)
    assert (e.result, e.phase, e.code, e.http_status, e.exit_status) == ("allow", "policy", "ok", 200, 0)
    assert [(p.name, p.outcome) for p in e.phases] == [(n, "passed") for n in PHASES[:-1]] + [("policy", "allowed")]
    route = _steps(e, "route")
    assert route["api"].seen == "orders-v1 (Orders), context /orders/v1"
    assert route["resource"].seen == "GET /items (auth: required) for /orders/v1/items"
    assert route["scopes required"].seen == "any of: orders:read"
    identity = _steps(e, "identity")
    assert list(identity) == ["size", "syntax", "header", "key manager", "alg", "typ", "key", "signature", "iss", "aud",
                              "exp", "nbf", "iat", "client_id", "scopes", "identity"]
    assert identity["header"].seen == 'alg="RS256" kid="k1" typ="at+jwt"'
    assert identity["key manager"].seen == f'iss="{idp.issuer}" -> test-km' and identity["key manager"].ok
    assert identity["key"].seen.startswith("kid='k1' alg=RS256: found in the cached key set (fetched ")
    assert identity["aud"].seen == '"authz-test"' and identity["aud"].rule == "contains one of authz-test"
    assert identity["exp"].rule == "present, and now < exp + leeway 60s"
    assert identity["client_id"].seen == 'azp="demo-client"'
    assert identity["scopes"].seen == "scope: orders:read"
    assert all(s.ok is not False for s in identity.values())
    policy = _steps(e, "policy")
    assert [(name, s.ok) for name, s in policy.items()] == [
        ("client", True), ("application", True), ("key type", True), ("subscription", True), ("scopes", True)]
    assert policy["key type"].seen == "PRODUCTION key on a production route"
    assert policy["scopes"].seen == "held: orders:read" and policy["scopes"].rule == "any of: orders:read"
    assert ("x-application-id", "demo-app") in e.headers and ("x-client-id", "demo-client") in e.headers
    assert e.headers_to_remove == ("authorization",)
    assert e.metadata["application_id"] == "demo-app"
    assert token not in json.dumps(e.to_dict()) and token.split(".")[2] not in json.dumps(e.to_dict())


DENIALS = [
    # (what, token factory, request overrides, phase, code, the failing step)
    ("expired", lambda idp: idp.issue_token("demo-client", "a", "orders:read", extra_claims={
        "exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200, "nbf": int(time.time()) - 7200}),
     {}, "identity", "900903", "exp"),
    ("bad signature", lambda idp: tamper_signature(idp.issue_token("demo-client", "a", "orders:read")),
     {}, "identity", "900901", "signature"),
    ("wrong audience", lambda idp: idp.issue_token("demo-client", "a", "orders:read", extra_claims={"aud": "other"}),
     {}, "identity", "900901", "aud"),
    ("unknown client", lambda idp: idp.issue_token("ghost-client", "a", "orders:read"),
     {}, "policy", "900911", "client"),
    ("not subscribed", lambda idp: idp.issue_token("other-client", "a", "orders:read"),
     {}, "policy", "900908", "subscription"),
    ("blocked", lambda idp: idp.issue_token("blocked-client", "a", "orders:read"),
     {}, "policy", "900907", "subscription"),
    ("insufficient scope", lambda idp: idp.issue_token("demo-client", "a", "orders:read"),
     {"method": "POST"}, "policy", "900910", "scopes"),
    ("sandbox route", lambda idp: idp.issue_token("demo-client", "a", "orders:read"),
     {"environment": "sandbox"}, "policy", "900908", "key type"),
    ("padded signature", lambda idp: idp.issue_token("demo-client", "a", "orders:read") + "==",  # 342 + 2 characters
     {}, "identity", "900901", "syntax"),
    ("no token", lambda idp: None, {}, "credentials", "900902", "bearer token"),
    ("no resource", lambda idp: idp.issue_token("demo-client", "a", "orders:read"),
     {"path": "/orders/v1/nothing"}, "resource", "900906", "route"),
]


@pytest.mark.parametrize(("what", "make_token", "overrides", "phase", "code", "failing"), DENIALS,
                         ids=[d[0] for d in DENIALS])
async def test_each_documented_denial_names_its_phase_and_the_failing_rule(
    make_settings: Callable[..., Settings], idp: KeyManager, what: str, make_token: Callable[[KeyManager], str | None],
    overrides: dict[str, str], phase: str, code: str, failing: str,
) -> None:
    token = make_token(idp)
    async with _registry(make_settings()) as (_, explain):
        e = await explain(token, **overrides)
    assert (e.result, e.phase, e.code, e.exit_status) == ("deny", phase, code, 1), e
    outcomes = {p.name: p.outcome for p in e.phases}
    assert outcomes[phase] == "denied"
    assert all(outcomes[n] == "not reached" for n in PHASES[PHASES.index(phase) + 1:])
    steps = _steps(e, phase)
    assert steps[failing].ok is False, steps
    if token:
        assert token not in json.dumps(e.to_dict())


async def test_a_revoked_token_is_denied_by_the_revocation_phase(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    token = idp.issue_token("demo-client", "a", "orders:read")
    async with _registry(make_settings()) as (p, explain):
        jti = (await p.pipeline.phases[3].tokens.validate(token)).token_id  # type: ignore[attr-defined]
        await p.admin.revoke(jti, int(time.time()) + 600, key_manager="test-km")
        await p.settle()
        e = await explain(token)
    assert (e.result, e.phase, e.code) == ("deny", "revocation", "900901")
    assert _steps(e, "revocation")["jti"].seen == jti and _steps(e, "revocation")["jti"].ok is False


async def test_a_key_manager_that_cannot_be_reached_leaves_it_undecided_with_exit_status_2(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    token = idp.issue_token("demo-client", "a", "orders:read")
    settings = make_settings(km={"jwks_uri": "http://127.0.0.1:9/oauth2/jwks",
                                 "jwks": {"timeout": 0.2, "retry_interval": 5}})
    async with _registry(settings) as (_, explain):
        e = await explain(token)
    assert (e.result, e.phase, e.exit_status, e.http_status, e.code) == ("undecided", "identity", 2, 503, "900950")
    assert e.detail.startswith("jwks:test-km unavailable: ")
    assert _steps(e, "identity")["key"].ok is False


async def test_a_key_manager_the_api_does_not_accept_is_denied_by_the_key_manager_phase(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    from pathlib import Path

    import yaml

    from tests.support.config import settings_dict

    doc = settings_dict(idp)
    partner = {**doc["key_managers"][0], "name": "partner", "issuer": f"{idp.url}/partner"}
    apis = yaml.safe_load(Path("config/authz.yaml").read_text(encoding="utf-8"))["apis"]
    apis[0]["key_managers"] = ["test-km"]
    settings = make_settings(key_managers=[doc["key_managers"][0], partner], apis=apis)
    async with running_pipeline(settings) as p:
        run = explainer(settings, p.keys, p.store, None)
        token = idp.issue_token("demo-client", "a", "orders:read", extra_claims={"iss": f"{idp.url}/partner"})
        e = await run(described_request("GET", "/orders/v1/items", token=token, api_id="orders-v1"))
    assert (e.result, e.phase, e.code) == ("deny", "key_manager", "900901")
    assert e.description == "The access token was issued by key manager 'partner', which API 'orders-v1' does not accept"
    step = _steps(e, "key_manager")["key manager"]
    assert (step.seen, step.rule, step.ok) == ("partner", "one API orders-v1 accepts (apis[].key_managers): test-km",
                                               False)
