"""Whether the registry's Redis keeps every acknowledged write, from its persistence settings.

authz asks Redis ``CONFIG GET append*`` and ``CONFIG GET save`` (on a Redis Cluster: every node) each time its
invalidation listener (re)subscribes, so at start-up and after every reconnection, and reports the answer in
its log and in the gRPC health service ``authz.durability`` (:mod:`authz.ops.server`). Only AOF with
``appendfsync always`` keeps every acknowledged write through a crash of Redis or its host; the other settings
and what they lose are in docs/operations.md ("Durability"). Managed services that refuse ``CONFIG`` give
:data:`UNKNOWN`: a warning, never a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError, ResponseError

Level = Literal["durable", "at_risk", "unknown"]
DURABLE: Level = "durable"
AT_RISK: Level = "at_risk"
UNKNOWN: Level = "unknown"


@dataclass(frozen=True, slots=True)
class Durability:
    """What a crash of the registry's Redis would do to acknowledged writes.

    Attributes:
        level: ``durable`` (every acknowledged write survives), ``at_risk`` (some can be lost) or ``unknown``
            (Redis would not say).
        detail: one sentence for operators: the settings seen and what they lose.
    """

    level: Level
    detail: str


def assess(config: Mapping[str, str]) -> Durability:
    """The :class:`Durability` of one Redis node from its ``CONFIG GET`` answers.

    Args:
        config: at least ``appendonly`` and ``appendfsync`` (and ``save`` when known), as Redis returns them.
    Returns:
        ``durable`` only for ``appendonly yes`` with ``appendfsync always``.
    """
    appendonly = config.get("appendonly", "").lower()
    fsync = config.get("appendfsync", "").lower()
    save = config.get("save")
    if appendonly == "yes" and fsync == "always":
        return Durability(DURABLE, "AOF on, appendfsync always: every acknowledged write is on disk")
    if appendonly == "yes" and fsync == "everysec":
        return Durability(AT_RISK, "AOF with appendfsync everysec: a crash of its host loses up to about one "
                                   "second of acknowledged writes (two at worst)")
    if appendonly == "yes":
        return Durability(AT_RISK, f"AOF with appendfsync {fsync or '?'}: the operating system decides when writes "
                                   "reach the disk; a crash of its host loses the writes not yet flushed")
    if save:
        return Durability(AT_RISK, f"no AOF (appendonly {appendonly or '?'}), RDB snapshots only (save {save!r}): a "
                                   "crash loses every write since the last snapshot")
    return Durability(AT_RISK, f"no AOF (appendonly {appendonly or '?'}) and no RDB snapshots: a restart loses the "
                               "whole registry")


def worst(reports: Mapping[str, Durability]) -> Durability:
    """One report for several nodes: the worst level, naming the nodes that have it.

    Args:
        reports: node name -> its :class:`Durability`.
    """
    for level in (AT_RISK, UNKNOWN):
        bad = {name: report for name, report in sorted(reports.items()) if report.level == level}
        if bad:
            return Durability(level, "; ".join(f"{name}: {report.detail}" for name, report in bad.items()))
    return next(iter(reports.values())) if reports else Durability(UNKNOWN, "no node answered")


async def redis_durability(client: Any) -> Durability:
    """Ask the registry's Redis (or every node of a Redis Cluster) for its persistence settings.

    Args:
        client: the store's asyncio client (plain, Sentinel master or ``RedisCluster``).
    Returns:
        The :class:`Durability`; ``unknown`` when Redis refuses ``CONFIG`` (managed services, ACLs) or cannot
        answer. Never raises.
    """
    try:
        if isinstance(client, RedisCluster):
            nodes = RedisCluster.ALL_NODES
            answers = await client.config_get("append*", target_nodes=nodes)
            saves = await client.config_get("save", target_nodes=nodes)
            return worst({name: assess({**config, **saves.get(name, {})}) for name, config in answers.items()})
        return assess({**await client.config_get("append*"), **await client.config_get("save")})
    except ResponseError as exc:
        return Durability(UNKNOWN, f"Redis refused CONFIG GET ({exc}): cannot tell whether acknowledged writes "
                                   "survive a crash; check the service's persistence settings (AOF, fsync)")
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        return Durability(UNKNOWN, f"could not ask Redis for its persistence settings ({type(exc).__name__}: {exc})")
