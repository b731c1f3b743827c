"""Parsing of the multi-node Redis URL forms (Sentinel and Cluster), without importing a Redis client.

Used by config validation (``authz check-config`` reports a malformed URL with its reason) and by
:func:`authz.registry.redis_conn.connect`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")


def _split_multi_node_url(url: str, what: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """Split ``scheme://[[user]:password@]host:port[,host:port...]/path[?query]``.

    Returns:
        ``(nodes, path, connection_kwargs)``: ``username``/``password`` from the user info, the query
        parameters, and ``ssl=True`` for a ``rediss+...`` scheme.
    Raises:
        ValueError: an address that is not host:port (``what`` names it in the message).
    """
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
