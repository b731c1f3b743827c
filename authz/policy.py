"""Policy phase: may this application, with this token, call this resource?

Pure function of plain values; the order of checks follows WSO2 API Manager's gateway: client registered,
application active, subscription present and active for the key type, then the resource's scopes.
"""

from __future__ import annotations

from authz.apis import Route
from authz.errors import Denial, Reason
from authz.model import (
    Application,
    ApplicationStatus,
    Identity,
    KeyType,
    Subscription,
    SubscriptionStatus,
)
from authz.store_redis import Lookup


def authorize(identity: Identity, route: Route, found: Lookup) -> tuple[Application, Subscription]:
    """Check registration, subscription state and scopes.

    Args:
        identity: the validated token.
        route: the matched API and resource.
        found: the registry lookup for (key manager, client ID, API).
    Returns:
        The application and its active subscription.
    Raises:
        Denial: ``UNKNOWN_CLIENT`` (client ID not mapped), ``SUBSCRIPTION_INACTIVE`` (application not
            active, subscription ON_HOLD or REJECTED), ``NOT_SUBSCRIBED``, ``SUBSCRIPTION_BLOCKED``
            (BLOCKED, or PROD_ONLY_BLOCKED with a production key) or ``INSUFFICIENT_SCOPE``.
    """
    api_id = route.api.id
    if found.binding is None or found.application is None:
        raise Denial(
            Reason.UNKNOWN_CLIENT,
            "The token's client ID is not registered to any application",
            log_detail=f"client {identity.client_id[:128]!r} of key manager {identity.key_manager}",
        )
    app = found.application
    if app.status is not ApplicationStatus.ACTIVE:
        raise Denial(Reason.SUBSCRIPTION_INACTIVE, f"Application '{app.name}' is not active")
    sub = found.subscription
    if sub is None:
        raise Denial(Reason.NOT_SUBSCRIBED, f"Application '{app.name}' is not subscribed to API '{api_id}'")
    if sub.status is SubscriptionStatus.BLOCKED or (
        sub.status is SubscriptionStatus.PROD_ONLY_BLOCKED and found.binding.key_type is KeyType.PRODUCTION
    ):
        raise Denial(
            Reason.SUBSCRIPTION_BLOCKED, f"Application '{app.name}' has a blocked subscription to API '{api_id}'"
        )
    if sub.status in (SubscriptionStatus.ON_HOLD, SubscriptionStatus.REJECTED):
        raise Denial(
            Reason.SUBSCRIPTION_INACTIVE,
            f"Application '{app.name}''s subscription to API '{api_id}' is {sub.status.value}",
        )
    required = route.resource.scopes
    if required:
        held = identity.scopes
        ok = all(s in held for s in required) if route.resource.scope_match == "all" else any(
            s in held for s in required
        )
        if not ok:
            needed = " ".join(required)
            raise Denial(
                Reason.INSUFFICIENT_SCOPE,
                f"The access token lacks the scope required by this resource ({route.resource.scope_match} of: {needed})",
                scope=needed,
            )
    return app, sub
