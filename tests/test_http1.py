"""The lean HTTP/1.1 server (:mod:`authz.http1`) over real sockets, raw bytes in and out: keep-alive,
pipelining in request order, bounded input (400/408/413/431, never a crash), graceful close."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from authz.http1 import Answer, Http1Server, Limits, RawHeaders
from tests.support.rawhttp import RawClient


class Echo:
    """Answers ``/slow/<ms>/...`` after that many milliseconds (through a coroutine), anything else at once;
    the body names the target and the headers as received. ``/fail`` raises."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def __call__(self, method: str, target: str, headers: RawHeaders) -> Answer | Coroutine[Any, Any, Answer]:
        self.started.append(target)
        if target == "/fail":
            raise RuntimeError("handler bug")
        body = json.dumps({"method": method, "target": target,
                           "headers": [[n.decode(), v.decode()] for n, v in headers]}).encode()
        if target.startswith("/slow/"):
            delay = int(target.split("/")[2]) / 1000

            async def later() -> Answer:
                await asyncio.sleep(delay)
                return Answer(200, [("x-target", target)], body)

            return later()
        return Answer(200, [("x-target", target)], body)

    def reject(self, status: int, description: str) -> Answer:
        return Answer(status, [("content-type", "application/json")], json.dumps({"error": description}).encode())


LIMITS = Limits(max_target=1024, max_headers=8, max_header_bytes=2048, max_body=100, request_timeout=1.0,
                idle_timeout=2.0)


@pytest.fixture
async def server() -> AsyncIterator[Http1Server]:
    srv = Http1Server(Echo(), "127.0.0.1:0", LIMITS, grace_period=2.0)
    await srv.start()
    yield srv
    await srv.close()


async def _client(server: Http1Server) -> RawClient:
    assert server.port is not None
    return await RawClient.connect(server.port)


def _target(r: Any) -> str:
    return r.header("x-target")


async def test_keep_alive_serves_many_requests_on_one_connection_with_date_and_length(server: Http1Server) -> None:
    client = await _client(server)
    for i in range(5):
        await client.send(f"GET /r{i}?q=1 HTTP/1.1\r\nHost: a\r\nX-Tag: t{i}\r\n\r\n".encode())
        (r,) = await client.responses(1)
        assert r.status == 200
        assert _target(r) == f"/r{i}?q=1"
        assert json.loads(r.body)["headers"] == [["Host", "a"], ["X-Tag", f"t{i}"]]
        assert r.header("content-length") == str(len(r.body))
        assert r.header("date") is not None and r.header("date").endswith(" GMT")
        assert r.header("connection") is None
    assert len(server.connections) == 1
    client.close()


async def test_pipelined_requests_are_answered_in_request_order_even_when_earlier_ones_are_slower(
    server: Http1Server,
) -> None:
    client = await _client(server)
    targets = ["/slow/150/a", "/b", "/slow/10/c", "/d", "/slow/50/e", "/f"]
    await client.send(b"".join(f"GET {t} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for t in targets))
    answers = await client.responses(len(targets))
    assert [_target(r) for r in answers] == targets
    assert all(r.status == 200 for r in answers)
    client.close()


async def test_one_request_is_decided_at_a_time_per_connection(server: Http1Server) -> None:
    handler = server.handler
    assert isinstance(handler, Echo)
    client = await _client(server)
    await client.send(b"GET /slow/200/a HTTP/1.1\r\n\r\nGET /slow/10/b HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.1)
    assert handler.started == ["/slow/200/a"]  # b waits for a's answer
    assert [_target(r) for r in await client.responses(2)] == ["/slow/200/a", "/slow/10/b"]
    client.close()


async def test_a_request_split_into_single_bytes_is_parsed(server: Http1Server) -> None:
    client = await _client(server)
    for byte in b"GET /split HTTP/1.1\r\nHost: a\r\n\r\n":
        await client.send(bytes([byte]))
    (r,) = await client.responses(1)
    assert _target(r) == "/split"
    client.close()


async def test_connection_close_is_honoured_and_what_follows_it_is_not_answered(server: Http1Server) -> None:
    client = await _client(server)
    await client.send(b"GET /one HTTP/1.1\r\nConnection: close\r\n\r\nGET /two HTTP/1.1\r\n\r\n")
    (r,) = await client.responses(1)
    assert _target(r) == "/one"
    assert r.header("connection") == "close"
    assert await client.closed()
    assert server.handler.started == ["/one"]  # type: ignore[attr-defined]


async def test_http_1_0_without_keep_alive_is_closed_after_the_answer(server: Http1Server) -> None:
    client = await _client(server)
    await client.send(b"GET /old HTTP/1.0\r\n\r\n")
    raw = await client.read_raw()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nconnection: close\r\n" in raw


async def test_head_is_answered_without_a_body_and_the_connection_stays_usable(server: Http1Server) -> None:
    client = await _client(server)
    await client.send(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
    data = b""
    async with asyncio.timeout(5):
        while b'"target": "/after"' not in data:
            data += await client.reader.read(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\nx-target: /h\r\ncontent-length: ")
    assert not head.endswith(b"content-length: 0")  # the length of the GET's body is announced...
    assert rest.startswith(b"HTTP/1.1 200 OK\r\nx-target: /after\r\n")  # ...but no body follows
    client.close()


@pytest.mark.parametrize(("request_bytes", "status", "description"), [
    (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n\r\n", 400, "The request path is too long"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(9)) + b"\r\n", 431,
     "The request has too many headers"),
    (b"GET / HTTP/1.1\r\nx-big: " + b"v" * 2100 + b"\r\n\r\n", 431, "The request headers are too large"),
    (b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n" + b"b" * 101, 413, "The request body is too large"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"40\r\n" + b"c" * 64 + b"\r\n" + b"40\r\n"
     + b"c" * 64 + b"\r\n0\r\n\r\n", 413, "The request body is too large"),
    (b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
     "The request is not valid HTTP/1.1"),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "The request is not valid HTTP/1.1"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n", 400, "The request is not valid HTTP/1.1"),
])
async def test_oversized_or_malformed_input_gets_a_clear_answer_and_the_connection_closes(
    server: Http1Server, request_bytes: bytes, status: int, description: str,
) -> None:
    client = await _client(server)
    await client.send(request_bytes)
    (r,) = await client.responses(1)
    assert r.status == status
    assert json.loads(r.body) == {"error": description}
    assert r.header("connection") == "close"
    assert await client.closed()
    assert server.handler.started == []  # type: ignore[attr-defined]
    # The server is unharmed: a new connection is served.
    again = await _client(server)
    await again.send(b"GET /ok HTTP/1.1\r\n\r\n")
    assert (await again.responses(1))[0].status == 200
    again.close()


async def test_a_huge_header_trickled_in_small_chunks_is_refused_before_it_ends(server: Http1Server) -> None:
    client = await _client(server)
    await client.send(b"GET / HTTP/1.1\r\nx-big: ")
    sent, answer = 0, b""
    while sent < 20_000 and not answer:
        try:  # pauses between the chunks, so that the server reads each on its own
            answer = await asyncio.wait_for(client.reader.read(65536), 0.01)
        except TimeoutError:
            await client.send(b"v" * 500)
            sent += 500
    answer += await client.read_raw()  # then the server closes
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert answer.endswith(b'\r\n\r\n{"error": "The request headers are too large"}')
    assert sent < 8_000  # refused while the value was still arriving (limit: 2048 + line overheads)
    assert server.handler.started == []  # type: ignore[attr-defined]


async def test_headers_over_the_limit_in_two_reads_each_under_it_are_refused(server: Http1Server) -> None:
    client = await _client(server)
    await client.send(b"GET / HTTP/1.1\r\nx-a: " + b"a" * 1500)
    await asyncio.sleep(0.1)
    await client.send(b"\r\nx-b: " + b"b" * 700 + b"\r\n\r\n")
    (r,) = await client.responses(1)
    assert r.status == 431
    assert server.handler.started == []  # type: ignore[attr-defined]


async def test_many_small_pipelined_requests_in_one_read_are_not_taken_for_one_big_head(
    server: Http1Server,
) -> None:
    client = await _client(server)
    burst = b"".join(b"GET /p%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(400))  # 12 KB, > the head bound
    await client.send(burst + b"GET /last HTTP/1.1\r\nHo")
    await asyncio.sleep(0.1)
    await client.send(b"st: a\r\n\r\n")
    answers = await client.responses(401)
    assert [_target(r) for r in answers] == [f"/p{i}" for i in range(400)] + ["/last"]
    client.close()


async def test_a_refused_request_is_answered_after_the_pipelined_ones_before_it(server: Http1Server) -> None:
    client = await _client(server)
    await client.send(b"GET /slow/100/first HTTP/1.1\r\n\r\nGET /second HTTP/1.1\r\n\r\nGARBAGE\r\n\r\n")
    first, second, refused = await client.responses(3)
    assert (_target(first), _target(second)) == ("/slow/100/first", "/second")
    assert refused.status == 400
    assert await client.closed()


async def test_limits_at_their_bound_are_accepted(server: Http1Server) -> None:
    client = await _client(server)
    target = "/" + "a" * 1023
    headers = b"".join(b"x-h%d: v\r\n" % i for i in range(8))
    await client.send(f"GET {target} HTTP/1.1\r\n".encode() + headers + b"\r\n")
    (r,) = await client.responses(1)
    assert r.status == 200
    assert _target(r) == target
    await client.send(b"POST /body HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"b" * 100)
    (r,) = await client.responses(1)
    assert (r.status, _target(r)) == (200, "/body")
    client.close()


async def test_a_slowloris_partial_request_is_answered_408_and_closed_within_the_timeout(
    server: Http1Server,
) -> None:
    client = await _client(server)
    started = time.monotonic()
    await client.send(b"GET /slow-client HTTP/1.1\r\nHost: a\r\n")
    for _ in range(3):  # trickling bytes does not extend the deadline
        await asyncio.sleep(0.3)
        await client.send(b"x-a: b\r\n")
    (r,) = await client.responses(1, timeout=4)
    assert r.status == 408
    assert json.loads(r.body) == {"error": "The request was not completed in time"}
    assert await client.closed()
    assert 1.0 <= time.monotonic() - started < 3.5
    assert server.handler.started == []  # type: ignore[attr-defined]


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(server: Http1Server) -> None:
    client = await _client(server)
    await client.send(b"GET /once HTTP/1.1\r\n\r\n")
    await client.responses(1)
    started = time.monotonic()
    assert await client.closed(timeout=5)
    assert 2.0 <= time.monotonic() - started < 4.5


async def test_a_handler_error_is_a_503_and_the_connection_stays_usable(server: Http1Server) -> None:
    client = await _client(server)
    await client.send(b"GET /fail HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n")
    failed, nxt = await client.responses(2)
    assert failed.status == 503
    assert json.loads(failed.body) == {"error": "The server failed to answer; retry later"}
    assert (nxt.status, _target(nxt)) == (200, "/next")
    client.close()


async def test_connect_is_answered_then_the_connection_closes_without_reading_the_tunnel(
    server: Http1Server,
) -> None:
    client = await _client(server)
    await client.send(b"CONNECT upstream:443 HTTP/1.1\r\nHost: upstream:443\r\n\r\n\x16\x03\x01 tunnel bytes")
    raw = await client.read_raw()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"x-target: upstream:443\r\n" in raw
    assert b"connection: close\r\n" in raw
    assert server.handler.started == ["upstream:443"]  # type: ignore[attr-defined]


async def test_close_lets_in_flight_requests_finish_with_connection_close_and_stops_accepting() -> None:
    srv = Http1Server(Echo(), "127.0.0.1:0", LIMITS, grace_period=3.0)
    port = await srv.start()
    busy = await RawClient.connect(port)
    idle = await RawClient.connect(port)
    await idle.send(b"GET /idle HTTP/1.1\r\n\r\n")
    await idle.responses(1)
    await busy.send(b"GET /slow/400/a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.05)
    started = time.monotonic()
    closing = asyncio.create_task(srv.close())
    assert await idle.closed(timeout=1)  # an idle connection is closed at once
    a, b = await busy.responses(2)
    assert (_target(a), _target(b)) == ("/slow/400/a", "/b")
    assert a.header("connection") is None and b.header("connection") == "close"
    await closing
    assert time.monotonic() - started < 2.0
    with pytest.raises(OSError):
        await RawClient.connect(port)


async def test_close_aborts_what_is_still_running_when_the_grace_period_ends() -> None:
    srv = Http1Server(Echo(), "127.0.0.1:0", LIMITS, grace_period=0.3)
    port = await srv.start()
    client = await RawClient.connect(port)
    await client.send(b"GET /slow/5000/stuck HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await srv.close()
    assert 0.3 <= time.monotonic() - started < 1.5
    assert await client.closed(timeout=1)
    assert srv.connections == set()


def test_an_answer_never_carries_a_header_that_would_split_the_response() -> None:
    for name, value in (("x-a", "v\r\nx-injected: 1"), ("x-a", "v\nx"), ("x-a\r\n", "v"), ("", "v"), ("x", "\0")):
        with pytest.raises(ValueError):
            Answer(200, [(name, value)])
    answer = Answer(401, [("www-authenticate", 'Bearer realm="r"'), ("x-subject", "J\u00f6rg")], b"{}")
    assert answer.head == ("HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"r\"\r\n"
                           "x-subject: J\u00f6rg\r\ncontent-length: 2\r\n").encode()
