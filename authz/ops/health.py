"""The gRPC health check (``grpc.health.v1.Health``) seen from outside: is an authz process serving?

Used by the demo stack, the tests and the ``authz health`` command (the
container image's health check).
"""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def status(target: str, timeout: float = 1.0, service: str = "") -> str | None:
    """The status the health service at ``target`` reports for ``service``.

    Args:
        target: ``host:port`` of the gRPC server.
        timeout: seconds for the one call.
        service: the service name to ask about ("" = the server as a whole; ``authz.durability``: whether
            acknowledged registry writes are safe).
    Returns:
        ``SERVING``, ``NOT_SERVING``, ``UNKNOWN`` or ``SERVICE_UNKNOWN``; None for an RPC error or a timeout.
    """
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return None
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def serving(target: str, timeout: float = 1.0, service: str = "") -> bool:
    """Whether the health service at ``target`` reports SERVING for ``service`` (see :func:`status`).

    Returns:
        True for SERVING; False for any other status, an RPC error or a timeout.
    """
    return status(target, timeout, service) == "SERVING"


def wait_serving(target: str, timeout: float = 20.0) -> None:
    """Wait until the gRPC health service at ``target`` (``host:port``) reports SERVING.

    Raises:
        TimeoutError: not SERVING within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"authz at {target} did not report SERVING within {timeout:.0f}s")
