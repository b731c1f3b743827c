"""Config reload without a restart (SIGHUP, ``server.watch_config``) and the drain grace of SIGTERM.

The reloader itself over files (invalid file kept out, restart-only settings kept, a failed apply changes nothing,
the file watch), then ``authz serve`` processes: one process and a supervisor with two workers reload in place
(same PIDs, new answers: a scope requirement and the realm), an invalid file or a restart-only change is logged
and the rest keeps serving, a SIGHUP sent while the workers start kills none of them, SIGTERM reports NOT_SERVING
for ``server.drain_grace`` while it still answers checks, and SIGINT skips that grace.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
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

from authz.config import Settings, parse_config
from authz.dev.keymanager import KeyManager
from authz.dev.procs import ManagedProcess, RedisServer, free_port
from authz.dev.signing import SigningKey
from authz.envoy.http_service import HEALTH_HEADER, HEALTH_PATH
from authz.ops.health import status, wait_serving
from authz.ops.reload import RESTART_ONLY, ConfigReloader, keep_restart_only
from authz.ops.supervisor import worker_listen
from tests.support.config import free_consecutive_ports, settings_dict
from tests.support.metrics import sample, scrape
from tests.support.processes import children, seed_demo_app, serve_config, wait_until
from tests.test_backend_jwt import backend_jwt_section


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")


def _check(listen: str, token: str | None) -> pb.CheckResponse:
    """A Check of ``GET /orders/v1/items`` (scope ``orders:read`` in the test config) on ``listen``."""
    req = pb.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", "/orders/v1/items", "api.example.test"
    if token is not None:
        http.headers["authorization"] = f"Bearer {token}"
    req.attributes.context_extensions["api_id"] = "orders-v1"
    with grpc.insecure_channel(listen) as channel:
        return external_auth_pb2_grpc.AuthorizationStub(channel).Check(req, timeout=10)


def _challenge(listen: str) -> str:
    """The ``WWW-Authenticate`` of the 401 a check without credentials gets."""
    reply = _check(listen, None)
    headers = {h.header.key.lower(): h.header.value for h in reply.denied_response.headers}
    return headers["www-authenticate"]


def _needs_write_scope(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` where ``GET /orders/v1/items`` needs ``orders:write`` instead of ``orders:read``."""
    new = yaml.safe_load(yaml.safe_dump(doc))
    new["apis"][0]["resources"][0]["scopes"] = ["orders:write"]
    return new


# ---------------------------------------------------------------------------------------------- the reloader


@pytest.fixture
def doc(idp: KeyManager) -> dict[str, Any]:
    return settings_dict(idp)


def test_restart_only_settings_keep_their_running_values_and_are_named(doc: dict[str, Any]) -> None:
    running = parse_config(doc)
    edited = yaml.safe_load(yaml.safe_dump(doc))
    edited["realm"] = "reloaded"
    edited["server"]["listen"] = "127.0.0.1:1"
    edited["server"]["decision_timeout"] = 1.5
    edited["redis"]["url"] = "redis://127.0.0.1:2/0"
    edited["logging"] = {"format": "json", "decisions": "all"}
    effective, changed = keep_restart_only(running, parse_config(edited))
    assert changed == ["server.listen", "redis", "logging.format"]
    assert effective.server.listen == running.server.listen
    assert effective.redis == running.redis
    assert effective.logging.format == "text"
    assert (effective.realm, effective.server.decision_timeout, effective.logging.decisions) == ("reloaded", 1.5, "all")
    assert set(changed) <= set(RESTART_ONLY)


def _reloader(path: Path, doc: dict[str, Any], apply: Callable[[Settings], Any] | None = None) -> ConfigReloader:
    applied: list[Settings] = []

    async def record(settings: Settings) -> None:
        if apply is not None:
            apply(settings)
        applied.append(settings)

    _write(path, doc)
    reloader = ConfigReloader(path, parse_config(doc, os.environ), record)
    reloader.applied = applied  # type: ignore[attr-defined]
    return reloader


def test_an_invalid_file_is_logged_with_its_yaml_path_and_changes_nothing(
    doc: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "authz.yaml"
    reloader = _reloader(path, doc)
    before = reloader.settings
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["server"]["decision_timeout"] = -1
    broken["apis"][0]["resources"][0]["methods"] = ["FETCH"]
    _write(path, broken)
    assert asyncio.run(reloader.reload("SIGHUP")) is False
    assert reloader.settings is before
    assert reloader.applied == []  # type: ignore[attr-defined]
    assert reloader.counts == {"applied": 0, "rejected": 1}
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("server.decision_timeout:" in line for line in errors), errors
    assert any("apis[0].resources[0].methods" in line for line in errors), errors
    assert errors[-1].endswith("2 error(s); still running the previous config")


def test_a_valid_file_is_applied_and_a_failed_apply_keeps_the_running_config(
    doc: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "authz.yaml"
    reloader = _reloader(path, doc)
    _write(path, {**doc, "realm": "second"})
    assert asyncio.run(reloader.reload("SIGHUP")) is True
    assert reloader.settings.realm == "second"
    assert [s.realm for s in reloader.applied] == ["second"]  # type: ignore[attr-defined]

    def refuse(_settings: Settings) -> None:
        raise OSError("backend_jwt.signing_key.file: cannot read /nowhere.pem")

    failing = _reloader(path, doc, refuse)
    _write(path, {**doc, "realm": "third"})
    assert asyncio.run(failing.reload("SIGHUP")) is False
    assert failing.settings.realm == "authz"
    assert failing.counts == {"applied": 0, "rejected": 1}
    assert "cannot read /nowhere.pem; still running the previous config" in caplog.text


def test_the_watch_reloads_a_changed_file_only_under_watch_config(doc: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "authz.yaml"

    async def watch_for(reloader: ConfigReloader, seconds: float) -> None:
        task = asyncio.create_task(reloader.watch(interval=0.05))
        await asyncio.sleep(seconds)
        task.cancel()

    unwatched = _reloader(path, doc)
    assert not unwatched.changed()
    _write(path, {**doc, "realm": "changed"})
    assert unwatched.changed()
    asyncio.run(watch_for(unwatched, 0.3))
    assert unwatched.counts == {"applied": 0, "rejected": 0}

    watched_doc = {**doc, "server": {**doc["server"], "watch_config": True}}
    watched = _reloader(path, watched_doc)
    _write(path, {**watched_doc, "realm": "changed"})
    asyncio.run(watch_for(watched, 0.5))
    assert watched.settings.realm == "changed"
    assert watched.counts == {"applied": 1, "rejected": 0}  # once: an unchanged file is not reloaded again


def test_yaml_nested_too_deeply_is_a_rejected_reload_and_the_watch_goes_on(
    doc: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """PyYAML raises RecursionError on deep nesting: it must be a rejected reload (logged, counted), not an
    exception that kills the watch task, after which no change of the file was ever reloaded again."""
    path = tmp_path / "authz.yaml"
    watched_doc = {**doc, "server": {**doc["server"], "watch_config": True}}
    reloader = _reloader(path, watched_doc)

    async def scenario() -> None:
        task = asyncio.create_task(reloader.watch(interval=0.05))
        path.write_text("a: [" * 5000, encoding="utf-8")
        await asyncio.sleep(0.5)
        _write(path, {**watched_doc, "realm": "after"})
        await asyncio.sleep(0.5)
        assert not task.done()
        task.cancel()

    asyncio.run(scenario())
    assert reloader.counts == {"applied": 1, "rejected": 1}
    assert reloader.settings.realm == "after"
    assert "invalid YAML: nested too deeply" in caplog.text


def test_the_watch_does_not_reload_a_file_still_being_written(doc: dict[str, Any], tmp_path: Path) -> None:
    """A file rewritten in place a line at a time (a slow writer, ``cat > authz.yaml`` from a pipe) is reloaded
    once, complete: no look in between may apply (or reject) one of its truncated states."""
    path = tmp_path / "authz.yaml"
    watched_doc = {**doc, "server": {**doc["server"], "watch_config": True}}
    reloader = _reloader(path, watched_doc)
    lines = yaml.safe_dump({**watched_doc, "realm": "complete"}).splitlines(keepends=True)

    async def scenario() -> None:
        task = asyncio.create_task(reloader.watch(interval=0.05))
        with path.open("w", encoding="utf-8") as out:
            for line in lines:
                out.write(line)
                out.flush()
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        task.cancel()

    assert len(lines) > 50  # the writing takes several intervals
    asyncio.run(scenario())
    assert [s.realm for s in reloader.applied] == ["complete"]  # type: ignore[attr-defined]
    assert reloader.counts == {"applied": 1, "rejected": 0}


# ------------------------------------------------------------------------------------------- the processes


@pytest.fixture
def serve(idp: KeyManager, redis_server: RedisServer, key_prefix: str,
          tmp_path: Path) -> Iterator[Callable[..., tuple[ManagedProcess, dict[str, Any], Path]]]:
    """``authz serve`` over a seeded registry: ``start(workers, **server settings)`` -> (process, doc, config)."""
    started: list[ManagedProcess] = []

    def start(workers: int = 1, **server: Any) -> tuple[ManagedProcess, dict[str, Any], Path]:
        doc = settings_dict(idp, redis_server.url, key_prefix)
        doc["server"].update(listen=f"127.0.0.1:{free_consecutive_ports()}", workers=workers, **server)
        seed_demo_app(doc)
        config = tmp_path / f"authz{len(started)}.yaml"
        _write(config, doc)
        started.append(serve_config(config, tmp_path, f"authz{len(started)}", doc["server"]["listen"], workers))
        return started[-1], doc, config

    yield start
    for proc in started:
        proc.stop(timeout=20)


def test_sighup_reloads_one_process_in_place_and_the_next_checks_follow_the_new_config(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]], idp: KeyManager,
) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    proc, doc, config = serve(workers=1, metrics_listen=metrics)
    listen = doc["server"]["listen"]
    token = idp.issue_token("demo-client", "demo", "orders:read")
    assert _check(listen, token).status.code == 0  # allowed, and now in every cache
    assert _challenge(listen).startswith('Bearer realm="authz"')

    _write(config, {**_needs_write_scope(doc), "realm": "reloaded"})
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "config reloaded (SIGHUP)" in proc.log_text())
    assert proc.alive()
    denied = _check(listen, token)  # the cached allow is not reused: the new pipeline decides
    assert denied.denied_response.status.code == 403
    assert _challenge(listen).startswith('Bearer realm="reloaded"')
    assert _check(listen, idp.issue_token("demo-client", "demo", "orders:write")).status.code == 0
    assert status(listen) == "SERVING"
    assert sample(scrape(f"http://{metrics}/metrics"), "authz_config_reloads_total", result="applied") == 1


def test_an_invalid_file_or_a_restart_only_change_keeps_serving_and_says_why(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]], idp: KeyManager,
) -> None:
    proc, doc, config = serve(workers=1)
    listen = doc["server"]["listen"]
    token = idp.issue_token("demo-client", "demo", "orders:read")
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["realm"] = "reloaded"
    broken["key_managers"][0]["leeway"] = "soon"
    _write(config, broken)
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "still running the previous config" in proc.log_text())
    assert "key_managers[0].leeway: " in proc.log_text()
    assert _check(listen, token).status.code == 0
    assert _challenge(listen).startswith('Bearer realm="authz"')

    moved = {**doc, "realm": "reloaded", "server": {**doc["server"], "listen": f"127.0.0.1:{free_port()}"}}
    _write(config, moved)
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "config reloaded (SIGHUP)" in proc.log_text())
    assert "server.listen changed" in proc.log_text() and "needs a restart" in proc.log_text()
    assert _challenge(listen).startswith('Bearer realm="reloaded"')  # the rest applied, on the old address


def test_sighup_to_the_supervisor_reloads_every_worker_without_restarting_one(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]], idp: KeyManager,
) -> None:
    proc, doc, config = serve(workers=2)
    workers = [worker_listen(doc["server"]["listen"], i) for i in range(2)]
    wait_until(lambda: len(children(proc.pid)) == 2)
    pids = children(proc.pid)
    _write(config, {**doc, "realm": "reloaded"})
    proc.signal(signal.SIGHUP)
    for listen in workers:
        wait_until(lambda listen=listen: _challenge(listen).startswith('Bearer realm="reloaded"'))
    assert children(proc.pid) == pids
    assert proc.log_text().count("config reloaded (SIGHUP)") == 2
    assert "exited" not in proc.log_text()


def test_a_sighup_while_the_workers_start_kills_none_of_them(
    idp: KeyManager, redis_server: RedisServer, key_prefix: str, tmp_path: Path,
) -> None:
    """The supervisor starts each worker with SIGHUP blocked; without that, SIGHUP's default action kills a
    worker that has not installed its handler yet (status -1 / 129) and the supervisor restarts it."""
    doc = settings_dict(idp, redis_server.url, key_prefix)
    doc["server"].update(listen=f"127.0.0.1:{free_consecutive_ports()}", workers=2)
    config = tmp_path / "authz.yaml"
    _write(config, doc)
    env = {k: v for k, v in os.environ.items() if k != "AUTHZ_LISTEN"}
    with ManagedProcess([sys.executable, "-m", "authz", "serve", "--config", str(config)], name="early",
                        log_dir=tmp_path, env=env, inherit_env=False) as proc:
        wait_until(lambda: len(children(proc.pid)) == 2, timeout=10)
        pids = children(proc.pid)
        _write(config, {**doc, "realm": "early"})
        proc.signal(signal.SIGHUP)  # the workers are still importing
        for index in range(2):
            wait_serving(worker_listen(doc["server"]["listen"], index), timeout=30)
            wait_until(lambda i=index: _challenge(worker_listen(doc["server"]["listen"], i)).startswith(
                'Bearer realm="early"'))
        assert children(proc.pid) == pids
        assert "exited" not in proc.log_text()


def test_the_file_watch_reloads_without_a_signal(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]],
) -> None:
    proc, doc, config = serve(workers=1, watch_config=True)
    _write(config, {**doc, "realm": "watched"})
    wait_until(lambda: "config reloaded (file change)" in proc.log_text())
    assert _challenge(doc["server"]["listen"]).startswith('Bearer realm="watched"')


def _probe(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}{HEALTH_PATH}", headers={HEALTH_HEADER: "test"}, timeout=5).status_code


def test_sigterm_reports_not_serving_for_the_drain_grace_while_it_still_answers(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]], idp: KeyManager,
) -> None:
    http_port = free_port()
    proc, doc, _ = serve(workers=1, drain_grace=2.0, http_listen=f"127.0.0.1:{http_port}")
    listen = doc["server"]["listen"]
    token = idp.issue_token("demo-client", "demo", "orders:read")
    assert _probe(http_port) == 204
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    wait_until(lambda: status(listen) == "NOT_SERVING", timeout=1.5)
    assert _probe(http_port) == 429  # the HTTP probe's NOT_SERVING (503-class, on the wire as 429)
    assert _check(listen, token).status.code == 0  # still answered during the drain grace
    r = httpx.get(f"http://127.0.0.1:{http_port}/orders/v1/items", headers={"authorization": f"Bearer {token}"},
                  timeout=5)
    assert r.status_code == 200
    assert time.monotonic() - started < 2.0
    wait_until(lambda: not proc.alive(), timeout=10)
    assert proc.exit_code() == 0
    assert time.monotonic() - started >= 2.0


def test_sigint_skips_the_drain_grace(serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]]) -> None:
    proc, _, _ = serve(workers=1, drain_grace=30.0)
    started = time.monotonic()
    proc.signal(signal.SIGINT)
    wait_until(lambda: not proc.alive(), timeout=10)
    assert proc.exit_code() == 0
    assert time.monotonic() - started < 10
    assert "server.drain_grace" not in proc.log_text()


def test_a_key_manager_keeps_its_cached_keys_unless_its_own_settings_change(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]], idp: KeyManager,
) -> None:
    proc, doc, config = serve(workers=1)
    listen = doc["server"]["listen"]
    token = idp.issue_token("demo-client", "demo", "orders:read")
    fetched = idp.requests["/oauth2/jwks"]
    _write(config, {**doc, "realm": "reloaded"})
    proc.signal(signal.SIGHUP)
    wait_until(lambda: _challenge(listen).startswith('Bearer realm="reloaded"'))
    assert idp.requests["/oauth2/jwks"] == fetched  # the same key source: no new fetch
    assert _check(listen, token).status.code == 0

    other = yaml.safe_load(yaml.safe_dump(doc))
    other["key_managers"][0]["audiences"] = ["another-api"]
    _write(config, other)
    proc.signal(signal.SIGHUP)
    wait_until(lambda: proc.log_text().count("config reloaded (SIGHUP)") == 2)
    assert idp.requests["/oauth2/jwks"] == fetched + 1  # a new source, prefetched before the swap
    assert _check(listen, token).denied_response.status.code == 401  # the token's aud is no longer accepted


def test_a_sighup_while_one_process_prefetches_its_keys_is_a_reload_not_a_kill(
    idp: KeyManager, redis_server: RedisServer, key_prefix: str, tmp_path: Path,
) -> None:
    """``authz serve`` blocks SIGHUP until it can reload: without that, a SIGHUP during a slow JWKS prefetch at
    start (a ConfigMap update while the pod starts) kills the single process (SIGHUP's default action)."""
    doc = settings_dict(idp, redis_server.url, key_prefix)
    doc["server"]["listen"] = f"127.0.0.1:{free_port()}"
    config = tmp_path / "authz.yaml"
    _write(config, doc)
    idp.jwks_delay = 2.0
    env = {k: v for k, v in os.environ.items() if k != "AUTHZ_LISTEN"}
    with ManagedProcess([sys.executable, "-m", "authz", "serve", "--config", str(config)], name="prefetching",
                        log_dir=tmp_path, env=env, inherit_env=False) as proc:
        wait_until(lambda: idp.requests["/oauth2/jwks"] >= 1)  # the prefetch has started: the handler is not installed
        _write(config, {**doc, "realm": "early"})
        proc.signal(signal.SIGHUP)
        wait_serving(doc["server"]["listen"], timeout=30)
        assert proc.alive()
        wait_until(lambda: _challenge(doc["server"]["listen"]).startswith('Bearer realm="early"'))


def test_the_supervisor_waits_for_a_drain_grace_raised_by_a_reload(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]],
) -> None:
    """The supervisor's SIGKILL deadline follows a reloaded ``drain_grace``: started with 0 + 1 s (deadline 6 s),
    reloaded to 8 s of drain grace, the workers must get their 8 s and exit 0, not be killed at 6 s."""
    proc, doc, config = serve(workers=2, drain_grace=0, grace_period=1)
    _write(config, {**doc, "server": {**doc["server"], "drain_grace": 8}})
    proc.signal(signal.SIGHUP)
    wait_until(lambda: proc.log_text().count("config reloaded (SIGHUP)") == 2)
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    wait_until(lambda: not proc.alive(), timeout=30)
    assert time.monotonic() - started >= 8.0
    assert "did not drain in time" not in proc.log_text()
    assert proc.exit_code() == 0


def test_a_changed_key_manager_whose_keys_cannot_be_fetched_is_a_rejected_reload(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]], idp: KeyManager,
) -> None:
    """Changing a key manager (here only its ``leeway``) while its JWKS endpoint is too slow must not swap its
    working keys for a source without keys: every valid token would get 503 until the next fetch."""
    proc, doc, config = serve(workers=1)
    listen = doc["server"]["listen"]
    token = idp.issue_token("demo-client", "demo", "orders:read")
    assert _check(listen, token).status.code == 0
    changed = yaml.safe_load(yaml.safe_dump(doc))
    changed["key_managers"][0]["leeway"] = 30
    changed["realm"] = "reloaded"
    idp.jwks_delay = 8.0  # beyond jwks.timeout (2 s) + 1 s: the new source's prefetch gets no keys
    _write(config, changed)
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "still running the previous config" in proc.log_text())
    assert "key manager 'test-km' changed but its new key source has no usable keys" in proc.log_text()
    assert _check(listen, token).status.code == 0  # not 503: the running keys still decide
    assert _challenge(listen).startswith('Bearer realm="authz"')

    idp.jwks_delay = 0.0
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "config reloaded (SIGHUP)" in proc.log_text())
    assert _challenge(listen).startswith('Bearer realm="reloaded"')
    assert _check(listen, token).status.code == 0


def test_the_http_listener_drains_for_a_reloaded_grace_period(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]], idp: KeyManager,
) -> None:
    """Started with ``grace_period: 0.2`` and reloaded to 10 s, an HTTP check still deciding at SIGTERM (an
    unknown ``kid`` waits up to 3 s for a slow forced JWKS refetch) gets its answer (401), not a closed
    connection after the start's 0.2 s."""
    http_port = free_port()
    proc, doc, config = serve(workers=1, grace_period=0.2, decision_timeout=5.0,
                              http_listen=f"127.0.0.1:{http_port}")
    longer = yaml.safe_load(yaml.safe_dump(doc))
    longer["server"]["grace_period"] = 10
    longer["key_managers"][0]["jwks"]["forced_refetch_wait"] = 3.0
    _write(config, longer)
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "config reloaded (SIGHUP)" in proc.log_text())
    idp.jwks_delay = 2.0
    token = idp.issue_token("demo-client", "demo", "orders:read", key=SigningKey.generate_rsa(kid="unknown"))
    answers: list[int | str] = []

    def call() -> None:
        try:
            r = httpx.get(f"http://127.0.0.1:{http_port}/orders/v1/items",
                          headers={"authorization": f"Bearer {token}"}, timeout=15)
            answers.append(r.status_code)
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: idp.requests["/oauth2/jwks"] >= 3)  # the check waits for the forced refetch
    time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    caller.join(20)
    assert answers == [401]
    wait_until(lambda: not proc.alive())
    assert proc.exit_code() == 0


def test_removing_the_backend_jwt_section_stops_publishing_its_keys(
    serve: Callable[..., tuple[ManagedProcess, dict[str, Any], Path]], tmp_path: Path,
) -> None:
    """The JWKS endpoint stays bound (``backend_jwt.jwks_listen`` needs a restart) but must not go on publishing
    the public keys of a section the reload removed (say, because its key leaked): it serves an empty key set."""
    jwks_port = free_port()
    proc, doc, config = serve(workers=1)
    proc.stop(timeout=20)
    with_jwt = {**doc, "backend_jwt": backend_jwt_section(tmp_path, jwks_listen=f"127.0.0.1:{jwks_port}")}
    _write(config, with_jwt)
    proc = serve_config(config, tmp_path, "with-jwt", doc["server"]["listen"])
    try:
        url = f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json"
        assert {k["kid"] for k in httpx.get(url, timeout=5).json()["keys"]} == {"bj-rsa", "bj-ec"}
        _write(config, doc)
        proc.signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded (SIGHUP)" in proc.log_text())
        assert httpx.get(url, timeout=5).json() == {"keys": []}
    finally:
        proc.stop(timeout=20)
