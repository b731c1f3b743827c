"""Metrics of a real `authz serve`: one scrape sums every worker of `--workers 2`; one worker serves its own."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc

from authz.dev.keymanager import KeyManager
from authz.dev.procs import ManagedProcess, RedisServer, free_port
from authz.ops.health import wait_serving
from authz.ops.supervisor import worker_listen
from tests.support.config import free_consecutive_ports, settings_dict
from tests.support.metrics import sample, scrape, wait_for
from tests.support.processes import children, seed_demo_app, serve_config

CHECKS = "authz_checks_total"


def _check(target: str, token: str | None) -> int:
    req = pb.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", "/orders/v1/items", "api.example.test"
    if token:
        http.headers["authorization"] = f"Bearer {token}"
    req.attributes.context_extensions["api_id"] = "orders-v1"
    with grpc.insecure_channel(target) as channel:
        return external_auth_pb2_grpc.AuthorizationStub(channel).Check(req, timeout=10).status.code


@pytest.fixture
def serve(idp: KeyManager, redis_server: RedisServer, key_prefix: str,
          tmp_path: Path) -> Iterator[Callable[..., tuple[ManagedProcess, dict[str, Any]]]]:
    started: list[ManagedProcess] = []

    def start(workers: int, **overrides: Any) -> tuple[ManagedProcess, dict[str, Any]]:
        doc = settings_dict(idp, redis_server.url, key_prefix, **overrides)
        doc["server"].update(listen=f"127.0.0.1:{free_consecutive_ports()}", metrics_listen=f"127.0.0.1:{free_port()}",
                             workers=workers)
        seed_demo_app(doc)
        config = tmp_path / f"authz{len(started)}.yaml"
        config.write_text(yaml.safe_dump(doc), encoding="utf-8")
        proc = serve_config(config, tmp_path, f"authz{len(started)}", doc["server"]["listen"], workers)
        started.append(proc)
        return proc, doc

    yield start
    for proc in started:
        proc.stop(timeout=20)


def test_one_scrape_sums_the_checks_of_both_workers_and_keeps_a_dead_workers_counts(serve, idp: KeyManager) -> None:  # noqa: ANN001
    proc, doc = serve(2, logging={"format": "json", "decisions": "denies"})
    url = f"http://{doc['server']['metrics_listen']}/metrics"
    w0, w1 = (worker_listen(doc["server"]["listen"], i) for i in range(2))
    token = idp.issue_token("demo-client", "alice", "orders:read")
    allow = {"mode": "grpc", "api": "orders-v1", "result": "allow", "code": "ok"}
    missing = {"mode": "grpc", "api": "orders-v1", "result": "deny", "code": "900902"}

    assert [_check(w0, token) for _ in range(5)] == [0] * 5
    assert [_check(w1, token) for _ in range(3)] == [0] * 3
    assert [_check(w1, None) for _ in range(2)] == [16, 16]
    # 5 of the allows were answered by worker 0 and 3 by worker 1: only the sum over both reaches 8.
    samples = wait_for(url, lambda s: sample(s, CHECKS, **allow) == 8 and sample(s, CHECKS, **missing) == 2)
    assert sample(samples, "authz_check_duration_seconds_count", mode="grpc") == 10
    assert sample(samples, "authz_cache_entries", cache="tokens") == 2  # one cached token in each worker
    assert sample(samples, "authz_cache_misses_total", cache="tokens") == 2
    assert sample(samples, "authz_jwks_fetches_total", key_manager="test-km", outcome="ok") == 2
    assert sample(samples, "authz_jwks_keys", key_manager="test-km") == 1
    build = [labels for (name, labels), value in samples.items() if name == "authz_build_info" and value == 1]
    assert len(build) == 1 and dict(build[0])["envoy_mode"] == "grpc" and dict(build[0])["python"] == (
        ".".join(map(str, sys.version_info[:3])))

    # The counters keep moving as calls run.
    assert [_check(w0, token) for _ in range(4)] == [0] * 4
    wait_for(url, lambda s: sample(s, CHECKS, **allow) == 12)

    # A worker killed outright: its counts stay in the sum, its live gauges leave it (mark_process_dead).
    workers = sorted(children(proc.pid))
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while len(set(children(proc.pid)) - set(workers)) != 1:
        assert time.monotonic() < deadline, "the killed worker was not restarted"
        time.sleep(0.1)
    for index in range(2):
        wait_serving(worker_listen(doc["server"]["listen"], index), timeout=30)
    samples = wait_for(url, lambda s: sample(s, "authz_cache_entries", cache="tokens") == 1)
    assert sample(samples, CHECKS, **allow) == 12
    assert [_check(w1, token) for _ in range(2)] == [0, 0]
    wait_for(url, lambda s: sample(s, CHECKS, **allow) == 14)

    # SIGTERM: the workers drain, the supervisor exits 0 and removes its multiprocess directory.
    directory = re.search(r"multiprocess directory (\S+?)\)", proc.log_text())
    assert directory is not None and Path(directory.group(1)).is_dir()
    proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while proc.alive():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert proc.exit_code() == 0
    assert not Path(directory.group(1)).exists()

    # logging.format json: every line the supervisor and its workers wrote is one JSON object.
    lines = [line for line in proc.log_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert {r["logger"] for r in records} >= {"authz.supervisor", "authz.server", "authz.decisions"}
    denials = [r for r in records if r.get("event") == "decision"]
    assert len(denials) == 2 and {(r["code"], r["phase"], r["result"]) for r in denials} == {
        ("900902", "credentials", "deny")}


def test_a_single_worker_serves_its_own_metrics_fresh_at_each_scrape(serve, idp: KeyManager) -> None:  # noqa: ANN001
    _, doc = serve(1)
    base = f"http://{doc['server']['metrics_listen']}"
    listen = doc["server"]["listen"]
    token = idp.issue_token("demo-client", "alice", "orders:read")
    before = scrape(f"{base}/metrics")
    assert sample(before, CHECKS, mode="grpc", api="orders-v1", result="allow", code="ok") is None
    assert [_check(listen, token) for _ in range(3)] == [0, 0, 0]
    samples = scrape(f"{base}/metrics")  # no waiting: the process copies its counters when scraped
    assert sample(samples, CHECKS, mode="grpc", api="orders-v1", result="allow", code="ok") == 3
    # The second and third checks were answered from the caches: the decision memo hit twice.
    assert sample(samples, "authz_cache_hits_total", cache="decisions") == 2
    assert sample(samples, "authz_redis_stale_seconds") == 0
    assert httpx.get(f"{base}/other", timeout=5).status_code == 404
