"""The `authz serve` process: health (gRPC and the HTTP listener's probe), reflection, graceful shutdown (one grace
period for every listener), listen errors."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable

import grpc
import httpx
import yaml
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from authz.dev.keymanager import KeyManager, SigningKey
from authz.dev.procs import ManagedProcess, free_port
from authz.envoy.http_service import HEALTH_HEADER, HEALTH_PATH
from authz.ops.health import serving
from tests.support.processes import AuthzProcess


def _check(listen: str, token: str, timeout: float = 10) -> pb.CheckResponse:
    req = pb.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", "/orders/v1/items", "api.example.test"
    http.headers["authorization"] = f"Bearer {token}"
    req.attributes.context_extensions["api_id"] = "orders-v1"
    with grpc.insecure_channel(listen) as channel:
        return external_auth_pb2_grpc.AuthorizationStub(channel).Check(req, timeout=timeout)


def test_health_reports_serving_for_the_server_and_the_authorization_service(
    start_authz: Callable[..., AuthzProcess],
) -> None:
    authz = start_authz()
    with grpc.insecure_channel(authz.listen) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "envoy.service.auth.v3.Authorization"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_authorization_and_health_services(start_authz: Callable[..., AuthzProcess]) -> None:
    authz = start_authz()
    with grpc.insecure_channel(authz.listen) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                 timeout=5))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} <= names


def test_sigint_stops_gracefully_with_exit_status_0(start_authz: Callable[..., AuthzProcess]) -> None:
    authz = start_authz()
    authz.proc.signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    while authz.proc.alive():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert authz.proc.exit_code() == 0
    assert "shutting down" in authz.log_text()


def test_sigterm_lets_an_in_flight_check_finish(
    start_authz: Callable[..., AuthzProcess], idp: KeyManager
) -> None:
    """A check waiting on a slow forced JWKS refetch still gets its answer after SIGTERM arrives."""
    authz = start_authz(km={"jwks": {"kid_refetch_cooldown": 0.01, "timeout": 3, "forced_refetch_wait": 1.8}})
    rotated = SigningKey.generate_rsa(kid="k-new")
    idp.signing_keys.append(rotated)
    idp.published_keys = [*idp.published_keys, rotated]
    idp.jwks_delay = 1.0  # the refetch for the unknown kid takes a second
    token = idp.issue_token("demo-client", "demo", "orders:read", key=rotated)
    result: dict[str, pb.CheckResponse] = {}
    caller = threading.Thread(target=lambda: result.setdefault("r", _check(authz.listen, token)))
    caller.start()
    time.sleep(0.3)  # the call is in flight, waiting on the JWKS server
    authz.proc.signal(signal.SIGTERM)
    caller.join(10)
    response = result["r"]
    # The token verified against the refetched key; the client is not registered in this test's registry.
    assert response.status.code == 7
    assert response.denied_response.status.code == 403
    assert '"code":900911' in response.denied_response.body
    deadline = time.monotonic() + 10
    while authz.proc.alive():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert authz.proc.exit_code() == 0


def test_a_listen_address_in_use_exits_1_with_a_clear_message(
    start_authz: Callable[..., AuthzProcess], tmp_path
) -> None:  # noqa: ANN001
    first = start_authz()
    doc = dict(first.doc)
    config = tmp_path / "second.yaml"
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    second = ManagedProcess([sys.executable, "-m", "authz", "serve", "--config", str(config)], name="second",
                            log_dir=tmp_path)
    second.start()
    deadline = time.monotonic() + 20
    while second.alive():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert second.exit_code() == 1
    assert f"cannot listen on {first.listen}" in second.log_text()
    assert "Traceback" not in second.log_text()


def _probe(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}{HEALTH_PATH}", headers={HEALTH_HEADER: "1"}, timeout=5).status_code


def test_the_http_listener_probe_reports_serving_like_grpc_health(start_authz: Callable[..., AuthzProcess]) -> None:
    http_port = free_port()
    authz = start_authz(server={"listen": f"127.0.0.1:{free_port()}", "http_listen": f"127.0.0.1:{http_port}",
                                "workers": 1, "grace_period": 1})
    assert serving(authz.listen)
    assert _probe(http_port) == 204
    assert authz.stop() == 0


def test_sigterm_drains_the_grpc_and_http_listeners_together_in_one_grace_period(
    start_authz: Callable[..., AuthzProcess], idp: KeyManager
) -> None:
    """A check on each listener outlasts the grace period (a slow forced JWKS refetch): the process still exits
    about one grace period after SIGTERM, not one per listener."""
    grace, http_port = 1.5, free_port()
    authz = start_authz(server={"listen": f"127.0.0.1:{free_port()}", "http_listen": f"127.0.0.1:{http_port}",
                                "workers": 1, "grace_period": grace, "decision_timeout": 8},
                        km={"jwks": {"kid_refetch_cooldown": 0.01, "timeout": 8, "forced_refetch_wait": 6}})
    rotated = SigningKey.generate_rsa(kid="k-slow")
    idp.signing_keys.append(rotated)
    idp.published_keys = [*idp.published_keys, rotated]
    idp.jwks_delay = 6.0  # each check waits on the refetch of its unknown kid, longer than the grace period

    def http_check() -> None:
        token = idp.issue_token("demo-client", "demo", "orders:read", key=rotated)
        with contextlib.suppress(httpx.HTTPError):  # the connection is dropped when the grace period ends
            httpx.get(f"http://127.0.0.1:{http_port}/orders/v1/items", timeout=10,
                      headers={"authorization": f"Bearer {token}"})

    def grpc_check() -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled when the grace period ends
            _check(authz.listen, idp.issue_token("demo-client", "demo", "orders:read", key=rotated))

    callers = [threading.Thread(target=f) for f in (http_check, grpc_check)]
    for caller in callers:
        caller.start()
    time.sleep(0.5)  # both checks are in flight, waiting on the JWKS server
    started = time.monotonic()
    authz.proc.signal(signal.SIGTERM)
    while authz.proc.alive():
        assert time.monotonic() - started < 10
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    for caller in callers:
        caller.join(10)
    assert authz.proc.exit_code() == 0
    # One grace period and the process's own exit; sequential drains took two (3 s and more here).
    assert grace <= elapsed < 2 * grace, elapsed
