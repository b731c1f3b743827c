"""Test process helpers: real redis-server, real subprocesses, real Envoy."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request

import pytest
import redis

from authz.dev.procs import ManagedProcess, RedisServer, free_port, start_envoy, wait_for_port
from authz.dev.upstream import EchoUpstream
from tests.support.e2e import write_gateway_config


def test_free_port_is_bindable():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_for_port_times_out_with_message():
    port = free_port()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
        wait_for_port("127.0.0.1", port, timeout=0.3)


def test_redis_start_kill_restart():
    server = RedisServer()
    try:
        server.start()
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = server.client(socket_timeout=1)
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert server.kill() == -9
        assert not server.alive()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.restart()
        assert server.alive()
        assert client.ping() is True
        assert client.get("k") is None  # no persistence
        client.close()
        assert "Ready to accept connections" in server.log_text()
        assert server.stop() == 0
    finally:
        server.cleanup()


def test_managed_process_logs_and_stop(tmp_path):
    port = free_port()
    code = (
        "import socket,sys,time;s=socket.socket();s.bind(('127.0.0.1',int(sys.argv[1])));s.listen();"
        "print('hello', flush=True);print('err', file=sys.stderr, flush=True);time.sleep(60)"
    )
    with ManagedProcess([sys.executable, "-c", code, str(port)], env={"X": "1"}, name="py") as proc:
        proc.wait_port("127.0.0.1", port, timeout=10)
        assert proc.alive()
        assert "hello" in proc.log_text() and "err" in proc.log_text()
        assert proc.stop(timeout=5) == -15
        assert not proc.alive()


def test_managed_process_early_exit_is_reported():
    proc = ManagedProcess([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], name="early")
    proc.start()
    with pytest.raises(RuntimeError, match="exited with 3"):
        proc.wait_port("127.0.0.1", free_port(), timeout=10)
    assert proc.stop() == 3
    assert "boom" in proc.log_text()
    proc.cleanup()


def test_two_envoys_run_side_by_side_and_proxy(tmp_path):
    """start_envoy works, twice at once (no shared-memory/base-id clash with --disable-hot-restart)."""
    upstream = EchoUpstream()
    upstream.start()
    envoys = []
    try:
        doc = {  # authz is never started: nothing listens on server.listen
            "server": {"listen": f"127.0.0.1:{free_port()}"},
            "key_managers": [{"name": "km", "issuer": "http://127.0.0.1:9", "jwks_uri": "http://127.0.0.1:9/jwks",
                              "audiences": ["a"]}],
            "apis": [{"id": "orders-v1", "name": "Orders", "context": "/orders/v1", "resources": [{"path": "/x"}]}],
        }
        for i in range(2):
            cfg = tmp_path / f"envoy{i}.yaml"
            listen, admin = write_gateway_config(cfg, doc, upstream.port, failure_mode_allow=True)
            envoys.append((start_envoy(cfg, tmp_path / f"logs{i}", admin_port=admin), listen))
        for proc, listen in envoys:
            assert proc.alive()
            # authz is down and failure_mode_allow is on, so the request reaches the echo upstream.
            with urllib.request.urlopen(f"http://127.0.0.1:{listen}/orders/v1/x", timeout=10) as resp:
                assert resp.status == 200
                assert json.loads(resp.read())["path"] == "/orders/v1/x"
    finally:
        for proc, _ in envoys:
            assert proc.stop(timeout=10) == 0
        upstream.stop()
