"""Raw HTTP/1.1 over a real socket, for tests of the lean server (:mod:`authz.http1`): send exact bytes, read
back exact responses (status, headers, body) in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httptools


@dataclass
class Response:
    """One parsed response: status, header fields (names lower-cased, in order) and body."""

    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of the first header field called ``name``, or None."""
        return next((v for n, v in self.headers if n == name), None)


class _Collector:
    def __init__(self) -> None:
        self.done: list[Response] = []
        self.current = Response()
        self.parser: httptools.HttpResponseParser | None = None

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.current.status = self.parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.decode().lower(), value.decode()))

    def on_body(self, chunk: bytes) -> None:
        self.current.body += chunk

    def on_message_complete(self) -> None:
        self.done.append(self.current)
        self.current = Response()


class RawClient:
    """One TCP connection to ``127.0.0.1:port``.

    Responses are parsed as answers to requests whose method is not HEAD (use :meth:`read_raw` for HEAD).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._collector = _Collector()
        self._parser = httptools.HttpResponseParser(self._collector)
        self._collector.parser = self._parser

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def responses(self, count: int, timeout: float = 5.0) -> list[Response]:
        """The next ``count`` responses; fails the test (TimeoutError) when they do not all arrive in time."""
        async with asyncio.timeout(timeout):
            while len(self._collector.done) < count:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError(f"closed after {len(self._collector.done)} of {count} responses")
                self._parser.feed_data(data)
        out, self._collector.done = self._collector.done[:count], self._collector.done[count:]
        return out

    async def read_raw(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the connection (EOF) within ``timeout`` seconds, nothing more being sent."""
        try:
            return await asyncio.wait_for(self.reader.read(1), timeout) == b""
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.close()
