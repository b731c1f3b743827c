"""Process model: ``authz serve`` with several workers, one port each, under a supervisor.

Envoy keeps one HTTP/2 connection per endpoint of a cluster (per Envoy worker thread), so several processes
sharing one port with SO_REUSEPORT would not share the load evenly: each worker gets a port of its own,
``server.listen``'s port + its index (9191, 9192, ...), and the Envoy cluster lists them all as endpoints
(``authz envoy-config`` lists them: :func:`authz.ops.envoy_config.authz_endpoints`).

The supervisor starts the workers as child processes (``authz serve --worker-index I``), restarts a worker
that dies, forwards SIGTERM/SIGINT to all workers at once (each drains, :func:`authz.ops.server.serve`, and exits
0) and SIGHUP (each worker reloads the config in-process, :mod:`authz.ops.reload`: no process stops, no connection
is refused), and exits 1 when workers keep crashing. Workers start with SIGHUP blocked until they can reload, so a
SIGHUP sent while one starts is delivered once it can act on it.

With ``server.metrics_listen`` set, the supervisor serves the metrics summed over its workers
(:class:`authz.ops.metrics_http.SupervisedMetrics`): the workers get its multiprocess directory in
``PROMETHEUS_MULTIPROC_DIR``, and every worker that exits is marked dead there.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

log = logging.getLogger("authz.supervisor")

ENV_WORKER_INDEX = "AUTHZ_WORKER_INDEX"
ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess directory, handed to the workers when the metrics are served."""


class WorkerMetrics(Protocol):
    """What the supervisor needs of the summed metrics (:class:`authz.ops.metrics_http.SupervisedMetrics`)."""

    directory: str

    def start(self) -> None: ...

    def worker_exited(self, pid: int) -> None: ...

    def close(self) -> None: ...


def worker_listen(listen: str, index: int) -> str:
    """The listen address of worker ``index``: the port of ``listen`` plus ``index``.

    Args:
        listen: ``host:port`` of ``server.listen``.
        index: worker index, 0-based.
    Returns:
        ``host:port+index``.
    Raises:
        ValueError: the resulting port is above 65535.
    """
    host, _, port = listen.rpartition(":")
    value = int(port) + index
    if value > 65535:
        raise ValueError(f"worker {index} would listen on port {value}, above 65535")
    return f"{host}:{value}"


class Supervisor:
    """Runs and watches ``workers`` worker processes.

    Args:
        command: the worker command for an index (e.g. ``[python, -m, authz, serve, --config, F, --worker-index, I]``).
        listen: ``server.listen``; worker I gets :func:`worker_listen` of it through ``AUTHZ_LISTEN``.
        workers: number of workers (>= 1).
        grace_period: seconds a worker gets to stop (its ``server.drain_grace`` + ``server.grace_period``) before
            SIGKILL, counted from the stop signal, plus 5.
        reloaded_grace: on SIGHUP, the ``grace_period`` of the reloaded config (None: the file is invalid); a
            larger one replaces ``grace_period``, so that workers which reloaded a longer drain are not killed
            while draining (a smaller one does not: a worker may have rejected the file and kept its longer one).
        max_restarts: most unexpected exits tolerated within ``restart_window`` seconds; one more and the
            supervisor stops everything and exits 1.
        restart_window: seconds.
        metrics: the summed metrics, served while the supervisor runs; None without ``server.metrics_listen``.
    """

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        listen: str,
        workers: int,
        *,
        grace_period: float = 5.0,
        reloaded_grace: Callable[[], float | None] | None = None,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._command = command
        self._listen = listen
        self._count = workers
        self._grace = grace_period
        self._reloaded_grace = reloaded_grace
        self._max_restarts = max_restarts
        self._window = restart_window
        self._metrics = metrics
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._crashes: deque[float] = deque()
        self._stopping = False
        self._stop_signal = signal.SIGTERM
        self._reloads = 0

    def _start(self, index: int) -> None:
        env = {**os.environ, "AUTHZ_LISTEN": worker_listen(self._listen, index), ENV_WORKER_INDEX: str(index)}
        if self._metrics is not None:
            env[ENV_MULTIPROC_DIR] = self._metrics.directory
        # The worker inherits the blocked SIGHUP and unblocks it once it can reload (authz.ops.server.serve).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            self._procs[index] = subprocess.Popen(list(self._command(index)), env=env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        log.info("worker %d started (pid %d) on %s", index, self._procs[index].pid, env["AUTHZ_LISTEN"])

    def _stop_workers(self, signum: int) -> list[int | None]:
        """Send ``signum`` to every live worker at once (they drain together), then wait for each; a worker
        still running ``grace_period`` + 5 s later is killed. Returns their exit statuses."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)
        deadline = time.monotonic() + self._grace + 5
        codes = []
        for index, proc in self._procs.items():
            try:
                code = proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not drain in time; killing it", index)
                proc.kill()
                code = proc.wait()
            self._exited(proc)
            codes.append(code)
        return codes

    def _exited(self, proc: subprocess.Popen[bytes]) -> None:
        if self._metrics is not None:
            self._metrics.worker_exited(proc.pid)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self._reloads += 1
        else:
            self._stopping = True
            self._stop_signal = signum

    def _forward_reload(self) -> None:
        log.info("SIGHUP: the %d workers reload the config", self._count)
        grace = self._reloaded_grace() if self._reloaded_grace is not None else None
        if grace is not None and grace > self._grace:
            log.info("workers now get %.1fs to drain before SIGKILL (+5s)", grace)
            self._grace = grace
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGHUP)

    def run(self) -> int:
        """Start the workers and supervise them until SIGTERM/SIGINT.

        Returns:
            0 when every worker drained and exited 0; 1 when workers kept crashing or a worker failed to exit cleanly.
        """
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # blocked by `authz serve` until now
        if self._metrics is not None:
            try:
                self._metrics.start()
            except OSError as exc:
                log.error("cannot serve the metrics (server.metrics_listen): %s", exc)
                return 1
        try:
            return self._supervise()
        finally:
            if self._metrics is not None:
                self._metrics.close()

    def _supervise(self) -> int:
        for index in range(self._count):
            self._start(index)
        status = 0
        while not self._stopping:
            if self._reloads:
                self._reloads = 0
                self._forward_reload()
            for index, proc in list(self._procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                self._exited(proc)
                now = time.monotonic()
                self._crashes.append(now)
                while self._crashes and now - self._crashes[0] > self._window:
                    self._crashes.popleft()
                if len(self._crashes) > self._max_restarts:
                    log.error("workers keep crashing (%d exits in %.0fs); giving up", len(self._crashes), self._window)
                    self._stopping = True
                    status = 1
                    break
                log.warning("worker %d exited with %s; restarting it", index, code)
                self._start(index)
            time.sleep(0.2)
        log.info("stopping %d workers (%s)", self._count, signal.Signals(self._stop_signal).name)
        codes = self._stop_workers(self._stop_signal)
        if status == 0 and any(code not in (0, None) for code in codes):
            status = 1
        return status


def default_workers() -> int:
    """The number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_command(config: str, log_level: str) -> Callable[[int], list[str]]:
    """The ``authz serve`` command line of worker I."""
    return lambda index: [sys.executable, "-m", "authz", "serve", "--config", config, "--log-level", log_level,
                          "--worker-index", str(index)]
