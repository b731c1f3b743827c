"""Token requests shown to developers (``authz.keys.token_requests``): grants, scopes, audience, client
authentication and the exact ``curl``, for each IdP's shape; never a secret."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from authz.config import KeyManagerSettings, Settings
from authz.dev.keymanager import KeyManager
from authz.keys.connection import ConnectionData
from authz.keys.token_requests import render_curl, token_requests

TOKEN_URL = "https://idp.example.test/oauth2/token"


def _km(make_settings: Callable[..., Settings], **fields: Any) -> KeyManagerSettings:
    return make_settings(km=fields).key_managers[0]


def _connection(**fields: Any) -> ConnectionData:
    return ConnectionData(**{"key_manager": "test-km", "issuer": "https://idp.example.test",
                             "token_endpoint": TOKEN_URL, "jwks_uri": None, **fields})


def test_password_and_client_credentials_requests_carry_placeholders_and_the_apis_scopes(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    password, credentials = token_requests(_km(make_settings), _connection(), "demo-client",
                                           ["orders:read", "orders:write"])
    assert dict(password.parameters) == {
        "grant_type": "password", "username": "<USER_NAME>", "password": "<USER_PASSWORD>",
        "client_id": "demo-client", "client_secret": "<CLIENT_SECRET>", "scope": "orders:read orders:write"}
    assert (password.client_authentication, password.notes) == ("client_secret_post", ())
    assert password.curl == (
        f"curl -sS {TOKEN_URL} \\\n"
        "  --data-urlencode grant_type=password \\\n"
        "  --data-urlencode 'username=<USER_NAME>' \\\n"
        "  --data-urlencode 'password=<USER_PASSWORD>' \\\n"
        "  --data-urlencode client_id=demo-client \\\n"
        "  --data-urlencode 'client_secret=<CLIENT_SECRET>' \\\n"
        "  --data-urlencode 'scope=orders:read orders:write'"
    )
    assert dict(credentials.parameters) == {
        "grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "<CLIENT_SECRET>",
        "scope": "orders:read orders:write"}


def test_auth0_asks_for_the_audience_with_its_parameter(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    km = make_settings(key_managers=[{"name": "auth0", "preset": "auth0", "issuer": "https://acme.eu.auth0.com/",
                                      "audiences": ["https://orders.example.test", "orders-api"]}]).key_managers[0]
    password, credentials = token_requests(km, _connection(), "abc", ["orders:read"])
    assert password.parameters["audience"] == credentials.parameters["audience"] == "https://orders.example.test"
    assert password.notes == ("asks for the first of the accepted audiences (https://orders.example.test, orders-api)",)


def test_entra_asks_for_default_with_both_grants(idp: KeyManager, make_settings: Callable[..., Settings]) -> None:
    km = _km(make_settings, requested_scope="api://orders-api/.default")
    password, credentials = token_requests(km, _connection(), "4f6a", ["orders.read", "orders.read.all"])
    assert password.parameters["scope"] == credentials.parameters["scope"] == "api://orders-api/.default"
    assert password.notes == ()


def test_basic_client_authentication_when_the_endpoint_does_not_take_the_secret_in_the_form(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    connection = _connection(token_endpoint_auth_methods_supported=("client_secret_basic", "private_key_jwt"),
                             grant_types_supported=("authorization_code", "client_credentials"))
    password, credentials = token_requests(_km(make_settings), connection, "0oa1", [])
    assert credentials.client_authentication == "client_secret_basic"
    assert dict(credentials.parameters) == {"grant_type": "client_credentials"}
    assert credentials.curl == (f"curl -sS {TOKEN_URL} \\\n  -u '0oa1:<CLIENT_SECRET>' \\\n"
                                "  --data-urlencode grant_type=client_credentials")
    assert password.notes[:2] == (
        "no scope requested: the application's APIs require none",
        "key manager test-km does not list the password grant (it lists authorization_code, client_credentials): "
        "enable it at the IdP first",
    )


def test_without_a_token_endpoint_there_is_no_curl_but_the_parameters_remain(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    password, _ = token_requests(_km(make_settings), _connection(token_endpoint=None), "c", ["s"])
    assert (password.token_endpoint, password.curl, password.parameters["scope"]) == (None, None, "s")


def test_curl_words_survive_the_shell_exactly() -> None:
    form = {"scope": "a:b c/d 'q' $HOME `x`", "username": "<USER_NAME>", "x": "é=&"}
    command = render_curl("POST", "https://idp.test/t?a=1&b=2", form=form, headers={"X-A": "v w"})
    # sh parses the printed command; a shell function in place of curl prints the words it received.
    argv = subprocess.run(["sh", "-c", 'curl() { printf "%s\\0" curl "$@"; }\n' + command],
                          capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    assert argv == [
        "curl", "-sS", "https://idp.test/t?a=1&b=2", "-H", "X-A: v w",
        "--data-urlencode", "scope=a:b c/d 'q' $HOME `x`", "--data-urlencode", "username=<USER_NAME>",
        "--data-urlencode", "x=é=&",
    ]
    assert render_curl("DELETE", "https://gw.test/x", include_headers=True) == "curl -sS -i -X DELETE https://gw.test/x"


def test_the_configured_client_authentication_wins_and_okta_defaults_to_basic(
    idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    both = _connection(token_endpoint_auth_methods_supported=("client_secret_basic", "client_secret_post"))
    okta = make_settings(key_managers=[{"name": "okta", "preset": "okta",
                                        "issuer": "https://acme.okta.com/oauth2/default"}]).key_managers[0]
    assert okta.token_endpoint_auth_method == "client_secret_basic"
    password, _ = token_requests(okta, both, "0oa1", ["orders:read"])
    assert (password.client_authentication, "client_secret" in password.parameters) == ("client_secret_basic", False)
    assert "  -u '0oa1:<CLIENT_SECRET>' \\\n" in (password.curl or "")
    only_basic = _connection(token_endpoint_auth_methods_supported=("client_secret_basic",))
    post = _km(make_settings, token_endpoint_auth_method="client_secret_post")
    assert token_requests(post, only_basic, "c", [])[0].parameters["client_secret"] == "<CLIENT_SECRET>"
