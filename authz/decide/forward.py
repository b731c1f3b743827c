"""What an allowed request carries to the upstream: forwarded identity headers and dynamic metadata.

Header values are taken from the token and the registry, and every one is written with one reversible
encoding, :func:`encode_header_value`: printable ASCII stays as it is, ``%`` and everything else (non-ASCII
text as its UTF-8 bytes, control characters, a leading or trailing space) is percent-encoded (RFC 3986
section 2.1). So a header is always printable ASCII: a crafted claim can neither split or smuggle headers nor
reach the upstream as raw bytes, and the upstream gets back the exact value by percent-decoding it as UTF-8
(``urllib.parse.unquote``, ``decodeURIComponent``). A configured header that gets no value (empty) is removed
from the upstream request instead, so a copy sent by the client never reaches the upstream as if authz had set
it. Dynamic metadata carries the raw values (protobuf strings are UTF-8).
"""

from __future__ import annotations

from authz.config import HeadersSettings
from authz.decide.backend_jwt import BackendJwtSigner
from authz.decide.routes import Route
from authz.errors import Denial, Reason
from authz.model import Allow, Application, ClientBinding, Identity, Subscription

MAX_HEADER_VALUE_BYTES = 8192
"""Longest encoded identity header value forwarded. A longer one (only a token's ``sub``, scopes or client ID
can be) denies the request (401) rather than leave the header out, which could make the upstream take the
request for another identity."""

_TOKEN_FIELDS = {"subject": "subject ('sub')", "scopes": "scopes", "client_id": "client identifier"}
_HEX = [f"%{b:02X}" for b in range(256)]


def encode_header_value(value: str) -> str:
    """The one encoding of a forwarded value in an HTTP header: percent-encoding (RFC 3986 section 2.1).

    Printable ASCII (``0x20``-``0x7E``) is kept, except ``%`` (so the encoding stays reversible) and a space at
    either end (HTTP strips it); every other character is encoded as the ``%XX`` escapes of its UTF-8 bytes.
    Values that need no escape (IDs, names, scopes in ASCII) are returned unchanged.

    Args:
        value: the text to forward (valid Unicode: the identity phase refuses lone surrogates).
    Returns:
        Printable ASCII without leading or trailing space; ``urllib.parse.unquote(result) == value``.
        Examples: ``Zoë`` -> ``Zo%C3%AB``, ``100%`` -> ``100%25``, ``a\r\nb`` -> ``a%0D%0Ab``.
    Raises:
        UnicodeEncodeError: ``value`` holds a lone surrogate.
    """
    if value.isascii() and value.isprintable() and "%" not in value and value[:1] != " " and value[-1:] != " ":
        return value
    data = value.encode("utf-8")
    last = len(data) - 1
    return "".join(
        chr(b) if (0x20 < b < 0x7F and b != 0x25) or (b == 0x20 and 0 < i < last) else _HEX[b]
        for i, b in enumerate(data)
    )


METADATA_KEYS = (
    "application_id", "application_name", "application_tier", "client_id", "subject", "api_id",
    "subscription_tier", "key_type",
)
"""The keys of the dynamic metadata of an allowed request (``CheckResponse.dynamic_metadata``, which Envoy files
under the ext_authz filter's namespace ``envoy.filters.http.ext_authz``); the Envoy config generator logs them."""

PUBLIC_METADATA_KEYS = ("api_id", "auth")
"""The metadata keys of a request allowed to a public resource (``auth: none``)."""


def identity_values(
    identity: Identity, application: Application, binding: ClientBinding, route: Route
) -> dict[str, str]:
    """The value of each forwarded identity header, by the ``headers`` field that names it.

    Returns:
        One entry per :meth:`authz.config.HeadersSettings.identity_fields` (a test keeps the two in step).
    """
    return {
        "application_id": application.id,
        "application_name": application.name,
        "application_tier": application.tier,
        "client_id": identity.client_id,
        "subject": identity.subject,
        "api_id": route.api.id,
        "api_version": route.api.version,
        "key_type": binding.key_type.value,
        "scopes": " ".join(sorted(identity.scopes)),
    }


def _removed(route: Route, headers: HeadersSettings) -> list[str]:
    """The API's ``headers_to_remove``, else the global ``headers.remove``."""
    chosen = route.api.headers_to_remove
    return list(headers.remove if chosen is None else chosen)


def build_public_allow(route: Route, headers: HeadersSettings, backend_jwt: BackendJwtSigner | None = None) -> Allow:
    """The ``OkHttpResponse`` content for a request to a public resource (``auth: none``).

    No identity is forwarded: every configured identity header (and the backend JWT header) is removed,
    so a client-sent copy never reaches the upstream as if authz had set it.

    Args:
        route: the matched API and public resource.
        headers: configured header names and ``remove`` list.
        backend_jwt: the signer, when ``backend_jwt`` is configured (its header is removed).
    Returns:
        :class:`Allow` with no headers to set, the removals, and metadata ``{"api_id", "auth": "none"}``.
    """
    remove = _removed(route, headers)
    names = list(headers.identity_headers())
    if backend_jwt is not None:
        names.append(backend_jwt.header)
    for name in names:
        if name and name not in remove:
            remove.append(name)
    return Allow(headers=(), headers_to_remove=tuple(remove),
                 dynamic_metadata=dict(zip(PUBLIC_METADATA_KEYS, (route.api.id, "none"), strict=True)))


def build_allow(
    identity: Identity,
    application: Application,
    binding: ClientBinding,
    subscription: Subscription,
    route: Route,
    headers: HeadersSettings,
    *,
    access_token: str = "",
    backend_jwt: BackendJwtSigner | None = None,
) -> Allow:
    """The ``OkHttpResponse`` content for an allowed request.

    Args:
        identity: the validated token.
        application: the client ID's application.
        binding: the client ID's binding (key type).
        subscription: the application's active subscription to the API.
        route: the matched API and resource.
        headers: configured header names (null names are skipped) and ``remove`` list.
        access_token: the caller's access token (the backend JWT cache key).
        backend_jwt: the backend JWT signer when ``backend_jwt`` is configured: APIs with ``backend_jwt``
            get a signed JWT in its header; for the other APIs the header is removed.
    Returns:
        The :class:`Allow` value: headers to set (overwriting client copies), each value encoded with
        :func:`encode_header_value`; headers to remove (the API's ``headers_to_remove``, else ``headers.remove``,
        plus every configured header left without a value); and dynamic metadata, raw (``application_id``,
        ``application_name``, ``application_tier``, ``client_id``, ``subject``, ``api_id``,
        ``subscription_tier``, ``key_type``).
    Raises:
        Denial: ``INVALID_CREDENTIALS`` when a value from the token (``sub``, scopes, client ID) is longer
            than :data:`MAX_HEADER_VALUE_BYTES` once encoded.
    """
    values = identity_values(identity, application, binding, route)
    out: list[tuple[str, str]] = []
    remove = _removed(route, headers)
    for forwarded_as, field in headers.identity_headers().items():
        value = encode_header_value(values[field])
        if len(value) > MAX_HEADER_VALUE_BYTES:
            if field not in _TOKEN_FIELDS:  # registry and config values are bounded well below: a bug, 503
                raise RuntimeError(
                    f"header {forwarded_as} ({field}) would be longer than {MAX_HEADER_VALUE_BYTES} bytes")
            raise Denial(Reason.INVALID_CREDENTIALS, f"The access token's {_TOKEN_FIELDS[field]} is too long to "
                         f"forward (more than {MAX_HEADER_VALUE_BYTES} bytes in header {forwarded_as})")
        if value:
            out.append((forwarded_as, value))
        elif forwarded_as not in remove:
            remove.append(forwarded_as)  # strip any client-sent copy rather than let it through
    if route.api.backend_jwt is not None and backend_jwt is None:
        # Fail closed: an API that expects a backend JWT never gets a request without one.
        raise RuntimeError(f"API {route.api.id!r} needs a backend JWT but no signer is configured")
    if backend_jwt is not None:
        if route.api.backend_jwt is not None:
            out.append((backend_jwt.header,
                        backend_jwt.token_for(access_token, identity, application, binding, route)))
        elif backend_jwt.header not in remove:
            remove.append(backend_jwt.header)
    facts = {**values, "subscription_tier": subscription.tier}
    metadata = {key: facts[key] for key in METADATA_KEYS}
    return Allow(headers=tuple(out), headers_to_remove=tuple(remove), dynamic_metadata=metadata)
