"""The registry's data in Redis: layout, atomic writes (Lua) and the one-round-trip lookup of the hot path.

Layout (every key under the configured prefix ``P``, default ``authz:``; see docs/registry.md):

====================================  ======  ==========================================================
key                                   type    content
====================================  ======  ==========================================================
``P schema``                          string  data format version, ``1``
``P apps``                            set     application IDs
``P app:{app_id}``                    hash    ``name``, ``owner``, ``tier``, ``status``, ``created_at``
``P app-name:{name}``                 string  application ID (names are unique)
``P app:{app_id}:clients``            set     ``{key_manager}:{client_id}`` of the application
``P app:{app_id}:subs``               hash    API ID -> JSON ``{"status", "tier", "created_at"}``
``P client:{key_manager}:{client_id}``  hash  ``app_id``, ``key_type`` (written only if absent: a client
                                              ID belongs to one application only)
``P revoked:{key_manager}:{jti}``     string  expiry (epoch seconds); Redis expires the key then (``EXAT``)
``P unrevoked:{key_manager}:{jti}``   string  a withdrawn revocation's expiry, kept until then (``EXAT``)
``P seq``                             string  the write sequence number: +1 on every write
channel ``P events``                  pubsub  ``"<seq> <subject>"``, one message per write
====================================  ======  ==========================================================

Every write is one Lua script, so it is atomic, and increments ``P seq`` and publishes its event in the same
step (:mod:`authz.registry.redis_scripts`).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from authz.model import (
    Application,
    ApplicationStatus,
    ClientBinding,
    KeyType,
    Lookup,
    Subscription,
    SubscriptionStatus,
)
from authz.registry import redis_scripts as lua
from authz.registry.durability import Durability, redis_durability
from authz.registry.records import decode_application, decode_enum, decode_float, decode_subscription
from authz.registry.redis_conn import connect
from authz.registry.store import (
    CorruptRecord,
    RegistryError,
    RegistryEvent,
    RevocationState,
    StoreUnavailable,
    check_new_application,
    check_new_client_id,
    client_taken,
    decode_sequence,
    parse_event,
)

P = ParamSpec("P")
R = TypeVar("R")


def _answers(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn Redis failures (connection, timeout, command error) into :class:`StoreUnavailable`."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


class _RedisEvents:
    """The ``P events`` channel as an :class:`authz.registry.store.EventStream`."""

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    @_answers
    async def wait(self, timeout: float) -> RegistryEvent | None:
        message = await self._pubsub.get_message(timeout=timeout)
        return None if message is None else parse_event(str(message["data"]))

    async def aclose(self) -> None:
        try:
            await self._pubsub.aclose()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail in many ways; nothing to do
            pass


class RedisStore:
    """Reads and writes the registry in Redis.

    Args:
        client: an asyncio Redis client (``decode_responses=True``) from :func:`connect`; for a Redis Cluster
            an asyncio ``RedisCluster``, with a ``prefix`` holding a hash tag (``{authz}:``).
        prefix: key prefix, e.g. ``authz:``.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.channel = prefix + "events"
        self._keys = [prefix + "schema"]
        self._lookup = lua.Script(client, lua.LOOKUP)
        self._revocation = lua.Script(client, lua.REVOCATION)
        self._create_app = lua.Script(client, lua.CREATE_APP)
        self._add_client = lua.Script(client, lua.ADD_CLIENT)
        self._remove_client = lua.Script(client, lua.REMOVE_CLIENT)
        self._subscription = lua.Script(client, lua.SUBSCRIPTION)
        self._delete_app = lua.Script(client, lua.DELETE_APP)
        self._set_app_status = lua.Script(client, lua.SET_APP_STATUS)
        self._update_app = lua.Script(client, lua.UPDATE_APP)
        self._set_client_key_type = lua.Script(client, lua.SET_CLIENT_KEY_TYPE)
        self._revoke = lua.Script(client, lua.REVOKE)
        self._unrevoke = lua.Script(client, lua.UNREVOKE)

    @classmethod
    def open(cls, url: str, prefix: str, socket_timeout: float) -> RedisStore:
        """A store on a new client for ``url`` (any form of :func:`authz.registry.redis_conn.connect`).

        Raises:
            ValueError: a malformed Sentinel or Cluster URL.
        """
        return cls(connect(url, socket_timeout), prefix)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()

    @_answers
    async def events(self, attempt: int = 0) -> _RedisEvents:
        """A subscription to the invalidation channel (``P events``).

        On a plain Redis (and Sentinel), the client's own pub/sub. On a Redis Cluster, a PUBLISH reaches the
        subscribers of every node (the cluster bus forwards it), so this subscribes on one node: the
        ``attempt``-th of the cluster's nodes sorted by ``host:port``, so that a caller reconnecting after a
        failure (``attempt + 1``) moves on to the next node.

        Args:
            attempt: how many subscriptions failed before this one (0 first).
        Raises:
            StoreUnavailable: no node reachable, or the subscription failed.
        """
        if isinstance(self.client, RedisCluster):
            try:
                await self.client.initialize()
                nodes = sorted(self.client.get_nodes(), key=lambda n: n.name)
            except RedisClusterException as exc:
                raise RedisConnectionError(f"redis cluster: {exc}") from exc
            pubsub = self.client.pubsub(node=nodes[attempt % len(nodes)], ignore_subscribe_messages=True)
        else:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        events = _RedisEvents(pubsub)
        try:
            await pubsub.subscribe(self.channel)
        except BaseException:
            await events.aclose()
            raise
        return events

    async def durability(self) -> Durability:
        """The persistence settings of the Redis behind the client (:func:`authz.registry.durability.redis_durability`)."""
        return await redis_durability(self.client)

    # ---- hot path -------------------------------------------------------------------------------

    @_answers
    async def lookup(self, key_manager: str, client_id: str, api_id: str) -> Lookup:
        """Client binding, application and subscription in one round trip.

        Args:
            key_manager: key manager name.
            client_id: OAuth2 client ID from the token.
            api_id: the API being called.
        Returns:
            The :class:`Lookup` (fields None where absent).
        Raises:
            StoreUnavailable: Redis unreachable or too slow.
            CorruptRecord: a record does not have the documented shape.
        """
        row = await self._lookup(keys=self._keys, args=[self.prefix, key_manager, client_id, api_id])
        app_id, key_type, name, owner, tier, status, created_at, sub, client_exists, app_exists, seq = row
        sequence = decode_sequence(seq)
        ckey = f"{self.prefix}client:{key_manager}:{client_id}"
        if not app_id:
            if client_exists:
                raise CorruptRecord(ckey, "field 'app_id' is missing")
            return Lookup(None, None, None, sequence)
        binding = ClientBinding(app_id, decode_enum(KeyType, key_type or "PRODUCTION", ckey, "key_type"))
        akey = f"{self.prefix}app:{app_id}"
        if not app_exists:
            raise CorruptRecord(ckey, "field 'app_id' points at a missing application")
        application = decode_application(
            app_id,
            {"name": name, "owner": owner, "tier": tier, "status": status, "created_at": created_at},
            akey,
        )
        subscription = decode_subscription(app_id, api_id, sub, akey + ":subs") if sub else None
        return Lookup(binding, application, subscription, sequence)

    @_answers
    async def revocation(self, key_manager: str, token_id: str) -> RevocationState:
        """Whether this token ID of this key manager is revoked (until when) or its revocation withdrawn, with
        the registry's sequence number: one script call.

        Raises:
            StoreUnavailable: Redis unreachable or too slow.
            CorruptRecord: the stored expiry is not a number.
        """
        raw, withdrawn, seq = await self._revocation(keys=self._keys, args=[self.prefix, key_manager, token_id])
        key = f"{self.prefix}revoked:{key_manager}:{token_id}"
        expiry = None if raw is None else decode_float(raw, key, "expiry")
        return RevocationState(expiry, bool(withdrawn), decode_sequence(seq))

    @_answers
    async def sequence(self) -> int:
        """The registry's write sequence number ``P seq`` (0 for a registry never written).

        Raises:
            StoreUnavailable: Redis unreachable or too slow.
            CorruptRecord: not a non-negative integer.
        """
        return decode_sequence(await self.client.get(self.prefix + "seq"))

    # ---- reads for tools ---------------------------------------------------------------------------

    @_answers
    async def get_application(self, app_id: str) -> Application | None:
        """The application with this ID, or None."""
        key = f"{self.prefix}app:{app_id}"
        fields = await self.client.hgetall(key)
        return decode_application(app_id, fields, key) if fields else None

    @_answers
    async def list_applications(self) -> list[Application]:
        """Every application, sorted by name."""
        ids = await self.client.smembers(self.prefix + "apps")
        apps = [a for a in [await self.get_application(i) for i in ids] if a is not None]
        return sorted(apps, key=lambda a: a.name)

    @_answers
    async def clients_of(self, app_id: str) -> list[tuple[str, str, KeyType]]:
        """``(key_manager, client_id, key_type)`` of each client ID of the application, sorted."""
        out = []
        for entry in sorted(await self.client.smembers(f"{self.prefix}app:{app_id}:clients")):
            km, _, client_id = entry.partition(":")
            ckey = f"{self.prefix}client:{entry}"
            key_type = await self.client.hget(ckey, "key_type")
            out.append((km, client_id, decode_enum(KeyType, key_type or "PRODUCTION", ckey, "key_type")))
        return out

    @_answers
    async def subscriptions_of(self, app_id: str) -> list[Subscription]:
        """The application's subscriptions, sorted by API ID."""
        key = f"{self.prefix}app:{app_id}:subs"
        raw = await self.client.hgetall(key)
        return [decode_subscription(app_id, api, doc, key) for api, doc in sorted(raw.items())]

    @_answers
    async def application_id_by_name(self, name: str) -> str | None:
        """The ID of the application called ``name``, or None."""
        return await self.client.get(f"{self.prefix}app-name:{name}")

    @_answers
    async def client_binding(self, key_manager: str, client_id: str) -> ClientBinding | None:
        """The client ID's application and key type, or None when it is not registered.

        Raises:
            CorruptRecord: ``app_id`` missing or unknown key type.
        """
        key = f"{self.prefix}client:{key_manager}:{client_id}"
        fields = await self.client.hgetall(key)
        if not fields:
            return None
        if not fields.get("app_id"):
            raise CorruptRecord(key, "field 'app_id' is missing")
        return ClientBinding(fields["app_id"], decode_enum(KeyType, fields.get("key_type") or "PRODUCTION", key, "key_type"))

    @_answers
    async def list_revocations(self) -> list[tuple[str, str, float]]:
        """Every revoked token ID still stored: ``(key_manager, jti, expiry epoch seconds)``, sorted.

        Scans ``P revoked:*`` (SCAN, not KEYS, so Redis is never blocked). A key manager name never
        contains ':' (config validation), so the first ':' after the prefix separates it from the jti.
        """
        start = f"{self.prefix}revoked:"
        out = []
        async for key in self.client.scan_iter(match=_glob_escape(start) + "*", count=500):
            raw = await self.client.get(key)
            if raw is None:
                continue  # expired meanwhile
            km, _, jti = key[len(start):].partition(":")
            out.append((km, jti, decode_float(raw, key, "expiry")))
        return sorted(out)

    @_answers
    async def schema_version(self) -> str | None:
        """The data format version stored in ``P schema``, or None on an empty registry."""
        return await self.client.get(self.prefix + "schema")

    @_answers
    async def client_owner(self, key_manager: str, client_id: str) -> str | None:
        """The ID of the application owning the client ID, or None."""
        return await self.client.hget(f"{self.prefix}client:{key_manager}:{client_id}", "app_id")

    # ---- writes ---------------------------------------------------------------------------------

    @_answers
    async def create_application(
        self, name: str, *, owner: str = "", tier: str = "Unlimited", app_id: str | None = None
    ) -> Application:
        """Create an application.

        Args:
            name: display name, unique.
            owner: the developer owning it.
            tier: throttling tier name.
            app_id: the ID to use; default a new UUID.
        Returns:
            The created :class:`Application`.
        Raises:
            RegistryError: ``already_exists`` (ID or name taken) or ``invalid`` (empty name, ':' in the ID).
        """
        app_id = app_id or str(uuid.uuid4())
        check_new_application(name, app_id)
        now = time.time()
        status, value = await self._create_app(
            keys=self._keys, args=[self.prefix, app_id, name, owner, tier, ApplicationStatus.ACTIVE.value, repr(now)]
        )
        if status == "err_id":
            raise RegistryError("already_exists", f"application ID {app_id} already exists")
        if status == "err_name":
            raise RegistryError("already_exists", f"application name {name!r} is already used by {value}")
        return Application(id=app_id, name=name, owner=owner, tier=tier, created_at=now)

    @_answers
    async def delete_application(self, app_id: str) -> bool:
        """Delete an application with its client-ID mappings and subscriptions. Returns False if absent."""
        return bool(await self._delete_app(keys=self._keys, args=[self.prefix, app_id]))

    @_answers
    async def set_application_status(self, app_id: str, status: ApplicationStatus) -> None:
        """Set an application's status.

        Raises:
            RegistryError: ``not_found``.
        """
        if not await self._set_app_status(keys=self._keys, args=[self.prefix, app_id, ApplicationStatus(status).value]):
            raise RegistryError("not_found", f"no application with ID {app_id!r}")

    @_answers
    async def update_application(
        self, app_id: str, *, name: str | None = None, owner: str | None = None, tier: str | None = None,
        status: ApplicationStatus | None = None,
    ) -> None:
        """Change an application's name, owner, tier or status in one atomic step (None keeps a field).

        Raises:
            RegistryError: ``not_found``; ``already_exists`` when the new name is taken.
        """
        status_value = ApplicationStatus(status).value if status is not None else ""
        owner_arg = "" if owner is None else (owner or "\0")
        result, other = await self._update_app(
            keys=self._keys, args=[self.prefix, app_id, name or "", owner_arg, tier or "", status_value]
        )
        if result == "err_app":
            raise RegistryError("not_found", f"no application with ID {app_id!r}")
        if result == "err_name":
            raise RegistryError("already_exists", f"application name {name!r} is already used by {other}")

    @_answers
    async def set_client_key_type(self, app: Application, key_manager: str, client_id: str, key_type: KeyType) -> None:
        """Change the key type of a client ID attached to the application.

        Raises:
            RegistryError: ``not_found`` when the client ID is not attached to it.
        """
        if not await self._set_client_key_type(
            keys=self._keys, args=[self.prefix, app.id, key_manager, client_id, KeyType(key_type).value]
        ):
            raise RegistryError("not_found", f"client ID {client_id} is not attached to application {app.name}")

    @_answers
    async def revoke(self, key_manager: str, token_id: str, expires_at: int) -> None:
        """Revoke a token ID until ``expires_at`` (epoch seconds, integer), when Redis deletes it (``SET EXAT``).

        The caller checks that ``expires_at`` is in the future.
        """
        await self._revoke(keys=self._keys, args=[self.prefix, key_manager, token_id, int(expires_at)])

    @_answers
    async def unrevoke(self, key_manager: str, token_id: str) -> bool:
        """Withdraw a revocation. Returns False when the token ID was not revoked (or already expired)."""
        return bool(await self._unrevoke(keys=self._keys, args=[self.prefix, key_manager, token_id]))

    @_answers
    async def add_client(
        self, app: Application, key_manager: str, client_id: str, key_type: KeyType = KeyType.PRODUCTION
    ) -> bool:
        """Map an OAuth2 client ID of a key manager to the application (atomic: one application per client ID).

        Returns:
            True when added, False when it was already mapped to this same application.
        Raises:
            RegistryError: ``already_exists`` when another application uses the client ID; ``not_found``
                when the application was deleted meanwhile; ``invalid`` for an empty client ID.
        """
        check_new_client_id(client_id)
        status, owner = await self._add_client(
            keys=self._keys, args=[self.prefix, app.id, key_manager, client_id, KeyType(key_type).value]
        )
        if status == "err_app":
            raise RegistryError("not_found", f"no application with ID {app.id!r}")
        if status == "err_taken":
            other = await self.get_application(owner)
            raise client_taken(client_id, key_manager, other.name if other else owner)
        return status == "ok"

    @_answers
    async def remove_client(self, app: Application, key_manager: str, client_id: str) -> bool:
        """Unmap a client ID from the application. Returns False when it was not mapped to it."""
        return bool(await self._remove_client(keys=self._keys, args=[self.prefix, app.id, key_manager, client_id]))

    @_answers
    async def subscribe(self, app: Application, api_id: str, *, tier: str = "Unlimited",
                        status: SubscriptionStatus = SubscriptionStatus.ACTIVE) -> Subscription:
        """Subscribe the application to an API (the caller checks that the API exists).

        Raises:
            RegistryError: ``already_exists`` or ``not_found`` (application deleted meanwhile).
        """
        now = time.time()
        doc = json.dumps({"status": SubscriptionStatus(status).value, "tier": tier, "created_at": now})
        result = await self._subscription(keys=self._keys, args=[self.prefix, app.id, api_id, doc, "put", ""])
        if result == "err_exists":
            raise RegistryError("already_exists", f"application {app.name} is already subscribed to {api_id}")
        if result == "err_app":
            raise RegistryError("not_found", f"no application with ID {app.id!r}")
        return Subscription(app.id, api_id, SubscriptionStatus(status), tier, now)

    @_answers
    async def unsubscribe(self, app: Application, api_id: str) -> None:
        """Remove the application's subscription to an API.

        Raises:
            RegistryError: ``not_found``.
        """
        result = await self._subscription(keys=self._keys, args=[self.prefix, app.id, api_id, "", "delete", ""])
        if result != "ok":
            raise RegistryError("not_found", f"application {app.name} is not subscribed to {api_id}")

    @_answers
    async def set_subscription_status(
        self, app: Application, api_id: str, status: SubscriptionStatus | None, tier: str | None = None
    ) -> None:
        """Change a subscription's status (ACTIVE, BLOCKED, PROD_ONLY_BLOCKED, ON_HOLD, REJECTED) and/or tier.

        Args:
            status: the new status, or None to keep it.
            tier: the new tier, or None to keep it.
        Raises:
            RegistryError: ``not_found``.
        """
        status_value = SubscriptionStatus(status).value if status is not None else ""
        try:
            result = await self._subscription(
                keys=self._keys, args=[self.prefix, app.id, api_id, "", "status", status_value, tier or ""]
            )
        except ResponseError as exc:
            raise CorruptRecord(f"{self.prefix}app:{app.id}:subs", f"cannot update {api_id}: {exc}") from None
        if result != "ok":
            raise RegistryError("not_found", f"application {app.name} is not subscribed to {api_id}")


def _glob_escape(text: str) -> str:
    """``text`` with the Redis glob characters ``* ? [ ] \\`` escaped, for SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

