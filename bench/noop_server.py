"""The floor of any Python gRPC side call: a grpc.aio ext_authz server that parses the CheckRequest and says OK.

``python bench/noop_server.py PORT`` (uvloop when installed). Used by ``bench/run.py`` as the baseline of the
ratios ``warm_vs_noop`` and ``direct_warm_vs_noop``.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc.status_pb2 import Status

OK = external_auth_pb2.CheckResponse(status=Status(code=0), ok_response=external_auth_pb2.OkHttpResponse())


class Noop(external_auth_pb2_grpc.AuthorizationServicer):
    """Returns OK for every Check; the request is parsed by grpc (as for authz) and its path read."""

    async def Check(self, request, context):  # noqa: ANN001, ANN201, N802
        _ = request.attributes.request.http.path
        return OK


async def main(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Noop(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(int(sys.argv[1])))
    except ImportError:
        asyncio.run(main(int(sys.argv[1])))
