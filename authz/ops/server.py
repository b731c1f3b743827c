"""Process wiring: build the pipeline from settings and serve it over gRPC (grpc.aio) and HTTP/1.1.

Serves ``envoy.service.auth.v3.Authorization``, ``grpc.health.v1.Health`` (SERVING once the JWKS
prefetch is done, NOT_SERVING while draining; the informational service ``authz.durability`` says whether
acknowledged registry writes are safe, see :func:`durability_status`) and server reflection; with
``server.http_listen``, Envoy's HTTP ext_authz mode (:mod:`authz.envoy.http_service`, whose health probe reports
the same state as the server's health); when ``admin.listen`` is set, also the registry admin API
(:mod:`authz.admin.service`) on that port. SIGTERM: report NOT_SERVING for ``server.drain_grace`` seconds while
still answering; then (and at once on SIGINT) stop accepting on every listener at once, let in-flight calls finish
for ``server.grace_period`` seconds (one grace period for all listeners), close, exit 0. SIGHUP, or a change of the
file under ``server.watch_config``: reload the config in-process (:mod:`authz.ops.reload`), swapping the pipeline
between two checks.
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

from authz.admin.service import RegistryAdminServicer, start_admin_server
from authz.config import KeyManagerSettings, Settings
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
from authz.ops.reload import ConfigReloader
from authz.ops.supervisor import worker_listen
from authz.registry.admin import RegistryAdmin
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


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, *, primary: bool = True, worker_index: int = 0,
    supervised: bool = False, config_path: str | None = None, loaded: bytes | None = None,
) -> int:
    """Run the servers until SIGTERM/SIGINT (or until ``stop`` is set); reload the config on SIGHUP.

    SIGTERM: report NOT_SERVING (gRPC health, the HTTP probe) while still answering checks for
    ``server.drain_grace`` seconds, so that Envoy's health check takes this process out of the cluster first; then
    stop accepting on every listener and let in-flight checks finish for ``server.grace_period``. SIGINT, ``stop``
    or a second signal during the drain grace: skip (the rest of) the drain grace.

    Args:
        settings: the validated configuration.
        stop: optional event that stops the server when set (for embedding and tests).
        primary: whether this process also serves the one-per-deployment listeners (admin API, backend-JWT
            JWKS endpoint); with ``--workers N`` only worker 0 does.
        worker_index: this worker's index; the HTTP ext_authz listener (``server.http_listen``) binds its
            port + the index, like the gRPC one.
        supervised: whether this is a worker of ``--workers N``: its metrics then go to the supervisor's
            multiprocess directory instead of its own ``server.metrics_listen`` (:mod:`authz.ops.metrics_http`).
        config_path: the file ``settings`` were read from: SIGHUP and, with ``server.watch_config``, a change of
            its content reload it (:class:`authz.ops.reload.ConfigReloader`); None: no reload.
        loaded: :func:`authz.ops.reload.fingerprint` of that file when ``settings`` were read (a change made
            before the SIGHUP handler was installed is then reloaded at once).
    Returns:
        The process exit status: 0 after a graceful stop, 1 when the listen address cannot be bound.
    """
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()
    signals: list[int] = []
    loop = asyncio.get_running_loop()

    def on_stop(signum: int) -> None:
        (hurry if stop.is_set() else stop).set()
        signals.append(signum)

    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # signal handlers need the main thread (POSIX)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop, sig)

    services = await build_services(settings)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(services.close)
        listeners = Listeners()

        async def apply(new: Settings) -> None:
            await services.reconfigure(new)
            listeners.reconfigure(services)  # same step as the swap above: no await in between

        reloader = ConfigReloader(config_path, settings, apply, loaded) if config_path else None
        try:
            await _start_listeners(services, listeners, stack, primary=primary, worker_index=worker_index,
                                   supervised=supervised, reloads=reloader.counts if reloader else {})
        except _CannotListen as exc:
            log.error("cannot listen on %s%s: %s", exc.address, f" ({exc.setting})" if exc.setting else "", exc.error)
            return 1
        if reloader is not None:
            _start_reloading(reloader, stack, main_thread)
        await stop.wait()
        current = services.settings.server
        if signals[:1] == [signal.SIGTERM] and current.drain_grace > 0:
            log.info("SIGTERM: reporting NOT_SERVING and still answering checks for %.1fs (server.drain_grace)",
                     current.drain_grace)
            await listeners.not_serving()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(hurry.wait(), current.drain_grace)
        log.info("shutting down: draining in-flight checks for up to %.1fs", current.grace_period)
        await stack.aclose()
    log.info("stopped")
    return 0


def _start_reloading(reloader: ConfigReloader, stack: contextlib.AsyncExitStack, main_thread: bool) -> None:
    """SIGHUP reloads (the supervisor starts its workers with SIGHUP blocked: a SIGHUP sent while one started is
    delivered now); the file watch runs in a task; a file changed since it was read is reloaded at once."""
    tasks: set[asyncio.Task[bool]] = set()

    def reload(trigger: str) -> None:
        task = asyncio.ensure_future(reloader.reload(trigger))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    if main_thread:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload, "SIGHUP")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    watch = asyncio.create_task(reloader.watch(), name="config-watch")

    async def stop_reloading() -> None:
        for task in (watch, *tasks):
            task.cancel()
        await asyncio.gather(watch, *tasks, return_exceptions=True)

    stack.push_async_callback(stop_reloading)
    if reloader.changed():
        reload("file changed while starting")


class _CannotListen(Exception):
    def __init__(self, address: str, setting: str, error: Exception) -> None:
        super().__init__(address)
        self.address, self.setting, self.error = address, setting, error


@dataclass
class Listeners:
    """What answers requests in this process, built by :func:`_start_listeners`; a config reload reconfigures it.

    Attributes:
        grpc: the ``envoy.service.auth.v3.Authorization`` servicer.
        health: the ``grpc.health.v1`` servicer.
        http: the HTTP ext_authz listener, or None.
        admin: the registry admin API's servicer (primary process with ``admin.listen``), or None.
        jwks_endpoint: the backend JWT's JWKS endpoint (primary process with ``backend_jwt.jwks_listen``), or None.
        recorders: the front ends' decision recorders.
    """

    grpc: AuthorizationServicer | None = None
    health: health.aio.HealthServicer | None = None
    http: HttpAuthorizationServer | None = None
    admin: RegistryAdminServicer | None = None
    jwks_endpoint: JwksEndpoint | None = None
    recorders: tuple[DecisionRecorder, ...] = ()

    def reconfigure(self, services: Services) -> None:
        """Answer the next requests with the pipeline and settings of ``services`` (just reconfigured)."""
        settings, pipeline = services.settings, services.pipeline
        cache_size = settings.server.decision_cache_size
        if self.grpc is not None:
            self.grpc.reconfigure(pipeline, settings.realm, cache_size)
        if self.http is not None:
            self.http.reconfigure(pipeline, settings.realm, cache_size, route_headers=settings.server.http_route_headers,
                                  grace_period=settings.server.grace_period)
        if self.admin is not None:
            self.admin.reconfigure(settings)
        if self.jwks_endpoint is not None:  # a removed backend_jwt section publishes no key: none may be trusted
            self.jwks_endpoint.publish(services.backend_jwt.jwks() if services.backend_jwt else {"keys": []})
        for recorder in self.recorders:
            recorder.log_decisions(settings.logging.decisions)

    async def not_serving(self) -> None:
        """Report NOT_SERVING on gRPC health and the HTTP probe from now on (checks are still answered)."""
        if self.http is not None:
            self.http.serving = False
        if self.health is not None:
            await self.health.enter_graceful_shutdown()


async def _start_listeners(
    services: Services, listeners: Listeners, stack: contextlib.AsyncExitStack, *, primary: bool, worker_index: int,
    supervised: bool, reloads: Mapping[str, int],
) -> None:
    """Start every listener of this process into ``listeners``, each registered on ``stack`` to stop (the last
    started first).

    Raises:
        _CannotListen: an address cannot be bound (what was started is stopped by ``stack``).
    """
    settings = services.settings
    counting = settings.server.metrics_listen is not None
    grpc_recorder = DecisionRecorder("grpc", settings.logging.decisions, counting)
    http_recorder = DecisionRecorder("http", settings.logging.decisions, counting)
    listeners.recorders = (grpc_recorder, http_recorder)
    try:
        metrics = await start_metrics(settings, MetricSources(listeners.recorders, services.jwks, services.registry,
                                                              reloads), supervised=supervised)
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
        listeners.jwks_endpoint = jwks_endpoint
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
        listeners.http = http_server
        log.info("authz listening on %s:%d (HTTP ext_authz)", http_listen.rpartition(":")[0], http_port)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.server.max_receive_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    listeners.grpc = AuthorizationServicer(services.pipeline, settings.realm, settings.server.decision_cache_size,
                                           grpc_recorder)
    add_to_server(listeners.grpc, server)
    health_servicer = listeners.health = health.aio.HealthServicer()
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

    def grace() -> float:  # the grace period of the config in effect when stopping
        return services.settings.server.grace_period

    # Every listener stops together: one grace period for the whole process, not one per listener.
    stoppers: list[Callable[[], Awaitable[object]]] = [lambda: server.stop(grace())]
    if http_server is not None:
        stoppers.append(http_server.close)

    async def drain() -> None:
        await listeners.not_serving()
        await asyncio.gather(*(stop() for stop in stoppers))

    stack.push_async_callback(drain)
    if primary and settings.admin.listen is not None:
        listeners.admin = RegistryAdminServicer(RegistryAdmin(services.store, settings), explain=lambda request: (
            explainer(services.settings, services.jwks, services.store, services.backend_jwt)(request)))
    try:
        admin_server = await start_admin_server(settings, services.store, servicer=listeners.admin) if primary else None
    except RuntimeError as exc:
        raise _CannotListen(str(settings.admin.listen), "admin.listen", exc) from None
    if admin_server is not None:
        stoppers.append(lambda: admin_server.stop(grace()))
    for name in ("", AUTHORIZATION_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(DURABILITY_SERVICE, durability_status(services.registry))
    services.registry.watch(lambda: asyncio.ensure_future(
        health_servicer.set(DURABILITY_SERVICE, durability_status(services.registry))))
    if http_server is not None:
        http_server.serving = True
    host = settings.server.listen.rpartition(":")[0]
    log.info("authz listening on %s:%d (gRPC envoy.service.auth.v3.Authorization)", host, port)
