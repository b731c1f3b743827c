"""A lean HTTP/1.1 server: an ``asyncio.Protocol`` (uvloop when installed) over httptools' request parser.

It serves the HTTP ext_authz front end (:mod:`authz.envoy.http_service`) and the backend-JWT JWKS endpoint
(:mod:`authz.ops.jwks_endpoint`). A :class:`Handler` maps ``(method, target, headers)`` to an :class:`Answer`,
either at once (the warm check: no task, no await) or through a coroutine. The server owns the transport:

- keep-alive (HTTP/1.1 default; ``Connection: close`` honoured) and pipelining: answers go out in request
  order, one request decided at a time per connection, the ones behind it queued (reading pauses past
  :attr:`Limits.max_queued`);
- bounds, each a clear answer and never a crash: request target longer than :attr:`Limits.max_target` -> 400,
  more than :attr:`Limits.max_headers` header fields or :attr:`Limits.max_header_bytes` of them -> 431, a body
  over :attr:`Limits.max_body` -> 413 (the body is read and discarded), malformed HTTP -> 400, a request not
  complete within :attr:`Limits.request_timeout` seconds of its first byte -> 408 (slowloris); every one of
  these closes the connection after the answer. A connection idle for :attr:`Limits.idle_timeout` is closed;
- a ``HEAD`` request is answered without the body (its ``content-length`` kept), as RFC 9110 section 9.3.2 says;
- :meth:`Http1Server.close` stops accepting, lets requests already received finish within the grace period
  (their answers carry ``connection: close``), then aborts whatever is left.

Errors of the handler itself are logged and answered with :meth:`Handler.reject` ``(503, ...)``. Malformed
requests are logged at DEBUG only: anyone who can reach the port could otherwise flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from itertools import chain
from typing import Any, Protocol, cast

import httptools

log = logging.getLogger("authz.http1")

RawHeaders = list[tuple[bytes, bytes]]
"""Header fields as received: ``(name, value)`` bytes, in order, names in the client's case."""


class Answer:
    """One rendered HTTP/1.1 response, ready for the wire (build it once, write it many times).

    Args:
        status: the HTTP status code.
        headers: ``(name, value)`` pairs; values are sent as UTF-8. ``content-length`` is added.
        body: the body bytes.
    Raises:
        ValueError: a name or value holds CR, LF or NUL (it would split the response), or a name is empty.
    """

    __slots__ = ("status", "head", "body")

    def __init__(self, status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        lines = [f"HTTP/1.1 {status} {_phrase(status)}\r\n".encode("ascii")]
        for name, value in headers:
            if not name or _UNSAFE.intersection(name) or _UNSAFE.intersection(value):
                raise ValueError(f"header {name[:64]!r} cannot be sent: empty name or CR/LF/NUL")
            lines.append(f"{name}: {value}\r\n".encode())
        lines.append(b"content-length: %d\r\n" % len(body))
        self.status = status
        self.head = b"".join(lines)
        """Status line and header lines, without the ``date`` line and the blank line."""
        self.body = body


_UNSAFE = frozenset("\r\n\0")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class Handler(Protocol):
    """What the server asks for each request."""

    def __call__(self, method: str, target: str, headers: RawHeaders) -> Answer | Coroutine[Any, Any, Answer]:
        """The answer to one complete request: an :class:`Answer` now, or a coroutine that returns one.

        Args:
            method: the request method (``GET``...).
            target: the request target as sent (path and query), decoded as UTF-8 (invalid bytes replaced).
            headers: the header fields as received.
        """
        ...

    def reject(self, status: int, description: str) -> Answer:
        """The answer to a request the server refuses before the handler sees it (400, 408, 413, 431) or to
        a handler failure (503); ``description`` says why, for the client."""
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one request and connection.

    Attributes:
        max_target: bytes of the request target (path and query).
        max_headers: header fields per request.
        max_header_bytes: bytes of header names and values per request.
        max_body: bytes of request body (read and discarded).
        request_timeout: seconds from a request's first byte until it is complete.
        idle_timeout: seconds a keep-alive connection may stay idle.
        max_queued: pipelined requests queued behind the one being decided before reading pauses.
    """

    max_target: int = 16 * 1024
    max_headers: int = 256
    max_header_bytes: int = 96 * 1024
    max_body: int = 64 * 1024
    request_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_queued: int = 32


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; carries the answer's status and description."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}
_CLOSE = b"connection: close\r\n"


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue in order, answer, keep alive or close."""

    __slots__ = ("_server", "_handler", "_limits", "_parser", "_transport", "_url", "_method", "_headers",
                 "_head_bytes", "_head_limit", "_head_fresh", "_chunk", "_body_bytes",
                 "_in_message", "_in_head", "_mark", "_queue", "_task", "_closing", "_paused",
                 "__weakref__")

    def __init__(self, server: Http1Server) -> None:
        self._server = server
        self._handler = server.handler
        self._limits = server.limits
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._method = ""
        self._headers: RawHeaders = []
        self._head_bytes = self._chunk = 0
        limits = self._limits
        # Request line, header lines with their ": " and CRLF, and the blank line.
        self._head_limit = limits.max_target + limits.max_header_bytes + 4 * limits.max_headers + 1024
        self._body_bytes = 0
        self._in_message = self._in_head = self._head_fresh = False
        self._mark = time.monotonic()  # start of the current request, or of the idle time
        # Complete requests behind the one being decided: (method, target, headers, keep_alive), or an Answer to
        # send before closing (a refused request).
        self._queue: deque[tuple[str, str, RawHeaders, bool] | Answer] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # no more requests are read; the connection closes once the queue is answered
        self._paused = False

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._queue.clear()
        self._server.connections.discard(self)
        self._server.forget(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._chunk = len(data)
        try:
            self._parser.feed_data(data)
            if self._in_head:  # a head still incomplete after this chunk: bound the bytes it has taken
                if self._head_fresh:  # it began in this chunk: at most len(data) of it, not counted
                    self._head_fresh = False
                else:  # the whole chunk belongs to it
                    self._head_bytes += len(data)
                    if self._head_bytes > self._head_limit:
                        self._refuse(431, "The request headers are too large")
        except httptools.HttpParserUpgrade:
            self._stop_reading()  # CONNECT or Upgrade: what follows is not HTTP; answer what came, then close
        except httptools.HttpParserError as exc:
            refused = exc.__context__ if isinstance(exc.__context__, _Refused) else None
            if refused is None:
                log.debug("malformed HTTP request: %s", exc)
                refused = _Refused(400, "The request is not valid HTTP/1.1")
            self._refuse(refused.status, refused.description)

    def eof_received(self) -> bool:
        self._stop_reading()
        return True  # keep the write side open until the queued answers are out

    def pause_writing(self) -> None:
        if self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._resume()

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self._in_message = self._in_head = self._head_fresh = True
        self._mark = time.monotonic()
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._body_bytes = 0

    def on_url(self, fragment: bytes) -> None:
        self._url += fragment
        if len(self._url) > self._limits.max_target:
            raise _Refused(400, "The request path is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only collected here (once per header field, the hot spot of parsing); the bounds are checked when the
        # head is complete, and while it is not, data_received bounds the bytes of the head.
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        headers, limits = self._headers, self._limits
        if len(headers) > limits.max_headers:
            raise _Refused(431, "The request has too many headers")
        # A head that came whole in one read no larger than the limit is within it (the common case).
        if (not self._head_fresh or self._chunk > limits.max_header_bytes) and sum(
                map(len, chain.from_iterable(headers))) > limits.max_header_bytes:
            raise _Refused(431, "The request headers are too large")
        raw = self._parser.get_method()
        self._method = _METHODS.get(raw) or raw.decode("ascii", "replace")

    def on_body(self, chunk: bytes) -> None:
        self._body_bytes += len(chunk)
        if self._body_bytes > self._limits.max_body:
            raise _Refused(413, "The request body is too large")

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._closing:  # answered with connection: close; what follows in the buffer is dropped
            return
        parser = self._parser
        item = (self._method, self._url.decode("utf-8", "replace"), self._headers,
                parser.should_keep_alive() and not parser.should_upgrade())
        if self._task is None and not self._queue:
            self._answer(item)
        else:
            self._queue.append(item)
            if len(self._queue) >= self._limits.max_queued and not self._paused and self._transport is not None:
                self._paused = True
                self._transport.pause_reading()

    # ------------------------------------------------------------------ answering

    def _answer(self, item: tuple[str, str, RawHeaders, bool]) -> None:
        method, target, headers, keep_alive = item
        try:
            result = self._handler(method, target, headers)
        except Exception:
            log.exception("HTTP handler failed; answering 503")
            result = self._handler.reject(503, "The server failed to answer; retry later")
        if isinstance(result, Answer):
            self._write(result, method == "HEAD", keep_alive)
        else:
            self._task = self._server.loop.create_task(self._finish(result, method == "HEAD", keep_alive))

    async def _finish(self, pending: Coroutine[Any, Any, Answer], head_only: bool, keep_alive: bool) -> None:
        try:
            answer = await pending
        except Exception:
            log.exception("HTTP handler failed; answering 503")
            answer = self._handler.reject(503, "The server failed to answer; retry later")
        self._task = None
        if self._transport is None or self._transport.is_closing():
            return
        self._write(answer, head_only, keep_alive)
        self._drain()

    def _drain(self) -> None:
        """Answer queued requests in order until one needs a task (or the connection closes)."""
        queue = self._queue
        while queue and self._task is None and self._transport is not None and not self._transport.is_closing():
            item = queue.popleft()
            if isinstance(item, Answer):
                self._write(item, False, False)
            else:
                self._answer(item)
        self._resume()

    def _write(self, answer: Answer, head_only: bool, keep_alive: bool) -> None:
        transport = self._transport
        assert transport is not None
        close = not keep_alive or (self._closing and not self._queue and self._task is None) or (
            self._server.closing and not self._queue and not self._in_message)
        data = answer.head + (_CLOSE if close else b"") + self._server.date_tail
        if answer.body and not head_only:
            data += answer.body
        transport.write(data)
        self._mark = time.monotonic()
        if close:
            self._closing = True
            self._queue.clear()
            transport.close()

    def _refuse(self, status: int, description: str) -> None:
        """Answer a refused request after the ones queued before it, then close."""
        answer = self._handler.reject(status, description)
        self._in_message = self._in_head = False
        if self._task is None and not self._queue:
            self._write(answer, False, False)  # closes
        else:
            self._queue.append(answer)
            self._stop_reading()

    def _stop_reading(self) -> None:
        """Read no more requests; close once every queued one is answered."""
        self._closing = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if self._task is None and not self._queue:
                transport.close()
            elif not self._paused:
                self._paused = True
                transport.pause_reading()

    def _resume(self) -> None:
        transport = self._transport
        if (self._paused and not self._closing and transport is not None and not transport.is_closing()
                and len(self._queue) < self._limits.max_queued):
            self._paused = False
            transport.resume_reading()

    # ------------------------------------------------------------------ server-driven

    def expire(self, now: float) -> None:
        """Close the connection when the client is past a deadline (called about once a second).

        A partial request older than ``request_timeout`` is answered 408; an idle connection older than
        ``idle_timeout`` is closed. A connection waiting for the handler's answer is never timed out here.
        """
        transport = self._transport
        if transport is None or transport.is_closing() or self._task is not None or self._queue:
            return
        if self._in_message:
            if now - self._mark > self._limits.request_timeout:
                self._refuse(408, "The request was not completed in time")
        elif now - self._mark > self._limits.idle_timeout:
            transport.close()

    def shutdown(self) -> None:
        """Server closing: close now when idle; otherwise the last answer carries ``connection: close``."""
        transport = self._transport
        if (transport is not None and not transport.is_closing() and self._task is None and not self._queue
                and not self._in_message):
            transport.close()

    def abort(self) -> None:
        """Grace period over: drop the connection."""
        if self._transport is not None:
            self._transport.abort()


class Http1Server:
    """An HTTP/1.1 listener answering through a :class:`Handler`.

    Args:
        handler: what answers each request.
        listen: ``host:port`` (port 0 picks a free one; IPv6 hosts in brackets).
        limits: the request and connection bounds.
        grace_period: seconds requests already received get to finish on :meth:`close`.

    Attributes:
        port: the bound port, after :meth:`start`.
    """

    def __init__(self, handler: Handler, listen: str, limits: Limits | None = None,
                 grace_period: float = 5.0) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        host, _, port = listen.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port)
        self._grace = grace_period
        self.port: int | None = None
        self.connections: set[_Connection] = set()
        self.closing = False
        self.date_tail = b""
        self.loop: asyncio.AbstractEventLoop  # set by start()
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._emptied: asyncio.Event | None = None

    async def start(self) -> int:
        """Bind and start serving.

        Returns:
            The bound port.
        Raises:
            OSError: the address cannot be bound.
        """
        self.loop = asyncio.get_running_loop()
        self._emptied = asyncio.Event()
        self._tick()
        try:
            self._server = await self.loop.create_server(
                lambda: _Connection(self), self._host, self._port, reuse_address=True, backlog=1024)
        except OSError:
            self._stop_ticker()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def _tick(self) -> None:
        """Once a second: refresh the ``date`` line (RFC 9110 section 6.6.1) and time out slow clients."""
        self.date_tail = b"date: " + formatdate(usegmt=True).encode("ascii") + b"\r\n\r\n"
        now = time.monotonic()
        for conn in list(self.connections):
            conn.expire(now)
        self._ticker = self.loop.call_later(1.0, self._tick)

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def forget(self, conn: _Connection) -> None:
        """A connection closed (called by the connection)."""
        if self.closing and not self.connections and self._emptied is not None:
            self._emptied.set()

    async def close(self) -> None:
        """Stop accepting, let requests already received finish (up to the grace period), close connections.

        Idempotent.
        """
        if self._server is None:
            return
        server, self._server = self._server, None
        self.closing = True
        server.close()
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            assert self._emptied is not None
            try:
                await asyncio.wait_for(self._emptied.wait(), self._grace)
            except TimeoutError:
                log.warning("%d HTTP connection(s) still busy after the %.1fs grace period; closing them",
                            len(self.connections), self._grace)
        for conn in list(self.connections):
            conn.abort()
        self._stop_ticker()
        await server.wait_closed()
