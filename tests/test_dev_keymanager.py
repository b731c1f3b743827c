"""Demo key manager: real HTTP server on loopback, tokens verified with PyJWT against the served JWKS."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import urllib.parse

import jwt
import pytest

from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey

AUDIENCE = "authz-tests"


@pytest.fixture
def km():
    manager = KeyManager(AUDIENCE, DEMO_CLIENTS, DEMO_USERS, token_lifetime=600, issuer="http://issuer.test")
    manager.start()
    yield manager
    manager.stop()


def _request(km: KeyManager, method: str, path: str, body: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", km.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def _token(km: KeyManager, form: dict[str, str], headers=None):
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    status, resp_headers, data = _request(km, "POST", "/oauth2/token", urllib.parse.urlencode(form).encode(), hdrs)
    return status, resp_headers, json.loads(data)


def _basic(client_id: str, secret: str) -> str:
    raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _verify(km: KeyManager, token: str) -> dict:
    client = jwt.PyJWKClient(f"{km.url}/oauth2/jwks", cache_keys=False, cache_jwk_set=False)
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=AUDIENCE, issuer="http://issuer.test")


def test_password_grant_issues_verifiable_token(km):
    status, headers, body = _token(km, {
        "grant_type": "password", "username": "demo", "password": "demo", "scope": "orders:read  orders:write",
        "client_id": "demo-client", "client_secret": "demo-secret",
    })
    assert status == 200
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"] == "application/json"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "orders:read orders:write"
    claims = _verify(km, body["access_token"])
    assert claims["sub"] == "demo"
    assert claims["azp"] == "demo-client"
    assert claims["client_id"] == "demo-client"
    assert claims["scope"] == "orders:read orders:write"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) == 32
    header = jwt.get_unverified_header(body["access_token"])
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": km.signing_key.kid}


def test_client_credentials_with_http_basic(km):
    status, _, body = _token(km, {"grant_type": "client_credentials", "scope": "payments:read"},
                             {"Authorization": _basic("other-client", "other-secret")})
    assert status == 200
    claims = _verify(km, body["access_token"])
    assert claims["sub"] == "other-client"
    assert claims["azp"] == "other-client"
    assert claims["scope"] == "payments:read"


def test_client_credentials_without_scope(km):
    status, _, body = _token(km, {"grant_type": "client_credentials", "client_id": "demo-client",
                                  "client_secret": "demo-secret"})
    assert status == 200
    assert body["scope"] == ""
    assert _verify(km, body["access_token"])["scope"] == ""


def test_wrong_client_secret_is_401_invalid_client(km):
    status, headers, body = _token(km, {"grant_type": "client_credentials", "client_id": "demo-client",
                                        "client_secret": "nope"})
    assert status == 401
    assert body["error"] == "invalid_client"
    assert headers["www-authenticate"] == 'Basic realm="demo-key-manager"'
    assert headers["cache-control"] == "no-store"


def test_wrong_basic_secret_and_unknown_client_are_401(km):
    status, _, body = _token(km, {"grant_type": "client_credentials"},
                             {"Authorization": _basic("demo-client", "wrong")})
    assert (status, body["error"]) == (401, "invalid_client")
    status, _, body = _token(km, {"grant_type": "client_credentials", "client_id": "ghost", "client_secret": "x"})
    assert (status, body["error"]) == (401, "invalid_client")
    status, _, body = _token(km, {"grant_type": "client_credentials"})
    assert (status, body["error"]) == (401, "invalid_client")


def test_garbage_basic_header_is_401(km):
    status, _, body = _token(km, {"grant_type": "client_credentials"}, {"Authorization": "Basic !!!notbase64"})
    assert (status, body["error"]) == (401, "invalid_client")


def test_wrong_password_is_400_invalid_grant(km):
    status, _, body = _token(km, {"grant_type": "password", "username": "demo", "password": "bad",
                                  "client_id": "demo-client", "client_secret": "demo-secret"})
    assert status == 400
    assert body["error"] == "invalid_grant"
    assert "access_token" not in body


def test_password_grant_missing_username_is_invalid_request(km):
    status, _, body = _token(km, {"grant_type": "password", "password": "demo",
                                  "client_id": "demo-client", "client_secret": "demo-secret"})
    assert (status, body["error"]) == (400, "invalid_request")


def test_unsupported_grant_type(km):
    status, _, body = _token(km, {"grant_type": "authorization_code", "code": "x",
                                  "client_id": "demo-client", "client_secret": "demo-secret"})
    assert status == 400
    assert body["error"] == "unsupported_grant_type"


def test_missing_grant_type_is_invalid_request(km):
    status, _, body = _token(km, {"client_id": "demo-client", "client_secret": "demo-secret"})
    assert (status, body["error"]) == (400, "invalid_request")


def test_invalid_scope_characters(km):
    status, _, body = _token(km, {"grant_type": "client_credentials", "scope": 'bad"scope',
                                  "client_id": "demo-client", "client_secret": "demo-secret"})
    assert (status, body["error"]) == (400, "invalid_scope")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"grant_type", "application/x-www-form-urlencoded"),
        (b'{"grant_type": "password"}', "application/json"),
        (b"grant_type=password&grant_type=client_credentials", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_body_is_clean_400_json(km, body, content_type):
    status, headers, data = _request(km, "POST", "/oauth2/token", body, {"Content-Type": content_type})
    assert status == 400
    assert headers["content-type"] == "application/json"
    payload = json.loads(data)
    assert payload["error"] == "invalid_request"
    assert "Traceback" not in data.decode("utf-8", "replace")


def test_bad_content_length_is_clean_400(km):
    conn = http.client.HTTPConnection("127.0.0.1", km.port, timeout=5)
    conn.putrequest("POST", "/oauth2/token")
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.putheader("Content-Length", "abc")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 400
    assert json.loads(resp.read())["error"] == "invalid_request"
    conn.close()


def test_unknown_path_is_404_json(km):
    status, headers, data = _request(km, "GET", "/nope")
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(data)["error"] == "not_found"


def test_jwks_endpoint_and_headers(km):
    status, headers, data = _request(km, "GET", "/oauth2/jwks")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "max-age=300"
    jwks = json.loads(data)
    assert jwks == km.jwks()
    [key] = jwks["keys"]
    assert key["kty"] == "RSA"
    assert key["kid"] == km.signing_key.kid
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert "d" not in key and "p" not in key
    # kid defaults to the RFC 7638 thumbprint; PyJWK round-trips the public key.
    assert len(key["kid"]) == 43
    assert jwt.PyJWK(key).algorithm_name == "RS256"


def test_discovery_document(km):
    status, headers, data = _request(km, "GET", "/.well-known/openid-configuration")
    assert status == 200
    doc = json.loads(data)
    assert doc["issuer"] == "http://issuer.test"
    assert doc["jwks_uri"] == "http://issuer.test/oauth2/jwks"
    assert doc["token_endpoint"] == "http://issuer.test/oauth2/token"
    assert doc["grant_types_supported"] == ["password", "client_credentials"]
    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["response_types_supported"] == ["token"]


def test_request_counters(km):
    for _ in range(3):
        _request(km, "GET", "/oauth2/jwks")
    _request(km, "GET", "/.well-known/openid-configuration?x=1")
    _token(km, {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"})
    assert km.requests["/oauth2/jwks"] == 3
    assert km.requests["/.well-known/openid-configuration"] == 1
    assert km.requests["/oauth2/token"] == 1


def test_counters_are_thread_safe(km):
    def hit():
        for _ in range(10):
            _request(km, "GET", "/oauth2/jwks")

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert km.requests["/oauth2/jwks"] == 80


def test_fault_knob_status(km):
    km.jwks_status = 503
    status, headers, data = _request(km, "GET", "/oauth2/jwks")
    assert status == 503
    assert "keys" not in json.loads(data)
    km.jwks_status = 200
    assert _request(km, "GET", "/oauth2/jwks")[0] == 200


def test_fault_knob_body(km):
    km.jwks_body = b"<html>not json"
    status, _, data = _request(km, "GET", "/oauth2/jwks")
    assert status == 200
    assert data == b"<html>not json"


def test_fault_knob_delay(km):
    km.jwks_delay = 0.4
    started = time.monotonic()
    status, _, _ = _request(km, "GET", "/oauth2/jwks")
    assert status == 200
    assert time.monotonic() - started >= 0.4


def test_published_keys_swap_for_rotation(km):
    old = km.signing_key
    new = SigningKey.generate_rsa(kid="rotated-1")
    token_new = km.issue_token("demo-client", "demo", "a", key=new)
    km.published_keys = [new]
    assert [k["kid"] for k in json.loads(_request(km, "GET", "/oauth2/jwks")[2])["keys"]] == ["rotated-1"]
    assert _verify(km, token_new)["sub"] == "demo"
    token_old = km.issue_token("demo-client", "demo", "a")
    with pytest.raises(jwt.PyJWKClientError):
        _verify(km, token_old)
    assert km.signing_keys == [old]


def test_extra_claims_override_and_remove(km):
    past = int(time.time()) - 100
    token = km.issue_token("demo-client", "demo", "a", extra_claims={"exp": past, "tier": "gold", "azp": None})
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] == past
    assert claims["tier"] == "gold"
    assert "azp" not in claims
    with pytest.raises(jwt.ExpiredSignatureError):
        _verify(km, token)


def test_lifetime_argument(km):
    claims = jwt.decode(km.issue_token("c", "s", "", lifetime=5), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 5


@pytest.mark.parametrize(
    ("factory", "alg", "kty"),
    [
        (lambda: SigningKey.generate_ec(), "ES256", "EC"),
        (lambda: SigningKey.generate_ec("P-384"), "ES384", "EC"),
        (lambda: SigningKey.generate_ed25519(), "EdDSA", "OKP"),
        (lambda: SigningKey.generate_rsa(kid="fixed"), "RS256", "RSA"),
    ],
)
def test_other_key_types_sign_verifiable_tokens(factory, alg, kty):
    key = factory()
    manager = KeyManager(AUDIENCE, DEMO_CLIENTS, DEMO_USERS, keys=[key], issuer="http://issuer.test")
    manager.start()
    try:
        token = manager.issue_token("demo-client", "demo", "orders:read")
        assert jwt.get_unverified_header(token)["alg"] == alg
        jwk = json.loads(_request(manager, "GET", "/oauth2/jwks")[2])["keys"][0]
        assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["kid"]) == (kty, alg, "sig", key.kid)
        claims = _verify(manager, token)
        assert claims["scope"] == "orders:read"
        doc = json.loads(_request(manager, "GET", "/.well-known/openid-configuration")[2])
        assert doc["id_token_signing_alg_values_supported"] == [alg]
    finally:
        manager.stop()


def test_unknown_curve_is_value_error():
    with pytest.raises(ValueError, match="unsupported curve"):
        SigningKey.generate_ec("P-999")


def test_pem_round_trip_keeps_kid():
    key = SigningKey.generate_rsa()
    loaded = SigningKey.from_pem(key.private_pem())
    assert loaded.kid == key.kid
    assert loaded.public_jwk() == key.public_jwk()


def test_stop_is_idempotent_and_frees_port():
    manager = KeyManager(AUDIENCE, {}, {})
    manager.start()
    port = manager.port
    assert manager.url == f"http://127.0.0.1:{port}"
    manager.stop()
    manager.stop()
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/oauth2/jwks")


def test_stop_closes_kept_alive_connections_too():
    """A stopped key manager answers nothing, not even on a connection a client kept alive (authz's JWKS client
    keeps its connection: a "down" fault must reach it)."""
    manager = KeyManager(AUDIENCE, {}, {})
    manager.start()
    conn = http.client.HTTPConnection("127.0.0.1", manager.port, timeout=2)
    conn.request("GET", "/oauth2/jwks")
    assert conn.getresponse().read() and conn.sock is not None  # kept alive (HTTP/1.1)
    manager.stop()
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.request("GET", "/oauth2/jwks")
        conn.getresponse().read()
    conn.close()
    manager.start(port=manager.port)  # and it comes back on its port
    again = http.client.HTTPConnection("127.0.0.1", manager.port, timeout=2)
    again.request("GET", "/oauth2/jwks")
    assert again.getresponse().status == 200
    again.close()
    manager.stop()
