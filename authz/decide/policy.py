"""Policy phase: may this application, with this token, call this resource?

Pure function of plain values; the order of checks follows WSO2 API Manager's gateway: client registered,
application active, key type allowed on the route's environment, subscription present and active for the key
type, then the resource's scopes.

Environments: an Envoy route marked with the per-route context extension ``environment: sandbox`` accepts
only SANDBOX keys; any other route (no ``environment``, or ``environment: production``) accepts only
PRODUCTION keys. Any other value is a misconfigured route and denies every key.
"""

from __future__ import annotations

from authz.decide.routes import Route
from authz.errors import Denial, Reason
from authz.model import (
    Application,
    ApplicationStatus,
    Identity,
    KeyType,
    Lookup,
    Step,
    Subscription,
    SubscriptionStatus,
)

SANDBOX = "sandbox"
PRODUCTION = "production"


def authorize(
    identity: Identity, route: Route, found: Lookup, environment: str | None = None, trace: list[Step] | None = None,
) -> tuple[Application, Subscription]:
    """Check registration, key type against the route's environment, subscription state and scopes.

    Args:
        identity: the validated token.
        route: the matched API and resource.
        found: the registry lookup for (key manager, client ID, API).
        environment: the route's ``context_extensions.environment`` (Envoy ``ExtAuthzPerRoute``
            ``check_settings.context_extensions``): ``sandbox``, ``production`` or None (production).
        trace: when given (``authz explain``), each check made is added as a :class:`authz.model.Step`.
    Returns:
        The application and its active subscription.
    Raises:
        Denial: ``UNKNOWN_CLIENT`` (client ID not mapped), ``SUBSCRIPTION_INACTIVE`` (application not
            active, subscription ON_HOLD or REJECTED), ``NO_MATCHING_RESOURCE`` (the route's environment is
            neither ``sandbox`` nor ``production``), ``NOT_SUBSCRIBED`` (also: a SANDBOX key on a production
            route, a PRODUCTION key on a sandbox route), ``SUBSCRIPTION_BLOCKED``
            (BLOCKED, or PROD_ONLY_BLOCKED with a production key) or ``INSUFFICIENT_SCOPE``.
    """
    api_id = route.api.id
    if trace is not None:
        trace.append(Step("client", f"{identity.client_id} of key manager {identity.key_manager} -> " + (
            f"application {found.binding.application_id}" if found.binding is not None else "no application"),
            "registered to an application", found.binding is not None and found.application is not None))
    if found.binding is None or found.application is None:
        raise Denial(
            Reason.UNKNOWN_CLIENT,
            "The token's client ID is not registered to any application",
            log_detail=f"client {identity.client_id[:128]!r} of key manager {identity.key_manager}",
        )
    app = found.application
    if trace is not None:
        trace.append(Step("application", f"{app.name} ({app.id}): {app.status.value}", "ACTIVE",
                          app.status is ApplicationStatus.ACTIVE))
    if app.status is not ApplicationStatus.ACTIVE:
        raise Denial(Reason.SUBSCRIPTION_INACTIVE, f"Application '{app.name}' is not active")
    _check_environment(found.binding.key_type, environment, trace)
    sub = found.subscription
    blocked = sub is not None and (sub.status is SubscriptionStatus.BLOCKED or (
        sub.status is SubscriptionStatus.PROD_ONLY_BLOCKED and found.binding.key_type is KeyType.PRODUCTION))
    if trace is not None:
        trace.append(Step(
            "subscription", f"to {api_id}: " + (f"{sub.status.value}, tier {sub.tier}" if sub else "none"),
            "present and ACTIVE (PROD_ONLY_BLOCKED: SANDBOX keys only)", sub is not None and not blocked
            and sub.status not in (SubscriptionStatus.ON_HOLD, SubscriptionStatus.REJECTED)))
    if sub is None:
        raise Denial(Reason.NOT_SUBSCRIBED, f"Application '{app.name}' is not subscribed to API '{api_id}'")
    if blocked:
        raise Denial(
            Reason.SUBSCRIPTION_BLOCKED, f"Application '{app.name}' has a blocked subscription to API '{api_id}'"
        )
    if sub.status in (SubscriptionStatus.ON_HOLD, SubscriptionStatus.REJECTED):
        raise Denial(
            Reason.SUBSCRIPTION_INACTIVE,
            f"The subscription of application '{app.name}' to API '{api_id}' is {sub.status.value}",
        )
    required = route.resource.scopes
    if required or trace is not None:
        held = identity.scopes
        ok = all(s in held for s in required) if route.resource.scope_match == "all" else any(
            s in held for s in required
        )
        ok = ok or not required
        if trace is not None:
            trace.append(Step("scopes", f"held: {' '.join(sorted(held)) or '(none)'}", f"{route.resource.scope_match} "
                              f"of: {' '.join(required)}" if required else "none required", ok))
        if not ok:
            needed = " ".join(required)
            raise Denial(
                Reason.INSUFFICIENT_SCOPE,
                f"The access token lacks the scope required by this resource ({route.resource.scope_match} of: {needed})",
                scope=needed,
            )
    return app, sub


def _check_environment(key_type: KeyType, environment: str | None, trace: list[Step] | None = None) -> None:
    if trace is not None:
        ok = environment in (None, SANDBOX, PRODUCTION) and (key_type is KeyType.SANDBOX) == (environment == SANDBOX)
        trace.append(Step("key type", f"{key_type.value} key on a {environment or PRODUCTION} route",
                          "SANDBOX keys on sandbox routes, PRODUCTION keys on the others", ok))
    if environment is not None and environment not in (SANDBOX, PRODUCTION):
        raise Denial(
            Reason.NO_MATCHING_RESOURCE,
            "The route's environment is not configured correctly",
            log_detail=f"context_extensions.environment={environment[:64]!r} is neither sandbox nor production",
        )
    sandbox_route = environment == SANDBOX
    if key_type is KeyType.SANDBOX and not sandbox_route:
        raise Denial(Reason.NOT_SUBSCRIBED, "A sandbox key cannot call a production route")
    if key_type is KeyType.PRODUCTION and sandbox_route:
        raise Denial(Reason.NOT_SUBSCRIBED, "A production key cannot call a sandbox route")
