"""Connections to the registry's Redis: one asyncio client for every URL form (docs/registry.md)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from authz.registry.redis_urls import CLUSTER_SCHEMES, SENTINEL_SCHEMES, parse_cluster_url, parse_sentinel_url


class ClusterClient(RedisCluster):
    """redis-py's asyncio ``RedisCluster`` whose "no node reachable" errors are Redis errors.

    ``RedisClusterException`` (e.g. "Redis Cluster cannot be connected") does not derive from ``RedisError``;
    it is re-raised as ``redis.exceptions.ConnectionError`` so every caller treats it as an outage (503).
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise RedisConnectionError(f"redis cluster: {exc}") from exc


def retry_once() -> Retry:
    """redis-py's retry policy for the registry: one more attempt, at once, after a connection error.

    A pooled connection whose Redis restarted (or failed over) answers its next command with
    ``ConnectionError("Connection closed by server")``; redis-py then disconnects it and the retry sends the
    command again on a fresh connection. Only ``ConnectionError`` (closed, reset, refused) is retried: a
    ``TimeoutError`` means Redis is slow, and a second ``socket_timeout`` would only spend the decision budget.
    A command that fails twice raises, and the caller answers 503.

    Returns:
        A new :class:`redis.asyncio.retry.Retry` (each client gets its own: redis-py copies it per connection).
    """
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def connect(url: str, socket_timeout: float) -> aioredis.Redis:
    """An asyncio Redis client for ``url``, strings decoded.

    URL forms: ``redis://``, ``rediss://`` (TLS; ``?ssl_ca_certs=/path/ca.pem`` for a private CA),
    ``unix:///path/redis.sock?db=0``, ``redis+sentinel://host:26379,host:26380/service_name/db``
    (the master of a Sentinel-managed group, rediscovered after a failover) and
    ``redis+cluster://host:7000,host:7001/`` (a Redis Cluster: an asyncio ``RedisCluster``, which has the
    same command methods). See docs/registry.md.

    Every form retries a command once on a fresh connection after a connection error (:func:`retry_once`):
    the plain forms and Sentinel on the command's connection, a Cluster by reading the cluster's layout again
    and resending to the slot's master.

    Args:
        url: the Redis URL.
        socket_timeout: seconds for connecting and for each command.
    Raises:
        ValueError: a malformed Sentinel or Cluster URL.
    """
    if url.startswith(CLUSTER_SCHEMES):
        nodes, kwargs = parse_cluster_url(url)
        return ClusterClient(  # type: ignore[return-value]
            startup_nodes=[ClusterNode(host, port) for host, port in nodes], decode_responses=True,
            socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, retry=retry_once(), **kwargs,
        )
    if url.startswith(SENTINEL_SCHEMES):
        from redis.asyncio.sentinel import Sentinel  # noqa: PLC0415

        sentinels, service, db, kwargs = parse_sentinel_url(url)
        timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
        sentinel_kwargs = {**timeouts, **({"ssl": True} if kwargs.get("ssl") else {})}
        return Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **timeouts).master_for(
            service, redis_class=aioredis.Redis, db=db, decode_responses=True, retry=retry_once(),
            **timeouts, **kwargs,
        )
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        decode_responses=True,
        retry=retry_once(),
    )
