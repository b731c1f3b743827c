"""End to end, what the deployment relies on: ``authz health`` (the image's HEALTHCHECK), Envoy's retries when an
authz worker dies, the HTTP mode's per-route headers set by the generated Envoy config and its health check of
the check listener, and the compose stack's
locustfile run headless against a local stack. Real Envoy, real ``authz serve``, real Redis, real tokens."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from authz.dev.keymanager import DEMO_CLIENTS
from authz.dev.procs import RedisServer, free_port, start_envoy
from authz.dev.upstream import EchoUpstream
from authz.ops.envoy_proto import HostPort
from tests.support.cli import run_cli
from tests.support.e2e import Stack, running_stack, start_gateway, write_gateway_config
from tests.support.processes import AuthzProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent


def authz_process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m authz ARGS`` as a process: the defaults read from the environment at start (AUTHZ_CONFIG)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "authz", *args], capture_output=True, text=True, timeout=60,
                          env=full_env, cwd=REPO)


def test_authz_health_exits_0_when_serving_and_1_otherwise(start_authz: Callable[..., AuthzProcess]) -> None:
    port = free_port()
    authz = start_authz(server={"listen": f"0.0.0.0:{port}", "workers": 1, "grace_period": 1})
    assert run_cli("health", "--address", f"127.0.0.1:{port}").stdout == f"127.0.0.1:{port}: SERVING\n"
    # Without --address: the config's server.listen ($AUTHZ_CONFIG), its wildcard host on loopback.
    by_config = authz_process("health", env={"AUTHZ_CONFIG": str(authz.config)})
    assert (by_config.returncode, by_config.stdout) == (0, f"127.0.0.1:{port}: SERVING\n")
    assert authz.stop() == 0
    down = run_cli("health", "--address", f"127.0.0.1:{port}", "--timeout", "0.5")
    assert down.returncode == 1
    assert down.stderr == f"127.0.0.1:{port}: not serving (NOT_SERVING, unreachable or no answer within 0.5s)\n"
    missing = authz_process("health", env={"AUTHZ_CONFIG": str(authz.config.parent / "nope.yaml")})
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_killing_one_of_two_authz_workers_fails_no_request(
        start_authz: Callable[..., AuthzProcess], tmp_path: Path) -> None:
    """Envoy's retry policy (connect-failure, refused-stream, reset to another host) covers a worker's SIGKILL
    before health checks and outlier detection take it out of the rotation."""
    first, second = start_authz(), start_authz()
    upstream = EchoUpstream()
    upstream.start()
    envoy = None
    try:
        doc = first.doc
        envoy, gateway = start_gateway(tmp_path, "envoy", doc, upstream.port,
                                       authz=(HostPort("127.0.0.1", first.port), HostPort("127.0.0.1", second.port)))
        headers = {"authorization": "Bearer not-a-jwt"}  # a 401 from either worker: the answer is authz's
        before = [httpx.get(gateway + "/orders/v1/items", headers=headers, timeout=5).status_code for _ in range(10)]
        assert before == [401] * 10
        second.proc.kill()
        after = [httpx.get(gateway + "/orders/v1/items", headers=headers, timeout=5).status_code for _ in range(40)]
        assert after == [401] * 40  # never the filter's 503: each call to the dead worker was retried on the other
    finally:
        if envoy is not None:
            envoy.stop()
        upstream.stop()


def test_http_mode_envoy_names_the_route_to_authz_and_hides_it_from_the_upstream(tmp_path: Path) -> None:
    """The echo server stands in as the HTTP ext_authz server (it answers 200, an allow) and records the check
    requests Envoy sends it: the route headers come from Envoy, never from the client."""
    from tests.support.config import settings_dict  # noqa: PLC0415

    class _Idp:  # what settings_dict reads from a key manager; no token is checked here
        issuer = "http://127.0.0.1:9"
        url = "http://127.0.0.1:9"

    authz, upstream = EchoUpstream(), EchoUpstream()
    authz.start()
    upstream.start()
    envoy = None
    try:
        doc = settings_dict(_Idp())  # type: ignore[arg-type]
        doc["apis"][0]["sandbox"] = {"hosts": ["sandbox.example.test"]}
        envoy, gateway = start_gateway(tmp_path, "envoy-http", doc, upstream.port, authz_mode="http",
                                       authz=(HostPort("127.0.0.1", authz.port),))
        spoof = {"x-authz-api-id": "payments-v1", "x-authz-environment": "sandbox", "authorization": "Bearer t"}
        for host, path, api_id, environment in (
            ("api.example.test", "/orders/v1/items", "orders-v1", None),
            ("sandbox.example.test", "/orders/v1/items", "orders-v1", "sandbox"),
            ("api.example.test", "/payments/v1/charges", "payments-v1", None),
            ("api.example.test", "/elsewhere", None, None),
        ):
            authz.clear()
            upstream.clear()
            r = httpx.get(gateway + path, headers={**spoof, "host": host}, timeout=5)
            assert r.status_code == 200, r.text
            [check] = [c for c in authz.received if c["path"] != "/healthz"]  # not Envoy's health probes
            assert check["path"] == path
            assert (check["headers"].get("x-authz-api-id"), check["headers"].get("x-authz-environment")) == (
                api_id, environment), (host, path)
            [forwarded] = upstream.received
            assert "x-authz-api-id" not in forwarded["headers"] and "x-authz-environment" not in forwarded["headers"]
            assert forwarded["headers"]["authorization"] == "Bearer t"
    finally:
        if envoy is not None:
            envoy.stop()
        authz.stop()
        upstream.stop()


def _health_flags(admin_url: str, cluster: str) -> list[str]:
    """The ``health_flags`` of each host of ``cluster`` in Envoy's admin ``/clusters``."""
    lines = httpx.get(admin_url + "/clusters", timeout=5).text.splitlines()
    return [line.rsplit("::", 1)[1] for line in lines if line.startswith(f"{cluster}::") and "::health_flags::" in line]


def test_http_mode_envoy_health_checks_the_check_listener_and_a_client_never_reaches_the_probe(
        start_authz: Callable[..., AuthzProcess], tmp_path: Path) -> None:
    """The generated ``authz_http`` cluster probes ``GET /healthz`` with ``x-authz-health-check`` (204 while serving):
    healthy while authz serves, out of the rotation within a few seconds of its stop. A client sending the probe
    through Envoy gets an ordinary decision: Envoy never forwards its ``x-authz-health-check``."""
    authz = start_authz(server={"listen": f"127.0.0.1:{free_port()}", "http_listen": f"127.0.0.1:{free_port()}",
                                "http_route_headers": True, "workers": 1, "grace_period": 1})
    upstream = EchoUpstream()
    upstream.start()
    envoy = None
    try:
        path = tmp_path / "envoy.yaml"
        listen, admin = write_gateway_config(path, authz.doc, upstream.port, authz_mode="http")
        (tmp_path / "envoy").mkdir()
        envoy = start_envoy(path, tmp_path / "envoy", admin_port=admin)
        admin_url, gateway = f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{listen}"
        deadline = time.monotonic() + 10
        while _health_flags(admin_url, "authz_http") != ["healthy"]:
            assert time.monotonic() < deadline, _health_flags(admin_url, "authz_http")
            time.sleep(0.1)
        r = httpx.get(gateway + "/healthz", headers={"x-authz-health-check": "1"}, timeout=5)
        assert (r.status_code, r.json()["code"]) == (401, 900902)  # a decision (no token), not the probe
        assert upstream.received == []
        assert authz.stop() == 0
        stopped = time.monotonic()
        while _health_flags(admin_url, "authz_http") != ["/failed_active_hc"]:
            assert time.monotonic() - stopped < 8, _health_flags(admin_url, "authz_http")  # 2 s interval, 2 misses
            time.sleep(0.2)
    finally:
        if envoy is not None:
            envoy.stop()
        upstream.stop()


class _ContractAllow(BaseHTTPRequestHandler):
    """An HTTP ext_authz allow shaped as docs/http-contract says authz's HTTP front end answers: 200, the identity
    header, and one header per dynamic metadata key named exactly as the key (underscores included)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        for name, value in (("x-application-id", "demo-app"), ("application_id", "demo-app"),
                            ("application_tier", "Gold"), ("api_id", "orders-v1"), ("content-length", "0")):
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_http_mode_envoy_files_underscored_response_headers_as_metadata_for_log_and_rate_limit(
        tmp_path: Path) -> None:
    """Envoy 1.40 keeps header names with ``_`` from the HTTP authorization response: they become the ext_authz
    dynamic metadata (access log, the tier rate-limit descriptor) while a client-sent copy counts for nothing.
    The responder plays the contract's authz side (the HTTP front end's own e2e comes with it)."""
    responder = ThreadingHTTPServer(("127.0.0.1", 0), _ContractAllow)
    threading.Thread(target=responder.serve_forever, daemon=True).start()
    upstream = EchoUpstream()
    upstream.start()
    envoy = None
    try:
        doc = {"server": {"listen": "127.0.0.1:9"}, "key_managers": [
            {"name": "km", "issuer": "http://127.0.0.1:9", "jwks_uri": "http://127.0.0.1:9/jwks", "audiences": ["a"]}],
            "apis": [{"id": "orders-v1", "name": "Orders", "context": "/orders/v1", "resources": [{"path": "/x"}]}]}
        envoy, gateway = start_gateway(tmp_path, "envoy", doc, upstream.port, authz_mode="http", tier_limits={"Gold": 1},
                                       authz=(HostPort("127.0.0.1", responder.server_address[1]),))
        codes = [httpx.get(gateway + "/orders/v1/items", headers={"application_tier": "Bronze"}, timeout=5).status_code
                 for _ in range(2)]
        assert codes == [200, 429]  # the Gold bucket (1 per minute) from the metadata, not the client's header
        assert upstream.received[0]["headers"]["x-application-id"] == "demo-app"
        deadline = time.monotonic() + 3
        while not (lines := [line for line in envoy.log_text().splitlines() if line.startswith("{")]):
            assert time.monotonic() < deadline, "no access log line"
            envoy.signal(signal.SIGUSR1)  # reopen (flush) the access logs
            time.sleep(0.1)
        first = json.loads(lines[0])
        assert (first["authz_application_id"], first["authz_application_tier"], first["authz_api_id"]) == (
            "demo-app", "Gold", "orders-v1")
    finally:
        if envoy is not None:
            envoy.stop()
        upstream.stop()
        responder.shutdown()


# ---- the load profile ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_server, tmp_path_factory.mktemp("e2e-load"), "e2eload:", "load",
                       lambda tmp, doc, upstream_port: start_gateway(tmp, "envoy", doc, upstream_port)) as stack:
        yield stack


def locust(stack: Stack, tmp: Path, seconds: int, **thresholds: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env.update({
        "AUTHZ_LOAD_TOKEN_URL": f"{stack.km.url}/oauth2/token", "AUTHZ_LOAD_CLIENT_ID": "demo-client",
        "AUTHZ_LOAD_CLIENT_SECRET": DEMO_CLIENTS["demo-client"], "AUTHZ_LOAD_USERNAME": "demo",
        "AUTHZ_LOAD_PASSWORD": "demo", "AUTHZ_LOAD_SCOPE": "orders:read", **thresholds,
    })
    return subprocess.run(
        [str(Path(sys.executable).parent / "locust"), "-f", str(REPO / "deploy/compose/load/locustfile.py"),
         "--headless", "--users", "4", "--spawn-rate", "4", "--run-time", f"{seconds}s", "--host", stack.gateway,
         "--only-summary", "--csv", str(tmp / "load"), "--loglevel", "WARNING"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp,
    )


def test_compose_locustfile_sends_allowed_401_and_403_calls_all_answered_as_expected(
        stack: Stack, tmp_path: Path) -> None:
    # The p99 threshold is loosened for a shared 2-core test machine; the compose profile keeps 250 ms.
    run = locust(stack, tmp_path, 3, AUTHZ_LOAD_P99_MS="2000")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "all thresholds met" in run.stdout
    with (tmp_path / "load_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    for name in ("allowed", "no token 401", "not subscribed 403", "token (password grant)"):
        assert int(rows[name]["Request Count"]) > 0, name
        assert rows[name]["Failure Count"] == "0", name


def test_compose_locustfile_fails_the_run_when_a_threshold_is_crossed(stack: Stack, tmp_path: Path) -> None:
    run = locust(stack, tmp_path, 2, AUTHZ_LOAD_P99_MS="0.001")
    assert run.returncode == 1
    assert "p99" in run.stdout and "> 0 ms" in run.stdout
    wrong = locust(stack, tmp_path, 2, AUTHZ_LOAD_SCOPE="payments:read")  # every allowed call is now a 403
    assert wrong.returncode == 1
    assert "unexpected statuses" in wrong.stdout
