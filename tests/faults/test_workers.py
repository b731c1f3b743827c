"""Restarts without a failed request: ``authz serve --workers 2`` behind real Envoys (both ext_authz modes) at about
200 requests per second while one worker is killed (``kill -9``), stopped (SIGTERM: NOT_SERVING, ``drain_grace``,
then drain) or the supervisor reloads its config (SIGHUP); and ``authz serve`` with one worker reloading on SIGHUP.

Each proves: 0 failed requests (every answer is a decision authz made: Envoy retries a refused or reset call on
the other worker, a stopping worker leaves the rotation before it stops accepting), 0 wrong allows, and after a
reload the new config decides.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from authz.config.sections import ServerSettings
from authz.dev.keymanager import KeyManager
from authz.dev.procs import RedisServer
from authz.dev.upstream import EchoUpstream
from tests.faults.load import Tally, driving, report
from tests.faults.stack import (
    Authz,
    Gateway,
    basic_mix,
    config_doc,
    key_manager,
    seed,
    serving,
    valid,
)
from tests.support.e2e import drop_keys

pytestmark = pytest.mark.e2e

DRAIN_GRACE = ServerSettings().drain_grace
"""The default (5 s): longer than Envoy needs to see a NOT_SERVING worker fail 2 health checks 2 s apart."""

@dataclass
class Workers:
    km: KeyManager
    authz: Authz
    gateways: dict[str, Gateway]
    tmp: Path


@pytest.fixture(scope="module")
def workers(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    tmp = tmp_path_factory.mktemp("faults-workers")
    km, upstream = key_manager(), EchoUpstream()
    upstream.start()
    doc = config_doc(km, redis_server.url, "faults-workers:", workers=2, drain_grace=DRAIN_GRACE)
    seed(doc)
    try:
        with serving(tmp, doc, upstream.port, ("grpc", "http")) as (authz, gateways):
            yield Workers(km, authz, gateways, tmp)
    finally:
        upstream.stop()
        km.stop()
        drop_keys(redis_server, "faults-workers:")


def _ready(w: Workers, mode: str) -> Gateway:
    """Both workers serving and healthy in the Envoy of ``mode`` (a previous scenario's worker is back)."""
    w.authz.wait_serving()
    g = w.gateways[mode]
    g.wait_healthy(2)
    return g


def _assert_clean(tally: Tally, sent: int) -> None:
    assert tally.sent >= sent * 0.9, tally.sent  # the load ran (bounded by count and time)
    assert tally.wrong_allows == 0
    assert tally.failed == 0, tally.failures()
    assert tally.denied() == {401: tally.count("denied")}  # the forged token, and nothing else denied
    assert tally.count("allowed", "valid") == len(tally.select("valid"))


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_kill_9_of_one_of_two_workers_fails_no_request(workers: Workers, mode: str, record_property) -> None:  # noqa: ANN001
    g = _ready(workers, mode)
    victim = workers.authz.worker_pids()[0]
    with driving(g.url, basic_mix(workers.km), seconds=3) as tally:
        time.sleep(1)
        os.kill(victim, signal.SIGKILL)
    report(tally, f"kill-9-worker-{mode}", record_property)
    _assert_clean(tally, 600)
    assert victim not in workers.authz.worker_pids()  # the supervisor replaced it


def test_sigterm_of_one_of_two_workers_fails_no_request(workers: Workers, record_property) -> None:  # noqa: ANN001
    g = _ready(workers, "http")
    victim = workers.authz.worker_pids()[0]
    flags: list[list[str]] = []
    with driving(g.url, basic_mix(workers.km), seconds=DRAIN_GRACE + 2.5) as tally:
        time.sleep(1)
        os.kill(victim, signal.SIGTERM)
        stopping = time.monotonic()
        while time.monotonic() - stopping < DRAIN_GRACE - 0.5:  # the worker still accepts: NOT_SERVING only
            flags.append(g.health_flags())
            time.sleep(0.2)
    report(tally, "sigterm-worker", record_property)
    _assert_clean(tally, int(200 * (DRAIN_GRACE + 2.5)))
    assert victim not in workers.authz.worker_pids()
    assert any("/failed_active_hc" in f for fs in flags for f in fs), flags[-1]  # out of the rotation before it stopped


def _reload_config(authz: Authz) -> None:
    """Write the config with GET /orders/v1/items/{id} needing scope orders:admin (was orders:read)."""
    doc = copy.deepcopy(authz.doc)
    [orders] = [api for api in doc["apis"] if api["id"] == "orders-v1"]
    [item] = [r for r in orders["resources"] if r["path"] == "/items/{id}"]
    item["scopes"] = ["orders:admin"]
    authz.write(doc)


def _sighup_under_load(authz: Authz, g: Gateway, km: KeyManager, name: str, record_property) -> None:  # noqa: ANN001
    token = valid(km)
    item = g.url + "/orders/v1/items/7"
    assert httpx.get(item, headers={"authorization": f"Bearer {token}"}, timeout=5).status_code == 200
    _reload_config(authz)
    with driving(g.url, basic_mix(km), seconds=4) as tally:
        time.sleep(1)
        authz.proc.signal(signal.SIGHUP)
    report(tally, name, record_property)
    assert authz.proc.alive(), authz.proc.exit_code()
    _assert_clean(tally, 800)
    deadline = time.monotonic() + 10
    while (r := httpx.get(item, headers={"authorization": f"Bearer {token}"}, timeout=5)).status_code != 403:
        assert time.monotonic() < deadline, (r.status_code, r.text)
        time.sleep(0.2)
    assert r.json()["code"] == 900910  # insufficient scope: the new config decides, in every worker from now on
    assert [httpx.get(item, headers={"authorization": f"Bearer {token}"}, timeout=5).status_code
            for _ in range(6)] == [403] * 6


def test_sighup_to_the_supervisor_reloads_and_fails_no_request(workers: Workers, record_property) -> None:  # noqa: ANN001
    g = _ready(workers, "http")
    pids = set(workers.authz.worker_pids())
    _sighup_under_load(workers.authz, g, workers.km, "sighup-supervisor", record_property)
    assert set(workers.authz.worker_pids()) == pids  # each worker reloaded in-process: no restart


def test_sighup_with_one_worker_reloads_in_process_and_fails_no_request(
        redis_server: RedisServer, tmp_path: Path, record_property) -> None:  # noqa: ANN001
    km, upstream = key_manager(), EchoUpstream()
    upstream.start()
    doc = config_doc(km, redis_server.url, "faults-single:")
    seed(doc)
    try:
        with serving(tmp_path, doc, upstream.port) as (authz, gateways):
            pid = authz.proc.pid
            _sighup_under_load(authz, gateways["http"], km, "sighup-single-worker", record_property)
            assert authz.proc.pid == pid and authz.proc.alive()
    finally:
        upstream.stop()
        km.stop()
        drop_keys(redis_server, "faults-single:")
