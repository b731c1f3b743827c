"""A decision pipeline for tests, over the in-memory registry store and the key manager on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from authz.config import Settings
from authz.decide.backend_jwt import BackendJwtSigner
from authz.decide.pipeline import Pipeline
from authz.keys.jwk import KeySource
from authz.ops.services import assemble_pipeline
from authz.registry.admin import RegistryAdmin
from authz.registry.cache import RegistryCache
from authz.registry.memory import MemoryStore
from tests.support.tokencraft import running_validator


@dataclass
class PipelineUnderTest:
    """A running pipeline and what a test drives it with.

    Attributes:
        pipeline: the pipeline.
        registry: its registry cache.
        store: the in-memory store under the cache.
        admin: validated registry writes on that store (what the CLI and the admin API do).
        keys: the key source of each key manager.
    """

    pipeline: Pipeline
    registry: RegistryCache
    store: MemoryStore
    admin: RegistryAdmin
    keys: dict[str, KeySource]

    async def settle(self) -> None:
        """Let the registry cache's listener see the events of the writes so far (and clear the cache)."""
        for _ in range(10):
            await asyncio.sleep(0)

    async def register(self, app_id: str = "demo-app", client_id: str = "demo-client", name: str = "Demo App",
                       api: str | None = "orders-v1") -> None:
        """Create application ``app_id`` (``name``) with ``client_id``, subscribe it to ``api`` (None: to no API)
        and let the registry cache see it."""
        await self.admin.create_application(name, app_id=app_id)
        await self.admin.add_client(app_id, client_id)
        if api is not None:
            await self.admin.subscribe(app_id, api)
        await self.settle()


@asynccontextmanager
async def running_pipeline(settings: Settings, store: MemoryStore | None = None) -> AsyncIterator[PipelineUnderTest]:
    """The pipeline of ``settings`` over a :class:`MemoryStore` (no Redis) and real key sources.

    Yields:
        A :class:`PipelineUnderTest`; its background tasks are stopped on exit.
    """
    store = store or MemoryStore()
    async with running_validator(settings) as (_validator, keys):
        registry = RegistryCache(store, settings.redis)
        await registry.start()
        signer = BackendJwtSigner(settings.backend_jwt) if settings.backend_jwt else None
        try:
            under_test = PipelineUnderTest(assemble_pipeline(settings, keys, registry, signer), registry, store,
                                           RegistryAdmin(store, settings), keys)
            await under_test.settle()
            yield under_test
        finally:
            await registry.close()
