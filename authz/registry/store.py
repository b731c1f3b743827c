"""The registry store's interface: what the hot path, the admin tools and the cache need of the registry.

Two implementations: :class:`authz.registry.redis_store.RedisStore` (the production store, Redis, Sentinel or
Cluster) and :class:`authz.registry.memory.MemoryStore` (in-process, for tests of the code above the store and
for tools that need a registry without Redis). The data model is docs/registry.md's.

Errors: a refused write is a :class:`RegistryError` (for people), a malformed stored record a
:class:`CorruptRecord`, and a store that cannot answer (unreachable, too slow) a :class:`StoreUnavailable`,
which the hot path turns into a 503 and the CLI into exit status 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from authz.model import (
    Application,
    ApplicationStatus,
    ClientBinding,
    KeyType,
    Lookup,
    Subscription,
    SubscriptionStatus,
)
from authz.registry.durability import Durability

SCHEMA_VERSION = "1"
"""The registry's data format version (the ``schema`` key); see docs/registry.md for the migration rule."""


class RegistryError(Exception):
    """A registry write was refused; the message is meant for the user (CLI, admin API).

    Attributes:
        kind: ``already_exists``, ``not_found``, ``invalid`` or ``failed_precondition`` (the registry's data
            format is not :data:`SCHEMA_VERSION`).
        field: for ``invalid``, the name of the offending input field (``client_id``, ``expires_at``...),
            or None.
    """

    def __init__(self, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field


class CorruptRecord(Exception):
    """A stored record does not have the documented shape.

    Args:
        key: the record's key (logged, never sent to a client).
        reason: what is wrong, naming the field.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class StoreUnavailable(Exception):
    """The store could not answer: unreachable, too slow, or it failed the command.

    Args:
        detail: what went wrong (exception type and message), for logs; never a credential.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """One write event of the registry, as published on ``P events``: ``"<sequence> <subject>"``.

    Attributes:
        sequence: the registry's sequence number after the write (``P seq``), or None for a message without
            one (written by an authz release before sequence numbers).
        subject: what changed: ``app:ID``, ``client:KM:CLIENT``, ``sub:APP:API``, ``revoked:EXPIRY:KM:JTI``
            or ``unrevoked:KM:JTI``.
    """

    sequence: int | None
    subject: str

    def revocation(self) -> tuple[str, str, float] | None:
        """``(key_manager, jti, expiry epoch seconds)`` of a revocation event, else None."""
        kind, _, rest = self.subject.partition(":")
        if kind != "revoked":
            return None
        expiry, _, rest = rest.partition(":")
        key_manager, sep, token_id = rest.partition(":")  # a key manager name never contains ':'
        try:
            return (key_manager, token_id, float(expiry)) if sep else None
        except ValueError:
            return None

    def withdrawal(self) -> tuple[str, str] | None:
        """``(key_manager, jti)`` of a withdrawn revocation's event, else None."""
        kind, _, rest = self.subject.partition(":")
        key_manager, sep, token_id = rest.partition(":")
        return (key_manager, token_id) if kind == "unrevoked" and sep else None


def parse_event(message: str) -> RegistryEvent:
    """The :class:`RegistryEvent` of one ``P events`` message (never raises: an unknown shape has no sequence)."""
    head, sep, subject = message.partition(" ")
    if sep and head.isdigit():
        return RegistryEvent(int(head), subject)
    return RegistryEvent(None, message)


def decode_sequence(raw: object) -> int:
    """The value of ``P seq`` as read (None for a registry never written: 0).

    Raises:
        CorruptRecord: not a non-negative integer.
    """
    if raw is None:
        return 0
    try:
        value = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise CorruptRecord("seq", f"not an integer: {str(raw)[:32]!r}") from None
    if value < 0:
        raise CorruptRecord("seq", "negative")
    return value


@dataclass(frozen=True, slots=True)
class RevocationState:
    """What the registry holds about one ``jti`` of one key manager.

    Attributes:
        expires_at: the epoch second until which the ``jti`` is revoked, or None when it is not revoked.
        withdrawn: a withdrawal of its revocation is stored (``authz registry unrevoke``; kept until the
            revocation would have ended), so "not revoked" is the registry's considered answer, not a loss.
        sequence: the registry's write sequence number when it was read.
    """

    expires_at: float | None
    withdrawn: bool = False
    sequence: int | None = None


class EventStream(Protocol):
    """A subscription to the registry's write events (one per write: the cache invalidation signal)."""

    async def wait(self, timeout: float) -> RegistryEvent | None:
        """Wait up to ``timeout`` seconds for the next event.

        Returns:
            The :class:`RegistryEvent`, or None when no event arrived in time.
        Raises:
            StoreUnavailable: the subscription was lost (events may have been missed).
        """
        ...

    async def aclose(self) -> None:
        """End the subscription."""
        ...


class RegistryStore(Protocol):
    """Reads and writes of the registry (docs/registry.md).

    Every write is atomic, increments the registry's sequence number and publishes one event carrying it that
    every :meth:`events` subscriber receives. Every method raises :class:`StoreUnavailable` when the store cannot
    answer.
    """

    # ---- hot path ----
    async def lookup(self, key_manager: str, client_id: str, api_id: str) -> Lookup:
        """Client binding, application and subscription for one (key manager, client ID, API), in one read.

        Raises:
            CorruptRecord: a record does not have the documented shape.
        """
        ...

    async def revocation(self, key_manager: str, token_id: str) -> RevocationState:
        """Whether this ``jti`` of this key manager is revoked (until when), or its revocation withdrawn.

        Raises:
            CorruptRecord: the stored expiry is not a number.
        """
        ...

    async def sequence(self) -> int:
        """The registry's write sequence number (0 for a registry never written).

        Raises:
            CorruptRecord: the stored value is not a non-negative integer.
        """
        ...

    async def durability(self) -> Durability:
        """Whether the store keeps every acknowledged write through a crash (never raises)."""
        ...

    async def events(self, attempt: int = 0) -> EventStream:
        """A new, already subscribed :class:`EventStream`; ``attempt`` counts the failed ones before it."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...

    # ---- reads for tools ----
    async def get_application(self, app_id: str) -> Application | None: ...

    async def application_id_by_name(self, name: str) -> str | None: ...

    async def list_applications(self) -> list[Application]: ...

    async def clients_of(self, app_id: str) -> list[tuple[str, str, KeyType]]: ...

    async def subscriptions_of(self, app_id: str) -> list[Subscription]: ...

    async def client_binding(self, key_manager: str, client_id: str) -> ClientBinding | None: ...

    async def client_owner(self, key_manager: str, client_id: str) -> str | None: ...

    async def list_revocations(self) -> list[tuple[str, str, float]]: ...

    async def schema_version(self) -> str | None: ...

    # ---- writes ----
    async def create_application(
        self, name: str, *, owner: str = "", tier: str = "Unlimited", app_id: str | None = None
    ) -> Application: ...

    async def delete_application(self, app_id: str) -> bool: ...

    async def set_application_status(self, app_id: str, status: ApplicationStatus) -> None: ...

    async def update_application(
        self, app_id: str, *, name: str | None = None, owner: str | None = None, tier: str | None = None,
        status: ApplicationStatus | None = None,
    ) -> None: ...

    async def add_client(
        self, app: Application, key_manager: str, client_id: str, key_type: KeyType = KeyType.PRODUCTION
    ) -> bool: ...

    async def remove_client(self, app: Application, key_manager: str, client_id: str) -> bool: ...

    async def set_client_key_type(
        self, app: Application, key_manager: str, client_id: str, key_type: KeyType
    ) -> None: ...

    async def subscribe(
        self, app: Application, api_id: str, *, tier: str = "Unlimited",
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    ) -> Subscription: ...

    async def unsubscribe(self, app: Application, api_id: str) -> None: ...

    async def set_subscription_status(
        self, app: Application, api_id: str, status: SubscriptionStatus | None, tier: str | None = None
    ) -> None: ...

    async def revoke(self, key_manager: str, token_id: str, expires_at: int) -> None: ...

    async def unrevoke(self, key_manager: str, token_id: str) -> bool: ...


def check_new_application(name: str, app_id: str) -> None:
    """The rules both stores apply to a new application's name and ID.

    Raises:
        RegistryError: ``invalid`` for an empty name, or an empty ID or one containing ``:``.
    """
    if not name.strip():
        raise RegistryError("invalid", "application name must not be empty")
    if ":" in app_id or not app_id.strip():
        raise RegistryError("invalid", "application ID must be non-empty and contain no ':'")


def check_new_client_id(client_id: str) -> None:
    """Raises RegistryError ``invalid`` for an empty client ID or one with control characters."""
    if not client_id or any(ord(c) < 0x20 for c in client_id):
        raise RegistryError("invalid", "client ID must be non-empty and printable")


def client_taken(client_id: str, key_manager: str, owner: str) -> RegistryError:
    """The refusal of a client ID that another application of the same key manager already uses."""
    return RegistryError(
        "already_exists", f"client ID {client_id} of key manager {key_manager} is already used by application {owner}"
    )
