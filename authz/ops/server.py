"""Process wiring: build the pipeline from settings and serve it over gRPC (grpc.aio) and HTTP/1.1.

Serves ``envoy.service.auth.v3.Authorization``, ``grpc.health.v1.Health`` (SERVING once the JWKS
prefetch is done, NOT_SERVING while draining; the informational service ``authz.durability`` says whether
acknowledged registry writes are safe, see :func:`durability_status`) and server reflection; with
``server.http_listen``, Envoy's HTTP ext_authz mode (:mod:`authz.envoy.http_service`, whose health probe reports
the same state as the server's health); when ``admin.listen`` is set, also the registry admin API
(:mod:`authz.admin.service`) on that port. SIGTERM or SIGINT: stop accepting on every listener at once, let
in-flight calls finish for ``server.grace_period`` seconds (one grace period for all listeners), close, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import grpc
import httpx
from envoy.service.auth.v3 import external_auth_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from authz.admin.service import start_admin_server
from authz.config import Settings
from authz.decide.backend_jwt import BackendJwtSigner
from authz.decide.explain import Explanation, explain
from authz.decide.identity import TokenValidator
from authz.decide.pipeline import Pipeline
from authz.decide.record import DecisionRecorder
from authz.decide.routes import RouteTable
from authz.envoy.grpc_service import AuthorizationServicer, add_to_server
from authz.envoy.http_service import HttpAuthorizationServer, limits_for
from authz.keys.fetch import http_client
from authz.keys.jwk import KeySource
from authz.keys.jwks_cache import JwksCache
from authz.keys.static import StaticKeys
from authz.model import Request
from authz.ops.jwks_endpoint import JwksEndpoint
from authz.ops.metrics import MetricSources
from authz.ops.metrics_http import start_metrics
from authz.ops.supervisor import worker_listen
from authz.registry.cache import RegistryCache
from authz.registry.durability import AT_RISK, DURABLE
from authz.registry.redis_store import RedisStore
from authz.registry.store import RegistryStore

log = logging.getLogger("authz.server")

AUTHORIZATION_SERVICE = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name
DURABILITY_SERVICE = "authz.durability"
"""The health service name that reports registry durability (never the one Envoy health-checks)."""


def durability_status(registry: RegistryCache) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    """The ``authz.durability`` health status: informational, it never stops authz from serving checks.

    SERVING: the registry's Redis keeps every acknowledged write (AOF, ``appendfsync always``) and no rollback
    was seen; NOT_SERVING: acknowledged writes can be lost (other persistence settings), or a rollback or an
    early-forgotten revocation was seen (until the process restarts); UNKNOWN: Redis refused ``CONFIG GET`` or
    was not reachable yet. The reasons are in the ``authz.registry`` log (:meth:`RegistryCache.health`).
    """
    level = registry.health().level
    if level == DURABLE:
        return health_pb2.HealthCheckResponse.SERVING
    if level == AT_RISK:
        return health_pb2.HealthCheckResponse.NOT_SERVING
    return health_pb2.HealthCheckResponse.UNKNOWN


@dataclass
class Services:
    """Everything a running authz process holds, built by :func:`build_services`.

    Attributes:
        pipeline: the decision pipeline.
        jwks: the key source per key manager name (JWKS cache or static keys).
        registry: the registry cache.
        store: the Redis store.
        backend_jwt: the backend JWT signer, or None.
    """

    pipeline: Pipeline
    jwks: dict[str, KeySource]
    registry: RegistryCache
    store: RedisStore
    backend_jwt: BackendJwtSigner | None = None
    _http: list[httpx.AsyncClient] = field(default_factory=list)

    async def close(self) -> None:
        """Stop background tasks and close network clients."""
        await self.registry.close()
        for cache in self.jwks.values():
            await cache.close()
        for client in self._http:
            await client.aclose()
        await self.store.aclose()


async def build_services(settings: Settings) -> Services:
    """Create the caches and the pipeline, prefetch every JWKS and start the invalidation listener.

    Args:
        settings: the validated configuration.
    Returns:
        The started :class:`Services` (close them with ``await services.close()``).
    """
    clients: list[httpx.AsyncClient] = []
    jwks: dict[str, KeySource] = {}
    for km in settings.key_managers:
        if km.certificates:
            jwks[km.name] = StaticKeys(km.name, km.certificates)
        else:
            client = http_client(km)
            clients.append(client)
            jwks[km.name] = JwksCache(km, client)
    await asyncio.gather(*(source.start() for source in jwks.values()))
    store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, settings.redis.socket_timeout)
    registry = RegistryCache(store, settings.redis)
    await registry.start()
    signer = BackendJwtSigner(settings.backend_jwt) if settings.backend_jwt else None
    pipeline = assemble_pipeline(settings, jwks, registry, signer)
    return Services(pipeline=pipeline, jwks=jwks, registry=registry, store=store, backend_jwt=signer, _http=clients)


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


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, *, primary: bool = True, worker_index: int = 0,
    supervised: bool = False,
) -> int:
    """Run the gRPC server until SIGTERM/SIGINT (or until ``stop`` is set).

    Args:
        settings: the validated configuration.
        stop: optional event that stops the server when set (for embedding and tests).
        primary: whether this process also serves the one-per-deployment listeners (admin API, backend-JWT
            JWKS endpoint); with ``--workers N`` only worker 0 does.
        worker_index: this worker's index; the HTTP ext_authz listener (``server.http_listen``) binds its
            port + the index, like the gRPC one.
        supervised: whether this is a worker of ``--workers N``: its metrics then go to the supervisor's
            multiprocess directory instead of its own ``server.metrics_listen`` (:mod:`authz.ops.metrics_http`).
    Returns:
        The process exit status: 0 after a graceful stop, 1 when the listen address cannot be bound.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():  # signal handlers need the main thread (POSIX)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    services = await build_services(settings)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(services.close)
        try:
            await _start_listeners(settings, services, stack, primary=primary, worker_index=worker_index,
                                   supervised=supervised)
        except _CannotListen as exc:
            log.error("cannot listen on %s%s: %s", exc.address, f" ({exc.setting})" if exc.setting else "", exc.error)
            return 1
        await stop.wait()
        log.info("shutting down: draining in-flight checks for up to %.1fs", settings.server.grace_period)
        await stack.aclose()
    log.info("stopped")
    return 0


class _CannotListen(Exception):
    def __init__(self, address: str, setting: str, error: Exception) -> None:
        super().__init__(address)
        self.address, self.setting, self.error = address, setting, error


async def _start_listeners(
    settings: Settings, services: Services, stack: contextlib.AsyncExitStack, *, primary: bool, worker_index: int,
    supervised: bool,
) -> None:
    """Start every listener of this process, each registered on ``stack`` to stop (the last started first).

    Raises:
        _CannotListen: an address cannot be bound (what was started is stopped by ``stack``).
    """
    counting = settings.server.metrics_listen is not None
    grpc_recorder = DecisionRecorder("grpc", settings.logging.decisions, counting)
    http_recorder = DecisionRecorder("http", settings.logging.decisions, counting)
    try:
        metrics = await start_metrics(settings, MetricSources((grpc_recorder, http_recorder), services.jwks,
                                                              services.registry), supervised=supervised)
    except OSError as exc:
        raise _CannotListen(str(settings.server.metrics_listen), "server.metrics_listen", exc) from None
    if metrics is not None:
        stack.push_async_callback(metrics.close)  # after the servers drained: the last counts are kept
    if primary and services.backend_jwt is not None and settings.backend_jwt and settings.backend_jwt.jwks_listen:
        jwks_endpoint = JwksEndpoint(services.backend_jwt.jwks(), settings.backend_jwt.jwks_listen)
        try:
            await jwks_endpoint.start()
        except OSError as exc:
            raise _CannotListen(settings.backend_jwt.jwks_listen, "backend_jwt.jwks_listen", exc) from None
        stack.push_async_callback(jwks_endpoint.close)
    http_server = None
    if settings.server.http_listen is not None:
        http_listen = worker_listen(settings.server.http_listen, worker_index)
        http_server = HttpAuthorizationServer(services.pipeline, settings.realm, http_listen,
                                              settings.server.grace_period, settings.server.decision_cache_size,
                                              http_recorder, route_headers=settings.server.http_route_headers,
                                              limits=limits_for(settings.server.max_receive_message_bytes))
        try:
            http_port = await http_server.start()
        except OSError as exc:
            raise _CannotListen(http_listen, "server.http_listen", exc) from None
        stack.push_async_callback(http_server.close)  # idempotent: a no-op once drain() closed it
        log.info("authz listening on %s:%d (HTTP ext_authz)", http_listen.rpartition(":")[0], http_port)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.server.max_receive_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    add_to_server(AuthorizationServicer(services.pipeline, settings.realm, settings.server.decision_cache_size,
                                        grpc_recorder), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (AUTHORIZATION_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        port = server.add_insecure_port(settings.server.listen)
    except RuntimeError as exc:
        raise _CannotListen(settings.server.listen, "", exc) from None
    await server.start()
    grace = settings.server.grace_period
    # Every listener stops together: one grace period for the whole process, not one per listener.
    stoppers: list[Callable[[], Awaitable[object]]] = [lambda: server.stop(grace)]
    if http_server is not None:
        stoppers.append(http_server.close)

    async def drain() -> None:
        if http_server is not None:
            http_server.serving = False
        await health_servicer.enter_graceful_shutdown()
        await asyncio.gather(*(stop() for stop in stoppers))

    stack.push_async_callback(drain)
    try:
        admin_server = await start_admin_server(settings, services.store, explainer(
            settings, services.jwks, services.store, services.backend_jwt)) if primary else None
    except RuntimeError as exc:
        raise _CannotListen(str(settings.admin.listen), "admin.listen", exc) from None
    if admin_server is not None:
        stoppers.append(lambda: admin_server.stop(grace))
    for name in ("", AUTHORIZATION_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(DURABILITY_SERVICE, durability_status(services.registry))
    services.registry.watch(lambda: asyncio.ensure_future(
        health_servicer.set(DURABILITY_SERVICE, durability_status(services.registry))))
    if http_server is not None:
        http_server.serving = True
    host = settings.server.listen.rpartition(":")[0]
    log.info("authz listening on %s:%d (gRPC envoy.service.auth.v3.Authorization)", host, port)
