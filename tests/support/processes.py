"""``authz serve`` in a subprocess, for tests of the server, the process model and end-to-end flows."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from authz.dev.procs import ManagedProcess
from authz.ops.health import wait_serving
from authz.ops.supervisor import worker_listen
from authz.registry.admin import RegistryAdmin
from tests.support.registry import run_admin


class AuthzProcess:
    """``authz serve`` in a subprocess with a config file written from a settings document."""

    def __init__(self, doc: dict[str, Any], tmp: Path) -> None:
        # A test that replaces the whole server section of settings_dict gets its "no drain grace" too.
        doc["server"].setdefault("drain_grace", 0)
        self.doc = doc
        self.config = tmp / "authz.yaml"
        self.config.write_text(yaml.safe_dump(doc), encoding="utf-8")
        self.listen = doc["server"]["listen"]
        self.port = int(self.listen.rsplit(":", 1)[1])
        self.proc = ManagedProcess(
            [sys.executable, "-m", "authz", "serve", "--config", str(self.config), "--log-level", "info"],
            name="authz", log_dir=tmp,
        )

    def start(self) -> AuthzProcess:
        self.proc.start()
        wait_serving(self.listen, timeout=20)
        return self

    def stop(self) -> int | None:
        return self.proc.stop()

    def log_text(self) -> str:
        return self.proc.log_text()


def serve_config(config: Path, log_dir: Path, name: str, listen: str, workers: int = 1) -> ManagedProcess:
    """``authz serve --config CONFIG`` (``workers`` from the file) started and SERVING on every worker's port.

    Args:
        config: the config file.
        log_dir: where the process log goes.
        name: the process name (log file).
        listen: the file's ``server.listen`` (worker I serves on its port + I).
        workers: the file's ``server.workers``.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("AUTHZ_LISTEN", "PROMETHEUS_MULTIPROC_DIR")}
    proc = ManagedProcess([sys.executable, "-m", "authz", "serve", "--config", str(config)], name=name,
                          log_dir=log_dir, env=env, inherit_env=False).start()
    for index in range(workers):
        wait_serving(worker_listen(listen, index), timeout=30)
    return proc


def seed_demo_app(doc: dict[str, Any]) -> None:
    """Register Demo App (``demo``) with client ``demo-client``, subscribed to ``orders-v1``, in ``doc``'s
    registry."""
    async def seed(admin: RegistryAdmin) -> None:
        await admin.create_application("Demo App", app_id="demo")
        await admin.add_client("demo", "demo-client")
        await admin.subscribe("demo", "orders-v1")

    run_admin(doc, seed)


def children(pid: int) -> list[int]:
    """The process IDs of ``pid``'s children (a supervisor's workers), sorted; [] once it is gone (Linux)."""
    try:
        return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return []


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``predicate`` every 50 ms until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
