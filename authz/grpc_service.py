"""gRPC adapter: ``envoy.service.auth.v3.Authorization/Check`` over the decision pipeline.

The only module that sees protobuf request types. It turns a ``CheckRequest`` into a plain
:class:`authz.model.Request`, asks the pipeline, and renders the answer. It never lets an exception
escape: an RPC error would reach Envoy as an authz failure, which ``failure_mode_allow`` turns into an
allow; instead any internal error is a rendered 503 deny.
"""

from __future__ import annotations

import logging

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.errors import Denial
from authz.model import Allow, Request
from authz.pipeline import Pipeline, unavailable
from authz.responses import allow_response, deny_response

log = logging.getLogger("authz.grpc")


def adapt(message: CheckRequest) -> Request:
    """Extract the plain :class:`Request` from a ``CheckRequest``.

    Header names are lower-cased; a name present under two spellings (``Authorization`` and
    ``authorization``) has its values comma-joined, as HTTP merges repeated headers. Headers sent in
    ``header_map`` (Envoy's ``encode_raw_headers``) are read too.

    Args:
        message: the ``CheckRequest`` from Envoy.
    Returns:
        The :class:`Request`.
    """
    attrs = message.attributes
    http = attrs.request.http
    headers: dict[str, str] = {}
    for name, value in http.headers.items():
        lower = name.lower()
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    for entry in http.header_map.headers:
        lower = entry.key.lower()
        value = entry.value or entry.raw_value.decode("utf-8", "replace")
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    return Request(
        method=http.method or headers.get(":method", ""),
        path=http.path or headers.get(":path", ""),
        host=http.host or headers.get(":authority", ""),
        headers=headers,
        context_extensions=dict(attrs.context_extensions),
        request_id=headers.get("x-request-id", "")[:64] or http.id[:64],
    )


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):
    """The ``envoy.service.auth.v3.Authorization`` service.

    Args:
        pipeline: the decision pipeline.
        realm: the ``realm`` of ``WWW-Authenticate`` challenges.
    """

    def __init__(self, pipeline: Pipeline, realm: str) -> None:
        self._pipeline = pipeline
        self._realm = realm

    async def Check(self, request: CheckRequest, context: grpc.aio.ServicerContext) -> CheckResponse:  # noqa: N802
        """Decide one HTTP request; always returns a ``CheckResponse``, never an RPC error."""
        try:
            return render(await self._pipeline.decide(adapt(request)), self._realm)
        except Exception:
            log.exception("internal error while deciding; denying with 503")
            return deny_response(unavailable("authz failed to decide; retry later"), self._realm)


def render(outcome: Allow | Denial, realm: str) -> CheckResponse:
    """Render a pipeline outcome as a ``CheckResponse``."""
    return allow_response(outcome) if isinstance(outcome, Allow) else deny_response(outcome, realm)
