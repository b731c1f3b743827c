"""Registry operations for tests, over the real Redis of a config: the code path of the CLI and the admin API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from authz.config import Settings, parse_config
from authz.registry.admin import RegistryAdmin
from authz.registry.redis_store import RedisStore

T = TypeVar("T")


@asynccontextmanager
async def registry_admin(settings: Settings, socket_timeout: float = 2.0) -> AsyncIterator[RegistryAdmin]:
    """A :class:`RegistryAdmin` on the Redis and key prefix of ``settings``; its connections close on exit."""
    store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, socket_timeout)
    try:
        yield RegistryAdmin(store, settings)
    finally:
        await store.aclose()


def run_admin(settings: Settings | dict[str, Any], action: Callable[[RegistryAdmin], Awaitable[T]]) -> T:
    """Run ``await action(admin)`` on a fresh event loop (for synchronous tests), ``settings`` being validated
    settings or a config document."""
    if isinstance(settings, dict):
        settings = parse_config(settings)

    async def run() -> T:
        async with registry_admin(settings) as admin:
            return await action(admin)

    return asyncio.run(run())
