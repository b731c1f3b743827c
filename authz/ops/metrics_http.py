"""Serving the metrics on ``server.metrics_listen`` (``GET /metrics``), in each process model.

* One worker: the process serves its own registry (:func:`start_metrics`), updated just before each scrape.
* ``--workers N``: the supervisor owns a fresh multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, handed to the
  workers through their environment), serves the sum of the workers' files (:class:`SupervisedMetrics`, on a thread
  of its own), calls ``mark_process_dead`` for every worker that exits (its ``live*`` gauges leave the sum; its
  counters stay) and removes the directory when it stops. Each worker copies its counters into its files every
  :data:`authz.ops.metrics.UPDATE_INTERVAL` seconds and once more when it stops.

Anything but ``GET /metrics`` (and ``HEAD``) is 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from authz.config import Settings
from authz.ops.http_site import start_site
from authz.ops.metrics import UPDATE_INTERVAL, BuildInfo, Metrics, MetricSources, MetricsUpdater
from authz.ops.supervisor import ENV_MULTIPROC_DIR

log = logging.getLogger("authz.metrics")

METRICS_PATH = "/metrics"


def envoy_mode(settings: Settings) -> str:
    """The ``envoy_mode`` of ``authz_build_info``: ``grpc``, or ``grpc+http`` with ``server.http_listen``."""
    return "grpc+http" if settings.server.http_listen else "grpc"


class MetricsEndpoint:
    """An HTTP/1.1 listener (aiohttp) answering ``GET /metrics`` with ``render()``.

    Args:
        listen: ``host:port`` (port 0 picks a free one; see :attr:`port` after :meth:`start`).
        render: returns the exposition (the Prometheus text format).
    """

    def __init__(self, listen: str, render: Callable[[], bytes]) -> None:
        host, _, port = listen.rpartition(":")
        self._host = host.strip("[]")
        self.port = int(port)
        self._render = render
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._render(), headers={"content-type": CONTENT_TYPE_LATEST})

    async def start(self) -> int:
        """Bind and serve; returns the bound port.

        Raises:
            OSError: the address cannot be bound.
        """
        app = web.Application()
        app.router.add_get(METRICS_PATH, self._metrics)
        self._runner, self.port = await start_site(app, self._host, self.port)
        log.info("metrics at http://%s:%d%s", self._host, self.port, METRICS_PATH)
        return self.port

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class WorkerMetrics:
    """The metrics of one authz process: served by itself, or copied into the multiprocess files for the
    supervisor. Made by :func:`start_metrics`; :meth:`close` it on shutdown."""

    def __init__(self, updater: MetricsUpdater, endpoint: MetricsEndpoint | None,
                 task: asyncio.Task[None] | None) -> None:
        self.updater = updater
        self.endpoint = endpoint
        self._task = task

    async def close(self) -> None:
        """Stop serving or copying, after a last copy (the final counts of a draining worker are kept)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.updater.update()
        if self.endpoint is not None:
            await self.endpoint.close()


async def start_metrics(settings: Settings, sources: MetricSources, *, supervised: bool) -> WorkerMetrics | None:
    """Start the metrics of this process, or nothing when ``server.metrics_listen`` is unset.

    Args:
        settings: the configuration (``server.metrics_listen``, ``server.http_listen``).
        sources: what the metrics are read from.
        supervised: whether this is a worker of ``--workers N`` whose supervisor serves the scrape
            (``PROMETHEUS_MULTIPROC_DIR`` set): then the counters are copied every second instead.
    Returns:
        The started :class:`WorkerMetrics`, or None.
    Raises:
        OSError: ``metrics_listen`` cannot be bound.
    """
    listen = settings.server.metrics_listen
    if listen is None:
        return None
    if supervised and os.environ.get(ENV_MULTIPROC_DIR):
        updater = MetricsUpdater(Metrics(None), sources)
        return WorkerMetrics(updater, None, asyncio.create_task(_copy_every(updater, UPDATE_INTERVAL),
                                                                name="metrics-update"))
    registry = CollectorRegistry()
    updater = MetricsUpdater(Metrics(registry), sources)
    registry.register(BuildInfo(envoy_mode(settings)))

    def render() -> bytes:
        updater.update()
        return generate_latest(registry)

    endpoint = MetricsEndpoint(listen, render)
    await endpoint.start()
    return WorkerMetrics(updater, endpoint, None)


async def _copy_every(updater: MetricsUpdater, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            updater.update()
        except Exception:  # a failed copy must not stop the next ones
            log.exception("metrics update failed")


class SupervisedMetrics:
    """The supervisor's side of multi-worker metrics: the multiprocess directory and the summing endpoint.

    Args:
        listen: ``server.metrics_listen``.
        envoy_mode: for ``authz_build_info``.

    Attributes:
        directory: the fresh multiprocess directory (hand it to the workers as ``PROMETHEUS_MULTIPROC_DIR``).
    """

    def __init__(self, listen: str, envoy_mode: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="authz-metrics-")
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)
        registry.register(BuildInfo(envoy_mode))
        self._endpoint = MetricsEndpoint(listen, lambda: generate_latest(registry))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="metrics", daemon=True)

    def start(self) -> None:
        """Serve the sum on a thread of its own.

        Raises:
            OSError: the address cannot be bound (the directory is removed).
        """
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._endpoint.start(), self._loop).result(10)
        except BaseException:
            self.close()
            raise
        log.info("metrics summed over the workers (multiprocess directory %s)", self.directory)

    def worker_exited(self, pid: int) -> None:
        """A worker exited: its ``live*`` gauges leave the sum (prometheus-client's ``mark_process_dead``)."""
        mark_process_dead(pid, self.directory)

    def close(self) -> None:
        """Stop serving and remove the directory."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._endpoint.close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)
