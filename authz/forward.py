"""What an allowed request carries to the upstream: forwarded identity headers and dynamic metadata.

Header values are taken from the token and the registry; a value with a control character (CR, LF, NUL...)
is never forwarded, so a crafted claim cannot split or smuggle headers. A configured header that gets no
value (empty, or dropped as unsafe) is removed from the upstream request instead, so a copy sent by the
client never reaches the upstream as if authz had set it.
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
        The :class:`Allow` value: headers to set (overwriting client copies), headers to remove (the
        configured ``remove`` list plus every configured header left without a safe value), and
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
    out: list[tuple[str, str]] = []
    remove = list(headers.remove)
    for name, value in values.items():
        if not name:
            continue  # disabled in the config
        if value and _safe(value):
            out.append((name, value))
        elif name not in remove:
            remove.append(name)  # strip any client-sent copy rather than let it through
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
    return Allow(headers=tuple(out), headers_to_remove=tuple(remove), dynamic_metadata=metadata)
