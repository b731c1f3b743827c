"""Process wiring: serve the services of :mod:`authz.ops.services` over gRPC (grpc.aio) and HTTP/1.1.

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
from dataclasses import dataclass

import grpc
from envoy.service.auth.v3 import external_auth_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from authz.admin.service import RegistryAdminServicer, start_admin_server
from authz.config import Settings
from authz.decide.record import DecisionRecorder
from authz.envoy.grpc_service import AuthorizationServicer, add_to_server
from authz.envoy.http_service import HttpAuthorizationServer, limits_for
from authz.ops.jwks_endpoint import JwksEndpoint
from authz.ops.metrics import MetricSources
from authz.ops.metrics_http import start_metrics
from authz.ops.reload import ConfigReloader
from authz.ops.services import Services, build_services, explainer
from authz.ops.supervisor import worker_listen
from authz.registry.admin import RegistryAdmin
from authz.registry.cache import RegistryCache
from authz.registry.durability import AT_RISK, DURABLE

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
