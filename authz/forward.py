"""What an allowed request carries to the upstream: forwarded identity headers and dynamic metadata.

Header values are taken from the token and the registry; a value with a control character (CR, LF, NUL...)
is never forwarded, so a crafted claim cannot split or smuggle headers.
"""

from __future__ import annotations

from authz.apis import Route
from authz.config import HeadersSettings
from authz.model import Allow, Application, ClientBinding, Identity, Subscription


def _safe(value: str) -> bool:
    return all(0x20 <= ord(c) != 0x7F for c in value) and len(value) <= 8192


def build_allow(
    identity: Identity,
    application: Application,
    binding: ClientBinding,
    subscription: Subscription,
    route: Route,
    headers: HeadersSettings,
) -> Allow:
    """The ``OkHttpResponse`` content for an allowed request.

    Args:
        identity: the validated token.
        application: the client ID's application.
        binding: the client ID's binding (key type).
        subscription: the application's active subscription to the API.
        route: the matched API and resource.
        headers: configured header names (null names are skipped) and ``remove`` list.
    Returns:
        The :class:`Allow` value: headers to set (overwriting client copies), headers to remove, and
        dynamic metadata (``application_id``, ``application_name``, ``application_tier``, ``client_id``,
        ``subject``, ``api_id``, ``subscription_tier``, ``key_type``).
    """
    values = {
        headers.application_id: application.id,
        headers.application_name: application.name,
        headers.client_id: identity.client_id,
        headers.subject: identity.subject,
        headers.api_id: route.api.id,
        headers.api_version: route.api.version,
        headers.key_type: binding.key_type.value,
        headers.scopes: " ".join(sorted(identity.scopes)),
    }
    out = tuple((name, value) for name, value in values.items() if name and value and _safe(value))
    metadata = {
        "application_id": application.id,
        "application_name": application.name,
        "application_tier": application.tier,
        "client_id": identity.client_id,
        "subject": identity.subject,
        "api_id": route.api.id,
        "subscription_tier": subscription.tier,
        "key_type": binding.key_type.value,
    }
    return Allow(headers=out, headers_to_remove=tuple(headers.remove), dynamic_metadata=metadata)
