"""What a running authz process holds, built from its settings: the key sources, the registry cache and store,
the backend JWT signer and the decision pipeline over them (:class:`Services`), rebuilt in place by a config reload
(:meth:`Services.reconfigure`); and ``authz explain``'s walk over them (:func:`explainer`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx

from authz.config import KeyManagerSettings, Settings
from authz.decide.backend_jwt import BackendJwtSigner
from authz.decide.explain import Explanation, explain
from authz.decide.identity import TokenValidator
from authz.decide.pipeline import Pipeline
from authz.decide.routes import RouteTable
from authz.keys.fetch import http_client
from authz.keys.jwk import KeySource
from authz.keys.jwks_cache import JwksCache
from authz.keys.static import StaticKeys
from authz.model import Request
from authz.registry.cache import RegistryCache
from authz.registry.redis_store import RedisStore
from authz.registry.store import RegistryStore


@dataclass
class Services:
    """Everything a running authz process holds, built by :func:`build_services`.

    Attributes:
        settings: the configuration they were built from.
        pipeline: the decision pipeline.
        jwks: the key source per key manager name (JWKS cache or static keys).
        registry: the registry cache.
        store: the Redis store.
        backend_jwt: the backend JWT signer, or None.
    """

    settings: Settings
    pipeline: Pipeline
    jwks: dict[str, KeySource]
    registry: RegistryCache
    store: RedisStore
    backend_jwt: BackendJwtSigner | None = None
    _http: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)

    async def reconfigure(self, new: Settings) -> None:
        """Build the pipeline of a reloaded config and swap it in (with the key sources and backend JWT signer
        it needs) in one step, between two checks.

        A key manager whose settings did not change keeps its key source (cached keys, no new fetch); a new or
        changed one gets a fresh source, prefetched before the swap (a changed key manager whose fresh source could
        not get usable keys while the running one has them rejects the reload: its valid tokens would get 503
        until the next fetch); the sources no longer used are closed once
        the checks in flight can no longer need them (``grace_period`` + ``decision_timeout``). The registry
        cache is kept as is (``redis`` needs a restart, :data:`authz.ops.reload.RESTART_ONLY`), and with it the
        revocations this process remembers.

        Args:
            new: the validated settings, restart-only values already put back.
        Raises:
            Exception: whatever building failed on (e.g. an unreadable backend JWT key, a changed key manager
                without usable keys): nothing was swapped.
        """
        old = self.settings
        kept: dict[str, KeySource] = {}
        fresh: dict[str, tuple[KeySource, httpx.AsyncClient | None]] = {}
        previous = {km.name: km for km in old.key_managers}
        for km in new.key_managers:
            if previous.get(km.name) == km:
                kept[km.name] = self.jwks[km.name]
            else:
                fresh[km.name] = key_source(km)
        try:
            await asyncio.gather(*(source.start() for source, _ in fresh.values()))
            lost = [name for name, (source, _) in fresh.items()
                    if name in self.jwks and self.jwks[name].usable() and not source.usable()]
            if lost:  # swapping would turn the valid tokens of a working key manager into 503s
                raise RuntimeError("; ".join(
                    f"key manager {name!r} changed but its new key source has no usable keys "
                    f"({fresh[name][0].last_error or 'no key set'}); it keeps its running config" for name in lost))
            signer = self.backend_jwt if new.backend_jwt == old.backend_jwt else (
                BackendJwtSigner(new.backend_jwt) if new.backend_jwt else None)
            keys = {**kept, **{name: source for name, (source, _) in fresh.items()}}
            pipeline = assemble_pipeline(new, keys, self.registry, signer)
        except BaseException:
            await _close_sources([source for source, _ in fresh.values()],
                                 [client for _, client in fresh.values() if client is not None])
            raise
        retired = [name for name in self.jwks if name not in kept]
        sources = [self.jwks[name] for name in retired]
        clients = [self._http.pop(name) for name in retired if name in self._http]
        self.jwks.clear()
        self.jwks.update(keys)
        self._http.update({name: client for name, (_, client) in fresh.items() if client is not None})
        self.settings, self.pipeline, self.backend_jwt = new, pipeline, signer
        if sources or clients:
            delay = new.server.grace_period + new.server.decision_timeout
            task = asyncio.create_task(_close_sources(sources, clients, delay), name="retire-key-sources")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Stop background tasks and close network clients."""
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.registry.close()
        await _close_sources(list(self.jwks.values()), list(self._http.values()))
        await self.store.aclose()


async def _close_sources(sources: list[KeySource], clients: list[httpx.AsyncClient], delay: float = 0.0) -> None:
    if delay:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            pass  # the process is stopping: close them now
    for source in sources:
        await source.close()
    for client in clients:
        await client.aclose()


def key_source(km: KeyManagerSettings) -> tuple[KeySource, httpx.AsyncClient | None]:
    """The key source of one key manager, not started: static keys for ``certificates``, else a JWKS cache over
    its own HTTP client (returned too, to be closed with it)."""
    if km.certificates:
        return StaticKeys(km.name, km.certificates), None
    client = http_client(km)
    return JwksCache(km, client), client


async def build_services(settings: Settings) -> Services:
    """Create the caches and the pipeline, prefetch every JWKS and start the invalidation listener.

    Args:
        settings: the validated configuration.
    Returns:
        The started :class:`Services` (close them with ``await services.close()``).
    """
    built = {km.name: key_source(km) for km in settings.key_managers}
    jwks = {name: source for name, (source, _) in built.items()}
    clients = {name: client for name, (_, client) in built.items() if client is not None}
    await asyncio.gather(*(source.start() for source in jwks.values()))
    store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, settings.redis.socket_timeout)
    registry = RegistryCache(store, settings.redis)
    await registry.start()
    signer = BackendJwtSigner(settings.backend_jwt) if settings.backend_jwt else None
    pipeline = assemble_pipeline(settings, dict(jwks), registry, signer)
    return Services(settings=settings, pipeline=pipeline, jwks=jwks, registry=registry, store=store,
                    backend_jwt=signer, _http=clients)


def assemble_pipeline(
    settings: Settings, keys: Mapping[str, KeySource], registry: RegistryCache, signer: BackendJwtSigner | None
) -> Pipeline:
    """The decision pipeline over already built key sources, registry cache and backend JWT signer.

    Args:
        settings: the validated configuration (each phase gets only the sections it reads).
        keys: the key source of each key manager, by name.
        registry: the registry cache (over any :class:`authz.registry.store.RegistryStore`).
        signer: the backend JWT signer, or None.
    Returns:
        The :class:`Pipeline`.
    """
    return Pipeline(
        RouteTable(settings.apis, settings.server.route_cache_size),
        TokenValidator(settings.key_managers, keys, settings.tokens),
        registry,
        settings.headers,
        budget=settings.server.decision_timeout,
        backend_jwt=signer,
        decision_cache_size=settings.server.decision_cache_size,
    )


def explainer(
    settings: Settings, keys: Mapping[str, KeySource], store: RegistryStore, signer: BackendJwtSigner | None
) -> Callable[[Request], Awaitable[Explanation]]:
    """``authz explain`` over these key sources and this store: each call walks a fresh pipeline (empty token,
    registry and decision caches, so every phase really runs) with :func:`authz.decide.explain.explain`.

    Args:
        settings: the configuration.
        keys: the key source of each key manager (a running server's: no extra fetch).
        store: the registry store.
        signer: the backend JWT signer, or None.
    Returns:
        An async function of the adapted :class:`Request`.
    """
    async def run(request: Request) -> Explanation:
        pipeline = assemble_pipeline(settings, keys, RegistryCache(store, settings.redis), signer)
        return await explain(pipeline, request)

    return run
