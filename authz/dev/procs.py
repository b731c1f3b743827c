"""Process helpers for the dev stack and the test suite: free ports, redis-server, managed subprocesses, Envoy.

Everything here runs real binaries on loopback. Missing binaries fail loudly (RuntimeError), never skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
import yaml

from authz.dev.envoy_bin import envoy_binary

REDIS_MISSING = (
    "redis-server not found: install it with `sudo apt-get install -y redis-server` "
    "(or run `make test`, which installs it)"
)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until a TCP connect to ``host:port`` succeeds.

    Raises:
        TimeoutError: nothing accepted a connection within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last_error = exc
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.1f}s (last error: {last_error})")


_SIGTERM = signal.SIGTERM  # the default of ManagedProcess.stop, whose class has a method named ``signal``


class ManagedProcess:
    """A subprocess whose stdout and stderr go to a log file in its own temporary directory.

    Args:
        cmd: the command and its arguments.
        env: extra environment variables, merged over ``os.environ`` (unless ``inherit_env`` is False).
        name: label used in the log file name and error messages.
        cwd: working directory (default: the current one).
        log_dir: directory for the log file (default: a fresh temporary directory).
        inherit_env: start from ``os.environ`` when True.

    Use as a context manager (``with ManagedProcess([...]) as p:``) or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        cmd: Sequence[str | os.PathLike[str]],
        env: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        inherit_env: bool = True,
    ) -> None:
        self.cmd = [str(c) for c in cmd]
        self.name = name or Path(self.cmd[0]).name
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self.cwd = cwd
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"authz-{self.name}-")
            log_dir = self._tmp.name
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    def start(self) -> ManagedProcess:
        """Start the process (new session, so signals don't reach the test runner). Returns self.

        Raises:
            RuntimeError: already running.
        """
        if self.alive():
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self.returncode = None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        """The OS process id, or None before start."""
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        """True while the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """Everything the process wrote so far (stdout and stderr, decoded leniently)."""
        try:
            return self.log_path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_port(self, host: str, port: int, timeout: float = 10.0) -> None:
        """Wait until ``host:port`` accepts connections while the process stays alive.

        Raises:
            RuntimeError: the process exited first (message includes the log tail).
            TimeoutError: the port did not open in ``timeout`` seconds (message includes the log tail).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.exit_code()} before {host}:{port} opened\n"
                                   f"{self._tail()}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on {host}:{port} within {timeout:.1f}s\n{self._tail()}")

    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else None (negative = killed by that signal)."""
        if self.proc is None:
            return self.returncode
        return self.proc.poll()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process if it is running."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> int | None:
        """SIGKILL the process and reap it. Returns its exit code (None if never started)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.kill()
        self.returncode = self.proc.wait()
        return self.returncode

    def stop(self, timeout: float = 10, sig: int = _SIGTERM) -> int | None:
        """``sig`` (default SIGTERM), wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code (None
        if never started)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.returncode = self.proc.wait()
        return self.returncode

    def _tail(self, lines: int = 40) -> str:
        text = self.log_text().splitlines()[-lines:]
        return f"--- last {len(text)} log lines of {self.name} ({self.log_path}) ---\n" + "\n".join(text)

    def cleanup(self) -> None:
        """Stop the process and remove the temporary log directory (if this object created it)."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ManagedProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_server_binary() -> str:
    """Path of ``redis-server``. Raises RuntimeError with the install hint when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    raise RuntimeError(REDIS_MISSING)


DURABLE_REDIS_ARGS = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")
"""The persistence of every Redis the project starts for keeps (``make run``; docker-compose and the Kubernetes
manifests use the same settings): the append-only file, flushed to disk before each write is acknowledged, so
a crash of Redis or of its host loses no acknowledged write. Registry writes are rare and checks read through a
local cache, so the fsync costs the hot path nothing. See docs/operations.md, "Durability"."""

EPHEMERAL_REDIS_ARGS = ("--appendonly", "no", "--save", "")
"""No persistence at all: a restart starts empty (the test suite's throwaway servers)."""


class RedisServer:
    """A private real ``redis-server`` on 127.0.0.1, in ``data_dir`` (default: a temporary one).

    Args:
        port: the TCP port (default: a free one).
        data_dir: where its files go.
        persist: keep every acknowledged write (:data:`DURABLE_REDIS_ARGS`, the dev stack's settings); else no
            persistence (:data:`EPHEMERAL_REDIS_ARGS`).

    Raises RuntimeError on construction when redis-server is not installed (the suite must fail loudly).
    The port is chosen once, so :meth:`restart` comes back on the same port and :attr:`url` stays valid.
    """

    def __init__(
        self, port: int | None = None, data_dir: str | os.PathLike[str] | None = None, persist: bool = False
    ) -> None:
        self.binary = redis_server_binary()
        self._port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="authz-redis-")
            data_dir = self._tmp.name
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.persist = persist
        self._proc: ManagedProcess | None = None

    @property
    def port(self) -> int:
        """The TCP port."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self._port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new synchronous redis-py client for this server (caller closes it)."""
        return redis.Redis.from_url(self.url, **kwargs)

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start redis-server and wait until it answers PING. Returns self.

        Raises:
            RuntimeError: the process exited early (log tail in the message).
            TimeoutError: no PONG within ``timeout`` seconds.
        """
        if self._proc is not None and self._proc.alive():
            raise RuntimeError(f"redis-server already running on port {self._port}")
        # Data left by a run without the append-only file (dump.rdb, no appendonlydir/): Redis started with AOF on
        # would ignore it, so load it first and switch AOF on at run time (Redis writes the AOF from it).
        migrate = self.persist and (self.dir / "dump.rdb").exists() and not (self.dir / "appendonlydir").exists()
        args = DURABLE_REDIS_ARGS if self.persist and not migrate else EPHEMERAL_REDIS_ARGS
        cmd = [
            self.binary,
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            *args,
            "--dir", str(self.dir),
            "--daemonize", "no",
        ]
        self._proc = ManagedProcess(cmd, name="redis-server", log_dir=self.dir)
        self._proc.start()
        self._wait_ping(timeout)
        if migrate:
            self._enable_aof(timeout)
        return self

    def _enable_aof(self, timeout: float) -> None:
        """Switch the append-only file on in the running server and wait until Redis has written it."""
        with self.client(socket_timeout=timeout) as client:
            client.config_set("appendonly", "yes")
            client.config_set("appendfsync", "always")
            deadline = time.monotonic() + timeout
            while True:
                info = client.info("persistence")
                if info.get("aof_enabled") == 1 and not info.get("aof_rewrite_in_progress") and not info.get(
                        "aof_rewrite_scheduled"):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {self._port} did not write its AOF in {timeout:.1f}s")
                time.sleep(0.05)

    def _wait_ping(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self._proc.alive():
                raise RuntimeError(f"redis-server exited with {self._proc.exit_code()}\n{self._proc._tail()}")
            client = redis.Redis(host="127.0.0.1", port=self._port, socket_timeout=0.5, socket_connect_timeout=0.5)
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:
                last = exc
            finally:
                client.close()
            time.sleep(0.05)
        self._proc.kill()
        raise TimeoutError(f"redis-server on port {self._port} did not answer PING in {timeout:.1f}s ({last})")

    def alive(self) -> bool:
        """True while the redis-server process runs."""
        return self._proc is not None and self._proc.alive()

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM (then SIGKILL after ``timeout``) and reap. Returns the exit code."""
        return self._proc.stop(timeout) if self._proc else None

    def kill(self) -> int | None:
        """SIGKILL, for outage tests. Returns the exit code (-9)."""
        return self._proc.kill() if self._proc else None

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Stop (if running) and start again on the same port (data kept only with ``persist``). Returns self."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:  # the port can linger a moment after a kill
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("127.0.0.1", self._port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        return self.start(timeout)

    def log_text(self) -> str:
        """redis-server's log output so far (kept across restarts)."""
        return self._proc.log_text() if self._proc else ""

    def cleanup(self) -> None:
        """Stop the server and delete its temporary directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        if not self.alive():
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def envoy_admin_port(config_path: str | os.PathLike[str]) -> int:
    """Read ``admin.address.socket_address.port_value`` from an Envoy bootstrap YAML file.

    Raises:
        ValueError: the file has no admin port.
    """
    config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    try:
        return int(config["admin"]["address"]["socket_address"]["port_value"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{config_path}: no admin.address.socket_address.port_value") from exc


def envoy_ready(admin_port: int, host: str = "127.0.0.1") -> bool:
    """True when Envoy's admin ``/ready`` answers 200 ``LIVE``."""
    try:
        with urllib.request.urlopen(f"http://{host}:{admin_port}/ready", timeout=1) as resp:
            return resp.status == 200 and resp.read().strip() == b"LIVE"
    except (urllib.error.URLError, OSError):
        return False


def start_envoy(
    config_path: str | os.PathLike[str],
    log_dir: str | os.PathLike[str],
    admin_port: int | None = None,
    timeout: float = 30.0,
    log_level: str = "warn",
) -> ManagedProcess:
    """Start the wheel's Envoy on ``config_path`` and wait until admin ``/ready`` answers ``LIVE``.

    Runs ``envoy -c CONFIG --disable-hot-restart --concurrency 1 --log-level warn``. With hot restart
    disabled Envoy 1.40 creates no shared-memory region, so several Envoys can run side by side without a
    ``--base-id``.

    Args:
        config_path: bootstrap YAML.
        log_dir: directory for ``envoy.log`` (stdout incl. access log, and stderr).
        admin_port: admin port; read from the config file when None.
        timeout: seconds to wait for readiness.
        log_level: Envoy ``--log-level``.

    Returns:
        The running :class:`ManagedProcess` (stop it with ``.stop()``).

    Raises:
        RuntimeError: Envoy exited early or the binary is missing (log tail in the message).
        TimeoutError: not ready within ``timeout`` (Envoy is killed; log tail in the message).
    """
    port = admin_port if admin_port is not None else envoy_admin_port(config_path)
    cmd = [
        str(envoy_binary()),
        "-c", str(config_path),
        "--disable-hot-restart",
        "--concurrency", "1",
        "--log-level", log_level,
    ]
    proc = ManagedProcess(cmd, name="envoy", log_dir=log_dir).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"envoy exited with {proc.exit_code()} before becoming ready\n{proc._tail()}")
        if envoy_ready(port):
            return proc
        time.sleep(0.1)
    proc.signal(signal.SIGTERM)
    proc.stop(timeout=5)
    raise TimeoutError(f"envoy admin /ready on port {port} not LIVE within {timeout:.0f}s\n{proc._tail()}")
