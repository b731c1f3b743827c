"""Forwarded identity values: the one reversible header encoding (``authz.decide.forward.encode_header_value``)
on every identity header, raw UTF-8 in dynamic metadata, non-ASCII claims in the backend JWT, and the
rendering in both front ends."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import jwt
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from authz.config import HeadersSettings, Settings, parse_config
from authz.decide.backend_jwt import BackendJwtSigner
from authz.decide.forward import MAX_HEADER_VALUE_BYTES, build_allow, encode_header_value
from authz.decide.routes import Route
from authz.envoy.render import allow_parts, allow_response
from authz.errors import Denial, Reason
from authz.model import Application, ClientBinding, Identity, KeyType, Subscription
from tests.test_backend_jwt import apis_with_backend_jwt, backend_jwt_section

# Values no header may carry raw: non-ASCII letters, CJK, emoji (4 UTF-8 bytes), every kind of control character,
# DEL, '%' (the escape character itself), a space at either end, and an escape-looking literal.
HOSTILE = ["Zoë", "渡辺", "👍 ok", "a\r\nx-admin: 1", "nul\x00", "tab\tx", "del\x7f", "esc\x1b[0m", "100%",
           " lead", "trail ", "%41", "\u0085nel", "\u2028sep"]

ALL_HEADERS = HeadersSettings(**{f: f"x-{f.replace('_', '-')}" for f in HeadersSettings.identity_fields()})


@pytest.fixture(scope="module")
def settings() -> Settings:
    return parse_config(yaml.safe_load(Path("config/authz.yaml").read_text(encoding="utf-8")))


# ---- the encoding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), [
    ("Zoë", "Zo%C3%AB"),
    ("渡辺", "%E6%B8%A1%E8%BE%BA"),
    ("👍", "%F0%9F%91%8D"),
    ("a\r\nx-admin: 1", "a%0D%0Ax-admin: 1"),
    ("nul\x00", "nul%00"),
    ("tab\tx", "tab%09x"),
    ("del\x7f", "del%7F"),
    ("100%", "100%25"),
    ("%41", "%2541"),
    (" lead", "%20lead"),
    ("trail ", "trail%20"),
    (" ", "%20"),
    ("in side", "in side"),
    ("Demo App", "Demo App"),
    ("orders:read orders:write", "orders:read orders:write"),
    ("a+b=c&d/e?f#g\"h'i,j;k\\l", "a+b=c&d/e?f#g\"h'i,j;k\\l"),
    ("", ""),
], ids=repr)
def test_encoding_of_each_kind_of_value(value: str, encoded: str) -> None:
    assert encode_header_value(value) == encoded
    assert unquote(encoded, errors="strict") == value


def _printable_ascii_header(value: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in value) and value[:1] != " " and value[-1:] != " "


@given(st.text())
def test_any_text_encodes_to_printable_ascii_and_decodes_back_exactly(value: str) -> None:
    encoded = encode_header_value(value)
    assert _printable_ascii_header(encoded)
    assert unquote(encoded, errors="strict") == value


@given(st.text(alphabet=[c for c in string.printable if c.isprintable() and c != "%"]).filter(
    lambda v: v[:1] != " " and v[-1:] != " "))
def test_printable_ascii_without_percent_is_forwarded_unchanged(value: str) -> None:
    assert encode_header_value(value) is value


def test_a_lone_surrogate_cannot_be_encoded() -> None:
    # The identity phase refuses such claims (tests/test_token_claims.py); the encoder never guesses.
    with pytest.raises(UnicodeEncodeError):
        encode_header_value("x\ud800")


# ---- every identity header ---------------------------------------------------------------------------------------


def _route(settings: Settings, version: str | None = None) -> Route:
    api = settings.apis[0]
    if version is not None:
        api = api.model_copy(update={"version": version})
    return Route(api=api, resource=api.resources[0], path=api.context + api.resources[0].path)


def _allow(settings: Settings, *, subject: str = "user-1", client_id: str = "demo-client",
           scopes: frozenset[str] = frozenset({"orders:read"}), app_id: str = "app-1", app_name: str = "Demo App",
           tier: str = "Gold", version: str | None = None, headers: HeadersSettings = ALL_HEADERS):
    identity = Identity(key_manager="test-km", issuer="https://idp", subject=subject, client_id=client_id,
                        scopes=scopes, expires_at=2e9, token_id=None, claims={"sub": subject})
    app = Application(id=app_id, name=app_name, tier=tier)
    return build_allow(identity, app, ClientBinding(app_id, KeyType.SANDBOX), Subscription(app_id, "orders-v1"),
                       _route(settings, version), headers)


# field -> the keyword of _allow that sets its value (api_id and key_type come from the config and an enum:
# always plain ASCII, checked unchanged below).
SOURCES = {"application_id": "app_id", "application_name": "app_name", "application_tier": "tier",
           "client_id": "client_id", "subject": "subject", "api_version": "version"}


@pytest.mark.parametrize("field", [*SOURCES, "scopes"])
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_every_identity_header_is_encoded_and_its_metadata_is_raw(field: str, value: str, settings: Settings) -> None:
    if field == "scopes":
        value = value.strip().replace(" ", "_")  # a scope has no space: the claim is split on spaces
        allow = _allow(settings, scopes=frozenset({value}))
    else:
        allow = _allow(settings, **{SOURCES[field]: value})
    name = getattr(ALL_HEADERS, field)
    sent = dict(allow.headers)
    assert sent[name] == encode_header_value(value)  # never dropped, never raw
    assert unquote(sent[name], errors="strict") == value
    assert all(_printable_ascii_header(v) for v in sent.values())
    assert name not in allow.headers_to_remove
    assert sent["x-api-id"] == "orders-v1" and sent["x-key-type"] == "SANDBOX"
    metadata_key = {"subject": "subject", "client_id": "client_id", "application_id": "application_id",
                    "application_name": "application_name", "application_tier": "application_tier"}.get(field)
    if metadata_key is not None:
        assert allow.dynamic_metadata[metadata_key] == value  # raw UTF-8 in the protobuf Struct


def test_encoded_headers_render_in_both_front_ends_and_metadata_stays_utf8(settings: Settings) -> None:
    allow = _allow(settings, subject="Zoë\r\n", app_name="Ünïcode 100%")
    grpc = allow_response(allow)
    headers = {h.header.key: h.header.value for h in grpc.ok_response.headers}
    assert headers["x-subject"] == "Zo%C3%AB%0D%0A"
    assert headers["x-application-name"] == "%C3%9Cn%C3%AFcode 100%25"
    assert grpc.dynamic_metadata.fields["subject"].string_value == "Zoë\r\n"
    assert grpc.dynamic_metadata.fields["application_name"].string_value == "Ünïcode 100%"
    grpc.SerializeToString()  # valid UTF-8 throughout
    http = dict(allow_parts(allow)[1])
    assert http["x-subject"] == "Zo%C3%AB%0D%0A"
    assert http["x-application-name"] == "%C3%9Cn%C3%AFcode 100%25"
    assert all(v.isascii() for v in http.values())


def test_a_token_value_too_long_to_forward_denies_naming_it(settings: Settings) -> None:
    assert _allow(settings, subject="é" * (MAX_HEADER_VALUE_BYTES // 6))  # 8190 bytes encoded: forwarded
    for kwargs, what in (({"subject": "é" * (MAX_HEADER_VALUE_BYTES // 6 + 1)}, "subject ('sub')"),
                         ({"scopes": frozenset({"s" * (MAX_HEADER_VALUE_BYTES + 1)})}, "scopes")):
        with pytest.raises(Denial) as info:
            _allow(settings, **kwargs)
        assert info.value.reason is Reason.INVALID_CREDENTIALS
        assert info.value.description.startswith(f"The access token's {what} is too long to forward")
    # A config or registry value that long is a bug (they are bounded far below): an internal error, 503.
    with pytest.raises(RuntimeError, match="header x-api-version"):
        _allow(settings, version="v" * (MAX_HEADER_VALUE_BYTES + 1))


# ---- backend JWT -------------------------------------------------------------------------------------------------


def test_non_ascii_claims_survive_in_the_backend_jwt(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(backend_jwt=backend_jwt_section(tmp_path, claims=["name", "tenant"]),
                             apis=apis_with_backend_jwt(make_settings()))
    signer = BackendJwtSigner(settings.backend_jwt)  # type: ignore[arg-type]
    identity = Identity(key_manager="test-km", issuer="https://idp", subject="Zoë 渡辺 👍\r\n",
                        client_id="clïent", scopes=frozenset({"lire:é"}), expires_at=4e9, token_id=None,
                        claims={"name": "Zoë \"Z\" 渡辺", "tenant": "t-%41\x00"})
    app = Application(id="app-ü", name="Ünïcode App", tier="Gōld")
    allow = build_allow(identity, app, ClientBinding("app-ü"), Subscription("app-ü", "orders-v1"),
                        _route(settings), settings.headers, access_token="t", backend_jwt=signer)
    token = dict(allow.headers)["x-jwt-assertion"]
    assert token.isascii() and encode_header_value(token) is token  # base64url: nothing to encode
    public = jwt.PyJWK(signer.jwks()["keys"][0]).key
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="orders-v1")
    assert (claims["sub"], claims["client_id"], claims["scope"]) == ("Zoë 渡辺 👍\r\n", "clïent", "lire:é")
    assert (claims["application_id"], claims["application_name"], claims["application_tier"]) == (
        "app-ü", "Ünïcode App", "Gōld")
    assert (claims["name"], claims["tenant"]) == ("Zoë \"Z\" 渡辺", "t-%41\x00")
