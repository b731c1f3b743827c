"""gRPC adapter: ``envoy.service.auth.v3.Authorization/Check`` over the decision pipeline.

The only module that sees protobuf request types. It turns a ``CheckRequest`` into a plain
:class:`authz.model.Request`, asks the pipeline, and renders the answer. It never lets an exception
escape: an RPC error would reach Envoy as an authz failure, which ``failure_mode_allow`` turns into an
allow; instead any internal error is a rendered 503 deny.
"""

from __future__ import annotations

import contextlib
import logging
from time import perf_counter
from typing import NamedTuple

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.cache import BoundedCache
from authz.decide.pipeline import Pipeline
from authz.decide.record import DecisionRecorder
from authz.envoy.render import allow_response, deny_response
from authz.envoy.requests import (
    build_request,
    check_header_count,
    fold_headers,
)
from authz.errors import Denial, Reason, unavailable
from authz.model import Allow, Request

log = logging.getLogger("authz.grpc")


def adapt(message: CheckRequest) -> Request:
    """Extract the plain :class:`Request` from a ``CheckRequest``.

    Header names are lower-cased; a name present under two spellings (``Authorization`` and
    ``authorization``) has its values comma-joined, as HTTP merges repeated headers. Headers sent in
    ``header_map`` (Envoy's ``encode_raw_headers``) are read too. Work is linear in the message size.

    Args:
        message: the ``CheckRequest`` from Envoy.
    Returns:
        The :class:`Request`.
    Raises:
        Denial: ``INVALID_REQUEST`` (400) past the limits of :mod:`authz.envoy.requests`.
    """
    attrs = message.attributes
    http = attrs.request.http
    entries = http.header_map.headers
    check_header_count(len(http.headers) + len(entries))
    raw = dict(http.headers)
    headers = {name.lower(): value for name, value in raw.items()}
    if entries or len(headers) != len(raw):
        # Rare shapes: header_map (encode_raw_headers) or one name under two spellings.
        headers = fold_headers([*raw.items(), *(
            (e.key, e.value or e.raw_value.decode("utf-8", "replace")) for e in entries)])
    return build_request(
        http.method or headers.get(":method", ""),
        http.path or headers.get(":path", ""),
        http.host or headers.get(":authority", ""),
        headers,
        context_extensions=attrs.context_extensions,
        request_id=http.id,
    )


def parse_check_request(data: bytes) -> CheckRequest | None:
    """Deserialize a ``CheckRequest``; None when the bytes are not a valid message (e.g. bad UTF-8 in a
    string field), so that the servicer renders a deny instead of gRPC failing the call with UNKNOWN."""
    try:
        return CheckRequest.FromString(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and kin: any of them means a malformed request
        return None


class _Answering(NamedTuple):
    """What one config answers checks with: swapped as a whole by a reload."""

    pipeline: Pipeline
    realm: str
    rendered: BoundedCache[int, tuple[Allow, bytes]]
    """The pipeline memoizes allow decisions, so the same Allow object comes back for repeated requests and is
    serialized once: id(allow) -> (allow, wire bytes)."""


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):
    """The ``envoy.service.auth.v3.Authorization`` service.

    Args:
        pipeline: the decision pipeline.
        realm: the ``realm`` of ``WWW-Authenticate`` challenges.
        cache_size: most serialized allow answers kept (``server.decision_cache_size``).
        recorder: counts and logs each decision (default: counting on, denials logged).
    """

    def __init__(self, pipeline: Pipeline, realm: str, cache_size: int = 10_000,
                 recorder: DecisionRecorder | None = None) -> None:
        self.recorder = recorder or DecisionRecorder("grpc")
        self.reconfigure(pipeline, realm, cache_size)

    def reconfigure(self, pipeline: Pipeline, realm: str, cache_size: int) -> None:
        """Decide the next checks with this pipeline and realm (a config reload), with a fresh cache of
        serialized answers; checks in flight finish with the previous ones.

        Args:
            pipeline: the decision pipeline.
            realm: ``realm``.
            cache_size: ``server.decision_cache_size``.
        """
        self._answering = _Answering(pipeline, realm, BoundedCache("rendered_grpc", cache_size))

    @staticmethod
    def _render_allow(answering: _Answering, allow: Allow) -> bytes:
        rendered = answering.rendered
        hit = rendered.get(id(allow))
        if hit is not None and hit[0] is allow:
            return hit[1]
        data = allow_response(allow).SerializeToString()
        rendered.put(id(allow), (allow, data))
        return data

    async def Check(  # noqa: N802
        self, request: CheckRequest | None, context: grpc.aio.ServicerContext
    ) -> CheckResponse | bytes:
        """Decide one HTTP request; never an RPC error.

        Returns:
            A ``CheckResponse``, or for an allow its serialized bytes (``serialize_check_response`` passes
            them through).
        """
        started = perf_counter()
        recorder = self.recorder
        answering = self._answering
        try:
            try:
                if request is None:
                    raise Denial(Reason.INVALID_REQUEST, "The CheckRequest is malformed")
                adapted = adapt(request)
            except Denial as denial:
                recorder.denied(None, denial, started, "adapt")
                return deny_response(denial, answering.realm)
            check = await answering.pipeline.evaluate(adapted)
            if check.allow is not None:
                data = self._render_allow(answering, check.allow)
                recorder.allowed(check, started)
                return data
            assert check.denial is not None
            response = deny_response(check.denial, answering.realm)
            recorder.denied(check, check.denial, started)
            return response
        except Exception:
            log.exception("internal error while deciding; denying with 503")
            denial = unavailable("authz failed to decide; retry later")
            with contextlib.suppress(Exception):
                recorder.denied(None, denial, started, "internal")
            return deny_response(denial, answering.realm)


def add_to_server(servicer: AuthorizationServicer, server: grpc.aio.Server) -> None:
    """Register ``envoy.service.auth.v3.Authorization`` with a deserializer that never fails the call.

    Like the generated ``add_AuthorizationServicer_to_server``, except that a message protobuf cannot
    parse reaches :meth:`AuthorizationServicer.Check` as None and is answered with a rendered 400.
    """
    handler = grpc.method_handlers_generic_handler(
        "envoy.service.auth.v3.Authorization",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                servicer.Check,
                request_deserializer=parse_check_request,
                response_serializer=serialize_check_response,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))


def serialize_check_response(response: CheckResponse | bytes) -> bytes:
    """Wire bytes of a ``CheckResponse``; already-serialized responses pass through."""
    return response if isinstance(response, bytes) else response.SerializeToString()
