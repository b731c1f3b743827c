"""Registry operations as a developer portal performs them, checked against the configuration.

Used by the ``authz registry`` CLI (and any other control-plane front end): it resolves applications by ID
or name, checks that key managers and API IDs exist in the configuration, and leaves the atomic writes
to the store (:class:`authz.registry.store.RegistryStore`). Every refusal is a :class:`RegistryError` with a message for people.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from authz.config import Settings
from authz.model import (
    MAX_TOKEN_ID_LENGTH,
    Application,
    ApplicationStatus,
    KeyType,
    Subscription,
    SubscriptionStatus,
)
from authz.registry.names import unknown, unknown_application
from authz.registry.store import SCHEMA_VERSION, CorruptRecord, RegistryError, RegistryStore
from authz.registry.subscriptions import unusable_subscription


@dataclass(frozen=True, slots=True)
class ApplicationView:
    """An application with its client IDs and subscriptions, for listings.

    Attributes:
        application: the application.
        clients: ``(key_manager, client_id, key_type)`` tuples.
        subscriptions: its subscriptions.
    """

    application: Application
    clients: list[tuple[str, str, KeyType]]
    subscriptions: list[Subscription]


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revoked token ID.

    Attributes:
        key_manager: the key manager that issued the token.
        token_id: the token's ``jti``.
        expires_at: epoch seconds (integer) when Redis forgets the revocation: the token's ``exp`` plus the
            key manager's ``leeway``, after which the token is refused as expired anyway.
    """

    key_manager: str
    token_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class ClientView:
    """A client ID with the application it belongs to.

    Attributes:
        application: the owning application.
        key_manager: the key manager name.
        client_id: the OAuth2 client ID.
        key_type: PRODUCTION or SANDBOX.
    """

    application: Application
    key_manager: str
    client_id: str
    key_type: KeyType


MAX_REVOCATION_SECONDS = 366 * 24 * 3600
"""A revocation may not outlive this many seconds (a year): access tokens are short-lived."""


class RegistryAdmin:
    """Validated registry writes and reads.

    Args:
        store: the registry store.
        settings: the configuration (key managers and APIs that may be named).
    """

    def __init__(self, store: RegistryStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def ensure_schema(self) -> None:
        """Refuse to work on a registry written in another data format (``P schema``, docs/registry.md).

        An empty registry (no ``schema`` key yet) is fine: the first write sets it.

        Raises:
            RegistryError: ``failed_precondition`` when ``P schema`` is not :data:`SCHEMA_VERSION`.
        """
        stored = await self.store.schema_version()
        if stored is not None and stored != SCHEMA_VERSION:
            raise RegistryError(
                "failed_precondition",
                f"the registry holds data format {stored!r}; this authz understands {SCHEMA_VERSION!r}: "
                "upgrade authz (or run the migration of docs/registry.md) before changing it",
            )

    def key_manager_name(self, name: str | None) -> str:
        """The configured key manager ``name`` (None: the only one configured).

        Raises:
            RegistryError: ``invalid`` (field ``key_manager``): unknown, or None with several configured.
        """
        return self._key_manager(name)

    def api_id(self, api_id: str) -> str:
        """``api_id`` when it is a configured API. Raises RegistryError ``invalid`` (field ``api_id``)."""
        return self._api(api_id)

    def _key_manager(self, name: str | None) -> str:
        names = [km.name for km in self.settings.key_managers]
        if name is None:
            if len(names) == 1:
                return names[0]
            raise RegistryError("invalid", f"several key managers are configured; name one of: {', '.join(names)}",
                                "key_manager")
        if name not in names:
            raise RegistryError("invalid", unknown(f"unknown key manager {name!r}", name, names, names, "configured"),
                                "key_manager")
        return name

    def _api(self, api_id: str) -> str:
        if self.settings.api(api_id) is None:
            ids = [api.id for api in self.settings.apis]
            by_name = [api.id for api in self.settings.apis if api.name.casefold() == api_id.casefold()]
            raise RegistryError("invalid", unknown(f"unknown API id {api_id!r}", api_id, ids, ids, "configured",
                                                   guesses=by_name or None), "api_id")
        return api_id

    async def create_application(
        self, name: str, *, owner: str = "", tier: str = "Unlimited", app_id: str | None = None
    ) -> Application:
        """Create an application; see :meth:`RegistryStore.create_application`.

        Names and IDs are printable text (no control characters, at most 256 and 128 characters), and a
        name may not be another application's ID nor an ID another's name, so that naming an application
        by ID or name is never ambiguous.

        Raises:
            RegistryError: ``invalid`` or ``already_exists``.
        """
        check_application_fields(name, owner, tier, app_id)
        if app_id is not None:
            if await self.store.application_id_by_name(app_id):
                raise RegistryError("already_exists", f"{app_id!r} is already the name of another application")
        if await self.store.get_application(name) is not None:
            raise RegistryError("already_exists", f"{name!r} is already the ID of another application")
        return await self.store.create_application(name, owner=owner, tier=tier, app_id=app_id)

    async def application(self, id_or_name: str) -> Application:
        """The application with this ID or name. Raises RegistryError ``not_found``."""
        app = await self.store.get_application(id_or_name)
        if app is None:
            app_id = await self.store.application_id_by_name(id_or_name)
            if app_id:
                app = await self.store.get_application(app_id)
        if app is None:
            raise RegistryError("not_found", await self._unknown_application(id_or_name))
        return app

    async def _unknown_application(self, id_or_name: str) -> str:
        """The not-found message: near misses among names and IDs, and the applications' names."""
        message = f"no application with ID or name {id_or_name!r}"
        try:
            apps = await self.store.list_applications()
        except CorruptRecord:  # the refusal stands; suggestions are a courtesy
            return message
        return unknown_application(message, id_or_name, apps)

    async def delete_application(self, id_or_name: str) -> Application:
        """Delete an application with its client IDs and subscriptions; returns what was deleted."""
        app = await self.application(id_or_name)
        await self.store.delete_application(app.id)
        return app

    async def set_application_status(self, id_or_name: str, status: str) -> Application:
        """Set ACTIVE or INACTIVE. Raises RegistryError ``invalid`` for another value."""
        app = await self.application(id_or_name)
        await self.store.set_application_status(
            app.id, _parse(ApplicationStatus, status, "application status", "status")
        )
        return app

    async def update_application(
        self, id_or_name: str, *, name: str | None = None, owner: str | None = None, tier: str | None = None,
        status: str | None = None,
    ) -> Application:
        """Change an application's name, owner, tier and/or status atomically (None keeps a field).

        Returns:
            The application as stored after the change.
        Raises:
            RegistryError: ``not_found``, ``invalid`` (field named) or ``already_exists`` (name taken, or the
                new name is another application's ID).
        """
        app = await self.application(id_or_name)
        if name is not None:
            _printable_text(name, "application name", 256, field="name")
            other = await self.store.get_application(name)
            if other is not None and other.id != app.id:
                raise RegistryError("already_exists", f"{name!r} is already the ID of another application")
        if owner is not None:
            _printable_text(owner, "owner", 256, allow_empty=True, field="owner")
        if tier is not None:
            check_tier(tier)
        parsed = _parse(ApplicationStatus, status, "application status", "status") if status is not None else None
        await self.store.update_application(app.id, name=name, owner=owner, tier=tier, status=parsed)
        return await self.application(app.id)

    async def add_client(
        self, id_or_name: str, client_id: str, *, key_manager: str | None = None, key_type: str = "PRODUCTION"
    ) -> tuple[Application, str, bool]:
        """Attach an OAuth2 client ID to an application.

        Returns:
            ``(application, key_manager, added)``; ``added`` is False when it was already attached to it.
        Raises:
            RegistryError: unknown application or key manager, or the client ID belongs to another application.
        """
        check_client_id(client_id)
        app = await self.application(id_or_name)
        km = self._key_manager(key_manager)
        added = await self.store.add_client(app, km, client_id, _parse(KeyType, key_type, "key type", "key_type"))
        return app, km, added

    async def client(self, client_id: str, *, key_manager: str | None = None) -> ClientView:
        """The application and key type of a client ID.

        Raises:
            RegistryError: ``not_found`` when the client ID is not attached to any application.
        """
        km = self._key_manager(key_manager)
        binding = await self.store.client_binding(km, client_id)
        app = await self.store.get_application(binding.application_id) if binding else None
        if binding is None or app is None:
            raise RegistryError("not_found", f"client ID {client_id} of key manager {km} is not attached to any application")
        return ClientView(app, km, client_id, binding.key_type)

    async def set_client_key_type(
        self, id_or_name: str, client_id: str, key_type: str, *, key_manager: str | None = None
    ) -> ClientView:
        """Change the key type (PRODUCTION or SANDBOX) of a client ID attached to the application.

        Raises:
            RegistryError: ``not_found`` or ``invalid`` (``key_type``).
        """
        app = await self.application(id_or_name)
        km = self._key_manager(key_manager)
        value = _parse(KeyType, key_type, "key type", "key_type")
        await self.store.set_client_key_type(app, km, client_id, value)
        return ClientView(app, km, client_id, value)

    async def remove_client(self, id_or_name: str, client_id: str, *, key_manager: str | None = None) -> None:
        """Detach a client ID from an application. Raises RegistryError ``not_found``."""
        app = await self.application(id_or_name)
        km = self._key_manager(key_manager)
        if not await self.store.remove_client(app, km, client_id):
            raise RegistryError("not_found", f"client ID {client_id} is not attached to application {app.name}")

    async def subscribe(
        self, id_or_name: str, api_id: str, *, tier: str = "Unlimited", status: str = "ACTIVE"
    ) -> Subscription:
        """Subscribe an application to a configured API (one atomic write, status ACTIVE by default).

        A subscription its application could never use is refused: see :func:`unusable_subscription`.

        Raises:
            RegistryError: ``not_found``, ``already_exists``, ``invalid`` (``api_id``, ``tier``, ``status``) or
                ``failed_precondition`` (every client ID of the application belongs to a key manager the API
                does not accept).
        """
        app = await self.application(id_or_name)
        check_tier(tier)
        value = _parse(SubscriptionStatus, status, "subscription status", "status")
        api = self._api(api_id)
        clients = await self.store.clients_of(app.id)
        problem = unusable_subscription(self.settings, app.name, api, {km for km, _, _ in clients})
        if problem is not None:
            raise RegistryError("failed_precondition", problem, "api_id")
        return await self.store.subscribe(app, api, tier=tier, status=value)

    async def unsubscribe(self, id_or_name: str, api_id: str) -> None:
        """Remove a subscription."""
        app = await self.application(id_or_name)
        await self.store.unsubscribe(app, self._api(api_id))

    async def set_subscription_status(self, id_or_name: str, api_id: str, status: str) -> None:
        """Set a subscription's status: ACTIVE, BLOCKED, PROD_ONLY_BLOCKED, ON_HOLD or REJECTED."""
        app = await self.application(id_or_name)
        value = _parse(SubscriptionStatus, status, "subscription status", "status")
        await self.store.set_subscription_status(app, self._api(api_id), value)

    async def update_subscription(
        self, id_or_name: str, api_id: str, *, status: str | None = None, tier: str | None = None
    ) -> Subscription:
        """Change a subscription's status and/or tier (None keeps it); returns the stored subscription.

        Raises:
            RegistryError: ``not_found`` or ``invalid`` (field named).
        """
        app = await self.application(id_or_name)
        api = self._api(api_id)
        value = _parse(SubscriptionStatus, status, "subscription status", "status") if status is not None else None
        if tier is not None:
            check_tier(tier)
        await self.store.set_subscription_status(app, api, value, tier)
        return await self.subscription(app.id, api)

    async def subscription(self, id_or_name: str, api_id: str) -> Subscription:
        """The application's subscription to the API.

        Raises:
            RegistryError: ``not_found``.
        """
        app = await self.application(id_or_name)
        for sub in await self.store.subscriptions_of(app.id):
            if sub.api_id == api_id:
                return sub
        raise RegistryError("not_found", f"application {app.name} is not subscribed to {api_id}")

    async def subscriptions(self, id_or_name: str) -> list[Subscription]:
        """The application's subscriptions, sorted by API ID."""
        app = await self.application(id_or_name)
        return await self.store.subscriptions_of(app.id)

    async def clients(self, id_or_name: str) -> list[ClientView]:
        """The application's client IDs, sorted."""
        app = await self.application(id_or_name)
        return [ClientView(app, km, c, t) for km, c, t in await self.store.clients_of(app.id)]

    async def revoke(
        self, token_id: str, expires_at: float, *, key_manager: str | None = None, now: float | None = None,
        add_leeway: bool = True,
    ) -> Revocation:
        """Revoke a token by its ``jti`` until it expires; checks then answer 401 900901 for it.

        Args:
            token_id: the token's ``jti`` claim (RFC 7519 section 4.1.7).
            expires_at: the token's ``exp``, epoch seconds. Redis keeps the revocation until
                ``ceil(expires_at) + leeway`` of the key manager, then deletes it (``SET ... EXAT``).
            key_manager: the issuing key manager (default: the only one configured).
            now: the current time (epoch seconds; default ``time.time()``).
            add_leeway: add the key manager's ``leeway`` to ``expires_at`` (False when restoring an exported
                revocation, whose expiry already includes it).
        Returns:
            The stored :class:`Revocation`.
        Raises:
            RegistryError: ``invalid`` with field ``jti`` or ``expires_at`` (not a number, in the past, more
                than a year ahead) or ``key_manager``.
        """
        check_token_id(token_id)
        km = self._key_manager(key_manager)
        now = time.time() if now is None else now
        if not isinstance(expires_at, int | float) or not math.isfinite(expires_at):
            raise RegistryError("invalid", "expires_at must be a number of seconds since the epoch", "expires_at")
        if expires_at <= now:
            raise RegistryError("invalid", "expires_at is in the past: an expired token is refused anyway",
                                "expires_at")
        if expires_at > now + MAX_REVOCATION_SECONDS:
            raise RegistryError("invalid", "expires_at is more than a year ahead", "expires_at")
        until = math.ceil(expires_at) + (math.ceil(self.settings.key_manager(km).leeway) if add_leeway else 0)
        await self.store.revoke(km, token_id, until)
        return Revocation(km, token_id, until)

    async def revocation(self, token_id: str, *, key_manager: str | None = None) -> Revocation:
        """The stored revocation of a ``jti``.

        Raises:
            RegistryError: ``not_found`` (never revoked, withdrawn, or expired).
        """
        km = self._key_manager(key_manager)
        until = (await self.store.revocation(km, token_id)).expires_at
        if until is None:
            raise RegistryError("not_found", f"token ID {token_id} of key manager {km} is not revoked")
        return Revocation(km, token_id, int(until))

    async def unrevoke(self, token_id: str, *, key_manager: str | None = None) -> None:
        """Withdraw a revocation.

        Raises:
            RegistryError: ``not_found``.
        """
        km = self._key_manager(key_manager)
        if not await self.store.unrevoke(km, token_id):
            raise RegistryError("not_found", f"token ID {token_id} of key manager {km} is not revoked")

    async def list_revocations(self) -> list[Revocation]:
        """Every revocation still stored, sorted by key manager and ``jti``."""
        return [Revocation(km, jti, int(until)) for km, jti, until in await self.store.list_revocations()]

    async def list_applications(self) -> list[ApplicationView]:
        """Every application with its client IDs and subscriptions."""
        return [
            ApplicationView(app, await self.store.clients_of(app.id), await self.store.subscriptions_of(app.id))
            for app in await self.store.list_applications()
        ]


def check_application_fields(name: str, owner: str, tier: str, app_id: str | None = None) -> None:
    """The field rules of an application: printable name (<= 256), owner (<= 256), tier (<= 64) and ID
    (<= 128, no spaces). Raises RegistryError ``invalid`` naming the field."""
    _printable_text(name, "application name", 256, field="name")
    _printable_text(owner, "owner", 256, allow_empty=True, field="owner")
    check_tier(tier)
    if app_id is not None:
        _printable_text(app_id, "application ID", 128, field="id")
        if any(c.isspace() for c in app_id):
            raise RegistryError("invalid", "application ID must not contain spaces", "id")


def check_tier(tier: str) -> None:
    """A tier name: printable, at most 64 characters. Raises RegistryError ``invalid``."""
    _printable_text(tier, "tier", 64, field="tier")


def check_client_id(client_id: str) -> None:
    """An OAuth2 client ID: printable, at most 512 characters. Raises RegistryError ``invalid``."""
    _printable_text(client_id, "client ID", 512, field="client_id")


def check_token_id(token_id: str) -> None:
    """A ``jti``: printable, at most :data:`MAX_TOKEN_ID_LENGTH` characters. Raises RegistryError ``invalid``."""
    _printable_text(token_id, "jti", MAX_TOKEN_ID_LENGTH, field="jti")


def _printable_text(
    value: str, what: str, limit: int, *, allow_empty: bool = False, field: str | None = None
) -> None:
    if not isinstance(value, str):
        raise RegistryError("invalid", f"{what} must be text", field)
    if not value.strip() and not allow_empty:
        raise RegistryError("invalid", f"{what} must not be empty", field)
    if len(value) > limit:
        raise RegistryError("invalid", f"{what} is longer than {limit} characters", field)
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise RegistryError("invalid", f"{what} must not contain control characters", field)


def _parse(enum_cls, value: str, what: str, field: str | None = None):  # type: ignore[no-untyped-def]
    try:
        return enum_cls(str(value).upper())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise RegistryError("invalid", f"unknown {what} {value!r}; one of: {allowed}", field) from None
