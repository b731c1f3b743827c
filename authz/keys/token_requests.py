"""Ready-to-run token requests (RFC 6749 sections 4.3 and 4.4) for a client ID of a key manager, as shown to
developers: the password grant and the client-credentials grant, each as form parameters and a ``curl``.

Secrets are never known nor shown: the client secret and the user's credentials are the placeholders
:data:`CLIENT_SECRET`, :data:`USER_NAME` and :data:`USER_PASSWORD`, to be replaced by whoever runs the command.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from authz.config import KeyManagerSettings
from authz.keys.connection import ConnectionData

CLIENT_SECRET = "<CLIENT_SECRET>"
"""Placeholder of the client secret (RFC 6749 section 2.3.1 ``client_secret``)."""
USER_NAME = "<USER_NAME>"
"""Placeholder of the resource owner's user name (RFC 6749 section 4.3.2 ``username``)."""
USER_PASSWORD = "<USER_PASSWORD>"
"""Placeholder of the resource owner's password (RFC 6749 section 4.3.2 ``password``)."""
ACCESS_TOKEN = "<ACCESS_TOKEN>"
"""Placeholder of the access token in calls through the gateway (the ``access_token`` of the token response)."""

GRANTS = ("password", "client_credentials")
"""The grants token requests are built for, in the order they are shown."""


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One token request to a key manager's token endpoint.

    Attributes:
        grant_type: ``password`` or ``client_credentials`` (RFC 6749 ``grant_type``).
        token_endpoint: the URL it is POSTed to, None when the key manager's token endpoint is unknown.
        client_authentication: ``client_secret_post`` (``client_id`` and ``client_secret`` form parameters) or
            ``client_secret_basic`` (HTTP Basic; RFC 8414 ``token_endpoint_auth_methods_supported`` names).
        parameters: the form parameters in order (``application/x-www-form-urlencoded``), with placeholders for
            secrets; the client credentials are among them only with ``client_secret_post``.
        curl: the command, ready to run once the placeholders are replaced; None without a token endpoint.
        notes: what to know before running it (a grant the key manager does not list, no scope needed...).
    """

    grant_type: str
    token_endpoint: str | None
    client_authentication: str
    parameters: Mapping[str, str]
    curl: str | None
    notes: tuple[str, ...] = field(default=())


def scope_value(settings: KeyManagerSettings, scopes: Sequence[str]) -> str:
    """The ``scope`` parameter of a token request (RFC 6749 section 3.3, space-separated).

    Args:
        settings: the key manager (``requested_scope``).
        scopes: the scopes the APIs require, as authz's config names them.
    Returns:
        ``requested_scope`` when configured, else ``scopes`` joined; empty when there is nothing to ask for.
    """
    return settings.requested_scope or " ".join(scopes)


def token_requests(
    settings: KeyManagerSettings, connection: ConnectionData, client_id: str, scopes: Sequence[str]
) -> tuple[TokenRequest, ...]:
    """The password-grant and client-credentials requests of ``client_id``.

    Args:
        settings: the key manager (``audiences`` and ``audience_parameter``, ``requested_scope``,
            ``token_endpoint_auth_method``).
        connection: its connection data (token endpoint, grants and client authentication methods stated).
        client_id: the OAuth2 client ID.
        scopes: the scopes to ask for (those the application's APIs require), in order.
    Returns:
        One :class:`TokenRequest` per grant of :data:`GRANTS`.
    """
    methods = connection.token_endpoint_auth_methods_supported
    if settings.token_endpoint_auth_method is not None:
        basic = settings.token_endpoint_auth_method == "client_secret_basic"
    else:
        basic = bool(methods) and "client_secret_post" not in methods and "client_secret_basic" in methods
    auth = "client_secret_basic" if basic else "client_secret_post"
    out = []
    for grant in GRANTS:
        params: dict[str, str] = {"grant_type": grant}
        if grant == "password":
            params.update(username=USER_NAME, password=USER_PASSWORD)
        if not basic:
            params.update(client_id=client_id, client_secret=CLIENT_SECRET)
        notes = []
        scope = scope_value(settings, scopes)
        if scope:
            params["scope"] = scope
        else:
            notes.append("no scope requested: the application's APIs require none")
        if settings.audience_parameter and settings.audiences:
            params[settings.audience_parameter] = settings.audiences[0]
            if len(settings.audiences) > 1:
                notes.append(f"asks for the first of the accepted audiences ({', '.join(settings.audiences)})")
        if connection.grant_types_supported and grant not in connection.grant_types_supported:
            notes.append(f"key manager {connection.key_manager} does not list the {grant} grant "
                         f"(it lists {', '.join(connection.grant_types_supported)}): enable it at the IdP first")
        if basic:
            notes.append("the client authenticates with HTTP Basic (client_secret_basic); a client ID or secret "
                         "with characters such as '+', '%' or ':' must be form-urlencoded first "
                         "(RFC 6749 section 2.3.1)")
        curl = None
        if connection.token_endpoint is not None:
            curl = render_curl("POST", connection.token_endpoint, form=params,
                               user=f"{client_id}:{CLIENT_SECRET}" if basic else None)
        out.append(TokenRequest(grant, connection.token_endpoint, auth, params, curl, tuple(notes)))
    return tuple(out)


def render_curl(
    method: str, url: str, *, form: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
    user: str | None = None, include_headers: bool = False,
) -> str:
    """A POSIX-shell ``curl`` command, one option per line (``\\`` continuations), every word quoted.

    Args:
        method: the HTTP method (curl's default, ``GET``, or ``POST`` with ``form``, is not written).
        url: the request URL.
        form: form parameters, each sent with ``--data-urlencode name=value`` (the value percent-encoded).
        headers: request headers (``-H 'Name: value'``).
        user: ``id:secret`` for HTTP Basic (``-u``).
        include_headers: print the response's status line and headers (``-i``).
    Returns:
        The command text.
    """
    first = ["curl", "-sS"]
    if include_headers:
        first.append("-i")
    if method != ("POST" if form else "GET"):
        first += ["-X", method]
    first.append(url)
    lines = [" ".join(shlex.quote(word) for word in first)]
    if user is not None:
        lines.append(f"-u {shlex.quote(user)}")
    for name, value in (headers or {}).items():
        lines.append(f"-H {shlex.quote(f'{name}: {value}')}")
    for name, value in (form or {}).items():
        lines.append(f"--data-urlencode {shlex.quote(f'{name}={value}')}")
    return " \\\n  ".join(lines)
