"""An in-process registry store: the :class:`authz.registry.store.RegistryStore` interface over dicts.

The same rules as the Redis store (one application per client ID and key manager, unique names, one event per
write carrying the write sequence number, revocations and their withdrawals forgotten at their expiry), in one
process. It serves the tests of the code above the
store (registry cache, pipeline, policy, admin checks) without a Redis server; production uses
:class:`authz.registry.redis_store.RedisStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from authz.model import (
    Application,
    ApplicationStatus,
    ClientBinding,
    KeyType,
    Lookup,
    Subscription,
    SubscriptionStatus,
)
from authz.registry.durability import AT_RISK, Durability
from authz.registry.store import (
    SCHEMA_VERSION,
    RegistryError,
    RegistryEvent,
    RevocationState,
    check_new_application,
    check_new_client_id,
    client_taken,
    parse_event,
)


class _MemoryEvents:
    """One subscriber's queue of write events."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    async def wait(self, timeout: float) -> RegistryEvent | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                return parse_event(await self.queue.get())
        return None

    async def aclose(self) -> None:
        self._store._subscribers.discard(self)


class MemoryStore:
    """The registry in process memory.

    Args:
        clock: wall clock in epoch seconds (revocations expire on it; tests may pass their own).

    Attributes:
        reads: hot-path reads answered (:meth:`lookup` and :meth:`revocation`), for tests of the caches above.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._apps: dict[str, Application] = {}
        self._clients: dict[tuple[str, str], ClientBinding] = {}
        self._subs: dict[str, dict[str, Subscription]] = {}
        self._revoked: dict[tuple[str, str], float] = {}
        self._withdrawn: dict[tuple[str, str], float] = {}
        self._seq = 0
        self._schema: str | None = None
        self._subscribers: set[_MemoryEvents] = set()
        self.reads = 0

    def _publish(self, subject: str) -> None:
        """Commit a write: increment the sequence number and publish ``"<seq> <subject>"``."""
        self._seq += 1
        for subscriber in self._subscribers:
            subscriber.queue.put_nowait(f"{self._seq} {subject}")

    def _app(self, app_id: str) -> Application:
        app = self._apps.get(app_id)
        if app is None:
            raise RegistryError("not_found", f"no application with ID {app_id!r}")
        return app

    # ---- hot path ----

    async def lookup(self, key_manager: str, client_id: str, api_id: str) -> Lookup:
        """Client binding, application and subscription (see :meth:`RegistryStore.lookup`)."""
        self.reads += 1
        binding = self._clients.get((key_manager, client_id))
        if binding is None:
            return Lookup(None, None, None, self._seq)
        return Lookup(binding, self._apps[binding.application_id],
                      self._subs.get(binding.application_id, {}).get(api_id), self._seq)

    def _unexpired(self, table: dict[tuple[str, str], float], key: tuple[str, str]) -> float | None:
        """The entry's expiry, or None; an expired entry is forgotten, as Redis' ``EXAT`` does."""
        expiry = table.get(key)
        if expiry is not None and expiry <= self._clock():
            del table[key]
            return None
        return expiry

    async def revocation(self, key_manager: str, token_id: str) -> RevocationState:
        """The revocation's expiry (or None) and whether a withdrawal is stored (see :meth:`RegistryStore.revocation`)."""
        self.reads += 1
        key = (key_manager, token_id)
        return RevocationState(self._unexpired(self._revoked, key), self._unexpired(self._withdrawn, key) is not None,
                               self._seq)

    async def sequence(self) -> int:
        """The write sequence number (0 before the first write)."""
        return self._seq

    async def durability(self) -> Durability:
        """Never durable: an in-process store keeps nothing across restarts."""
        return Durability(AT_RISK, "in-process memory store: nothing survives a restart")

    async def events(self, attempt: int = 0) -> _MemoryEvents:
        """A new subscription to the write events."""
        events = _MemoryEvents(self)
        self._subscribers.add(events)
        return events

    async def aclose(self) -> None:
        """Nothing to close."""

    # ---- reads for tools ----

    async def get_application(self, app_id: str) -> Application | None:
        return self._apps.get(app_id)

    async def application_id_by_name(self, name: str) -> str | None:
        return next((a.id for a in self._apps.values() if a.name == name), None)

    async def list_applications(self) -> list[Application]:
        return sorted(self._apps.values(), key=lambda a: a.name)

    async def clients_of(self, app_id: str) -> list[tuple[str, str, KeyType]]:
        return sorted((km, c, b.key_type) for (km, c), b in self._clients.items() if b.application_id == app_id)

    async def subscriptions_of(self, app_id: str) -> list[Subscription]:
        return [s for _, s in sorted(self._subs.get(app_id, {}).items())]

    async def client_binding(self, key_manager: str, client_id: str) -> ClientBinding | None:
        return self._clients.get((key_manager, client_id))

    async def client_owner(self, key_manager: str, client_id: str) -> str | None:
        binding = self._clients.get((key_manager, client_id))
        return binding.application_id if binding else None

    async def list_revocations(self) -> list[tuple[str, str, float]]:
        now = self._clock()
        return sorted((km, jti, exp) for (km, jti), exp in self._revoked.items() if exp > now)

    async def schema_version(self) -> str | None:
        return self._schema

    # ---- writes ----

    async def create_application(
        self, name: str, *, owner: str = "", tier: str = "Unlimited", app_id: str | None = None
    ) -> Application:
        app_id = app_id or str(uuid.uuid4())
        check_new_application(name, app_id)
        if app_id in self._apps:
            raise RegistryError("already_exists", f"application ID {app_id} already exists")
        other = await self.application_id_by_name(name)
        if other is not None:
            raise RegistryError("already_exists", f"application name {name!r} is already used by {other}")
        app = Application(id=app_id, name=name, owner=owner, tier=tier, created_at=self._clock())
        self._apps[app_id] = app
        self._schema = self._schema or SCHEMA_VERSION
        self._publish(f"app:{app_id}")
        return app

    async def delete_application(self, app_id: str) -> bool:
        if self._apps.pop(app_id, None) is None:
            return False
        self._subs.pop(app_id, None)
        for key in [k for k, b in self._clients.items() if b.application_id == app_id]:
            del self._clients[key]
        self._publish(f"app:{app_id}")
        return True

    async def set_application_status(self, app_id: str, status: ApplicationStatus) -> None:
        self._apps[app_id] = replace(self._app(app_id), status=ApplicationStatus(status))
        self._publish(f"app:{app_id}")

    async def update_application(
        self, app_id: str, *, name: str | None = None, owner: str | None = None, tier: str | None = None,
        status: ApplicationStatus | None = None,
    ) -> None:
        app = self._app(app_id)
        if name and name != app.name:
            other = await self.application_id_by_name(name)
            if other is not None:
                raise RegistryError("already_exists", f"application name {name!r} is already used by {other}")
        self._apps[app_id] = replace(
            app, name=name or app.name, owner=app.owner if owner is None else owner, tier=tier or app.tier,
            status=app.status if status is None else ApplicationStatus(status),
        )
        self._publish(f"app:{app_id}")

    async def add_client(
        self, app: Application, key_manager: str, client_id: str, key_type: KeyType = KeyType.PRODUCTION
    ) -> bool:
        check_new_client_id(client_id)
        self._app(app.id)
        owner = self._clients.get((key_manager, client_id))
        if owner is not None:
            if owner.application_id == app.id:
                return False
            other = self._apps.get(owner.application_id)
            raise client_taken(client_id, key_manager, other.name if other else owner.application_id)
        self._clients[(key_manager, client_id)] = ClientBinding(app.id, KeyType(key_type))
        self._publish(f"client:{key_manager}:{client_id}")
        return True

    async def remove_client(self, app: Application, key_manager: str, client_id: str) -> bool:
        binding = self._clients.get((key_manager, client_id))
        if binding is None or binding.application_id != app.id:
            return False
        del self._clients[(key_manager, client_id)]
        self._publish(f"client:{key_manager}:{client_id}")
        return True

    async def set_client_key_type(
        self, app: Application, key_manager: str, client_id: str, key_type: KeyType
    ) -> None:
        binding = self._clients.get((key_manager, client_id))
        if binding is None or binding.application_id != app.id:
            raise RegistryError("not_found", f"client ID {client_id} is not attached to application {app.name}")
        self._clients[(key_manager, client_id)] = ClientBinding(app.id, KeyType(key_type))
        self._publish(f"client:{key_manager}:{client_id}")

    async def subscribe(
        self, app: Application, api_id: str, *, tier: str = "Unlimited",
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    ) -> Subscription:
        self._app(app.id)
        subs = self._subs.setdefault(app.id, {})
        if api_id in subs:
            raise RegistryError("already_exists", f"application {app.name} is already subscribed to {api_id}")
        sub = Subscription(app.id, api_id, SubscriptionStatus(status), tier, self._clock())
        subs[api_id] = sub
        self._publish(f"sub:{app.id}:{api_id}")
        return sub

    async def unsubscribe(self, app: Application, api_id: str) -> None:
        if self._subs.get(app.id, {}).pop(api_id, None) is None:
            raise RegistryError("not_found", f"application {app.name} is not subscribed to {api_id}")
        self._publish(f"sub:{app.id}:{api_id}")

    async def set_subscription_status(
        self, app: Application, api_id: str, status: SubscriptionStatus | None, tier: str | None = None
    ) -> None:
        sub = self._subs.get(app.id, {}).get(api_id)
        if sub is None:
            raise RegistryError("not_found", f"application {app.name} is not subscribed to {api_id}")
        self._subs[app.id][api_id] = replace(
            sub, status=sub.status if status is None else SubscriptionStatus(status), tier=tier or sub.tier
        )
        self._publish(f"sub:{app.id}:{api_id}")

    async def revoke(self, key_manager: str, token_id: str, expires_at: int) -> None:
        self._revoked[(key_manager, token_id)] = float(int(expires_at))
        self._withdrawn.pop((key_manager, token_id), None)
        self._publish(f"revoked:{int(expires_at)}:{key_manager}:{token_id}")

    async def unrevoke(self, key_manager: str, token_id: str) -> bool:
        expiry = self._revoked.pop((key_manager, token_id), None)
        if expiry is None or expiry <= self._clock():
            return False
        self._withdrawn[(key_manager, token_id)] = expiry
        self._publish(f"unrevoked:{key_manager}:{token_id}")
        return True
