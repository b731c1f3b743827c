"""The floor of any Python gRPC side call: an ext_authz server that parses the CheckRequest and says OK.

    python bench/noop_server.py PORT [--mode aio|sync|h2]

- ``aio`` (default): grpc.aio on uvloop, as authz serves; the baseline of the ratios ``warm_vs_noop`` and
  ``direct_warm_vs_noop`` of ``bench/run.py``;
- ``sync``: grpc's synchronous server with a thread pool (4 threads);
- ``h2``: no grpc at all: an ``asyncio.Protocol`` on uvloop speaking HTTP/2 through the ``h2`` library, serving
  this one unary method (``Check``: 5-byte gRPC message prefix, upb parse, a serialized OK, ``grpc-status: 0``
  trailers). Used by ``bench/grpc_floor.py`` to answer where a Python gRPC call's cost comes from.

grpc's own knobs (``GRPC_EXPERIMENTS``, ``GRPC_POLL_STRATEGY``) are read from the environment, as usual.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
from concurrent.futures import ThreadPoolExecutor

import grpc
import uvloop
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc.status_pb2 import Status

OK = external_auth_pb2.CheckResponse(status=Status(code=0), ok_response=external_auth_pb2.OkHttpResponse())
CHECK = "/envoy.service.auth.v3.Authorization/Check"


class Noop(external_auth_pb2_grpc.AuthorizationServicer):
    """Returns OK for every Check; the request is parsed by grpc (as for authz) and its path read."""

    async def Check(self, request, context):  # noqa: ANN001, ANN201, N802
        _ = request.attributes.request.http.path
        return OK


class SyncNoop(external_auth_pb2_grpc.AuthorizationServicer):
    """:class:`Noop` for the synchronous server."""

    def Check(self, request, context):  # noqa: ANN001, ANN201, N802
        _ = request.attributes.request.http.path
        return OK


async def serve_aio(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Noop(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _until_signalled()
    await server.stop(1)


def serve_sync(port: int) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(SyncNoop(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(1))
    server.wait_for_termination()


class H2Noop(asyncio.Protocol):
    """One HTTP/2 connection answering unary ``Check`` calls (anything else: ``grpc-status: 12``)."""

    def __init__(self) -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection

        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.bodies: dict[int, bytearray] = {}
        self.paths: dict[int, bytes] = {}
        self.ok = OK.SerializeToString()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        from h2 import events

        for event in self.conn.receive_data(data):
            if isinstance(event, events.RequestReceived):
                self.paths[event.stream_id] = dict(event.headers).get(b":path", b"")
                self.bodies[event.stream_id] = bytearray()
            elif isinstance(event, events.DataReceived):
                self.bodies[event.stream_id] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, events.StreamEnded):
                self.answer(event.stream_id)
        self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def answer(self, stream: int) -> None:
        body = bytes(self.bodies.pop(stream))
        path = self.paths.pop(stream)
        self.conn.send_headers(stream, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        if path == CHECK.encode() and len(body) >= 5:
            request = external_auth_pb2.CheckRequest.FromString(body[5:])
            _ = request.attributes.request.http.path
            self.conn.send_data(stream, b"\x00" + struct.pack(">I", len(self.ok)) + self.ok)
            self.conn.send_headers(stream, [(b"grpc-status", b"0")], end_stream=True)
        else:
            self.conn.send_headers(stream, [(b"grpc-status", b"12")], end_stream=True)


async def serve_h2(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(H2Noop, "127.0.0.1", port)
    async with server:
        await _until_signalled()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--mode", choices=("aio", "sync", "h2"), default="aio")
    args = parser.parse_args()
    if args.mode == "sync":
        serve_sync(args.port)
    else:
        uvloop.run((serve_aio if args.mode == "aio" else serve_h2)(args.port))
