"""Key-manager presets (``authz.keys.presets``): each IdP's token shape validated end to end through
``TokenValidator`` with a real key and a real JWKS on loopback, and field-by-field overrides."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from authz.config import ConfigError, Settings
from authz.dev.keymanager import KeyManager
from authz.errors import Denial, Reason
from authz.keys.presets import PRESETS
from tests.support.tokencraft import running_validator, sign

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
API_GUID = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
CLIENT_GUID = "4f6a1c2e-9d3b-4c1f-8a7e-2b5d6c7e8f90"


def _times() -> dict[str, int]:
    now = int(time.time())
    return {"iat": now, "nbf": now, "exp": now + 3600}


def _keycloak(iss: str) -> tuple[dict[str, Any], dict[str, Any]]:
    now = _times()
    return {"typ": "JWT"}, {
        "exp": now["exp"], "iat": now["iat"], "jti": str(uuid.uuid4()), "iss": iss,
        "aud": ["orders-api", "account"], "sub": "f7d3c1a2-0b9e-4e5f-9a8b-1c2d3e4f5a6b", "typ": "Bearer",
        "azp": "orders-web", "sid": str(uuid.uuid4()), "acr": "1", "allowed-origins": ["https://app.example.test"],
        "realm_access": {"roles": ["default-roles-demo", "offline_access"]},
        "resource_access": {"account": {"roles": ["manage-account"]}},
        "scope": "openid email profile orders:read", "email_verified": True, "preferred_username": "alice",
    }


def _auth0(iss: str) -> tuple[dict[str, Any], dict[str, Any]]:
    now = _times()
    return {"typ": "JWT"}, {
        "iss": iss, "sub": "orders-m2m@clients", "aud": "orders-api", "iat": now["iat"], "exp": now["exp"],
        "gty": "client-credentials", "azp": "orders-m2m", "scope": "orders:read orders:write",
    }


def _auth0_rfc9068(iss: str) -> tuple[dict[str, Any], dict[str, Any]]:
    # Auth0's "RFC 9068" access token profile: typ at+jwt, 'client_id' instead of 'azp'.
    now = _times()
    return {"typ": "at+jwt"}, {
        "iss": iss, "sub": "auth0|64b7f0c2e1d2a3b4c5d6e7f8", "aud": ["orders-api", f"{iss}userinfo"],
        "iat": now["iat"], "exp": now["exp"], "client_id": "orders-web", "jti": uuid.uuid4().hex,
        "scope": "openid profile orders:read",
    }


def _okta(iss: str) -> tuple[dict[str, Any], dict[str, Any]]:
    now = _times()
    return {}, {
        "ver": 1, "jti": "AT.6n3Ae3a9m1d4kYQxK8Rr0p4Y9Zl3Qm2cXh5gLfWb7uE", "iss": iss, "aud": "orders-api",
        "iat": now["iat"], "exp": now["exp"], "cid": "0oa1b2c3d4E5F6g7H8i9", "uid": "00u1a2b3c4D5e6F7g8h9",
        "scp": ["openid", "orders:read"], "auth_time": now["iat"] - 30, "sub": "alice@example.test",
    }


def _entra_v1(iss: str) -> tuple[dict[str, Any], dict[str, Any]]:
    now = _times()
    return {"typ": "JWT", "x5t": "KQ2tAcrE7lBaVVGBmc5FobgdJo4"}, {
        "aud": "orders-api", "iss": iss, "iat": now["iat"], "nbf": now["nbf"], "exp": now["exp"],
        "acr": "1", "aio": "AVQAq/8TAAAA", "amr": ["pwd", "mfa"], "appid": CLIENT_GUID, "appidacr": "0",
        "family_name": "Doe", "given_name": "Alice", "ipaddr": "192.0.2.10", "name": "Alice Doe",
        "oid": "a1b2c3d4-0000-4000-8000-000000000001", "rh": "0.AVAAv4j5cvGGr0GRqy180BHbR.",
        "scp": "orders.read user_impersonation", "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
        "tid": TENANT, "unique_name": "alice@contoso.example", "upn": "alice@contoso.example",
        "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "1.0",
    }


def _entra_v2(iss: str) -> tuple[dict[str, Any], dict[str, Any]]:
    now = _times()
    return {"typ": "JWT"}, {
        "aud": "orders-api", "iss": iss, "iat": now["iat"], "nbf": now["nbf"], "exp": now["exp"],
        "aio": "AWQAm/8TAAAA", "azp": CLIENT_GUID, "azpacr": "1",
        "oid": "a1b2c3d4-0000-4000-8000-000000000002", "rh": "0.AVAAv4j5cvGGr0GRqy180BHbR.",
        "roles": ["orders.read.all"], "sub": "a1b2c3d4-0000-4000-8000-000000000002", "tid": TENANT,
        "uti": "Vl1jKQ5eV0-QdRmV1Jg8AA", "ver": "2.0",
    }


def _asgardeo(iss: str) -> tuple[dict[str, Any], dict[str, Any]]:
    now = _times()
    return {"typ": "at+jwt", "x5t": "ZjVhMDk3ZDMxNzRiZGU3OWIxMjM0"}, {
        "sub": "0b8f1c4e-1a2b-4c3d-9e8f-7a6b5c4d3e2f", "aut": "APPLICATION_USER", "iss": iss,
        "client_id": "Xq4cG9bYzT1rLkq0Vw8sUa2Pf3ka", "aud": "orders-api", "nbf": now["nbf"],
        "azp": "Xq4cG9bYzT1rLkq0Vw8sUa2Pf3ka", "org_id": "7d1e3c5a-2b4f-4a6e-8c0d-9e1f2a3b4c5d",
        "scope": "openid orders:read", "exp": now["exp"], "org_name": "acme", "iat": now["iat"],
        "jti": str(uuid.uuid4()),
    }


def _rfc9068(iss: str) -> tuple[dict[str, Any], dict[str, Any]]:
    # An RFC 9068 access token as oidc-provider (Node.js) or Glewlwyd issue them: typ at+jwt, client_id, scope.
    now = _times()
    return {"typ": "at+jwt"}, {
        "iss": iss, "sub": "alice", "aud": "orders-api", "iat": now["iat"], "exp": now["exp"],
        "jti": "uJ3Vq5E5Qm0bS1cHqk2fX", "client_id": "orders-cli", "scope": "openid orders:read",
        "auth_time": now["iat"] - 5, "acr": "urn:mace:incommon:iap:silver",
    }


CASES = {
    # preset: (issuer, token shape, expected client ID, expected scopes)
    "keycloak": ("https://sso.example.test/realms/demo", _keycloak, "orders-web",
                 {"openid", "email", "profile", "orders:read"}),
    "auth0": ("https://acme.eu.auth0.com/", _auth0, "orders-m2m", {"orders:read", "orders:write"}),
    "auth0-rfc9068": ("https://acme.eu.auth0.com/", _auth0_rfc9068, "orders-web",
                      {"openid", "profile", "orders:read"}),
    "okta": ("https://acme.okta.com/oauth2/default", _okta, "0oa1b2c3d4E5F6g7H8i9", {"openid", "orders:read"}),
    "entra": (f"https://login.microsoftonline.com/{TENANT}/v2.0", _entra_v2, CLIENT_GUID, {"orders.read.all"}),
    "rfc9068": ("https://op.example.test", _rfc9068, "orders-cli", {"openid", "orders:read"}),
    "entra-v1": (f"https://sts.windows.net/{TENANT}/", _entra_v1, CLIENT_GUID,
                 {"orders.read", "user_impersonation"}),
    "entra-v2": (f"https://login.microsoftonline.com/{TENANT}/v2.0", _entra_v2, CLIENT_GUID, {"orders.read.all"}),
    "asgardeo": ("https://api.asgardeo.io/t/acme/oauth2/token", _asgardeo, "Xq4cG9bYzT1rLkq0Vw8sUa2Pf3ka",
                 {"openid", "orders:read"}),
}


def _preset_km(idp: KeyManager, preset: str, issuer: str, **extra: Any) -> dict[str, Any]:
    km = {
        "name": preset, "preset": preset, "issuer": issuer, "jwks_uri": f"{idp.url}/oauth2/jwks",
        "audiences": ["orders-api"],
        "jwks": {"refresh_interval": 300, "kid_refetch_cooldown": 30, "timeout": 2, "retry_interval": 0.2},
    }
    km.update(extra)
    return km


@pytest.mark.parametrize("case", sorted(CASES))
async def test_preset_accepts_a_token_shaped_like_its_idps(
    case: str, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    issuer, shape, client_id, scopes = CASES[case]
    preset = case.split("-rfc")[0]
    header, payload = shape(issuer)
    settings = make_settings(key_managers=[_preset_km(idp, preset, issuer)])
    async with running_validator(settings) as (v, _):
        identity = await v.validate(sign(idp.signing_key, payload, header=header))
        assert (identity.key_manager, identity.issuer) == (preset, issuer)
        assert identity.client_id == client_id
        assert identity.scopes == frozenset(scopes)


@pytest.mark.parametrize(
    ("preset", "client_claims", "scope_claims"),
    [
        ("keycloak", ["azp"], ["scope"]),
        ("auth0", ["azp", "client_id"], ["scope"]),
        ("okta", ["cid"], ["scp"]),
        ("entra", ["azp", "appid"], ["scp", "roles"]),
        ("entra-v1", ["appid"], ["scp", "roles"]),
        ("entra-v2", ["azp"], ["scp", "roles"]),
        ("asgardeo", ["azp", "client_id"], ["scope"]),
        ("rfc9068", ["client_id"], ["scope"]),
    ],
)
def test_preset_defaults(preset: str, client_claims: list[str], scope_claims: list[str],
                         idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    km = make_settings(key_managers=[_preset_km(idp, preset, "https://idp.example.test/x")]).key_managers[0]
    assert (km.client_id_claims, km.scope_claims, km.algorithms) == (client_claims, scope_claims, ["RS256"])
    assert km.jwks_uri == f"{idp.url}/oauth2/jwks"
    assert km.discovery is None  # an explicit jwks_uri replaces the preset's discovery
    assert km.typ == (["at+jwt"] if preset == "rfc9068" else [])


def test_preset_without_a_key_source_uses_oidc_discovery(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    entry = _preset_km(idp, "okta", "https://acme.okta.com/oauth2/default")
    del entry["jwks_uri"]
    km = make_settings(key_managers=[entry]).key_managers[0]
    assert (km.discovery, km.jwks_uri) == ("oidc", None)


def test_explicit_fields_override_the_preset_field_by_field(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    entry = _preset_km(idp, "okta", "https://acme.okta.com/oauth2/default",
                       client_id_claims=["client_id"], algorithms=["RS256", "ES256"])
    km = make_settings(key_managers=[entry]).key_managers[0]
    assert km.client_id_claims == ["client_id"]  # replaced, not merged
    assert km.algorithms == ["RS256", "ES256"]
    assert km.scope_claims == ["scp"]  # not given: from the preset


async def test_overridden_client_claim_is_used_for_preset_tokens(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    issuer = "https://acme.okta.com/oauth2/default"
    header, payload = _okta(issuer)
    payload["client_id"] = "from-client-id"
    entry = _preset_km(idp, "okta", issuer, client_id_claims=["client_id", "cid"])
    async with running_validator(make_settings(key_managers=[entry])) as (v, _):
        assert (await v.validate(sign(idp.signing_key, payload, header=header))).client_id == "from-client-id"


async def test_okta_preset_token_without_cid_is_401_naming_cid(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    issuer = "https://acme.okta.com/oauth2/default"
    header, payload = _okta(issuer)
    del payload["cid"]
    payload["azp"] = "someone"  # not an Okta claim: must not be used
    async with running_validator(make_settings(key_managers=[_preset_km(idp, "okta", issuer)])) as (v, _):
        with pytest.raises(Denial) as info:
            await v.validate(sign(idp.signing_key, payload, header=header))
        assert info.value.reason is Reason.INVALID_CREDENTIALS
        assert info.value.description == "The access token has no client identifier (looked for: cid)"


def test_unknown_preset_is_a_config_error(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(key_managers=[_preset_km(idp, "ping", "https://idp.example.test")])
    assert info.value.errors == [
        "key_managers[0].preset: input should be 'keycloak', 'auth0', 'okta', 'entra', 'entra-v1', 'entra-v2', "
        "'asgardeo' or 'rfc9068'"
    ]


def test_every_preset_has_a_test_case_and_a_docs_page() -> None:
    from pathlib import Path

    assert set(PRESETS) == {case.split("-rfc")[0] for case in CASES}
    for name in PRESETS:
        page = Path(f"docs/key-managers/{name}.md").read_text(encoding="utf-8")
        assert f"preset: {name}" in page
        assert '"alg": "RS256"' in page  # the sample decoded header


# ---- Entra ID: one key manager for v1.0 and v2.0 tokens of one tenant -------------------------------------------


async def test_entra_preset_accepts_v1_and_v2_tokens_of_one_tenant_in_one_key_manager(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    v2, v1 = f"https://login.microsoftonline.com/{TENANT}/v2.0", f"https://sts.windows.net/{TENANT}/"
    entry = _preset_km(idp, "entra", [v2, v1], audiences=[f"api://{API_GUID}", API_GUID])
    async with running_validator(make_settings(key_managers=[entry])) as (v, _):
        for iss, shape, aud, scopes in ((v1, _entra_v1, f"api://{API_GUID}", {"orders.read", "user_impersonation"}),
                                        (v2, _entra_v2, API_GUID, {"orders.read.all"})):
            header, payload = shape(iss)
            payload["aud"] = aud  # v1.0: the App ID URI; v2.0: the API's application (client) ID
            identity = await v.validate(sign(idp.signing_key, payload, header=header))
            assert (identity.key_manager, identity.issuer, identity.client_id) == ("entra", iss, CLIENT_GUID)
            assert identity.scopes == frozenset(scopes)
        # another tenant's tokens are not this key manager's
        header, payload = _entra_v2(v2.replace(TENANT, "11111111-1111-1111-1111-111111111111"))
        with pytest.raises(Denial) as info:
            await v.validate(sign(idp.signing_key, payload, header=header))
        assert info.value.description == "The access token's issuer is not accepted"
    assert idp.requests["/oauth2/jwks"] == 1  # one key set


# ---- RFC 9068 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "description"), [
    ({"header": {"typ": "JWT"}}, "The access token's type ('typ' header) is not accepted"),
    ({"header": {"typ": None}}, "The access token's type ('typ' header) is not accepted"),
    ({"drop": "aud"}, "The access token's audience ('aud') is missing or empty"),
    ({"claims": {"aud": "other-api"}}, "The access token's audience ('aud') is not accepted"),
    ({"drop": "client_id", "claims": {"azp": "orders-cli"}},
     "The access token has no client identifier (looked for: client_id)"),
], ids=["typ JWT", "no typ", "no aud", "other aud", "azp only"])
async def test_rfc9068_preset_enforces_the_profile(
    change: dict[str, Any], description: str, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    issuer = "https://op.example.test"
    header, payload = _rfc9068(issuer)
    header.update(change.get("header", {}))
    payload.update(change.get("claims", {}))
    payload.pop(change.get("drop", ""), None)
    async with running_validator(make_settings(key_managers=[_preset_km(idp, "rfc9068", issuer)])) as (v, _):
        with pytest.raises(Denial) as info:
            await v.validate(sign(idp.signing_key, payload, header=header))
        assert (info.value.reason, info.value.description) == (Reason.INVALID_CREDENTIALS, description)


@pytest.mark.parametrize(("fields", "errors"), [
    ({"typ": ["JWT"]}, ["key_managers[0].typ: preset rfc9068 accepts only typ at+jwt, got ['JWT'] (RFC 9068 section "
                        "2.1: an access token's typ is at+jwt)"]),
    ({"typ": ["at+jwt", "JWT"]}, ["key_managers[0].typ: preset rfc9068 accepts only typ at+jwt, got ['at+jwt', "
                                  "'JWT'] (RFC 9068 section 2.1: an access token's typ is at+jwt)"]),
    ({"typ": []}, ["key_managers[0].typ: preset rfc9068 accepts only typ at+jwt, got [] (RFC 9068 section 2.1: an "
                   "access token's typ is at+jwt)"]),
    ({"audiences": []}, ["key_managers[0].audiences: preset rfc9068 needs at least one value in audiences (RFC 9068 "
                         "section 4: aud is required and must be checked against the resource's audiences)"]),
    ({"audiences": None}, ["key_managers[0].audiences: preset rfc9068 needs at least one value in audiences (RFC "
                           "9068 section 4: aud is required and must be checked against the resource's audiences)"]),
    ({"client_id_claims": ["azp"]}, ["key_managers[0].client_id_claims: preset rfc9068 needs client_id_claims to "
                                     "include client_id, got ['azp'] (RFC 9068 section 2.2: the client is the "
                                     "client_id claim)"]),
    ({"scope_claims": ["scp"]}, ["key_managers[0].scope_claims: preset rfc9068 needs scope_claims to include scope, "
                                 "got ['scp'] (RFC 9068 section 2.2.3: scopes are the space-separated scope claim)"]),
], ids=repr)
def test_rfc9068_fields_overridden_into_a_contradiction_are_refused(
    fields: dict[str, Any], errors: list[str], idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    entry = _preset_km(idp, "rfc9068", "https://op.example.test", **fields)
    entry = {k: v for k, v in entry.items() if v is not None}  # None: the field left out
    with pytest.raises(ConfigError) as info:
        make_settings(key_managers=[entry])
    assert info.value.errors == errors


@pytest.mark.parametrize("fields", [
    {"typ": ["application/at+jwt"]}, {"typ": ["AT+JWT", "at+jwt"]}, {"client_id_claims": ["client_id", "azp"]},
    {"scope_claims": ["scope", "scp"]}, {"algorithms": ["ES256", "RS256"]}, {"required_claims": ["sub", "jti"]},
    {"audiences": ["a", "b"]},
], ids=repr)
def test_rfc9068_overrides_that_keep_the_profile_are_accepted(
    fields: dict[str, Any], idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    km = make_settings(key_managers=[_preset_km(idp, "rfc9068", "https://op.example.test", **fields)]).key_managers[0]
    for name, value in fields.items():
        assert getattr(km, name) == value


def test_rfc9068_preset_names_no_key_source(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    entry = _preset_km(idp, "rfc9068", "https://op.example.test")
    del entry["jwks_uri"]
    with pytest.raises(ConfigError) as info:
        make_settings(key_managers=[entry])
    assert info.value.errors == ["key_managers[0]: set exactly one of jwks_uri, discovery, certificates"]


def test_every_preset_requirement_names_a_preset_and_a_key_manager_field() -> None:
    from authz.config import KeyManagerSettings
    from authz.keys.presets import REQUIREMENTS

    assert set(REQUIREMENTS) <= set(PRESETS)
    for requirements in REQUIREMENTS.values():
        for requirement in requirements:
            assert requirement.field in KeyManagerSettings.model_fields
            assert requirement.why.startswith("RFC ")
