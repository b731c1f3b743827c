"""The one error contract of authz: every denial's code, statuses and wording.

Each :class:`Reason` row gives the authz error ``code`` (WSO2-compatible 9009xx numbers), the HTTP status
Envoy sends to the client (``DeniedHttpResponse.status``), the gRPC status of ``CheckResponse.status``
(16 UNAUTHENTICATED or 7 PERMISSION_DENIED, never anything else, so that Envoy forwards our answer even
under ``failure_mode_allow``), the RFC 6750 section 3.1 ``error`` attribute of the ``WWW-Authenticate``
challenge (``None``: no ``error`` attribute), and the short ``message`` of the JSON body.

Phases signal a denial by raising :class:`Denial`; :mod:`authz.envoy.render` renders it in one place.
``docs/errors.md`` is generated from :data:`REASONS` (``python -m authz.errors``), and a test keeps it in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

GRPC_PERMISSION_DENIED = 7
GRPC_UNAUTHENTICATED = 16


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    """One row of the error table.

    Attributes:
        code: authz error code, the ``code`` field of the JSON body.
        http_status: HTTP status sent to the client (400, 401, 403, 404 or 503).
        grpc_status: ``CheckResponse.status.code``: 16 for authentication failures, 7 otherwise.
        oauth_error: RFC 6750 ``error`` attribute (``invalid_request``, ``invalid_token``,
            ``insufficient_scope``) or None when the challenge must carry none (no credentials sent).
        message: short human message of the JSON body.
        challenge: whether a ``WWW-Authenticate: Bearer ...`` header is sent.
    """

    code: int
    http_status: int
    grpc_status: int
    oauth_error: str | None
    message: str
    challenge: bool

    @property
    def body_error(self) -> str | None:
        """The ``error`` field of the JSON body: the RFC 6750 error, ``temporarily_unavailable`` for a 503
        (the OAuth 2.0 error code of RFC 6749 section 4.1.2.1), else None (no ``error`` field)."""
        if self.oauth_error:
            return self.oauth_error
        return "temporarily_unavailable" if self.http_status == 503 else None


class Reason(Enum):
    """Why a request was denied; the value is its :class:`ReasonInfo` row."""

    INVALID_REQUEST = ReasonInfo(900940, 400, GRPC_UNAUTHENTICATED, "invalid_request", "Bad request", True)
    INVALID_CREDENTIALS = ReasonInfo(
        900901, 401, GRPC_UNAUTHENTICATED, "invalid_token", "Invalid credentials", True
    )
    MISSING_CREDENTIALS = ReasonInfo(900902, 401, GRPC_UNAUTHENTICATED, None, "Missing credentials", True)
    EXPIRED_TOKEN = ReasonInfo(900903, 401, GRPC_UNAUTHENTICATED, "invalid_token", "Access token expired", True)
    NO_MATCHING_RESOURCE = ReasonInfo(
        900906, 403, GRPC_PERMISSION_DENIED, None, "No matching API or resource", False
    )
    SUBSCRIPTION_BLOCKED = ReasonInfo(
        900907, 403, GRPC_PERMISSION_DENIED, None, "Subscription blocked", False
    )
    NOT_SUBSCRIBED = ReasonInfo(900908, 403, GRPC_PERMISSION_DENIED, None, "Resource forbidden", False)
    SUBSCRIPTION_INACTIVE = ReasonInfo(
        900909, 403, GRPC_PERMISSION_DENIED, None, "Subscription or application inactive", False
    )
    INSUFFICIENT_SCOPE = ReasonInfo(
        900910, 403, GRPC_PERMISSION_DENIED, "insufficient_scope", "Insufficient scope", True
    )
    UNKNOWN_CLIENT = ReasonInfo(
        900911, 403, GRPC_PERMISSION_DENIED, None, "Client not registered to an application", False
    )
    TEMPORARILY_UNAVAILABLE = ReasonInfo(
        900950, 503, GRPC_PERMISSION_DENIED, None, "Service temporarily unavailable", False
    )

    @property
    def info(self) -> ReasonInfo:
        """The :class:`ReasonInfo` row of this reason."""
        return self.value


class Denial(Exception):
    """A decision to deny, raised by a pipeline phase and rendered by :mod:`authz.envoy.render`.

    Args:
        reason: the :class:`Reason` row (code, statuses, RFC 6750 error).
        description: what failed, for the client: never key material, Redis keys, tokens or stack traces.
        scope: for ``INSUFFICIENT_SCOPE``, the space-separated scopes the resource requires
            (RFC 6750 section 3 ``scope`` attribute).
        retry_after: for ``TEMPORARILY_UNAVAILABLE``, seconds the client should wait (``retry-after``).
        log_detail: extra detail for the server log only (never sent to the client).
    """

    __slots__ = ("reason", "description", "scope", "retry_after", "log_detail")

    def __init__(
        self,
        reason: Reason,
        description: str,
        *,
        scope: str | None = None,
        retry_after: int | None = None,
        log_detail: str | None = None,
    ) -> None:
        super().__init__(f"{reason.name}: {description}")
        self.reason = reason
        self.description = description
        self.scope = scope
        self.retry_after = retry_after
        self.log_detail = log_detail


RETRY_AFTER_SECONDS = 5
"""Seconds a client is told to wait (``retry-after``) after a 503."""


def unavailable(description: str) -> Denial:
    """A 503 denial (``TEMPORARILY_UNAVAILABLE``) for a dependency outage or an internal failure.

    Args:
        description: what the client is told (never an internal detail).
    Returns:
        The :class:`Denial`, with ``retry_after`` = :data:`RETRY_AFTER_SECONDS`.
    """
    return Denial(Reason.TEMPORARILY_UNAVAILABLE, description, retry_after=RETRY_AFTER_SECONDS)


class DependencyUnavailable(Exception):
    """A dependency (Redis, a key manager's JWKS endpoint) could not answer; the pipeline denies with 503.

    Args:
        dependency: short name for logs and metrics (``redis``, ``jwks:<key manager>``).
        detail: what went wrong, for the server log.
    """

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail


def _challenge_cell(info: ReasonInfo) -> str:
    if not info.challenge:
        return "no"
    if not info.oauth_error:
        return "`Bearer realm` (no `error`)"
    scope = ', scope="..."' if info.oauth_error == "insufficient_scope" else ""
    return f'`Bearer realm, error="{info.oauth_error}"{scope}`'


def error_table_markdown() -> str:
    """Render :class:`Reason` as the Markdown table of ``docs/errors.md``.

    Returns:
        The table text, one row per reason, ordered by code.
    """
    lines = [
        "| code | reason | HTTP status | gRPC status | body `error` | WWW-Authenticate | message |",
        "|---|---|---|---|---|---|---|",
    ]
    for reason in sorted(Reason, key=lambda r: r.info.code):
        i = reason.info
        grpc = "16 UNAUTHENTICATED" if i.grpc_status == GRPC_UNAUTHENTICATED else "7 PERMISSION_DENIED"
        lines.append(
            f"| {i.code} | `{reason.name}` | {i.http_status} | {grpc} | "
            f"{'`' + i.body_error + '`' if i.body_error else '-'} | {_challenge_cell(i)} | {i.message} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(error_table_markdown(), end="")
