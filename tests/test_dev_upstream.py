"""Echo upstream: real HTTP server on loopback."""

from __future__ import annotations

import http.client
import json

import pytest

from authz.dev.upstream import EchoUpstream


@pytest.fixture
def upstream():
    server = EchoUpstream()
    server.start()
    yield server
    server.stop()


def _call(port: int, method: str, path: str, body: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def test_get_echoes_method_path_headers(upstream):
    status, ctype, data = _call(upstream.port, "GET", "/orders/v1/items?x=1", headers={"X-Application-Id": "app-1"})
    assert status == 200
    assert ctype == "application/json"
    echo = json.loads(data)
    assert echo["method"] == "GET"
    assert echo["path"] == "/orders/v1/items?x=1"
    assert echo["headers"]["x-application-id"] == "app-1"
    assert echo["headers"]["host"] == f"127.0.0.1:{upstream.port}"
    assert echo["body_bytes"] == 0
    assert upstream.received == [echo]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_with_body(upstream, method):
    status, _, data = _call(upstream.port, method, "/any/where", body=b"x" * 123)
    assert status == 200
    echo = json.loads(data)
    assert (echo["method"], echo["path"], echo["body_bytes"]) == (method, "/any/where", 123)
    assert echo["headers"]["content-length"] == "123"


def test_head_has_no_body(upstream):
    status, ctype, data = _call(upstream.port, "HEAD", "/h")
    assert (status, ctype, data) == (200, "application/json", b"")
    assert upstream.received[-1]["method"] == "HEAD"


def test_keep_alive_connection_serves_several_requests(upstream):
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=5)
    for i in range(3):
        conn.request("POST", f"/k/{i}", body=b"ab")
        resp = conn.getresponse()
        assert json.loads(resp.read())["path"] == f"/k/{i}"
    conn.close()
    assert [r["path"] for r in upstream.received] == ["/k/0", "/k/1", "/k/2"]


def test_received_keeps_last_100(upstream):
    for i in range(105):
        _call(upstream.port, "GET", f"/r/{i}")
    received = upstream.received
    assert len(received) == 100
    assert received[0]["path"] == "/r/5"
    assert received[-1]["path"] == "/r/104"
    upstream.clear()
    assert upstream.received == []


def test_a_client_resetting_its_connection_is_not_reported_as_an_error(capsys) -> None:  # noqa: ANN001
    import socket
    import struct
    import time

    from authz.dev.upstream import EchoUpstream

    upstream = EchoUpstream()
    upstream.start()
    try:
        sock = socket.create_connection(("127.0.0.1", upstream.port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        sock.close()
        time.sleep(0.3)
    finally:
        upstream.stop()
    assert "ConnectionResetError" not in capsys.readouterr().err
