"""What an allowed request carries to the upstream: forwarded identity headers and dynamic metadata.

Header values are taken from the token and the registry; a value with a control character (CR, LF, NUL...)
is never forwarded, so a crafted claim cannot split or smuggle headers. A configured header that gets no
value (empty, or dropped as unsafe) is removed from the upstream request instead, so a copy sent by the
client never reaches the upstream as if authz had set it.
"""

from __future__ import annotations

from authz.config import HeadersSettings
from authz.decide.backend_jwt import BackendJwtSigner
from authz.decide.routes import Route
from authz.model import Allow, Application, ClientBinding, Identity, Subscription

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


def _safe(value: str) -> bool:
    return all(0x20 <= ord(c) != 0x7F for c in value) and len(value) <= 8192


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
        The :class:`Allow` value: headers to set (overwriting client copies), headers to remove (the API's
        ``headers_to_remove``, else ``headers.remove``, plus every configured header left without a safe
        value), and
        dynamic metadata (``application_id``, ``application_name``, ``application_tier``, ``client_id``,
        ``subject``, ``api_id``, ``subscription_tier``, ``key_type``).
    """
    values = identity_values(identity, application, binding, route)
    out: list[tuple[str, str]] = []
    remove = _removed(route, headers)
    for name, field in headers.identity_headers().items():
        value = values[field]
        if value and _safe(value):
            out.append((name, value))
        elif name not in remove:
            remove.append(name)  # strip any client-sent copy rather than let it through
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
