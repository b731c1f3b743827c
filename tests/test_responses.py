"""Respond phase: CheckResponse rendering (C20, C24), RFC 6750 challenges, and the forwarded headers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from google.protobuf.json_format import MessageToDict

from authz.config import HeadersSettings, Settings, parse_config
from authz.decide.forward import build_allow, build_public_allow, identity_values
from authz.decide.routes import Route
from authz.envoy.render import allow_response, challenge, deny_response
from authz.errors import RETRY_AFTER_SECONDS, Denial, Reason
from authz.model import Allow, Application, ClientBinding, Identity, KeyType, Subscription

OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def headers_of(response_headers: object) -> dict[str, str]:
    return {h.header.key: h.header.value for h in response_headers}  # type: ignore[attr-defined]


# ---- allow ------------------------------------------------------------------------------------------------


def test_allow_sets_headers_with_overwrite_removes_headers_and_carries_metadata() -> None:
    allow = Allow(
        headers=(("x-application-id", "app-1"), ("x-client-id", "demo-client")),
        headers_to_remove=("authorization", "x-subject"),
        dynamic_metadata={"application_id": "app-1", "application_tier": "Gold"},
    )
    resp = allow_response(allow)
    assert resp.status.code == 0
    assert resp.WhichOneof("http_response") == "ok_response"
    assert [(h.header.key, h.header.value, h.append_action) for h in resp.ok_response.headers] == [
        ("x-application-id", "app-1", OVERWRITE),
        ("x-client-id", "demo-client", OVERWRITE),
    ]
    assert list(resp.ok_response.headers_to_remove) == ["authorization", "x-subject"]
    assert MessageToDict(resp.dynamic_metadata) == {"application_id": "app-1", "application_tier": "Gold"}


# ---- deny: one row per Reason ------------------------------------------------------------------------------

EXPECTED = {
    # reason: (http, grpc, body error, www-authenticate)
    Reason.INVALID_REQUEST: (400, 16, "invalid_request",
                             'Bearer realm="authz", error="invalid_request", error_description="why"'),
    Reason.INVALID_CREDENTIALS: (401, 16, "invalid_token",
                                 'Bearer realm="authz", error="invalid_token", error_description="why"'),
    Reason.MISSING_CREDENTIALS: (401, 16, None, 'Bearer realm="authz"'),
    Reason.EXPIRED_TOKEN: (401, 16, "invalid_token",
                           'Bearer realm="authz", error="invalid_token", error_description="why"'),
    Reason.NO_MATCHING_RESOURCE: (403, 7, None, None),
    Reason.SUBSCRIPTION_BLOCKED: (403, 7, None, None),
    Reason.NOT_SUBSCRIBED: (403, 7, None, None),
    Reason.SUBSCRIPTION_INACTIVE: (403, 7, None, None),
    Reason.INSUFFICIENT_SCOPE: (403, 7, "insufficient_scope",
                                'Bearer realm="authz", error="insufficient_scope", error_description="why"'),
    Reason.UNKNOWN_CLIENT: (403, 7, None, None),
    Reason.TEMPORARILY_UNAVAILABLE: (503, 7, "temporarily_unavailable", None),
}


def test_every_reason_has_an_expected_rendering() -> None:
    assert set(EXPECTED) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.name)
def test_each_reason_renders_its_statuses_headers_and_body(reason: Reason) -> None:
    http, grpc, error, www = EXPECTED[reason]
    resp = deny_response(Denial(reason, "why"), "authz")
    assert resp.status.code == grpc
    assert resp.status.code in (7, 16)  # never a code Envoy's failure_mode_allow could turn into an allow
    assert resp.status.code == (16 if http in (400, 401) else 7)
    assert resp.status.message == reason.info.message
    assert resp.WhichOneof("http_response") == "denied_response"
    assert resp.denied_response.status.code == http
    headers = headers_of(resp.denied_response.headers)
    assert headers["content-type"] == "application/json"
    assert headers.get("www-authenticate") == www
    assert ("retry-after" in headers) == (http == 503)
    expected_body = {"code": reason.info.code, "message": reason.info.message, "description": "why"}
    if error:
        expected_body["error"] = error
    assert json.loads(resp.denied_response.body) == expected_body
    assert all(h.append_action == OVERWRITE for h in resp.denied_response.headers)


def test_missing_credentials_challenge_carries_no_error_attribute() -> None:
    value = challenge(Denial(Reason.MISSING_CREDENTIALS, "No bearer token"), "api")
    assert value == 'Bearer realm="api"'


def test_insufficient_scope_challenge_names_the_required_scope() -> None:
    d = Denial(Reason.INSUFFICIENT_SCOPE, "The access token lacks orders:write", scope="orders:write orders:admin")
    assert challenge(d, "authz") == (
        'Bearer realm="authz", error="insufficient_scope", '
        'error_description="The access token lacks orders:write", scope="orders:write orders:admin"'
    )


def test_challenge_description_keeps_only_rfc6750_characters() -> None:
    # RFC 6750 section 3: error_description is %x20-21 / %x23-5B / %x5D-7E: no '"', no '\\', no controls
    d = Denial(Reason.INVALID_CREDENTIALS, 'bad "kid"\r\nx-injected: 1\\\x00\x7f caf\u00e9\ttab')
    value = challenge(d, "authz")
    assert value == (
        "Bearer realm=\"authz\", error=\"invalid_token\", error_description=\"bad 'kid'x-injected: 1 caftab\""
    )
    desc = value.split('error_description="', 1)[1][:-1]
    assert all(c in "\x20\x21" or 0x23 <= ord(c) <= 0x5B or 0x5D <= ord(c) <= 0x7E for c in desc)


def test_json_body_keeps_the_description_verbatim_and_valid() -> None:
    resp = deny_response(Denial(Reason.INVALID_CREDENTIALS, 'bad "kid"\r\n'), "authz")
    assert json.loads(resp.denied_response.body)["description"] == 'bad "kid"\r\n'


def test_503_carries_retry_after_given_or_default() -> None:
    given = deny_response(Denial(Reason.TEMPORARILY_UNAVAILABLE, "redis down", retry_after=7), "authz")
    assert headers_of(given.denied_response.headers)["retry-after"] == "7"
    default = deny_response(Denial(Reason.TEMPORARILY_UNAVAILABLE, "redis down"), "authz")
    assert headers_of(default.denied_response.headers)["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert default.status.code == 7
    assert json.loads(default.denied_response.body)["error"] == "temporarily_unavailable"


# ---- forward.build_allow -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings() -> Settings:
    doc = yaml.safe_load(Path("config/authz.yaml").read_text(encoding="utf-8"))
    doc["headers"].update({"api_version": "x-api-version", "key_type": "x-key-type", "scopes": "x-scopes"})
    return parse_config(doc)


def allow_for(
    settings: Settings, *, client_id: str = "demo-client", subject: str = "user-1",
    app_name: str = "Demo App", headers: HeadersSettings | None = None,
) -> Allow:
    api = settings.api("orders-v1")
    assert api is not None
    route = Route(api=api, resource=api.resources[0], path="/orders/v1/items")
    identity = Identity(
        key_manager="demo", issuer="http://127.0.0.1:8081", subject=subject, client_id=client_id,
        scopes=frozenset({"orders:write", "orders:read"}), expires_at=2e9, token_id="j1", claims={},
    )
    app = Application(id="app-1", name=app_name, tier="Gold")
    sub = Subscription("app-1", "orders-v1", tier="Bronze")
    return build_allow(identity, app, ClientBinding("app-1", KeyType.SANDBOX), sub, route,
                       headers or settings.headers)


def test_build_allow_sets_every_configured_header_and_metadata(settings: Settings) -> None:
    allow = allow_for(settings)
    assert dict(allow.headers) == {
        "x-application-id": "app-1",
        "x-application-name": "Demo App",
        "x-client-id": "demo-client",
        "x-subject": "user-1",
        "x-api-id": "orders-v1",
        "x-api-version": "v1",
        "x-key-type": "SANDBOX",
        "x-scopes": "orders:read orders:write",
    }
    assert allow.headers_to_remove == ("authorization",)
    assert dict(allow.dynamic_metadata) == {
        "application_id": "app-1", "application_name": "Demo App", "application_tier": "Gold",
        "client_id": "demo-client", "subject": "user-1", "api_id": "orders-v1",
        "subscription_tier": "Bronze", "key_type": "SANDBOX",
    }


@pytest.mark.parametrize("bad", ["user\r\nx-admin: 1", "user\nx", "user\rx", "nul\x00", "tab\tx", "del\x7f",
                                 "esc\x1b[0m", "x" * 8193])
def test_values_with_control_characters_are_never_forwarded(settings: Settings, bad: str) -> None:
    allow = allow_for(settings, subject=bad, app_name=bad)
    names = dict(allow.headers)
    assert "x-subject" not in names
    assert "x-application-name" not in names
    # the client's own copy of a header authz could not set is stripped, not passed through (C20)
    assert "x-subject" in allow.headers_to_remove
    assert "x-application-name" in allow.headers_to_remove
    assert names["x-client-id"] == "demo-client"
    assert all("\r" not in v and "\n" not in v and "\x00" not in v for v in names.values())


def test_configured_header_without_a_value_is_removed_so_a_client_copy_cannot_pass(settings: Settings) -> None:
    allow = allow_for(settings, subject="")
    assert "x-subject" not in dict(allow.headers)
    assert allow.headers_to_remove == ("authorization", "x-subject")


def test_null_header_names_are_skipped(settings: Settings) -> None:
    headers = HeadersSettings(application_name=None, subject=None, api_id=None, remove=["authorization", "cookie"])
    allow = allow_for(settings, headers=headers)
    assert dict(allow.headers) == {"x-application-id": "app-1", "x-client-id": "demo-client"}
    assert allow.headers_to_remove == ("authorization", "cookie")
    assert None not in dict(allow.headers)
    rendered = allow_response(allow)
    assert [h.header.key for h in rendered.ok_response.headers] == ["x-application-id", "x-client-id"]


def test_every_identity_header_setting_has_a_value_and_a_public_allow_removes_them_all(settings: Settings) -> None:
    """One list (``HeadersSettings.identity_fields``) drives what is set, what is removed and what a public
    resource strips: a setting without a value in forward.py would leave a client-forgeable header."""
    api = settings.api("orders-v1")
    assert api is not None
    route = Route(api=api, resource=api.resources[0], path="/orders/v1/items")
    identity = Identity(key_manager="demo", issuer="i", subject="s", client_id="c", scopes=frozenset({"a"}),
                        expires_at=2e9, token_id=None, claims={})
    values = identity_values(identity, Application(id="a", name="A"), ClientBinding("a"), route)
    assert set(values) == set(HeadersSettings.identity_fields())
    every = HeadersSettings(**{f: f"x-h-{i}" for i, f in enumerate(HeadersSettings.identity_fields())})
    public = build_public_allow(route, every)
    assert set(public.headers_to_remove) == {"authorization", *every.identity_headers()}
    allow = build_allow(identity, Application(id="a", name="A"), ClientBinding("a"),
                        Subscription("a", "orders-v1"), route, every)
    assert {name for name, _ in allow.headers} | set(allow.headers_to_remove) == {
        "authorization", *every.identity_headers()}
