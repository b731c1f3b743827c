"""`authz serve --workers N`: one port per worker, restart on death, drain on SIGTERM, SIGHUP forwarded (tests/test_reload.py)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest
import yaml

from authz.dev.keymanager import KeyManager
from authz.dev.procs import ManagedProcess, RedisServer
from authz.ops.health import wait_serving
from authz.ops.supervisor import worker_listen
from tests.support.config import free_consecutive_ports, settings_dict
from tests.support.processes import children, wait_until


@pytest.fixture
def supervised(idp: KeyManager, redis_server: RedisServer, key_prefix: str, tmp_path: Path):  # noqa: ANN201
    started: list[ManagedProcess] = []

    def start(workers: int = 2, port: int | None = None) -> tuple[ManagedProcess, str]:
        doc = settings_dict(idp, redis_server.url, key_prefix)
        doc["server"]["listen"] = f"127.0.0.1:{port or free_consecutive_ports()}"
        config = tmp_path / f"sup{len(started)}.yaml"
        config.write_text(yaml.safe_dump(doc), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "AUTHZ_LISTEN"}
        proc = ManagedProcess([sys.executable, "-m", "authz", "serve", "--config", str(config), "--workers",
                               str(workers)], name=f"supervisor{len(started)}", log_dir=tmp_path, env=env,
                              inherit_env=False)
        started.append(proc.start())
        return proc, doc["server"]["listen"]

    yield start
    for proc in started:
        proc.stop(timeout=20)


def test_worker_ports_count_up_from_the_listen_port() -> None:
    assert worker_listen("127.0.0.1:9191", 0) == "127.0.0.1:9191"
    assert worker_listen("127.0.0.1:9191", 3) == "127.0.0.1:9194"
    with pytest.raises(ValueError):
        worker_listen("127.0.0.1:65535", 1)


def test_each_worker_serves_on_its_own_port_and_a_dead_worker_is_restarted(supervised) -> None:  # noqa: ANN001
    proc, listen = supervised(workers=2)
    for i in range(2):
        wait_serving(worker_listen(listen, i), timeout=30)
    wait_until(lambda: len(children(proc.pid)) == 2)
    before = set(children(proc.pid))
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(set(children(proc.pid)) - before) == 1 and victim not in children(proc.pid))
    for i in range(2):
        wait_serving(worker_listen(listen, i), timeout=30)
    proc.signal(signal.SIGTERM)
    wait_until(lambda: not proc.alive(), timeout=30)
    assert proc.exit_code() == 0
    assert not any(Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
                   for pid in before - {victim})


def test_workers_that_keep_crashing_make_the_supervisor_exit_1(supervised) -> None:  # noqa: ANN001
    port = free_consecutive_ports()
    with socket.socket() as squatter:  # worker 1's port is taken: it exits 1 at every start
        squatter.bind(("127.0.0.1", port + 1))
        squatter.listen()
        proc, _ = supervised(workers=2, port=port)
        wait_until(lambda: not proc.alive(), timeout=60)
    assert proc.exit_code() == 1
    assert "workers keep crashing" in proc.log_text()
