"""Backend JWT signer, its key loading and config, per-API header removal, public resources (unit level)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authz.config import ConfigError, Settings
from authz.decide.backend_jwt import BackendJwtSigner
from authz.decide.forward import build_allow, build_public_allow
from authz.decide.routes import Route
from authz.model import Application, ClientBinding, Identity, KeyType, Subscription


def write_key(path: Path, kind: str = "rsa") -> str:
    """Write an unencrypted PKCS#8 PEM private key; returns the path as a string."""
    if kind == "rsa":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "rsa1024":
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    elif kind == "p384":
        key = ec.generate_private_key(ec.SECP384R1())
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return str(path)


def backend_jwt_section(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "issuer": "https://authz.test",
        "keys": [
            {"kid": "bj-rsa", "algorithm": "RS256", "key_file": write_key(tmp_path / "rsa.pem")},
            {"kid": "bj-ec", "algorithm": "ES256", "key_file": write_key(tmp_path / "ec.pem", "ec")},
        ],
        "claims": ["email", "tenant"],
        "ttl": 120,
    }
    section.update(overrides)
    return section


def apis_with_backend_jwt(settings: Settings, **api_overrides: Any) -> list[dict[str, Any]]:
    apis = [a.model_dump(exclude_none=True) for a in settings.apis]
    apis[0]["backend_jwt"] = {}
    apis[0].update(api_overrides)
    return apis


IDENTITY = Identity(
    key_manager="test-km", issuer="https://idp", subject="alice", client_id="demo-client",
    scopes=frozenset({"orders:read", "orders:write"}), expires_at=10_000.0, token_id="t1",
    claims={"sub": "alice", "email": "alice@example.com", "tenant": "t-1", "secret_claim": "nope"},
)
APP = Application(id="demo-app", name="Demo App", tier="Gold")
BINDING = ClientBinding(application_id="demo-app", key_type=KeyType.SANDBOX)
SUB = Subscription(application_id="demo-app", api_id="orders-v1", tier="Silver")


def route_of(settings: Settings, api_index: int = 0) -> Route:
    api = settings.apis[api_index]
    return Route(api=api, resource=api.resources[0], path=api.context + api.resources[0].path)


@pytest.fixture
def jwt_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    base = make_settings()
    return make_settings(backend_jwt=backend_jwt_section(tmp_path), apis=apis_with_backend_jwt(base))


def test_backend_jwt_carries_every_documented_claim_and_the_allow_listed_ones(jwt_settings: Settings) -> None:
    now = [1_000.0]
    signer = BackendJwtSigner(jwt_settings.backend_jwt, clock=lambda: now[0])  # type: ignore[arg-type]
    token = signer.token_for("access-token-1", IDENTITY, APP, BINDING, route_of(jwt_settings))
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": "bj-rsa", "typ": "JWT"}
    public = jwt.PyJWK(signer.jwks()["keys"][0]).key
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="orders-v1", issuer="https://authz.test",
                        options={"verify_exp": False, "verify_iat": False})
    jti = claims.pop("jti")
    assert len(jti) == 32 and int(jti, 16) >= 0
    assert claims == {
        "iss": "https://authz.test", "sub": "alice", "aud": "orders-v1", "iat": 1000, "exp": 1120,
        "application_id": "demo-app", "application_name": "Demo App", "application_tier": "Gold",
        "client_id": "demo-client", "api_id": "orders-v1", "api_version": "v1", "key_type": "SANDBOX",
        "scope": "orders:read orders:write", "email": "alice@example.com", "tenant": "t-1",
    }


def test_jwks_publishes_every_key_and_the_first_one_signs(jwt_settings: Settings) -> None:
    signer = BackendJwtSigner(jwt_settings.backend_jwt)  # type: ignore[arg-type]
    keys = signer.jwks()["keys"]
    assert [(k["kid"], k["alg"], k["kty"], k["use"]) for k in keys] == [
        ("bj-rsa", "RS256", "RSA", "sig"), ("bj-ec", "ES256", "EC", "sig")]
    assert keys[1]["crv"] == "P-256"
    assert all("d" not in k and "p" not in k and "q" not in k for k in keys)  # public parts only


def test_es256_first_key_signs_with_es256(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    section = backend_jwt_section(tmp_path)
    section["keys"].reverse()
    settings = make_settings(backend_jwt=section, apis=apis_with_backend_jwt(make_settings()))
    signer = BackendJwtSigner(settings.backend_jwt, clock=lambda: 1_000.0)  # type: ignore[arg-type]
    token = signer.token_for("t", IDENTITY, APP, BINDING, route_of(settings))
    assert jwt.get_unverified_header(token)["kid"] == "bj-ec"
    ec_key = jwt.PyJWK(signer.jwks()["keys"][0]).key
    assert jwt.decode(token, ec_key, algorithms=["ES256"], audience="orders-v1",
                      options={"verify_exp": False, "verify_iat": False})["sub"] == "alice"


def test_exp_never_passes_the_access_token_expiry(jwt_settings: Settings) -> None:
    signer = BackendJwtSigner(jwt_settings.backend_jwt, clock=lambda: 9_950.0)  # type: ignore[arg-type]
    token = signer.token_for("t", IDENTITY, APP, BINDING, route_of(jwt_settings))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (9950, 10_000)


def test_backend_jwt_is_cached_per_token_and_api_until_it_nears_expiry(jwt_settings: Settings) -> None:
    now = [1_000.0]
    signer = BackendJwtSigner(jwt_settings.backend_jwt, clock=lambda: now[0])  # type: ignore[arg-type]
    orders, payments = route_of(jwt_settings, 0), route_of(jwt_settings, 1)
    first = signer.token_for("tok-a", IDENTITY, APP, BINDING, orders)
    assert signer.token_for("tok-a", IDENTITY, APP, BINDING, orders) == first
    assert signer.token_for("tok-b", IDENTITY, APP, BINDING, orders) != first
    assert signer.token_for("tok-a", IDENTITY, APP, BINDING, payments) != first
    now[0] = 1_000.0 + 120 - 12  # the margin is ttl/10 = 12 s: refreshed before it expires
    assert signer.token_for("tok-a", IDENTITY, APP, BINDING, orders) != first


def test_a_registry_change_is_never_hidden_by_the_backend_jwt_cache(jwt_settings: Settings) -> None:
    """The cache key holds every registry value the JWT carries: a renamed application, a new tier, a
    client moved to another application or switched to SANDBOX keys all get a newly signed JWT."""
    import dataclasses

    import jwt as pyjwt

    from authz.model import KeyType

    signer = BackendJwtSigner(jwt_settings.backend_jwt)  # type: ignore[arg-type]
    orders = route_of(jwt_settings, 0)
    first = signer.token_for("tok-a", IDENTITY, APP, BINDING, orders)
    variants = {
        "application_name": (dataclasses.replace(APP, name="Renamed"), BINDING),
        "application_tier": (dataclasses.replace(APP, tier="Gold"), BINDING),
        "application_id": (dataclasses.replace(APP, id="other-app"), BINDING),
        "key_type": (APP, dataclasses.replace(BINDING, key_type=KeyType.SANDBOX)),
    }
    for claim, (app, binding) in variants.items():
        token = signer.token_for("tok-a", IDENTITY, app, binding, orders)
        assert token != first, claim
        payload = pyjwt.decode(token, options={"verify_signature": False})
        expected = {"application_name": app.name, "application_tier": app.tier, "application_id": app.id,
                    "key_type": binding.key_type.value}[claim]
        assert payload[claim] == expected


def test_backend_jwt_cache_is_a_bounded_lru(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(backend_jwt=backend_jwt_section(tmp_path, cache_size=2),
                             apis=apis_with_backend_jwt(make_settings()))
    signer = BackendJwtSigner(settings.backend_jwt, clock=lambda: 1_000.0)  # type: ignore[arg-type]
    route = route_of(settings)
    a = signer.token_for("a", IDENTITY, APP, BINDING, route)
    b = signer.token_for("b", IDENTITY, APP, BINDING, route)
    assert signer.token_for("a", IDENTITY, APP, BINDING, route) == a  # a is now most recent
    signer.token_for("c", IDENTITY, APP, BINDING, route)  # evicts b
    assert signer.token_for("a", IDENTITY, APP, BINDING, route) == a
    assert signer.token_for("b", IDENTITY, APP, BINDING, route) != b


def test_audience_per_api_then_section_default_then_api_id(make_settings: Callable[..., Settings],
                                                            tmp_path: Path) -> None:
    base = make_settings()
    apis = apis_with_backend_jwt(base, backend_jwt={"audience": "orders-backend"})
    apis[1]["backend_jwt"] = {}
    settings = make_settings(backend_jwt=backend_jwt_section(tmp_path, audience="all-backends"), apis=apis)
    signer = BackendJwtSigner(settings.backend_jwt)  # type: ignore[arg-type]
    assert signer.audience(route_of(settings, 0)) == "orders-backend"
    assert signer.audience(route_of(settings, 1)) == "all-backends"
    plain = make_settings(backend_jwt=backend_jwt_section(tmp_path), apis=apis_with_backend_jwt(base))
    assert BackendJwtSigner(plain.backend_jwt).audience(route_of(plain, 0)) == "orders-v1"  # type: ignore[arg-type]


def test_allow_adds_the_backend_jwt_header_only_for_apis_that_want_it(jwt_settings: Settings) -> None:
    signer = BackendJwtSigner(jwt_settings.backend_jwt)  # type: ignore[arg-type]
    with_jwt = build_allow(IDENTITY, APP, BINDING, SUB, route_of(jwt_settings, 0), jwt_settings.headers,
                           access_token="tok", backend_jwt=signer)
    assert [name for name, _ in with_jwt.headers].count("x-jwt-assertion") == 1
    without = build_allow(IDENTITY, APP, BINDING, SUB, route_of(jwt_settings, 1), jwt_settings.headers,
                          access_token="tok", backend_jwt=signer)
    assert "x-jwt-assertion" not in dict(without.headers)
    assert "x-jwt-assertion" in without.headers_to_remove  # a client-sent copy never reaches that upstream


def test_api_wanting_a_backend_jwt_without_a_signer_fails_closed(jwt_settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="needs a backend JWT"):
        build_allow(IDENTITY, APP, BINDING, SUB, route_of(jwt_settings, 0), jwt_settings.headers)


def test_application_tier_header_and_per_api_headers_to_remove(make_settings: Callable[..., Settings]) -> None:
    base = make_settings()
    apis = [a.model_dump(exclude_none=True) for a in base.apis]
    apis[1]["headers_to_remove"] = ["x-debug", "cookie"]
    settings = make_settings(apis=apis, headers={"application_tier": "x-application-tier"})
    orders = build_allow(IDENTITY, APP, BINDING, SUB, route_of(settings, 0), settings.headers)
    assert dict(orders.headers)["x-application-tier"] == "Gold"
    assert orders.headers_to_remove == ("authorization",)
    payments = build_allow(IDENTITY, APP, BINDING, SUB, route_of(settings, 1), settings.headers)
    assert payments.headers_to_remove == ("x-debug", "cookie")


def test_public_allow_forwards_no_identity_and_removes_every_identity_header(jwt_settings: Settings) -> None:
    signer = BackendJwtSigner(jwt_settings.backend_jwt)  # type: ignore[arg-type]
    allow = build_public_allow(route_of(jwt_settings), jwt_settings.headers, signer)
    assert allow.headers == ()
    assert allow.headers_to_remove == (
        "authorization", "x-application-id", "x-application-name", "x-client-id", "x-subject", "x-api-id",
        "x-jwt-assertion")
    assert dict(allow.dynamic_metadata) == {"api_id": "orders-v1", "auth": "none"}


# ---- configuration ---------------------------------------------------------------------------------------


def config_errors(make_settings: Callable[..., Settings], **overrides: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        make_settings(**overrides)
    return info.value.errors


def test_key_file_problems_are_config_errors_that_never_echo_the_file(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    base = make_settings()
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nTOPSECRETBYTES\n-----END PRIVATE KEY-----\n")
    cases = {
        str(tmp_path / "missing.pem"): "cannot read",
        str(bad): "is not an unencrypted PEM private key",
        write_key(tmp_path / "small.pem", "rsa1024"): "RS256 needs an RSA private key of at least 2048 bits",
        write_key(tmp_path / "ec.pem", "ec"): "RS256 needs an RSA private key",
    }
    for key_file, reason in cases.items():
        errors = config_errors(make_settings, apis=apis_with_backend_jwt(base), backend_jwt={
            "keys": [{"kid": "k", "algorithm": "RS256", "key_file": key_file}]})
        assert len(errors) == 1 and errors[0].startswith("backend_jwt.keys[0]: ") and reason in errors[0], errors
        assert "TOPSECRET" not in errors[0]
    errors = config_errors(make_settings, apis=apis_with_backend_jwt(base), backend_jwt={
        "keys": [{"kid": "k", "algorithm": "ES256", "key_file": write_key(tmp_path / "p384.pem", "p384")}]})
    assert "ES256 needs an EC private key on the P-256 curve" in errors[0]


def test_backend_jwt_config_is_validated(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    base = make_settings()
    errors = config_errors(make_settings, apis=apis_with_backend_jwt(base))
    assert errors == ["apis[0].backend_jwt: needs the top-level backend_jwt section (keys)"]
    section = backend_jwt_section(tmp_path, claims=["email", "sub", "scope"], jwks_listen="nohost",
                                  header="X-Bad")
    section["keys"][1]["kid"] = "bj-rsa"
    errors = config_errors(make_settings, backend_jwt=section)
    assert "backend_jwt.claims: 'sub', 'scope': set by authz, cannot be copied from the token" in errors
    assert any(e.startswith("backend_jwt.jwks_listen: 'nohost' is not host:port") for e in errors)
    assert "backend_jwt.header: 'X-Bad' is not a lower-case HTTP header name" in errors
    errors = config_errors(make_settings, backend_jwt=backend_jwt_section(tmp_path, keys=[
        {"kid": "same", "key_file": write_key(tmp_path / "a.pem")},
        {"kid": "same", "key_file": write_key(tmp_path / "b.pem")}]))
    assert errors == ["backend_jwt.keys[1].kid: 'same' is already used by backend_jwt.keys[0]"]
    errors = config_errors(make_settings, backend_jwt=backend_jwt_section(tmp_path, header="x-client-id"))
    assert errors == ["backend_jwt.header: 'x-client-id' is already set by headers"]


def test_public_resource_and_per_api_header_config_is_validated(make_settings: Callable[..., Settings]) -> None:
    apis = [a.model_dump(exclude_none=True) for a in make_settings().apis]
    apis[0]["resources"].append({"path": "/health", "auth": "none", "scopes": ["orders:read"]})
    apis[1]["headers_to_remove"] = ["x-subject", "Bad Name"]
    errors = config_errors(make_settings, apis=apis)
    assert errors == ["apis[0].resources[3]: a public resource (auth: none) cannot require scopes",
                      "apis[1].headers_to_remove: 'Bad Name' is not a lower-case HTTP header name"]
    apis[0]["resources"][-1].pop("scopes")
    apis[1]["headers_to_remove"] = ["x-subject"]
    errors = config_errors(make_settings, apis=apis)
    assert errors == ["apis[1].headers_to_remove[0]: 'x-subject' is a header authz sets"]
    apis[0]["resources"][-1]["auth"] = "maybe"
    apis[1].pop("headers_to_remove")
    errors = config_errors(make_settings, apis=apis)
    assert len(errors) == 1 and errors[0].startswith("apis[0].resources[3].auth: "), errors
