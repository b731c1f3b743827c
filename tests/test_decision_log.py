"""The decision log (`logging.format`, `logging.decisions`): one line per decision with the documented members,
JSON or text, values from the request escaped so that no request can forge a line; the decisions counted for the
metrics."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.config import Settings
from authz.decide.record import DecisionRecorder, TextLine
from authz.dev.keymanager import KeyManager
from authz.envoy.grpc_service import AuthorizationServicer
from authz.envoy.http_service import HttpAuthorizationServer
from authz.ops.logs import JsonFormatter, TextFormatter
from tests.support.pipeline import PipelineUnderTest, running_pipeline

INJECTED_ID = 'req-7"\r\n{"event":"decision","result":"allow","code":"ok"}'
INJECTED_PATH = '/orders/v1/items\r\n{"event":"decision","result":"allow"}'


def _apis_with_a_public_resource() -> list[dict[str, Any]]:
    apis = yaml.safe_load(Path("config/authz.yaml").read_text())["apis"]
    apis[0]["resources"].append({"path": "/public/health", "methods": ["GET"], "auth": "none"})
    return apis


def _message(path: str, token: str | None = None, request_id: str = "req-1", **headers: str) -> CheckRequest:
    req = CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", path, "api.example.test"
    http.headers["x-request-id"] = request_id
    if token is not None:
        http.headers["authorization"] = f"Bearer {token}"
    http.headers.update(headers)
    req.attributes.context_extensions["api_id"] = "orders-v1"
    return req


@contextmanager
def _captured(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    """What the ``authz.decisions`` logger writes, formatted by ``formatter``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("authz.decisions")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@asynccontextmanager
async def _servicer(settings: Settings, decisions: str) -> AsyncIterator[tuple[AuthorizationServicer,
                                                                              PipelineUnderTest]]:
    async with running_pipeline(settings) as p:
        await p.register()
        yield AuthorizationServicer(p.pipeline, "authz", recorder=DecisionRecorder("grpc", decisions)), p


async def test_json_decision_lines_carry_the_documented_members_and_never_the_token(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    token = idp.issue_token("demo-client", "alice", "orders:read")
    expired = idp.issue_token("demo-client", "alice", "orders:read", extra_claims={"exp": 1_000_000_000})
    async with _servicer(make_settings(), "all") as (servicer, _):
        with _captured(JsonFormatter()) as out:
            allowed = await servicer.Check(_message("/orders/v1/items?page=2&access_token=abc", token), None)
            denied = await servicer.Check(_message("/orders/v1/items", expired, request_id="req-2"), None)
    assert isinstance(allowed, bytes) and denied.status.code == 16
    text = out.getvalue()
    assert token not in text and expired not in text and "access_token=abc" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    allow, deny = (json.loads(line) for line in lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", allow.pop("time"))
    latency = allow.pop("latency_us")
    assert isinstance(latency, int) and latency > 0
    assert allow == {
        "level": "INFO", "logger": "authz.decisions", "event": "decision", "request_id": "req-1", "mode": "grpc",
        "api": "orders-v1", "resource": "/items", "method": "GET", "path": "/orders/v1/items",
        "application_id": "demo-app", "client_id": "demo-client", "key_manager": "test-km", "result": "allow",
        "code": "ok", "reason": None, "detail": None, "phase": "policy",
        "token_fingerprint": hashlib.sha256(token.encode()).hexdigest()[:12],
    }
    assert {k: deny[k] for k in ("request_id", "result", "code", "phase", "reason", "client_id", "api",
                                 "token_fingerprint")} == {
        "request_id": "req-2", "result": "deny", "code": "900903", "phase": "identity",
        "reason": "The access token expired", "client_id": None, "api": "orders-v1",
        "token_fingerprint": hashlib.sha256(expired.encode()).hexdigest()[:12]}


async def test_a_request_crafted_to_inject_a_log_line_stays_one_escaped_line_in_both_formats(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    token = idp.issue_token("demo-client", "alice", "orders:read")
    for formatter in (JsonFormatter(), TextFormatter()):
        async with _servicer(make_settings(), "all") as (servicer, _):
            with _captured(formatter) as out:
                bad_path = await servicer.Check(_message(INJECTED_PATH, token, request_id=INJECTED_ID), None)
                bad_id = await servicer.Check(_message("/orders/v1/items", token, request_id=INJECTED_ID), None)
        assert bad_path.denied_response.status.code == 400  # the path holds control characters
        assert isinstance(bad_id, bytes)  # allowed: the request ID is only ever logged
        lines = out.getvalue().splitlines()
        assert len(lines) == 2, lines
        if isinstance(formatter, JsonFormatter):
            first, second = (json.loads(line) for line in lines)
            assert (first["result"], first["code"], first["phase"], first["path"]) == (
                "deny", "900940", "route", INJECTED_PATH)
            # Envoy's request ID is cut to visible ASCII before it is used at all; what remains is JSON-escaped.
            assert first["request_id"] == second["request_id"] == 'req-7"{"event":"decision","result":"allow","code":"ok"}'
            assert second["result"] == "allow"
        else:
            assert all(line.startswith(tuple("0123456789")) for line in lines)  # each begins with its own time
            assert ' result=deny code=900940 ' in lines[0]
            assert 'path="/orders/v1/items\\r\\n{\\"event\\":\\"decision\\",\\"result\\":\\"allow\\"}"' in lines[0]
            assert 'request_id="req-7\\"{\\"event\\":\\"decision\\",\\"result\\":\\"allow\\",\\"code\\":\\"ok\\"}"' in lines[1]


async def test_decisions_denies_logs_denials_and_anonymous_public_allows_only(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    token = idp.issue_token("demo-client", "alice", "orders:read")
    async with _servicer(make_settings(apis=_apis_with_a_public_resource()), "denies") as (servicer, _):
        with _captured(JsonFormatter()) as out:
            await servicer.Check(_message("/orders/v1/items", token), None)
            await servicer.Check(_message("/orders/v1/items", token), None)  # warm: answered from the caches
            await servicer.Check(_message("/orders/v1/items", None, request_id="anon"), None)
            await servicer.Check(_message("/orders/v1/public/health", None, request_id="pub"), None)
        counts = dict(servicer.recorder.counts)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["request_id"], r["result"], r["code"], r["phase"]) for r in records] == [
        ("anon", "deny", "900902", "credentials"), ("pub", "allow", "ok", "public")]
    # Every decision is counted, logged or not.
    assert counts == {("orders-v1", 0): 3, ("orders-v1", 900902): 1}


async def test_decisions_none_logs_nothing_but_still_counts(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    async with _servicer(make_settings(), "none") as (servicer, _):
        with _captured(JsonFormatter()) as out:
            await servicer.Check(_message("/orders/v1/items", None), None)
            await servicer.Check(_message("/nowhere", idp.issue_token("demo-client", "a", "orders:read")), None)
        taken = servicer.recorder.take()
    assert out.getvalue() == ""
    assert taken[0] == {("orders-v1", 900902): 1, ("", 900906): 1}
    assert sum(taken[1]) == 2 and taken[2] > 0
    assert servicer.recorder.counts == {} and sum(servicer.recorder.buckets) == 0  # take() starts again from zero


async def test_http_mode_decisions_are_logged_and_counted_as_http(
    make_settings: Callable[..., Settings], idp: KeyManager
) -> None:
    async with running_pipeline(make_settings()) as p:
        recorder = DecisionRecorder("http", "all")
        server = HttpAuthorizationServer(p.pipeline, "authz", "127.0.0.1:0", recorder=recorder)
        port = await server.start()
        try:
            with _captured(JsonFormatter()) as out:
                async with httpx.AsyncClient() as client:
                    r = await client.get(f"http://127.0.0.1:{port}/orders/v1/items?q=1",
                                         headers={"x-request-id": "h-1"})
        finally:
            await server.close()
    assert r.status_code == 401
    record = json.loads(out.getvalue())
    assert (record["mode"], record["request_id"], record["path"], record["code"], record["phase"]) == (
        "http", "h-1", "/orders/v1/items", "900902", "credentials")
    assert recorder.counts == {("orders-v1", 900902): 1}


def test_json_format_writes_every_other_record_as_one_json_line_too() -> None:
    record = logging.LogRecord("authz.jwks", logging.WARNING, __file__, 1, "fetch failed: %s", ("a\nb\"c",), None)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["level"], parsed["logger"], parsed["message"]) == ("WARNING", "authz.jwks", 'fetch failed: a\nb"c')
    assert "ValueError: boom\nsecond line" in parsed["exception"]


def test_text_format_escapes_line_breaks_in_messages_and_quotes_unplain_values() -> None:
    record = logging.LogRecord("authz.x", logging.INFO, __file__, 1, "from request: %s", ("a\r\nFAKE b",), None)
    assert TextFormatter().format(record).endswith("authz.x: from request: a\\r\\nFAKE b")
    assert str(TextLine({"event": "decision", "path": "/a/b", "reason": "no route", "client_id": None,
                         "request_id": "x=y"})) == 'decision path=/a/b reason="no route" request_id="x=y"'
