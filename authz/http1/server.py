"""The connection protocol and the listener of :mod:`authz.http1`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from email.utils import formatdate
from itertools import chain
from typing import Any, cast

import httptools

from authz.http1.wire import Answer, Handler, Limits, RawHeaders

log = logging.getLogger("authz.http1")


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

    __slots__ = ("_server", "_limits", "_parser", "_transport", "_url", "_method", "_headers",
                 "_head_bytes", "_head_limit", "_head_fresh", "_chunk", "_body_bytes",
                 "_in_message", "_in_head", "_mark", "_queue", "_task", "_closing", "_paused",
                 "__weakref__")

    def __init__(self, server: Http1Server) -> None:
        self._server = server
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
        handler = self._server.handler  # read per request: a config reload swaps it between two requests
        try:
            result = handler(method, target, headers)
        except Exception:
            log.exception("HTTP handler failed; answering 503")
            result = handler.reject(503, "The server failed to answer; retry later")
        if isinstance(result, Answer):
            self._write(result, method == "HEAD", keep_alive)
        else:
            self._task = self._server.loop.create_task(self._finish(result, method == "HEAD", keep_alive))

    async def _finish(self, pending: Coroutine[Any, Any, Answer], head_only: bool, keep_alive: bool) -> None:
        try:
            answer = await pending
        except Exception:
            log.exception("HTTP handler failed; answering 503")
            answer = self._server.handler.reject(503, "The server failed to answer; retry later")
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
        answer = self._server.handler.reject(status, description)
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
        handler: what answers each request; the :attr:`handler` attribute may be replaced while serving (each
            request is answered by the one set when it is answered).
        listen: ``host:port`` (port 0 picks a free one; IPv6 hosts in brackets).
        limits: the request and connection bounds.
        grace_period: seconds requests already received get to finish on :meth:`close`.

    Attributes:
        port: the bound port, after :meth:`start`.
        grace_period: as the argument; may be changed while serving (:meth:`close` reads it).
    """

    def __init__(self, handler: Handler, listen: str, limits: Limits | None = None,
                 grace_period: float = 5.0) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        host, _, port = listen.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port)
        self.grace_period = grace_period
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
                await asyncio.wait_for(self._emptied.wait(), self.grace_period)
            except TimeoutError:
                log.warning("%d HTTP connection(s) still busy after the %.1fs grace period; closing them",
                            len(self.connections), self.grace_period)
        for conn in list(self.connections):
            conn.abort()
        self._stop_ticker()
        await server.wait_closed()
