"""Registry operations as a developer portal performs them, checked against the configuration.

Used by the ``authz registry`` CLI (and any other control-plane front end): it resolves applications by ID
or name, checks that key managers and API IDs exist in the configuration, and leaves the atomic writes
to :class:`authz.store_redis.RedisStore`. Every refusal is a :class:`RegistryError` with a message for people.
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.config import Settings
from authz.model import Application, ApplicationStatus, KeyType, Subscription, SubscriptionStatus
from authz.store_redis import RedisStore, RegistryError


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


class RegistryAdmin:
    """Validated registry writes and reads.

    Args:
        store: the Redis store.
        settings: the configuration (key managers and APIs that may be named).
    """

    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def _key_manager(self, name: str | None) -> str:
        names = [km.name for km in self.settings.key_managers]
        if name is None:
            if len(names) == 1:
                return names[0]
            raise RegistryError("invalid", f"several key managers are configured; name one of: {', '.join(names)}")
        if name not in names:
            raise RegistryError("invalid", f"unknown key manager {name!r}; configured: {', '.join(names)}")
        return name

    def _api(self, api_id: str) -> str:
        if self.settings.api(api_id) is None:
            known = ", ".join(api.id for api in self.settings.apis)
            raise RegistryError("invalid", f"unknown API id {api_id!r}; configured: {known}")
        return api_id

    async def create_application(
        self, name: str, *, owner: str = "", tier: str = "Unlimited", app_id: str | None = None
    ) -> Application:
        """Create an application; see :meth:`RedisStore.create_application`.

        Names and IDs are printable text (no control characters, at most 256 and 128 characters), and a
        name may not be another application's ID nor an ID another's name, so that naming an application
        by ID or name is never ambiguous.

        Raises:
            RegistryError: ``invalid`` or ``already_exists``.
        """
        _printable_text(name, "application name", 256)
        _printable_text(owner, "owner", 256, allow_empty=True)
        _printable_text(tier, "tier", 64)
        if app_id is not None:
            _printable_text(app_id, "application ID", 128)
            if any(c.isspace() for c in app_id):
                raise RegistryError("invalid", "application ID must not contain spaces")
            if await self.store.application_id_by_name(app_id):
                raise RegistryError("already_exists", f"{app_id!r} is already the name of another application")
        if await self.store.get_application(name) is not None:
            raise RegistryError("already_exists", f"{name!r} is already the ID of another application")
        return await self.store.create_application(name, owner=owner, tier=tier, app_id=app_id)

    async def application(self, id_or_name: str) -> Application:
        """The application with this ID or name. Raises RegistryError ``not_found``."""
        return await self.store.find_application(id_or_name)

    async def delete_application(self, id_or_name: str) -> Application:
        """Delete an application with its client IDs and subscriptions; returns what was deleted."""
        app = await self.application(id_or_name)
        await self.store.delete_application(app.id)
        return app

    async def set_application_status(self, id_or_name: str, status: str) -> Application:
        """Set ACTIVE or INACTIVE. Raises RegistryError ``invalid`` for another value."""
        app = await self.application(id_or_name)
        await self.store.set_application_status(app.id, _parse(ApplicationStatus, status, "application status"))
        return app

    async def add_client(
        self, id_or_name: str, client_id: str, *, key_manager: str | None = None, key_type: str = "PRODUCTION"
    ) -> tuple[Application, str, bool]:
        """Attach an OAuth2 client ID to an application.

        Returns:
            ``(application, key_manager, added)``; ``added`` is False when it was already attached to it.
        Raises:
            RegistryError: unknown application or key manager, or the client ID belongs to another application.
        """
        _printable_text(client_id, "client ID", 512)
        app = await self.application(id_or_name)
        km = self._key_manager(key_manager)
        added = await self.store.add_client(app, km, client_id, _parse(KeyType, key_type, "key type"))
        return app, km, added

    async def remove_client(self, id_or_name: str, client_id: str, *, key_manager: str | None = None) -> None:
        """Detach a client ID from an application. Raises RegistryError ``not_found``."""
        app = await self.application(id_or_name)
        km = self._key_manager(key_manager)
        if not await self.store.remove_client(app, km, client_id):
            raise RegistryError("not_found", f"client ID {client_id} is not attached to application {app.name}")

    async def subscribe(self, id_or_name: str, api_id: str, *, tier: str = "Unlimited") -> Subscription:
        """Subscribe an application to a configured API (status ACTIVE)."""
        app = await self.application(id_or_name)
        return await self.store.subscribe(app, self._api(api_id), tier=tier)

    async def unsubscribe(self, id_or_name: str, api_id: str) -> None:
        """Remove a subscription."""
        app = await self.application(id_or_name)
        await self.store.unsubscribe(app, self._api(api_id))

    async def set_subscription_status(self, id_or_name: str, api_id: str, status: str) -> None:
        """Set a subscription's status: ACTIVE, BLOCKED, PROD_ONLY_BLOCKED, ON_HOLD or REJECTED."""
        app = await self.application(id_or_name)
        value = _parse(SubscriptionStatus, status, "subscription status")
        await self.store.set_subscription_status(app, self._api(api_id), value)

    async def list_applications(self) -> list[ApplicationView]:
        """Every application with its client IDs and subscriptions."""
        return [
            ApplicationView(app, await self.store.clients_of(app.id), await self.store.subscriptions_of(app.id))
            for app in await self.store.list_applications()
        ]


def _printable_text(value: str, what: str, limit: int, *, allow_empty: bool = False) -> None:
    if not value.strip() and not allow_empty:
        raise RegistryError("invalid", f"{what} must not be empty")
    if len(value) > limit:
        raise RegistryError("invalid", f"{what} is longer than {limit} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise RegistryError("invalid", f"{what} must not contain control characters")


def _parse(enum_cls, value: str, what: str):  # type: ignore[no-untyped-def]
    try:
        return enum_cls(value.upper())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise RegistryError("invalid", f"unknown {what} {value!r}; one of: {allowed}") from None
