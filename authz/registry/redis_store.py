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
channel ``P events``                  pubsub  one message per write, for cache invalidation
====================================  ======  ==========================================================

Every write that touches several keys is one Lua script, so it is atomic and publishes its event in the
same step.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from authz.model import (
    Application,
    ApplicationStatus,
    ClientBinding,
    KeyType,
    Subscription,
    SubscriptionStatus,
)

SCHEMA_VERSION = "1"


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
    """A Redis record does not have the documented shape.

    Args:
        key: the Redis key (logged, never sent to a client).
        reason: what is wrong, naming the field.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the hot path needs to decide for one (key manager, client ID, API).

    Attributes:
        binding: the client ID's application and key type, or None when the client ID is not registered.
        application: that application, or None.
        subscription: the application's subscription to the API, or None.
    """

    binding: ClientBinding | None
    application: Application | None
    subscription: Subscription | None


# Every script declares one key, ``P schema`` (KEYS[1]), and builds the others from the prefix: on a plain Redis the
# declared key is unused; on a Redis Cluster it routes the call to the node owning the prefix's hash slot (every
# key of a cluster registry shares that slot, see :func:`cluster_hash_tag`).
# ARGV: prefix, key manager, client id, api id.
_LOOKUP = """
local p = ARGV[1]
local ckey = p .. 'client:' .. ARGV[2] .. ':' .. ARGV[3]
local client = redis.call('HMGET', ckey, 'app_id', 'key_type')
if not client[1] then
  return {false, false, false, false, false, false, false, false, redis.call('EXISTS', ckey), 0}
end
local akey = p .. 'app:' .. client[1]
local app = redis.call('HMGET', akey, 'name', 'owner', 'tier', 'status', 'created_at')
local sub = redis.call('HGET', akey .. ':subs', ARGV[4])
return {client[1], client[2], app[1], app[2], app[3], app[4], app[5], sub, 1, redis.call('EXISTS', akey)}
"""

# ARGV: prefix, app id, name, owner, tier, status, created_at
_CREATE_APP = """
local p = ARGV[1]
if redis.call('EXISTS', p .. 'app:' .. ARGV[2]) == 1 then return {'err_id', ARGV[2]} end
local other = redis.call('GET', p .. 'app-name:' .. ARGV[3])
if other then return {'err_name', other} end
redis.call('SET', p .. 'app-name:' .. ARGV[3], ARGV[2])
redis.call('HSET', p .. 'app:' .. ARGV[2], 'name', ARGV[3], 'owner', ARGV[4], 'tier', ARGV[5],
           'status', ARGV[6], 'created_at', ARGV[7])
redis.call('SADD', p .. 'apps', ARGV[2])
redis.call('SETNX', p .. 'schema', '1')
redis.call('PUBLISH', p .. 'events', 'app:' .. ARGV[2])
return {'ok', ARGV[2]}
"""

# ARGV: prefix, app id, key manager, client id, key type
_ADD_CLIENT = """
local p = ARGV[1]
if redis.call('EXISTS', p .. 'app:' .. ARGV[2]) == 0 then return {'err_app', ''} end
local ckey = p .. 'client:' .. ARGV[3] .. ':' .. ARGV[4]
local owner = redis.call('HGET', ckey, 'app_id')
if owner then
  if owner == ARGV[2] then return {'same', owner} end
  return {'err_taken', owner}
end
redis.call('HSET', ckey, 'app_id', ARGV[2], 'key_type', ARGV[5])
redis.call('SADD', p .. 'app:' .. ARGV[2] .. ':clients', ARGV[3] .. ':' .. ARGV[4])
redis.call('PUBLISH', p .. 'events', 'client:' .. ARGV[3] .. ':' .. ARGV[4])
return {'ok', ARGV[2]}
"""

# ARGV: prefix, app id, key manager, client id
_REMOVE_CLIENT = """
local p = ARGV[1]
local ckey = p .. 'client:' .. ARGV[3] .. ':' .. ARGV[4]
if redis.call('HGET', ckey, 'app_id') ~= ARGV[2] then return 0 end
redis.call('DEL', ckey)
redis.call('SREM', p .. 'app:' .. ARGV[2] .. ':clients', ARGV[3] .. ':' .. ARGV[4])
redis.call('PUBLISH', p .. 'events', 'client:' .. ARGV[3] .. ':' .. ARGV[4])
return 1
"""

# ARGV: prefix, app id, api id, json (or '' to delete), mode ('put' | 'status' | 'delete'), status, tier
# ('status' mode: an empty status or tier keeps the current value)
_SUBSCRIPTION = """
local p = ARGV[1]
if redis.call('EXISTS', p .. 'app:' .. ARGV[2]) == 0 then return 'err_app' end
local skey = p .. 'app:' .. ARGV[2] .. ':subs'
local current = redis.call('HGET', skey, ARGV[3])
if ARGV[5] == 'put' then
  if current then return 'err_exists' end
  redis.call('HSET', skey, ARGV[3], ARGV[4])
elseif ARGV[5] == 'delete' then
  if not current then return 'err_missing' end
  redis.call('HDEL', skey, ARGV[3])
else
  if not current then return 'err_missing' end
  local doc = cjson.decode(current)
  if ARGV[6] ~= '' then doc['status'] = ARGV[6] end
  if ARGV[7] and ARGV[7] ~= '' then doc['tier'] = ARGV[7] end
  redis.call('HSET', skey, ARGV[3], cjson.encode(doc))
end
redis.call('PUBLISH', p .. 'events', 'sub:' .. ARGV[2] .. ':' .. ARGV[3])
return 'ok'
"""

# ARGV: prefix, app id
_DELETE_APP = """
local p = ARGV[1]
local akey = p .. 'app:' .. ARGV[2]
local name = redis.call('HGET', akey, 'name')
if not name then return 0 end
for _, c in ipairs(redis.call('SMEMBERS', akey .. ':clients')) do
  redis.call('DEL', p .. 'client:' .. c)
end
redis.call('DEL', akey, akey .. ':clients', akey .. ':subs', p .. 'app-name:' .. name)
redis.call('SREM', p .. 'apps', ARGV[2])
redis.call('PUBLISH', p .. 'events', 'app:' .. ARGV[2])
return 1
"""

# ARGV: prefix, key manager, jti, expiry (integer epoch seconds)
_REVOKE = """
local p = ARGV[1]
redis.call('SET', p .. 'revoked:' .. ARGV[2] .. ':' .. ARGV[3], ARGV[4], 'EXAT', ARGV[4])
redis.call('PUBLISH', p .. 'events', 'revoked:' .. ARGV[2] .. ':' .. ARGV[3])
return 1
"""

# ARGV: prefix, key manager, jti
_UNREVOKE = """
local p = ARGV[1]
local n = redis.call('DEL', p .. 'revoked:' .. ARGV[2] .. ':' .. ARGV[3])
if n == 1 then redis.call('PUBLISH', p .. 'events', 'revoked:' .. ARGV[2] .. ':' .. ARGV[3]) end
return n
"""

# ARGV: prefix, app id, key manager, client id, key type
_SET_CLIENT_KEY_TYPE = """
local p = ARGV[1]
local ckey = p .. 'client:' .. ARGV[3] .. ':' .. ARGV[4]
if redis.call('HGET', ckey, 'app_id') ~= ARGV[2] then return 0 end
redis.call('HSET', ckey, 'key_type', ARGV[5])
redis.call('PUBLISH', p .. 'events', 'client:' .. ARGV[3] .. ':' .. ARGV[4])
return 1
"""

# ARGV: prefix, app id, new name ('' keeps it), owner, tier, status (each '' keeps it; owner uses '\0' to clear)
_UPDATE_APP = """
local p = ARGV[1]
local akey = p .. 'app:' .. ARGV[2]
local name = redis.call('HGET', akey, 'name')
if not name then return {'err_app', ''} end
if ARGV[3] ~= '' and ARGV[3] ~= name then
  local other = redis.call('GET', p .. 'app-name:' .. ARGV[3])
  if other then return {'err_name', other} end
  redis.call('DEL', p .. 'app-name:' .. name)
  redis.call('SET', p .. 'app-name:' .. ARGV[3], ARGV[2])
  redis.call('HSET', akey, 'name', ARGV[3])
end
if ARGV[4] == '\0' then redis.call('HSET', akey, 'owner', '')
elseif ARGV[4] ~= '' then redis.call('HSET', akey, 'owner', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', akey, 'tier', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', akey, 'status', ARGV[6]) end
redis.call('PUBLISH', p .. 'events', 'app:' .. ARGV[2])
return {'ok', ''}
"""

# ARGV: prefix, app id, status
_SET_APP_STATUS = """
local p = ARGV[1]
local akey = p .. 'app:' .. ARGV[2]
if redis.call('EXISTS', akey) == 0 then return 0 end
redis.call('HSET', akey, 'status', ARGV[3])
redis.call('PUBLISH', p .. 'events', 'app:' .. ARGV[2])
return 1
"""


def _enum(cls: type, value: Any, key: str, field: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise CorruptRecord(key, f"field '{field}' has the unknown value {str(value)[:40]!r}") from None


def _float(value: Any, key: str, field: str) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        raise CorruptRecord(key, f"field '{field}' is not a number") from None


def decode_application(app_id: str, fields: dict[str, Any], key: str) -> Application:
    """Build an :class:`Application` from its hash fields.

    Raises:
        CorruptRecord: a field is missing or has an unknown value.
    """
    for required in ("name", "status"):
        if not fields.get(required):
            raise CorruptRecord(key, f"field '{required}' is missing")
    return Application(
        id=app_id,
        name=fields["name"],
        owner=fields.get("owner") or "",
        tier=fields.get("tier") or "Unlimited",
        status=_enum(ApplicationStatus, fields["status"], key, "status"),
        created_at=_float(fields.get("created_at"), key, "created_at"),
    )


def decode_subscription(app_id: str, api_id: str, raw: str, key: str) -> Subscription:
    """Build a :class:`Subscription` from its JSON document.

    Raises:
        CorruptRecord: not a JSON object, or ``status`` missing or unknown.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise CorruptRecord(key, f"subscription to {api_id!r} is not valid JSON") from None
    if not isinstance(doc, dict) or "status" not in doc:
        raise CorruptRecord(key, f"subscription to {api_id!r} has no 'status'")
    return Subscription(
        application_id=app_id,
        api_id=api_id,
        status=_enum(SubscriptionStatus, doc["status"], key, f"{api_id}.status"),
        tier=str(doc.get("tier") or "Unlimited"),
        created_at=_float(doc.get("created_at"), key, f"{api_id}.created_at"),
    )


SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")


def _split_multi_node_url(url: str, what: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """Split ``scheme://[[user]:password@]host:port[,host:port...]/path[?query]``.

    Returns:
        ``(nodes, path, connection_kwargs)``: ``username``/``password`` from the user info, the query
        parameters, and ``ssl=True`` for a ``rediss+...`` scheme.
    Raises:
        ValueError: an address that is not host:port (``what`` names it in the message).
    """
    from urllib.parse import parse_qsl, unquote  # noqa: PLC0415

    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    userinfo, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{what} address {item!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    kwargs: dict[str, Any] = dict(parse_qsl(query))
    if userinfo:
        user, sep, password = userinfo.partition(":")
        if sep:
            if user:
                kwargs["username"] = unquote(user)
            kwargs["password"] = unquote(password)
        else:
            kwargs["password"] = unquote(user)
    if scheme.startswith("rediss+"):
        kwargs["ssl"] = True
    return nodes, path, kwargs


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, dict[str, Any]]:
    """Split ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``.

    ``rediss+sentinel://`` connects to the sentinels and the master over TLS; query parameters
    (``?ssl_ca_certs=/path/ca.pem``) are passed to the master's connections as for ``rediss://``.

    Returns:
        ``(sentinels, service_name, db, connection_kwargs)``.
    Raises:
        ValueError: no sentinel address, a bad port, no service name or a bad db number.
    """
    from urllib.parse import unquote  # noqa: PLC0415

    sentinels, path, kwargs = _split_multi_node_url(url, "sentinel")
    parts = [x for x in path.split("/") if x]
    if not parts or len(parts) > 2:
        raise ValueError("the path must be /service_name or /service_name/db")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"db {parts[1]!r} is not a number")
    return sentinels, unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0, kwargs


CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Split ``redis+cluster://[[user]:password@]host:port[,host:port...]/`` (a Redis Cluster's seed nodes).

    The nodes are only where the client starts: it reads the cluster's layout (``CLUSTER SLOTS``) from the
    first one answering. ``rediss+cluster://`` connects to every node over TLS; query parameters
    (``?ssl_ca_certs=/path/ca.pem``) are passed to each node's connections as for ``rediss://``. A cluster has
    only database 0, so the path must be empty or ``/`` (or ``/0``).

    Returns:
        ``(nodes, connection_kwargs)``.
    Raises:
        ValueError: no node address, a bad port, or a database other than 0.
    """
    nodes, path, kwargs = _split_multi_node_url(url, "cluster node")
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, not {path.strip('/')!r}")
    return nodes, kwargs


def cluster_hash_tag(prefix: str) -> str | None:
    """The Redis Cluster hash tag of a key prefix (``{authz}:`` -> ``authz``), or None when it has none.

    Redis hashes only the part between the first ``{`` and the next ``}`` when it is not empty (Redis Cluster
    specification, "Hash tags"), so every key starting with a prefix that has a tag lands in the same slot.
    """
    start = prefix.find("{")
    end = prefix.find("}", start + 1) if start >= 0 else -1
    return prefix[start + 1:end] if end > start + 1 else None


class _ClusterClient(RedisCluster):
    """redis-py's asyncio ``RedisCluster`` whose "no node reachable" errors are Redis errors.

    ``RedisClusterException`` (e.g. "Redis Cluster cannot be connected") does not derive from ``RedisError``;
    it is re-raised as ``redis.exceptions.ConnectionError`` so every caller treats it as an outage (503).
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise RedisConnectionError(f"redis cluster: {exc}") from exc


def connect(url: str, socket_timeout: float) -> aioredis.Redis:
    """An asyncio Redis client for ``url``, strings decoded.

    URL forms: ``redis://``, ``rediss://`` (TLS; ``?ssl_ca_certs=/path/ca.pem`` for a private CA),
    ``unix:///path/redis.sock?db=0``, ``redis+sentinel://host:26379,host:26380/service_name/db``
    (the master of a Sentinel-managed group, rediscovered after a failover) and
    ``redis+cluster://host:7000,host:7001/`` (a Redis Cluster: an asyncio ``RedisCluster``, which has the
    same command methods). See docs/registry.md.

    Args:
        url: the Redis URL.
        socket_timeout: seconds for connecting and for each command.
    Raises:
        ValueError: a malformed Sentinel or Cluster URL.
    """
    if url.startswith(CLUSTER_SCHEMES):
        nodes, kwargs = parse_cluster_url(url)
        return _ClusterClient(  # type: ignore[return-value]
            startup_nodes=[ClusterNode(host, port) for host, port in nodes], decode_responses=True,
            socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, **kwargs,
        )
    if url.startswith(SENTINEL_SCHEMES):
        from redis.asyncio.sentinel import Sentinel  # noqa: PLC0415

        sentinels, service, db, kwargs = parse_sentinel_url(url)
        timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
        sentinel_kwargs = {**timeouts, **({"ssl": True} if kwargs.get("ssl") else {})}
        return Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **timeouts).master_for(
            service, redis_class=aioredis.Redis, db=db, decode_responses=True, retry_on_timeout=False,
            **timeouts, **kwargs,
        )
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        decode_responses=True,
        retry_on_timeout=False,
    )


class _Script:
    """A Lua script run by ``EVALSHA``, falling back to ``EVAL`` (which also caches it) on ``NOSCRIPT``.

    Unlike redis-py's ``register_script``, which answers ``NOSCRIPT`` with ``SCRIPT LOAD`` (sent to every
    node of a cluster, so failing while any node is down), the fallback goes to the node of ``keys`` only.
    """

    def __init__(self, client: Any, body: str) -> None:
        self.client = client
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()  # noqa: S324 - the script cache's own key

    async def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.eval(self.body, len(keys), *keys, *args)


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
        self._lookup = _Script(client, _LOOKUP)
        self._create_app = _Script(client, _CREATE_APP)
        self._add_client = _Script(client, _ADD_CLIENT)
        self._remove_client = _Script(client, _REMOVE_CLIENT)
        self._subscription = _Script(client, _SUBSCRIPTION)
        self._delete_app = _Script(client, _DELETE_APP)
        self._set_app_status = _Script(client, _SET_APP_STATUS)
        self._update_app = _Script(client, _UPDATE_APP)
        self._set_client_key_type = _Script(client, _SET_CLIENT_KEY_TYPE)
        self._revoke = _Script(client, _REVOKE)
        self._unrevoke = _Script(client, _UNREVOKE)

    async def pubsub(self, attempt: int = 0) -> PubSub:
        """A pub/sub connection for the invalidation channel (:attr:`channel`), not yet subscribed.

        On a plain Redis (and Sentinel), the client's own pub/sub. On a Redis Cluster, a PUBLISH reaches the
        subscribers of every node (the cluster bus forwards it), so this subscribes on one node: the
        ``attempt``-th of the cluster's nodes sorted by ``host:port``, so that a caller reconnecting after a
        failure (``attempt + 1``) moves on to the next node.

        Args:
            attempt: how many connections failed before this one (0 first).
        Raises:
            redis.exceptions.RedisError: the cluster's layout cannot be read (no node reachable).
        """
        if not isinstance(self.client, RedisCluster):
            return self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await self.client.initialize()
            nodes = sorted(self.client.get_nodes(), key=lambda n: n.name)
            return self.client.pubsub(node=nodes[attempt % len(nodes)], ignore_subscribe_messages=True)
        except RedisClusterException as exc:
            raise RedisConnectionError(f"redis cluster: {exc}") from exc

    # ---- hot path -------------------------------------------------------------------------------

    async def lookup(self, key_manager: str, client_id: str, api_id: str) -> Lookup:
        """Client binding, application and subscription in one round trip.

        Args:
            key_manager: key manager name.
            client_id: OAuth2 client ID from the token.
            api_id: the API being called.
        Returns:
            The :class:`Lookup` (fields None where absent).
        Raises:
            redis.exceptions.RedisError: Redis unreachable or too slow.
            CorruptRecord: a record does not have the documented shape.
        """
        row = await self._lookup(keys=self._keys, args=[self.prefix, key_manager, client_id, api_id])
        app_id, key_type, name, owner, tier, status, created_at, sub, client_exists, app_exists = row
        ckey = f"{self.prefix}client:{key_manager}:{client_id}"
        if not app_id:
            if client_exists:
                raise CorruptRecord(ckey, "field 'app_id' is missing")
            return Lookup(None, None, None)
        binding = ClientBinding(app_id, _enum(KeyType, key_type or "PRODUCTION", ckey, "key_type"))
        akey = f"{self.prefix}app:{app_id}"
        if not app_exists:
            raise CorruptRecord(ckey, "field 'app_id' points at a missing application")
        application = decode_application(
            app_id,
            {"name": name, "owner": owner, "tier": tier, "status": status, "created_at": created_at},
            akey,
        )
        subscription = decode_subscription(app_id, api_id, sub, akey + ":subs") if sub else None
        return Lookup(binding, application, subscription)

    async def is_revoked(self, key_manager: str, token_id: str) -> float | None:
        """The expiry (epoch seconds) under which this token ID of this key manager is revoked, or None.

        Raises:
            redis.exceptions.RedisError: Redis unreachable or too slow.
            CorruptRecord: the stored expiry is not a number.
        """
        key = f"{self.prefix}revoked:{key_manager}:{token_id}"
        raw = await self.client.get(key)
        return None if raw is None else _float(raw, key, "expiry")

    # ---- reads for tools ---------------------------------------------------------------------------

    async def get_application(self, app_id: str) -> Application | None:
        """The application with this ID, or None."""
        key = f"{self.prefix}app:{app_id}"
        fields = await self.client.hgetall(key)
        return decode_application(app_id, fields, key) if fields else None

    async def find_application(self, id_or_name: str) -> Application:
        """The application with this ID or, failing that, this name.

        Raises:
            RegistryError: ``not_found``.
        """
        app = await self.get_application(id_or_name)
        if app is None:
            app_id = await self.application_id_by_name(id_or_name)
            if app_id:
                app = await self.get_application(app_id)
        if app is None:
            raise RegistryError("not_found", f"no application with ID or name {id_or_name!r}")
        return app

    async def list_applications(self) -> list[Application]:
        """Every application, sorted by name."""
        ids = await self.client.smembers(self.prefix + "apps")
        apps = [a for a in [await self.get_application(i) for i in ids] if a is not None]
        return sorted(apps, key=lambda a: a.name)

    async def clients_of(self, app_id: str) -> list[tuple[str, str, KeyType]]:
        """``(key_manager, client_id, key_type)`` of each client ID of the application, sorted."""
        out = []
        for entry in sorted(await self.client.smembers(f"{self.prefix}app:{app_id}:clients")):
            km, _, client_id = entry.partition(":")
            ckey = f"{self.prefix}client:{entry}"
            key_type = await self.client.hget(ckey, "key_type")
            out.append((km, client_id, _enum(KeyType, key_type or "PRODUCTION", ckey, "key_type")))
        return out

    async def subscriptions_of(self, app_id: str) -> list[Subscription]:
        """The application's subscriptions, sorted by API ID."""
        key = f"{self.prefix}app:{app_id}:subs"
        raw = await self.client.hgetall(key)
        return [decode_subscription(app_id, api, doc, key) for api, doc in sorted(raw.items())]

    async def application_id_by_name(self, name: str) -> str | None:
        """The ID of the application called ``name``, or None."""
        return await self.client.get(f"{self.prefix}app-name:{name}")

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
        return ClientBinding(fields["app_id"], _enum(KeyType, fields.get("key_type") or "PRODUCTION", key, "key_type"))

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
            out.append((km, jti, _float(raw, key, "expiry")))
        return sorted(out)

    async def schema_version(self) -> str | None:
        """The data format version stored in ``P schema``, or None on an empty registry."""
        return await self.client.get(self.prefix + "schema")

    async def client_owner(self, key_manager: str, client_id: str) -> str | None:
        """The ID of the application owning the client ID, or None."""
        return await self.client.hget(f"{self.prefix}client:{key_manager}:{client_id}", "app_id")

    # ---- writes ---------------------------------------------------------------------------------

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
        if not name.strip():
            raise RegistryError("invalid", "application name must not be empty")
        app_id = app_id or str(uuid.uuid4())
        if ":" in app_id or not app_id.strip():
            raise RegistryError("invalid", "application ID must be non-empty and contain no ':'")
        now = time.time()
        status, value = await self._create_app(
            keys=self._keys, args=[self.prefix, app_id, name, owner, tier, ApplicationStatus.ACTIVE.value, repr(now)]
        )
        if status == "err_id":
            raise RegistryError("already_exists", f"application ID {app_id} already exists")
        if status == "err_name":
            raise RegistryError("already_exists", f"application name {name!r} is already used by {value}")
        return Application(id=app_id, name=name, owner=owner, tier=tier, created_at=now)

    async def delete_application(self, app_id: str) -> bool:
        """Delete an application with its client-ID mappings and subscriptions. Returns False if absent."""
        return bool(await self._delete_app(keys=self._keys, args=[self.prefix, app_id]))

    async def set_application_status(self, app_id: str, status: ApplicationStatus) -> None:
        """Set an application's status.

        Raises:
            RegistryError: ``not_found``.
        """
        if not await self._set_app_status(keys=self._keys, args=[self.prefix, app_id, ApplicationStatus(status).value]):
            raise RegistryError("not_found", f"no application with ID {app_id!r}")

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

    async def set_client_key_type(self, app: Application, key_manager: str, client_id: str, key_type: KeyType) -> None:
        """Change the key type of a client ID attached to the application.

        Raises:
            RegistryError: ``not_found`` when the client ID is not attached to it.
        """
        if not await self._set_client_key_type(
            keys=self._keys, args=[self.prefix, app.id, key_manager, client_id, KeyType(key_type).value]
        ):
            raise RegistryError("not_found", f"client ID {client_id} is not attached to application {app.name}")

    async def revoke(self, key_manager: str, token_id: str, expires_at: int) -> None:
        """Revoke a token ID until ``expires_at`` (epoch seconds, integer), when Redis deletes it (``SET EXAT``).

        The caller checks that ``expires_at`` is in the future.
        """
        await self._revoke(keys=self._keys, args=[self.prefix, key_manager, token_id, int(expires_at)])

    async def unrevoke(self, key_manager: str, token_id: str) -> bool:
        """Withdraw a revocation. Returns False when the token ID was not revoked (or already expired)."""
        return bool(await self._unrevoke(keys=self._keys, args=[self.prefix, key_manager, token_id]))

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
        if not client_id or any(ord(c) < 0x20 for c in client_id):
            raise RegistryError("invalid", "client ID must be non-empty and printable")
        status, owner = await self._add_client(
            keys=self._keys, args=[self.prefix, app.id, key_manager, client_id, KeyType(key_type).value]
        )
        if status == "err_app":
            raise RegistryError("not_found", f"no application with ID {app.id!r}")
        if status == "err_taken":
            other = await self.get_application(owner)
            label = other.name if other else owner
            raise RegistryError(
                "already_exists", f"client ID {client_id} is already used by application {label}"
            )
        return status == "ok"

    async def remove_client(self, app: Application, key_manager: str, client_id: str) -> bool:
        """Unmap a client ID from the application. Returns False when it was not mapped to it."""
        return bool(await self._remove_client(keys=self._keys, args=[self.prefix, app.id, key_manager, client_id]))

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

    async def unsubscribe(self, app: Application, api_id: str) -> None:
        """Remove the application's subscription to an API.

        Raises:
            RegistryError: ``not_found``.
        """
        result = await self._subscription(keys=self._keys, args=[self.prefix, app.id, api_id, "", "delete", ""])
        if result != "ok":
            raise RegistryError("not_found", f"application {app.name} is not subscribed to {api_id}")

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


__all__ = [
    "CLUSTER_SCHEMES",
    "CorruptRecord",
    "Lookup",
    "RedisError",
    "RedisStore",
    "RegistryError",
    "SCHEMA_VERSION",
    "cluster_hash_tag",
    "connect",
    "parse_cluster_url",
]
