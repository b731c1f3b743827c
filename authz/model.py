"""Plain immutable values that flow through the decision pipeline (no protobuf types past the adapter)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    """What authz needs of an Envoy ``CheckRequest`` (``attributes.request.http`` and ``context_extensions``).

    Attributes:
        method: HTTP method (``attributes.request.http.method``), upper case.
        path: raw ``:path`` as Envoy sent it, query string included.
        host: ``attributes.request.http.host`` (the ``:authority``).
        headers: header map, names lower-cased (Envoy lower-cases them; the adapter also folds any other case).
            A name sent with two different cases appears once with the values comma-joined, as HTTP does.
        context_extensions: ``attributes.context_extensions`` set on the Envoy route (``api_id``, ...).
        request_id: Envoy's ``x-request-id`` or ``http.id``, for logs only.
    """

    method: str
    path: str
    host: str
    headers: Mapping[str, str]
    context_extensions: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""


MAX_TOKEN_ID_LENGTH = 512
"""Longest ``jti`` (RFC 7519 section 4.1.7) accepted in a token and in a revocation."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A validated access token (RFC 7519 / RFC 9068 claims), the output of the identity phase.

    Attributes:
        key_manager: name of the configured key manager whose ``issuer`` matched ``iss``.
        issuer: the ``iss`` claim.
        subject: the ``sub`` claim (empty string when absent).
        client_id: the OAuth2 client ID, from the key manager's ``client_id_claims``.
        scopes: the token's scopes, from the key manager's ``scope_claims``.
        expires_at: the ``exp`` claim, seconds since the epoch.
        token_id: the ``jti`` claim, or None.
        claims: the whole verified payload.
    """

    key_manager: str
    issuer: str
    subject: str
    client_id: str
    scopes: frozenset[str]
    expires_at: float
    token_id: str | None
    claims: Mapping[str, Any]


class SubscriptionStatus(StrEnum):
    """Lifecycle states of a subscription (application x API), as in WSO2 API Manager."""

    ACTIVE = "ACTIVE"
    BLOCKED = "BLOCKED"
    PROD_ONLY_BLOCKED = "PROD_ONLY_BLOCKED"
    ON_HOLD = "ON_HOLD"
    REJECTED = "REJECTED"


class ApplicationStatus(StrEnum):
    """Lifecycle states of an application."""

    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


class KeyType(StrEnum):
    """Whether a client ID holds production or sandbox keys."""

    PRODUCTION = "PRODUCTION"
    SANDBOX = "SANDBOX"


@dataclass(frozen=True, slots=True)
class Application:
    """A developer's application, as registered in the registry.

    Attributes:
        id: application ID (opaque string).
        name: display name, unique in the registry.
        owner: the developer who owns it.
        tier: throttling tier name (informational for authz; forwarded in metadata).
        status: :class:`ApplicationStatus`.
        created_at: seconds since the epoch.
    """

    id: str
    name: str
    owner: str = ""
    tier: str = "Unlimited"
    status: ApplicationStatus = ApplicationStatus.ACTIVE
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ClientBinding:
    """The application a client ID belongs to, with the key type of that client.

    Attributes:
        application_id: the owning application's ID.
        key_type: :class:`KeyType` of the client's keys.
    """

    application_id: str
    key_type: KeyType = KeyType.PRODUCTION


@dataclass(frozen=True, slots=True)
class Subscription:
    """An application's subscription to an API.

    Attributes:
        application_id: the subscriber.
        api_id: the API's ID (as in config ``apis[].id``).
        status: :class:`SubscriptionStatus`.
        tier: subscription tier name.
        created_at: seconds since the epoch.
    """

    application_id: str
    api_id: str
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    tier: str = "Unlimited"
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Allow:
    """The allow decision: what the ``OkHttpResponse`` carries.

    Attributes:
        headers: headers to set on the upstream request, overwriting client-sent copies.
        headers_to_remove: header names to strip from the upstream request (e.g. ``authorization``).
        dynamic_metadata: values for Envoy's ``CheckResponse.dynamic_metadata`` (strings only).
    """

    headers: tuple[tuple[str, str], ...]
    headers_to_remove: tuple[str, ...]
    dynamic_metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the hot path needs to decide for one (key manager, client ID, API): one registry read.

    Attributes:
        binding: the client ID's application and key type, or None when the client ID is not registered.
        application: that application, or None.
        subscription: the application's subscription to the API, or None.
        sequence: the registry's write sequence number when it was read (``P seq``, 0 for a registry never
            written), or None when unknown; not part of equality.
    """

    binding: ClientBinding | None
    application: Application | None
    subscription: Subscription | None
    sequence: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Step:
    """One rule a phase applied, recorded when the :class:`authz.decide.pipeline.Check` carries a trace (``authz
    explain``; the hot path records nothing).

    Attributes:
        name: what was checked (``alg``, ``iss``, ``exp``, ``key``, ``subscription``...).
        seen: the value seen, printable; never a token, a key or a secret.
        rule: the rule it was held against.
        ok: True when it passed, False when it failed (the phase then denies), None when it only informs.
    """

    name: str
    seen: str
    rule: str
    ok: bool | None = None
