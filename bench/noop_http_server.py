"""The floor of any Python HTTP ext_authz side call: an ``asyncio.Protocol`` on uvloop answering ``200`` to each
request, without parsing more than the end of each head (Envoy's authorization requests carry no body). Envoy's
health probe of the generated ``authz_http`` cluster (``GET /healthz``, on its own connection) gets the ``204`` of
authz's probe, so the host is healthy as authz's is.

``python bench/noop_http_server.py PORT``. Used by ``bench/run.py`` as the baseline ``noop_http``: what Envoy's
HTTP ext_authz call costs with nothing on the Python side but the event loop and one write per request.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
HEALTHY = b"HTTP/1.1 204 No Content\r\n\r\n"
PROBE = b"GET /healthz "


class Noop(asyncio.Protocol):
    """Answers every complete request head with :data:`OK` (pipelined heads in one read: one write)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        count = data.count(b"\r\n\r\n")
        self.tail = data[data.rfind(b"\r\n\r\n") + 4:] if count else data
        if count:
            self.transport.write((HEALTHY if data.startswith(PROBE) else OK) * count)  # type: ignore[attr-defined]


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Noop, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
